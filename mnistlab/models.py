"""The networks mnistlab trains, each declared once: 784 -> H -> 10 with ReLU, and how to add one.

A model is a function from the hidden size to a ``torch.nn`` module, registered under a name with
``register_model``. Everything else is derived from the module it builds: the config's valid names, the
CLI's choices, how K seeds of it train side by side (``stacked``), its parameter and activation counts
(``sizes``), and the bit-identity check (``scripts/same-history.py``). Adding layer norm is::

    @register_model("lmodel", "fc1 -> LayerNorm -> ReLU -> fc2")
    def lmodel(hidden_size):
        return one_hidden_layer(hidden_size, norm=torch.nn.LayerNorm(hidden_size))

in this file, or in a module of your own named in ``MNISTLAB_PLUGINS`` (docs/extending.md).

Torch is imported when a network is built, not when this module is: checking a params file's model
name stays torch-free and fast.
"""

from __future__ import annotations

import importlib
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

IN_FEATURES, NUM_CLASSES = 28 * 28, 10
PLUGINS_VARIABLE = "MNISTLAB_PLUGINS"  # comma-separated modules that register models of their own


@dataclass(frozen=True)
class Model:
    """A registered model: its name, a one-line description, and the function that builds it."""

    name: str
    description: str
    build: Callable[[int], nn.Module]  # hidden_size -> a module taking (B, 784) rows to (B, 10) logits
    min_batch_size: int = 1  # batch norm cannot normalise a batch of one


MODELS: dict[str, Model] = {}


def register_model(name: str, description: str, *, min_batch_size: int = 1) -> Callable:
    """Decorator: register ``build(hidden_size) -> nn.Module`` as model ``name``.

    The module must take (B, 784) rows and give (B, 10) logits, and draw its initial weights from torch's
    global generator (as ``torch.nn`` layers do), so that a seed decides them. Models built by
    ``one_hidden_layer`` start from the same fc1 and fc2 weights for one seed: comparisons between them
    are paired by seed."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a model's name is a Python identifier such as 'lmodel'; got {name!r}")

    def register(build: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
        known = MODELS.get(name)
        if known is not None and (known.build.__module__, known.build.__qualname__) != \
                (build.__module__, build.__qualname__):
            raise ValueError(f"model {name!r} is already registered by {known.build.__module__}."
                             f"{known.build.__qualname__}; choose another name")
        MODELS[name] = Model(name, description, build, min_batch_size)
        return build

    return register


def build_model(name: str, hidden_size: int, dropout: float = 0.0) -> nn.Module:
    """Registered model ``name`` with ``hidden_size`` hidden units; takes (B, 784) rows, gives (B, 10) logits.

    ``dropout``: the probability of zeroing each hidden unit in training (inverted dropout, before the output
    layer ``fc2``); 0 adds no layer at all, so the network is exactly the one registered."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}. {unregistered_hint()}")
    if isinstance(hidden_size, bool) or not isinstance(hidden_size, int) or hidden_size < 1:
        raise ValueError(f"hidden_size must be a positive integer, got {hidden_size!r}")
    model = MODELS[name].build(hidden_size)
    return with_dropout(model, dropout) if dropout else model


def one_hidden_layer(hidden_size: int, *, norm: nn.Module | None = None, norm_name: str = "norm",
                     weight_norm: bool = False) -> nn.Sequential:
    """fc1 -> [norm] -> ReLU -> fc2, 784 -> H -> 10: the study's network, with a normalisation of the hidden
    pre-activations (before the non-linearity, where Ioffe & Szegedy put batch norm) or weight normalisation of
    both layers (Salimans & Kingma 2016, one scale per output unit). fc1 is made before fc2, so one seed gives
    every such model the same initial weights."""
    from torch import nn
    from torch.nn.utils.parametrizations import weight_norm as parametrize

    fc1, fc2 = nn.Linear(IN_FEATURES, hidden_size), nn.Linear(hidden_size, NUM_CLASSES)
    if weight_norm:
        fc1, fc2 = parametrize(fc1, dim=0), parametrize(fc2, dim=0)  # w = g v / ||v||, g per output unit
    layers = [("fc1", fc1)] + ([(norm_name, norm)] if norm is not None else [])
    return nn.Sequential(OrderedDict(layers + [("relu", nn.ReLU()), ("fc2", fc2)]))


