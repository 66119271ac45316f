"""benchmarks/step_traffic.py, the GPU estimate's inputs (docs/gpu.md): its byte counter, and the fused weight norm
it proposes for the stack, checked as micrograd checks a backward: against autograd in float64, and by finite
differences."""

import importlib.util
from pathlib import Path

import pytest
import torch

from mnistlab.stacked import StackedModel

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("step_traffic", ROOT / "benchmarks" / "step_traffic.py")
step_traffic = importlib.util.module_from_spec(spec)
spec.loader.exec_module(step_traffic)


def weight_norm_product(x, v, g, b):
    """The definition, as torch's weight_norm(dim=0) and StackedModel.weight compute it: x @ (v * g / ||v||) + b."""
    return torch.baddbmm(b, x, v * (g / v.norm(dim=1, keepdim=True)))


@pytest.fixture
def layer():
    torch.manual_seed(0)
    K, B, n_in, n_out = 3, 7, 11, 5
    tensors = (torch.randn(K, B, n_in), torch.randn(K, n_in, n_out), torch.rand(K, 1, n_out) + 0.5,
               torch.randn(K, 1, n_out))
    return [t.double().requires_grad_() for t in tensors]


def test_the_fused_weight_norm_gives_autograds_values_and_gradients_in_float64(layer):
    fused = step_traffic.WeightNormProduct.apply(*layer)
    plain = weight_norm_product(*layer)
    assert torch.allclose(fused, plain, rtol=0, atol=1e-12)
    upstream = torch.randn_like(plain)
    expected = torch.autograd.grad(plain, layer, upstream)
    got = torch.autograd.grad(fused, layer, upstream)
    for name, a, b in zip(("x", "v", "g", "b"), got, expected):
        assert torch.allclose(a, b, rtol=0, atol=1e-12), name


def test_the_fused_weight_norm_passes_a_finite_difference_check(layer):
    assert torch.autograd.gradcheck(step_traffic.WeightNormProduct.apply, layer, eps=1e-6, atol=1e-8)


def test_a_fused_weight_norm_stack_trains_as_the_stack_does():
    stacks = [cls.from_seeds("wmodel", 32, [0, 1]) for cls in (StackedModel, step_traffic.FusedWeightNorm)]
    x, y = torch.randn(2, 20, 784), torch.randint(0, 10, (2, 20))
    for stack in stacks:
        loss = torch.nn.functional.cross_entropy(stack(x).flatten(0, 1), y.flatten())
        loss.backward()
    for (key, a), b in zip(stacks[0].named_parameters(), stacks[1].parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-7), key


def test_the_counter_counts_what_fused_adam_reads_and_writes_in_place():
    weights = [torch.nn.Parameter(torch.zeros(1000)) for _ in range(3)]
    optimizer = torch.optim.Adam(weights, lr=0.01, fused=True)
    for w in weights:
        w.grad = torch.ones(1000)
    optimizer.step()  # Adam's moments exist from the first step
    with step_traffic.Traffic() as traffic:
        optimizer.step()
    size = 3 * 1000 * 4  # bytes of the weights, as of each of their gradients and moments
    adam = traffic.ops["_fused_adam_"]
    assert adam[0] == 1 and 7 * size <= adam[1] < 7 * size + 1000  # reads w, grad, m, v; writes w, m, v (+ steps)
    with step_traffic.Traffic() as traffic:
        optimizer.zero_grad(set_to_none=False)
    assert traffic.totals()["bytes"] == size  # a zeroing writes and reads nothing
