"""The study's three one-hidden-layer networks: 784 -> H -> 10 with ReLU."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from .config import MODELS  # the names a config may give; defined without torch

IN_FEATURES, NUM_CLASSES = 28 * 28, 10


def build_model(name: str, hidden_size: int) -> nn.Sequential:
    """One of ``MODELS`` with ``hidden_size`` hidden units; takes (B, 784) rows, gives (B, 10) logits."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    if isinstance(hidden_size, bool) or not isinstance(hidden_size, int) or hidden_size < 1:
        raise ValueError(f"hidden_size must be a positive integer, got {hidden_size!r}")

    fc1 = nn.Linear(IN_FEATURES, hidden_size)
    fc2 = nn.Linear(hidden_size, NUM_CLASSES)
    if name == "wmodel":
        # dim=0: one scale g per output unit, the parametrisation of Salimans & Kingma (2016).
        fc1, fc2 = weight_norm(fc1, dim=0), weight_norm(fc2, dim=0)
    layers = [("fc1", fc1)]
    if name == "bmodel":
        layers.append(("bn", nn.BatchNorm1d(hidden_size)))
    layers += [("relu", nn.ReLU()), ("fc2", fc2)]
    return nn.Sequential(OrderedDict(layers))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
