"""Backprop by hand: forward and backward passes of mnistlab's pieces with plain tensor operations.

Notation of d2l.ai's backprop chapter, one example per row: x (B, 784), z = x W1^T + b1 (B, H),
h = relu(z), o = h W2^T + b2 (B, 10), L = mean softmax cross-entropy over the batch. Weights are
laid out as in torch.nn.Linear, W1 (H, 784) and W2 (10, H), so every result compares with the
real modules. Gradients come back as dicts keyed by symbol: ``grads["W1"]`` is dL/dW1.

The passes run under ``torch.no_grad()``: they may be handed parameters straight out of an
nn.Module, and nothing in them may lean on autograd.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn.functional import one_hot

Grads = dict[str, Tensor]


@torch.no_grad()
def mlp_loss_and_grads(x: Tensor, y: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> tuple[Tensor, Grads]:
    """Mean cross-entropy L of fc1 -> ReLU -> fc2 on (x, y) and dL/d{o, W2, b2, h, z, W1, b1}."""
    B = x.shape[0]
    # Forward, with each line's local derivative beside it.
    z = x @ W1.T + b1  # (B, H)      dz/dW1 = x, dz/dx = W1, dz/db1 = 1
    h = z.clamp(min=0)  # (B, H)     dh/dz = 1[z > 0]
    dh_dz = (z > 0).to(z.dtype)  # (B, H)  0 at the kink z = 0, as torch takes it
    o = h @ W2.T + b2  # (B, 10)     do/dW2 = h, do/dh = W2, do/db2 = 1
    log_p = o - o.logsumexp(dim=1, keepdim=True)  # (B, 10)  logsumexp, so large logits do not overflow exp
    L = -log_p[torch.arange(B), y].mean()  # ()  dL/do = (softmax(o) - onehot(y)) / B

    # Backward: the chain rule through the lines above, last to first.
    dL_do = (log_p.exp() - one_hot(y, o.shape[1]).to(o.dtype)) / B  # (B, 10)  1/B from the batch mean
    dL_dW2 = dL_do.T @ h  # (10, H)  sums over the batch: W2 is shared by every row
    dL_db2 = dL_do.sum(0)  # (10,)   b2 is broadcast over the batch
    dL_dh = dL_do @ W2  # (B, H)
    dL_dz = dL_dh * dh_dz  # (B, H)  only units that fired pass gradient back
    dL_dW1 = dL_dz.T @ x  # (H, 784)
    dL_db1 = dL_dz.sum(0)  # (H,)
    return L, {"o": dL_do, "W2": dL_dW2, "b2": dL_db2, "h": dL_dh, "z": dL_dz, "W1": dL_dW1, "b1": dL_db1}


@torch.no_grad()
def batchnorm(x: Tensor, gamma: Tensor, beta: Tensor, eps: float = 1e-5) -> tuple[Tensor, Callable[[Tensor], Grads]]:
    """Train-mode batch norm y (B, H) of x (B, H), and its backward: dL/dy -> dL/d{x, gamma, beta}."""
    B = x.shape[0]
    mu = x.mean(0)  # (H,)           dmu/dx = 1/B
    xc = x - mu  # (B, H)
    var = (xc**2).mean(0)  # (H,)    biased (divides by B), as BatchNorm1d normalises in training; dvar/dxc = 2 xc / B
    inv_std = (var + eps).rsqrt()  # (H,)  dinv_std/dvar = -inv_std^3 / 2
    x_hat = xc * inv_std  # (B, H)
    y = gamma * x_hat + beta  # (B, H)  dy/dx_hat = gamma, dy/dgamma = x_hat, dy/dbeta = 1

    @torch.no_grad()
    def backward(dL_dy: Tensor) -> Grads:
        dL_dx_hat = dL_dy * gamma  # (B, H)
        dL_dvar = (dL_dx_hat * xc).sum(0) * -0.5 * inv_std**3  # (H,)
        # x reaches mu directly and through var; that second path is 0 since xc sums to 0, kept as derived.
        dL_dmu = -(dL_dx_hat * inv_std).sum(0) + dL_dvar * (-2 * xc).mean(0)  # (H,)
        # Three paths from x to L: through x_hat directly, through var, through mu.
        dL_dx = dL_dx_hat * inv_std + dL_dvar * 2 * xc / B + dL_dmu / B  # (B, H)
        return {"x": dL_dx, "gamma": (dL_dy * x_hat).sum(0), "beta": dL_dy.sum(0)}

    return y, backward


@torch.no_grad()
def weight_norm(g: Tensor, v: Tensor) -> tuple[Tensor, Callable[[Tensor], Grads]]:
    """w = g v / ||v|| row by row (torch's weight_norm, dim=0), and its backward: dL/dw -> dL/d{g, v}."""
    norm = v.norm(dim=1, keepdim=True)  # (out, 1)
    u = v / norm  # (out, in)  unit rows; du/dv = (I - u u^T) / ||v||, it cannot see the length of v
    w = g * u  # (out, in)     dw/dg = u, dw/du = g

    @torch.no_grad()
    def backward(dL_dw: Tensor) -> Grads:
        dL_dg = (dL_dw * u).sum(1, keepdim=True)  # (out, 1)
        # (I - u u^T) removes the component along u = v / ||v||: dL/dv is orthogonal to v, row by row.
        dL_dv = g / norm * (dL_dw - dL_dg * u)  # (out, in)
        return {"g": dL_dg, "v": dL_dv}

    return w, backward


@torch.no_grad()
def adam_step(
    theta: Tensor, grad: Tensor, m: Tensor, v: Tensor, t: int,
    lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
) -> tuple[Tensor, Tensor, Tensor]:
    """One Adam update at step t >= 1 (Kingma & Ba 2015, Algorithm 1): the new (theta, m, v)."""
    if t < 1:
        raise ValueError(f"Adam's step count t starts at 1, got {t}")
    beta1, beta2 = betas
    m = beta1 * m + (1 - beta1) * grad  # moving average of g
    v = beta2 * v + (1 - beta2) * grad**2  # moving average of g^2
    # m and v start at 0, so early averages are pulled towards 0 by a factor (1 - beta^t); undo it.
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    return theta - lr * m_hat / (v_hat.sqrt() + eps), m, v


def step_lr(lr: float, epoch: int, step_size: int, gamma: float = 0.1) -> float:
    """Learning rate of StepLR at ``epoch`` (from 0): lr * gamma ** (epoch // step_size)."""
    return lr * gamma ** (epoch // step_size)


@torch.no_grad()
def numerical_grad(f: Callable[[Tensor], Tensor], x: Tensor, h: float = 1e-6) -> Tensor:
    """Central finite-difference gradient of a scalar f at x, one entry at a time: O(h^2) accurate."""
    grad = torch.empty(x.numel(), dtype=x.dtype, device=x.device)
    for i in range(x.numel()):
        step = torch.zeros(x.numel(), dtype=x.dtype, device=x.device)
        step[i] = h
        grad[i] = f(x + step.view(x.shape)) - f(x - step.view(x.shape))
    return grad.view(x.shape) / (2 * h)


def max_abs_diff(a: Grads, b: Grads) -> float:
    """Largest |a[k] - b[k]| over all entries of two gradient dicts with the same keys."""
    if a.keys() != b.keys():
        raise KeyError(f"different gradients: {sorted(a)} vs {sorted(b)}")
    return max((a[k].detach() - b[k].detach()).abs().max().item() for k in a)
