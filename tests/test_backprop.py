"""Hand-written backprop (mnistlab.lab.backprop) against torch.autograd and the real torch modules, in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as torch_weight_norm
from torch.testing import assert_close

from mnistlab import build_model
from mnistlab.lab import backprop

F64 = torch.float64
ATOL = 1e-10  # float64 round-off is ~1e-16 per operation; a wrong formula is off by far more
FD_ATOL = 1e-7  # central differences with h = 1e-6: O(h^2) truncation plus ~1e-10 cancellation


def close(actual: torch.Tensor, expected: torch.Tensor, atol: float = ATOL) -> None:
    assert_close(actual, expected.detach(), atol=atol, rtol=0)


def mlp_case(B: int, H: int, D: int = 784, seed: int = 0):
    """A float64 fc1/fc2 pair like nmodel's, a batch x (B, D) and labels y (B,)."""
    torch.manual_seed(seed)
    fc1, fc2 = nn.Linear(D, H, dtype=F64), nn.Linear(H, 10, dtype=F64)
    return torch.randn(B, D, dtype=F64), torch.randint(10, (B,)), fc1, fc2


def autograd_mlp(x, y, fc1, fc2):
    """L and dL/d{o, W2, b2, h, z, W1, b1} from the torch modules and autograd."""
    z = fc1(x)
    h = F.relu(z)
    o = fc2(h)
    L = F.cross_entropy(o, y)
    wrt = {"o": o, "W2": fc2.weight, "b2": fc2.bias, "h": h, "z": z, "W1": fc1.weight, "b1": fc1.bias}
    return L, dict(zip(wrt, torch.autograd.grad(L, list(wrt.values()))))


def hand_mlp(x, y, fc1, fc2):
    return backprop.mlp_loss_and_grads(x, y, fc1.weight, fc1.bias, fc2.weight, fc2.bias)


# --- 1. the network with softmax cross-entropy -------------------------------------------------

@pytest.mark.parametrize("B, H, seed", [(1, 1, 0), (2, 3, 1), (8, 6, 2), (33, 17, 3)])
def test_mlp_loss_and_grads_match_linear_cross_entropy_autograd(B, H, seed):
    x, y, fc1, fc2 = mlp_case(B, H, seed=seed)
    L, hand = hand_mlp(x, y, fc1, fc2)
    L_ref, auto = autograd_mlp(x, y, fc1, fc2)
    close(L, L_ref)
    for name in auto:
        assert hand[name].shape == auto[name].shape, name
        close(hand[name], auto[name])


def test_mlp_grads_stay_finite_and_exact_for_huge_logits():
    x, y, fc1, fc2 = mlp_case(8, 6, seed=4)
    with torch.no_grad():
        fc2.weight.mul_(1e4)  # logits in the thousands: exp() of them overflows float64
    L, hand = hand_mlp(x, y, fc1, fc2)
    L_ref, auto = autograd_mlp(x, y, fc1, fc2)
    assert torch.isfinite(L) and L > 100
    close(L, L_ref, atol=1e-8)
    for name in auto:
        close(hand[name], auto[name], atol=1e-6)


def test_mlp_relu_gradient_at_the_kink_is_zero_like_torch():
    x, y, fc1, fc2 = mlp_case(5, 4, seed=5)
    with torch.no_grad():
        fc1.weight[0] = 0.0
        fc1.bias[0] = 0.0  # hidden unit 0 sits exactly at z = 0 for every example
    _, hand = hand_mlp(x, y, fc1, fc2)
    _, auto = autograd_mlp(x, y, fc1, fc2)
    assert (hand["h"][:, 0] != 0).all()
    assert (hand["z"][:, 0] == 0).all()
    close(hand["z"], auto["z"])