def with_dropout(model: nn.Module, p: float) -> nn.Module:
    """``model`` with ``nn.Dropout(p)`` inserted before its output layer ``fc2`` (a ``Sequential`` with one)."""
    from torch import nn

    if not isinstance(model, nn.Sequential) or "fc2" not in dict(model.named_children()):
        raise ValueError(f"dropout needs a Sequential model with an output layer named fc2; got {type(model).__name__}"
                         " (a model of your own can add nn.Dropout itself and leave the dropout setting at 0)")
    layers = []
    for name, layer in model.named_children():
        if name == "fc2":
            layers.append(("dropout", nn.Dropout(p)))
        layers.append((name, layer))
    return nn.Sequential(OrderedDict(layers))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def sizes(name: str, hidden_size: int, batch_size: int, dropout: float = 0.0) -> dict[str, int]:
    """Counted on the module itself, built on torch's meta device (no memory, no arithmetic): ``parameters``
    (trainable scalars), ``state`` (every tensor of the state dict: parameters and buffers), ``computed``
    (scalars computed from parameters at each step, e.g. weight norm's w) and ``activations`` (the
    outputs of every layer for one batch of ``batch_size``: what backward keeps)."""
    import torch

    with torch.device("meta"):
        model = build_model(name, hidden_size, dropout)
    outputs = []
    hooks = [module.register_forward_hook(lambda _m, _i, out: outputs.append(out.numel()))
             for name, module in model.named_modules() if "parametrizations" not in name
             and not [child for child in dict(module.named_children()) if child != "parametrizations"]]
    with torch.device("meta"):
        model(torch.empty(batch_size, IN_FEATURES))
    for hook in hooks:
        hook.remove()
    computed = sum(module.weight.numel() for module in model.modules()
                   if getattr(module, "parametrizations", None) is not None)
    return {"parameters": count_parameters(model), "state": sum(t.numel() for t in model.state_dict().values()),
            "computed": computed, "activations": sum(outputs)}


def unregistered_hint() -> str:
    """What to do about a model name that no module registered: most often its plugin is not loaded here."""
    loaded = plugin_names()
    now = f"now {', '.join(loaded)}" if loaded else "unset now"
    return (f"A model of your own is registered by its module, named in ${PLUGINS_VARIABLE} ({now}) and found on "
            "PYTHONPATH (docs/extending.md).")


def plugin_names() -> list[str]:
    """The module names in ``$MNISTLAB_PLUGINS`` (comma-separated; blanks ignored)."""
    return [name.strip() for name in os.environ.get(PLUGINS_VARIABLE, "").split(",") if name.strip()]


def plugins() -> list[ModuleType]:
    """The modules named in ``$MNISTLAB_PLUGINS``, imported (so they register their models), in order; ``import
    mnistlab`` calls it last, so a plugin may ``from mnistlab import register_model``."""
    modules = []
    for name in plugin_names():
        try:
            modules.append(importlib.import_module(name))
        except ImportError as error:
            raise ImportError(f"${PLUGINS_VARIABLE} names {name!r}, which cannot be imported ({error}); fix the "
                              "name or the Python path, or unset it") from error
    return modules


# --- the study's three models ------------------------------------------------------------------------

@register_model("nmodel", "fc1 -> ReLU -> fc2 (plain)")
def nmodel(hidden_size: int) -> nn.Sequential:
    return one_hidden_layer(hidden_size)


@register_model("bmodel", "fc1 -> BatchNorm1d -> ReLU -> fc2 (batch norm before the non-linearity)",
                min_batch_size=2)
def bmodel(hidden_size: int) -> nn.Sequential:
    from torch import nn

    return one_hidden_layer(hidden_size, norm=nn.BatchNorm1d(hidden_size), norm_name="bn")


@register_model("wmodel", "weight-normalised fc1 -> ReLU -> weight-normalised fc2 (w = g v / ||v||)")
def wmodel(hidden_size: int) -> nn.Sequential:
    return one_hidden_layer(hidden_size, weight_norm=True)

