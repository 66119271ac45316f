"""A stack of K seeds: K networks of one model side by side, derived from the model itself.

At batch 100 one step of these networks is a few dozen tiny kernels, so a GPU waits on launches,
not on arithmetic. Stacking K seeds makes every kernel K times larger for the same launches, and on
CUDA the whole step can be captured once as a CUDA graph and replayed (``steps.GraphedStack``).

Nothing here knows the models: any registered model stacks. ``torch.func.stack_module_state`` stacks
the K networks' parameters and buffers into (K, ...) tensors, and ``vmap`` over ``functional_call``
runs the one network's own forward on each slice. Batch norm's running statistics are stacked buffers
too, so each network updates its own in place; dropout draws a different mask per network
(``randomness="different"``); weight norm is computed from each network's own g and v, as the same
formula in operations vmap batches (``torch._weight_norm`` has no batching rule: vmap would run it once
per network, K times the kernels and the memory traffic).

Each seed is still its own run: its initial weights are those ``build_model`` makes after
``torch.manual_seed(seed)`` (as a single run builds them), it shuffles with its own generator (in
``train.train``), and its gradient is that of its own loss, because the stack's loss is the sum of the
K networks' mean batch losses and the networks share no weight. Adam is elementwise, so one Adam
over the stacked tensors is K Adams. Results agree with a single run to float rounding, not bit for
bit: a batched product sums in another order.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn.utils.parametrizations import _WeightNorm

from .models import build_model

_SEPARATOR = "__"  # a module attribute cannot contain ".": fc1.weight is held as fc1__weight


class StackedModel(nn.Module):
    """K networks of one model side by side: every parameter and buffer stacked (K, ...), one vmapped forward."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("a stack needs at least one network")
        self.size = len(models)
        parameters, buffers = stack_module_state(models)
        self._parameter_keys, self._buffer_keys = list(parameters), list(buffers)
        for key, tensor in parameters.items():
            self.register_parameter(_attribute(key), nn.Parameter(tensor.detach().clone()))
        for key, tensor in buffers.items():
            self.register_buffer(_attribute(key), tensor.clone())
        # The network as built, and the one whose forward every slice runs, both without tensors of their own (in
        # lists: not submodules).
        self._template = [copy.deepcopy(models[0]).to("meta")]
        self._network = [_batchable(copy.deepcopy(self._template[0]))]

    @classmethod
    def from_seeds(cls, name: str, hidden_size: int, seeds: list[int], dropout: float = 0.0) -> StackedModel:
        """Each seed's network exactly as ``build_model`` makes it after ``torch.manual_seed(seed)``."""
        models = []
        for seed in seeds:
            torch.manual_seed(seed)
            models.append(build_model(name, hidden_size, dropout))
        return cls(models)

    @property
    def parameter_keys(self) -> list[str]:
        """The network's parameter names, as its state dict gives them (``fc1.weight``, ...)."""
        return list(self._parameter_keys)

    def stacked(self, key: str) -> torch.Tensor:
        """One network's state-dict entry ``key`` (e.g. ``fc1.weight``) for all K networks: (K, ...)."""
        return getattr(self, _attribute(key))

    def unstack(self) -> list[nn.Module]:
        """The K networks as separate modules (copies), e.g. to check or save one."""
        device = next(iter(self.state_dict().values())).device
        models = []
        for k in range(self.size):
            model = copy.deepcopy(self._template[0]).to_empty(device=device)
            model.load_state_dict({key: self.stacked(key)[k] for key in self._parameter_keys + self._buffer_keys})
            models.append(model.train(self.training))
        return models

    def train(self, mode: bool = True) -> StackedModel:
        super().train(mode)
        self._network[0].train(mode)  # batch norm and dropout read the network's own mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(K, B, 784) rows, one batch per network, or (B, 784) shared by all -> (K, B, 10) logits."""
        if x.dim() == 2:
            x = x.expand(self.size, *x.shape)
        parameters = {key: self.stacked(key) for key in self._parameter_keys}
        buffers = {key: self.stacked(key) for key in self._buffer_keys}
        return vmap(self._one, randomness="different")(parameters, buffers, x)

    def _one(self, parameters: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self._network[0], (parameters, buffers), (x,))

    def extra_repr(self) -> str:
        return f"{self.size} x {self._template[0]!r}"


def _attribute(key: str) -> str:
    return key.replace(".", _SEPARATOR)


class _BatchedWeightNorm(nn.Module):
    """torch's weight norm, w = g v / ||v|| with the norm over every dimension but ``dim``, in operations that vmap
    batches; the same function as ``_WeightNorm``, rounded its own way."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        others = [d for d in range(v.dim()) if d != self.dim % v.dim()]
        return v * (g / v.norm(dim=others, keepdim=True))


def _batchable(network: nn.Module) -> nn.Module:
    """``network`` with torch's weight-norm parametrizations computed by ``_BatchedWeightNorm``."""
    for module in network.modules():
        for parametrizations in getattr(module, "parametrizations", {}).values():
            for i, parametrization in enumerate(parametrizations):
                if isinstance(parametrization, _WeightNorm):
                    parametrizations[i] = _BatchedWeightNorm(parametrization.dim)
    return network