def test_mlp_dL_do_rows_sum_to_zero():
    x, y, fc1, fc2 = mlp_case(7, 5, seed=6)
    _, hand = hand_mlp(x, y, fc1, fc2)
    # softmax rows sum to 1 and onehot rows to 1, so nudging all logits of one example changes nothing.
    close(hand["o"].sum(1), torch.zeros(7, dtype=F64), atol=1e-15)


def test_mlp_grads_match_finite_differences():
    x, y, fc1, fc2 = mlp_case(4, 5, D=20, seed=7)
    W1, b1, W2, b2 = (p.detach() for p in (fc1.weight, fc1.bias, fc2.weight, fc2.bias))
    _, hand = backprop.mlp_loss_and_grads(x, y, W1, b1, W2, b2)

    def loss(W1=W1, b1=b1, W2=W2, b2=b2):
        return backprop.mlp_loss_and_grads(x, y, W1, b1, W2, b2)[0]

    close(hand["W1"], backprop.numerical_grad(lambda W: loss(W1=W), W1), atol=FD_ATOL)
    close(hand["b1"], backprop.numerical_grad(lambda b: loss(b1=b), b1), atol=FD_ATOL)
    close(hand["W2"], backprop.numerical_grad(lambda W: loss(W2=W), W2), atol=FD_ATOL)
    close(hand["b2"], backprop.numerical_grad(lambda b: loss(b2=b), b2), atol=FD_ATOL)


# --- 2. batch norm in train mode ---------------------------------------------------------------

def batchnorm_case(B: int, H: int, eps: float, seed: int):
    torch.manual_seed(seed)
    bn = nn.BatchNorm1d(H, eps=eps, dtype=F64).train()
    with torch.no_grad():
        bn.weight.normal_()
        bn.bias.normal_()
    x = (3 * torch.randn(B, H, dtype=F64) + 2).requires_grad_()
    return bn, x, torch.randn(B, H, dtype=F64)


@pytest.mark.parametrize("B, H, eps, seed", [(2, 1, 1e-5, 0), (5, 3, 1e-5, 1), (16, 7, 0.1, 2), (100, 12, 1e-5, 3)])
def test_batchnorm_matches_batchnorm1d_train_mode_autograd(B, H, eps, seed):
    bn, x, dL_dy = batchnorm_case(B, H, eps, seed)
    y_ref = bn(x)
    auto = dict(zip(["x", "gamma", "beta"], torch.autograd.grad(y_ref, [x, bn.weight, bn.bias], dL_dy)))
    y, backward = backprop.batchnorm(x, bn.weight, bn.bias, eps)
    close(y, y_ref)
    hand = backward(dL_dy)
    for name in auto:
        close(hand[name], auto[name])


def test_batchnorm_matches_functional_batch_norm():
    _, x, _ = batchnorm_case(6, 4, 1e-5, 4)
    gamma, beta = torch.randn(4, dtype=F64), torch.randn(4, dtype=F64)
    y, _ = backprop.batchnorm(x, gamma, beta, 1e-3)
    close(y, F.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-3))


@pytest.mark.parametrize("eps", [0.0, 1e-5, 0.1])
def test_batchnorm_dx_is_orthogonal_to_x_hat_only_for_eps_zero(eps):
    # Sum over the batch of x_hat * dL/dx, per feature, is gamma eps (var + eps)^(-3/2) sum_b g_b x_hat_b:
    # zero for eps = 0, small but not zero for BatchNorm1d's eps > 0 (sum_b x_hat_b^2 = B var / (var + eps) < B).
    bn, x, dL_dy = batchnorm_case(16, 5, eps, 6)
    x = x.detach() / 3 if eps else x.detach()  # smaller features (var about 1): eps shows
    gamma = bn.weight.detach()
    _, backward = backprop.batchnorm(x, gamma, bn.bias.detach(), eps)
    var = x.var(0, unbiased=False)
    x_hat = (x - x.mean(0)) / (var + eps).sqrt()
    inner = (x_hat * backward(dL_dy)["x"]).sum(0)  # (H,)
    close(inner, gamma * eps * (var + eps) ** -1.5 * (dL_dy * x_hat).sum(0))
    if eps:
        assert (inner.abs() > 1e-7).all()  # not orthogonal
    else:
        assert inner.abs().max() < 1e-12


