"""What one training step of a five-seed stack asks of a device, counted op by op on any device: kernels, bytes
moved and GEMM FLOPs, for today's step and for the changes docs/gpu.md proposes (the GPU estimate's inputs).

    python benchmarks/step_traffic.py [--hidden-sizes 1000,2000,5000] [--seeds 5] [--time-steps 20] [--json out.json]

Each aten op the step runs (``TorchDispatchMode``) is one kernel, except views (no kernel, no traffic). Its
traffic is the bytes of the tensors it reads (each once, at most its storage's size: an expanded batch is read
once; a zeroing reads nothing) and writes (its outputs and the arguments it changes in place, as fused Adam
does its weights and moments): what a GPU moves through its memory when nothing stays in cache,
an upper bound at H = 1000 (the stack's 16 MB of weights fit an H100's 50 MB L2 only in part), close at
5000. FLOPs: 2 per multiply-add of the matrix products, the rest (elementwise, reductions) left out.

Variants, each a change to the step (mnistlab/steps.py, stacked.py) written here as a subclass:
  now             Stack.step as it is: gradients zeroed in place (kept for a CUDA graph), weight norm's
                  w = v * (g / ||v||) built as a tensor, then used in the product
  grads-none      gradients set to None before the backward (inside a capture they come from the graph's
                  pool, at the same addresses every replay): no zeroing pass, no read-add of the old ones
  wn-fused        weight norm without its weight, its backward in one pass (``WeightNormProduct``): the
                  same function, another rounding (wmodel only)
  both            grads-none and wn-fused
``--time-steps``: also the seconds per step on this device, eager, each variant in turn in one process (a
ratio survives a loaded machine; absolute times do not).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mnistlab.data import Split  # noqa: E402
from mnistlab.models import IN_FEATURES  # noqa: E402
from mnistlab.origin import describe, hardware  # noqa: E402
from mnistlab.stacked import StackedModel  # noqa: E402
from mnistlab.steps import Stack  # noqa: E402

VARIANTS = ("now", "grads-none", "wn-fused", "both")
MATMULS = {"mm", "bmm", "addmm", "baddbmm"}
OVERWRITES = {"zero_", "_foreach_zero_", "fill_"}  # write their tensors without reading them
# Arguments an op's schema lets it change that it only reads here: fused Adam unscales gradients in place only
# for a gradient scaler (mixed precision), which the protocol's float32 never has.
READ_ONLY = {"_fused_adam_": {"grads"}}


class Traffic(TorchDispatchMode):
    """Kernels, bytes and GEMM FLOPs of the aten ops run while active, by op name."""

    def __init__(self):
        super().__init__()
        self.ops: dict[str, list[int]] = {}  # name -> [kernels, bytes, flops]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if getattr(func, "is_view", False):
            return out
        name = func.__name__.split(".")[0]
        inputs = {id(t): t for t in tree_flatten((args, kwargs or {}))[0] if isinstance(t, torch.Tensor)}
        # Written: what the op returns, and the arguments it changes in place (fused Adam returns nothing).
        written = {id(t): t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)}
        for i, argument in enumerate(func._schema.arguments):
            if argument.alias_info is not None and argument.alias_info.is_write \
                    and argument.name not in READ_ONLY.get(name, ()):
                value = args[i] if i < len(args) else (kwargs or {}).get(argument.name)
                written |= {id(t): t for t in tree_flatten(value)[0] if isinstance(t, torch.Tensor)}
        read = [t for key, t in inputs.items() if not (name in OVERWRITES and key in written)]
        moved = sum(min(t.numel() * t.element_size(), t.untyped_storage().nbytes()) for t in read)
        moved += sum(t.numel() * t.element_size() for t in written.values())
        flops = 0
        if name in MATMULS:
            a, b = (args[1], args[2]) if name in ("addmm", "baddbmm") else (args[0], args[1])
            flops = 2 * a.numel() * b.shape[-1]
        row = self.ops.setdefault(name, [0, 0, 0])
        row[0], row[1], row[2] = row[0] + 1, row[1] + moved, row[2] + flops
        return out

    def totals(self) -> dict:
        return {"kernels": sum(r[0] for r in self.ops.values()), "bytes": sum(r[1] for r in self.ops.values()),
                "flops": sum(r[2] for r in self.ops.values())}


class WeightNormProduct(torch.autograd.Function):
    """``(x @ v) * (g / ||v||) + b`` (the norm per output unit, over the inputs: torch's dim=0), for K models
    at once, with weight norm's backward done in one pass over the weights.

    Shapes: x (K, B, in), v (K, in, out), g and b (K, 1, out). With u = x @ v, s = g / ||v|| and the incoming
    gradient dz (K, B, out): dL/ds = c = sum_b dz * u (a (K, 1, out) reduction of a batch-sized product, not of
    the weights), so dv = x^T (dz * s) - v * (c * g / ||v||^3), dg = c / ||v||, db = sum_b dz and
    dx = (dz * s) @ v^T. The weight w = v * s is never made, and v's gradient costs one product and one
    multiply-add over the weights, as against autograd's seven passes.
    """

    @staticmethod
    def forward(ctx, x, v, g, b):
        norm = v.norm(dim=1, keepdim=True)  # (K, 1, out)
        u = torch.bmm(x, v)  # (K, B, out)
        ctx.save_for_backward(x, v, g, norm, u)
        return torch.addcmul(b, u, g / norm)

    @staticmethod
    def backward(ctx, dz):
        x, v, g, norm, u = ctx.saved_tensors
        a = dz * (g / norm)  # (K, B, out)
        c = (dz * u).sum(dim=1, keepdim=True)  # (K, 1, out)
        dv = torch.bmm(x.transpose(1, 2), a)  # (K, in, out)
        dv.addcmul_(v, -c * g / norm**3)
        dx = torch.bmm(a, v.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        return dx, dv, c / norm, dz.sum(dim=1, keepdim=True)


class FusedWeightNorm(StackedModel):
    """wmodel's stack with each weight-normalised layer a ``WeightNormProduct``: the same function, another rounding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if "fc1.parametrizations.weight.original1" not in self.parameter_keys:
            return super().forward(x)
        if x.dim() == 2:
            x = x.expand(self.size, *x.shape)
        z = self._layer(x, "fc1")  # (K, B, H)
        return self._layer(F.relu(z), "fc2")  # (K, B, 10)

    def _layer(self, x: torch.Tensor, name: str) -> torch.Tensor:
        v = self.stacked(f"{name}.parametrizations.weight.original1").transpose(1, 2)  # (K, in, out)
        g = self.stacked(f"{name}.parametrizations.weight.original0").transpose(1, 2)  # (K, 1, out)
        b = self.stacked(f"{name}.bias")[:, None, :]  # (K, 1, out)
        return WeightNormProduct.apply(x, v, g, b)


class GradsNone(Stack):
    """Stack whose step sets gradients to None first (the backward writes fresh ones: no zeroing, no read-add)."""

    def __init__(self, *args):
        super().__init__(*args)
        for p in self.model.parameters():
            p.grad = None

    def step(self, index: torch.Tensor, distortions=None) -> None:
        x, y = self.split.x[index], self.split.y[index]
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(x)
        losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view_as(y).mean(dim=1)
        losses.sum().backward()
        self.optimizer.step()
        self.sums[0] += losses.detach() * index.shape[1]
        self.sums[1] += (logits.detach().argmax(dim=2) == y).sum(dim=1)


def make_step(variant: str, name: str, hidden_size: int, seeds: list[int], split: Split, device):
    model_class = FusedWeightNorm if variant in ("wn-fused", "both") else StackedModel
    model = model_class.from_seeds(name, hidden_size, seeds).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, fused=True)
    steps = (GradsNone if variant in ("grads-none", "both") else Stack)(model, optimizer, split, 100)
    generator = torch.Generator(device=device).manual_seed(0)
    index = torch.stack([torch.randperm(len(split), generator=generator, device=device)[:100] for _ in seeds])
    return steps, index


