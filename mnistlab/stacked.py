"""What a stack of K seeds is: K networks of one parameter set side by side, one batched product per layer.

At batch 100 one step of these networks is a few dozen tiny kernels, so a GPU waits on launches,
not on arithmetic. Stacking K seeds makes every kernel K times larger for the same launches, and on
CUDA the whole step can be captured once as a CUDA graph and replayed (``steps.GraphedStack``).

Each seed is still its own run: its initial weights are copied from ``build_model`` after
``torch.manual_seed(seed)`` (as a single run builds them), it shuffles with its own generator (in
``train.train``), its batch norm keeps its own statistics, and its gradient is that of its own loss,
because the stack's loss is the sum of the K models' mean batch losses and the models share no
weight. Adam is elementwise, so one Adam over the stacked tensors is K Adams. Results agree with a
single run to float rounding, not bit for bit: a batched product sums in another order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .models import build_model

# One model's state-dict key -> (the stack's name for it, how one model's tensor is laid out in the stack).
# "t": transposed, so that a layer is x @ W with W (in, out); "row": a bias (out,) as (1, out) for baddbmm.
_LAYOUT = {
    "fc1.weight": ("w1", "t"), "fc1.parametrizations.weight.original0": ("g1", "t"),
    "fc1.parametrizations.weight.original1": ("v1", "t"), "fc1.bias": ("b1", "row"),
    "bn.weight": ("bn_weight", "same"), "bn.bias": ("bn_bias", "same"), "bn.running_mean": ("bn_mean", "same"),
    "bn.running_var": ("bn_var", "same"), "bn.num_batches_tracked": ("bn_batches", "same"),
    "fc2.weight": ("w2", "t"), "fc2.parametrizations.weight.original0": ("g2", "t"),
    "fc2.parametrizations.weight.original1": ("v2", "t"), "fc2.bias": ("b2", "row"),
}
_TO_STACK = {"t": lambda x: x.t(), "row": lambda x: x[None], "same": lambda x: x}
_FROM_STACK = {"t": lambda x: x.t(), "row": lambda x: x[0], "same": lambda x: x}


class StackedModel(nn.Module):
    """K networks of one of MODELS side by side: weights (K, in, out), one ``baddbmm`` per layer."""

    def __init__(self, name: str, models: list[nn.Module]):
        super().__init__()
        self.name, self.size = name, len(models)
        states = [model.state_dict() for model in models]
        for key in states[0]:
            attribute, layout = _LAYOUT[key]
            tensor = torch.stack([_TO_STACK[layout](state[key]) for state in states]).clone()
            if key in dict(models[0].named_parameters()):
                setattr(self, attribute, nn.Parameter(tensor))
            else:
                self.register_buffer(attribute, tensor)
        self._keys = list(states[0])
        if name == "bmodel":
            self.momentum, self.eps = models[0].bn.momentum, models[0].bn.eps

    @classmethod
    def from_seeds(cls, name: str, hidden_size: int, seeds: list[int]) -> StackedModel:
        """Each seed's network exactly as ``build_model`` makes it after ``torch.manual_seed(seed)``."""
        models = []
        for seed in seeds:
            torch.manual_seed(seed)
            models.append(build_model(name, hidden_size))
        return cls(name, models)

    def unstack(self) -> list[nn.Module]:
        """The K networks as separate ``build_model`` modules (copies), e.g. to check or save one."""
        models = []
        for k in range(self.size):
            model = build_model(self.name, self.b1.shape[-1]).to(self.b1.device)
            state = {key: _FROM_STACK[_LAYOUT[key][1]](getattr(self, _LAYOUT[key][0])[k]) for key in self._keys}
            model.load_state_dict(state)
            models.append(model.train(self.training))
        return models

    def weight(self, layer: int) -> torch.Tensor:
        """Layer 1 or 2's weights (K, in, out); for wmodel g v / ||v||, the norm per output unit (torch's dim=0)."""
        if self.name != "wmodel":
            return getattr(self, f"w{layer}")
        g, v = getattr(self, f"g{layer}"), getattr(self, f"v{layer}")  # (K, 1, out), (K, in, out)
        return v * (g / v.norm(dim=1, keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(K, B, 784) rows, one batch per model, or (B, 784) shared by all -> (K, B, 10) logits."""
        if x.dim() == 2:
            x = x.expand(self.size, *x.shape)
        z = torch.baddbmm(self.b1, x, self.weight(1))  # (K, B, H)
        if self.name == "bmodel":
            z = self._batch_norm(z)
        return torch.baddbmm(self.b2, F.relu(z), self.weight(2))  # (K, B, 10)

    def _batch_norm(self, z: torch.Tensor) -> torch.Tensor:
        # K models' H units are K*H independent channels of one BatchNorm1d: each channel is
        # normalised by its own batch statistics and keeps its own running ones, exactly as
        # nn.BatchNorm1d does per model (biased variance to normalise, unbiased one to track).
        K, B, H = z.shape
        flat = z.transpose(0, 1).reshape(B, K * H)
        flat = F.batch_norm(flat, self.bn_mean.view(-1), self.bn_var.view(-1), self.bn_weight.view(-1),
                            self.bn_bias.view(-1), self.training, self.momentum, self.eps)
        if self.training:
            self.bn_batches.add_(1)
        return flat.view(B, K, H).transpose(0, 1)

    def extra_repr(self) -> str:
        return f"{self.size} x {self.name}, hidden_size={self.b1.shape[-1]}"