def test_batchnorm_dx_matches_finite_differences():
    bn, x, dL_dy = batchnorm_case(6, 3, 1e-5, 5)
    gamma, beta = bn.weight.detach(), bn.bias.detach()
    _, backward = backprop.batchnorm(x, gamma, beta)
    numeric = backprop.numerical_grad(lambda x: (backprop.batchnorm(x, gamma, beta)[0] * dL_dy).sum(), x.detach())
    close(backward(dL_dy)["x"], numeric, atol=FD_ATOL)


# --- 3. weight norm ----------------------------------------------------------------------------

def weight_norm_case(out: int, inp: int, seed: int):
    """A float64 Linear under torch's weight_norm(dim=0), with g moved off its initial ||v||."""
    torch.manual_seed(seed)
    lin = torch_weight_norm(nn.Linear(inp, out, dtype=F64), dim=0)
    g, v = lin.parametrizations.weight.original0, lin.parametrizations.weight.original1
    with torch.no_grad():
        g.mul_(torch.rand_like(g) + 0.5)
    return lin, g, v, torch.randn(out, inp, dtype=F64)


@pytest.mark.parametrize("out, inp, seed", [(1, 1, 0), (3, 5, 1), (10, 6, 2), (6, 784, 3)])
def test_weight_norm_matches_torch_parametrization_autograd(out, inp, seed):
    lin, g, v, dL_dw = weight_norm_case(out, inp, seed)
    w_ref = lin.weight
    auto = dict(zip(["g", "v"], torch.autograd.grad(w_ref, [g, v], dL_dw)))
    w, backward = backprop.weight_norm(g, v)
    close(w, w_ref)
    hand = backward(dL_dw)
    for name in auto:
        assert hand[name].shape == auto[name].shape, name
        close(hand[name], auto[name])


def test_weight_norm_dL_dv_is_orthogonal_to_v_row_by_row():
    _, g, v, dL_dw = weight_norm_case(10, 50, 4)
    dL_dv = backprop.weight_norm(g, v)[1](dL_dw)["v"]
    cosine = (dL_dv * v).sum(1) / (dL_dv.norm(dim=1) * v.norm(dim=1))
    assert (dL_dv.norm(dim=1) > 1e-3).all()  # not orthogonal by being zero
    assert cosine.abs().max() < 1e-12
    # dL/dw itself has a component along v; the projection is what removes it.
    assert ((dL_dw * v).sum(1) / (dL_dw.norm(dim=1) * v.norm(dim=1))).abs().max() > 1e-3


def test_wmodel_grads_by_hand_chain_through_weight_norm():
    torch.manual_seed(5)
    model = build_model("wmodel", 7).double()
    x, y = torch.randn(9, 784, dtype=F64), torch.randint(10, (9,))
    fc1, fc2 = model.fc1.parametrizations.weight, model.fc2.parametrizations.weight
    wrt = {"g1": fc1.original0, "v1": fc1.original1, "b1": model.fc1.bias,
           "g2": fc2.original0, "v2": fc2.original1, "b2": model.fc2.bias}
    auto = dict(zip(wrt, torch.autograd.grad(F.cross_entropy(model(x), y), list(wrt.values()))))

    W1, backward1 = backprop.weight_norm(fc1.original0, fc1.original1)
    W2, backward2 = backprop.weight_norm(fc2.original0, fc2.original1)
    _, grads = backprop.mlp_loss_and_grads(x, y, W1, model.fc1.bias, W2, model.fc2.bias)
    by_w1, by_w2 = backward1(grads["W1"]), backward2(grads["W2"])
    hand = {"g1": by_w1["g"], "v1": by_w1["v"], "b1": grads["b1"],
            "g2": by_w2["g"], "v2": by_w2["v"], "b2": grads["b2"]}
    assert backprop.max_abs_diff(hand, auto) < ATOL