def measure(name: str, hidden_size: int, variant: str, seeds: list[int], split: Split, device, time_steps: int):
    steps, index = make_step(variant, name, hidden_size, seeds, split, device)
    steps.step(index)  # Adam's state exists from the first step on: count a step of the steady state
    with Traffic() as traffic:
        steps.step(index)
    row = {"model": name, "hidden_size": hidden_size, "variant": variant, "seeds": len(seeds), **traffic.totals(),
           "by_op": {k: {"kernels": v[0], "mib": round(v[1] / 2**20, 2)} for k, v in
                     sorted(traffic.ops.items(), key=lambda kv: -kv[1][1])}}
    if time_steps:
        for _ in range(3):
            steps.step(index)
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(time_steps):
            steps.step(index)
        if device.type == "cuda":
            torch.cuda.synchronize()
        row["ms_per_step"] = 1e3 * (time.perf_counter() - started) / time_steps
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="nmodel,bmodel,wmodel")
    parser.add_argument("--hidden-sizes", default="1000,2000,5000")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--time-steps", type=int, default=0, help="also time this many eager steps per row")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    split = Split(torch.randn(1000, IN_FEATURES, device=device), torch.randint(0, 10, (1000,), device=device))
    seeds = list(range(args.seeds))
    print(f"{describe(hardware(device))}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"one step of a {args.seeds}-seed stack, batch 100")
    print(f"{'model':7} {'H':>5} {'variant':>11} {'kernels':>8} {'MiB':>8} {'GFLOP':>7}" +
          (f" {'ms/step':>8}" if args.time_steps else ""))
    rows = []
    for name in args.models.split(","):
        for hidden_size in map(int, args.hidden_sizes.split(",")):
            for variant in VARIANTS:
                if variant in ("wn-fused", "both") and name != "wmodel":
                    continue
                row = measure(name, hidden_size, variant, seeds, split, device, args.time_steps)
                rows.append(row)
                print(f"{name:7} {hidden_size:5} {variant:>11} {row['kernels']:8} {row['bytes'] / 2**20:8.1f} "
                      f"{row['flops'] / 1e9:7.2f}" + (f" {row['ms_per_step']:8.2f}" if args.time_steps else ""),
                      flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": describe(hardware(device)), "torch": torch.__version__,
                                               "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