# --- 4. Adam and StepLR ------------------------------------------------------------------------

@pytest.mark.parametrize("lr, betas, eps", [(0.01, (0.9, 0.999), 1e-8), (0.3, (0.5, 0.9), 1e-3)])
def test_adam_with_steplr_matches_torch_optim_over_epochs(lr, betas, eps):
    torch.manual_seed(0)
    epochs, steps_per_epoch, step_size, gamma = 5, 3, 2, 0.1
    target = torch.randn(4, 3, dtype=F64)
    p = nn.Parameter(torch.randn(4, 3, dtype=F64))
    optimizer = torch.optim.Adam([p], lr=lr, betas=betas, eps=eps)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
    theta, m, v, t = p.detach().clone(), torch.zeros(4, 3, dtype=F64), torch.zeros(4, 3, dtype=F64), 0
    for epoch in range(epochs):
        epoch_lr = backprop.step_lr(lr, epoch, step_size, gamma)
        assert epoch_lr == pytest.approx(scheduler.get_last_lr()[0], rel=1e-12)
        for _ in range(steps_per_epoch):
            t += 1
            # gradient of 0.5 ||theta - target||^2 at each side's own theta, so any drift compounds
            theta, m, v = backprop.adam_step(theta, theta - target, m, v, t, epoch_lr, betas, eps)
            p.grad = p.detach() - target
            optimizer.step()
            close(theta, p)
        scheduler.step()
    state = optimizer.state[p]
    assert int(state["step"]) == t == epochs * steps_per_epoch
    close(m, state["exp_avg"])
    close(v, state["exp_avg_sq"])


def test_adam_first_step_moves_every_coordinate_by_lr_thanks_to_bias_correction():
    torch.manual_seed(1)
    theta = torch.randn(20, dtype=F64)
    grad = torch.randn(20, dtype=F64)
    zeros = torch.zeros(20, dtype=F64)
    new, _, _ = backprop.adam_step(theta, grad, zeros, zeros, t=1, lr=0.01)
    # m_hat = g and v_hat = g^2 at t = 1; without the correction the step would be ~3.16 lr.
    close(new - theta, -0.01 * grad.sign(), atol=1e-8)


def test_adam_step_refuses_step_zero():
    zeros = torch.zeros(3, dtype=F64)
    with pytest.raises(ValueError, match="starts at 1"):
        backprop.adam_step(zeros, zeros, zeros, zeros, t=0)


@pytest.mark.parametrize("lr, step_size, gamma, epochs", [(0.01, 20, 0.1, 100), (0.5, 3, 0.5, 13)])
def test_step_lr_matches_torch_steplr(lr, step_size, gamma, epochs):
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
    for epoch in range(epochs):
        assert backprop.step_lr(lr, epoch, step_size, gamma) == pytest.approx(scheduler.get_last_lr()[0], rel=1e-12)
        optimizer.step()
        scheduler.step()
    assert backprop.step_lr(lr, epochs - 1, step_size, gamma) < lr  # the schedule did decay


# --- helpers -----------------------------------------------------------------------------------

def test_numerical_grad_recovers_a_known_gradient_on_a_non_contiguous_tensor():
    x = torch.randn(3, 4, dtype=F64).T  # (4, 3), not contiguous
    numeric = backprop.numerical_grad(lambda x: (x.sin() + x**3).sum(), x)
    close(numeric, x.cos() + 3 * x**2, atol=FD_ATOL)


def test_max_abs_diff_refuses_dicts_with_different_gradients():
    a = {"W1": torch.zeros(2)}
    assert backprop.max_abs_diff(a, {"W1": torch.tensor([0.0, -0.5])}) == 0.5
    with pytest.raises(KeyError):
        backprop.max_abs_diff(a, {"W1": torch.zeros(2), "b1": torch.zeros(1)})
