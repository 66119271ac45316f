"""How one epoch trains and evaluates: one network, a stack of K seeds, or a stack replayed from a CUDA graph.

``train.train`` drives all three the same way: ``epoch(shuffles, distortions)`` makes one shuffled pass
(each network's images distorted by its own generator when ``distort`` is on: ``augment.Distort``) and
returns (K, 2) on the device, each network's [summed loss, correct count]; ``evaluate(split)`` gives
(K, 2) [summed cross-entropy, correct count] in eval mode and (K, N) predicted labels. Nothing here
reads a value back to the host: the loop does that once per epoch.

``Network`` is the canonical step of pytorch/examples (``zero_grad``, forward, loss, ``backward``,
``step``) on one ``build_model`` network; its arithmetic is what single runs have always done, so
their records stay bit-identical. ``Stack`` steps K networks at once (``stacked.StackedModel``): its
loss is the sum of the K mean batch losses, so each network gets the gradient of its own loss.
``GraphedStack`` captures ``Stack``'s step once as a CUDA graph and replays it for every full batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .augment import Distort
from .data import Split
from .resources import EVAL_CHUNK  # images per forward pass when evaluating; bounds memory at H=5000
from .stacked import StackedModel


class Network:
    """One ``build_model`` network and its optimizer: K = 1."""

    size = 1

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, split: Split, batch_size: int,
                 distort: Distort | None = None):
        self.model, self.optimizer, self.split, self.batch_size = model, optimizer, split, batch_size
        self.distort = distort or None

    def epoch(self, shuffles: list[torch.Generator], distortions: list[torch.Generator] | None = None) -> torch.Tensor:
        """One shuffled pass; (1, 2): [summed loss, correct count] over the images trained on."""
        model, optimizer, split, distort = self.model, self.optimizer, self.split, self.distort
        model.train()
        device = split.x.device
        order = torch.randperm(len(split), generator=shuffles[0], device=device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for index in batches(order, self.batch_size):
            x, y = split.x.index_select(0, index), split.y.index_select(0, index)  # (B, 784), (B,)
            if distort:
                x = distort(x, distortions[0])
            optimizer.zero_grad(set_to_none=True)
            logits = model(x)  # (B, 10)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(index)
            correct += (logits.detach().argmax(dim=1) == y).sum()
        return torch.stack([loss_sum, correct.to(loss_sum.dtype)])[None]

    @torch.no_grad()
    def evaluate(self, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, 2) [summed cross-entropy, correct count] over ``split`` in eval mode, and (1, N) predicted labels."""
        model = self.model
        model.eval()
        loss_sum = torch.zeros((), device=split.x.device)
        correct = torch.zeros((), device=split.x.device)
        predicted = torch.empty(len(split), dtype=torch.uint8, device=split.x.device)
        for start in range(0, len(split), EVAL_CHUNK):
            x, y = split.x[start:start + EVAL_CHUNK], split.y[start:start + EVAL_CHUNK]
            logits = model(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            labels = logits.argmax(dim=1)
            correct += (labels == y).sum()
            predicted[start:start + EVAL_CHUNK] = labels
        return torch.stack([loss_sum, correct])[None], predicted[None]


def batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """``order`` (.., n) cut into batches along its last dimension; a lone last image is left out (batch norm
    cannot normalise one image; the next epoch reshuffles it in), and so is left out of the epoch's counts."""
    n = order.shape[-1]
    return [order[..., start:start + batch_size] for start in range(0, n, batch_size)
            if not (n - start == 1 and start > 0)]


def trained_images(n: int, batch_size: int) -> int:
    """How many images an epoch of ``batches`` trains on: all ``n`` but a lone last one."""
    return n - 1 if n % batch_size == 1 and n > 1 else n


class Stack:
    """K networks of one parameter set (a ``StackedModel``) stepped together, a step at a time from Python."""

    def __init__(self, model: StackedModel, optimizer: torch.optim.Optimizer, split: Split, batch_size: int,
                 distort: Distort | None = None):
        self.model, self.optimizer, self.split, self.batch_size = model, optimizer, split, batch_size
        self.distort = distort or None
        self.size = model.size
        self.sums = torch.zeros(2, model.size, device=split.x.device)  # summed loss and correct count per model
        for p in model.parameters():
            # Gradients are zeroed in place, never set to None, so their memory stays put for a CUDA graph.
            p.grad = torch.zeros_like(p)

    def epoch(self, shuffles: list[torch.Generator], distortions: list[torch.Generator] | None = None) -> torch.Tensor:
        self.model.train()
        self.sums.zero_()
        for index in batches(self.shuffle(shuffles), self.batch_size):
            self.step(index, distortions)
        return self.sums.t().clone()

    def shuffle(self, generators: list[torch.Generator]) -> torch.Tensor:
        """(K, n): each model's own permutation, drawn as a single network's epoch draws it."""
        device = self.split.x.device
        return torch.stack([torch.randperm(len(self.split), generator=g, device=device) for g in generators])

    def step(self, index: torch.Tensor, distortions: list[torch.Generator] | None = None) -> None:
        """One Adam step of every model on its own batch ``index`` (K, B), distorted by its own generator."""
        rows = index.flatten()  # index_select copies rows: several times faster than x[index]'s general indexing
        x = self.split.x.index_select(0, rows).view(*index.shape, -1)  # (K, B, 784)
        y = self.split.y.index_select(0, rows).view(index.shape)  # (K, B)
        if self.distort:
            x = torch.stack([self.distort(x[k], generator) for k, generator in enumerate(distortions)])
        self.optimizer.zero_grad(set_to_none=False)
        logits = self.model(x)  # (K, B, 10)
        losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view_as(y).mean(dim=1)  # (K,)
        losses.sum().backward()  # d(sum)/d(model k) = d(loss k)/d(model k): the models share no weight
        self.optimizer.step()
        self.sums[0] += losses.detach() * index.shape[1]
        self.sums[1] += (logits.detach().argmax(dim=2) == y).sum(dim=1)

    @torch.no_grad()
    def evaluate(self, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, 2) each model's [summed cross-entropy, correct count] in eval mode, and (K, N) its predicted labels."""
        model = self.model
        model.eval()
        sums = torch.zeros(model.size, 2, device=split.x.device)
        predicted = torch.empty(model.size, len(split), dtype=torch.uint8, device=split.x.device)
        for start in range(0, len(split), EVAL_CHUNK):
            x, y = split.x[start:start + EVAL_CHUNK], split.y[start:start + EVAL_CHUNK]
            logits = model(x)  # (K, N, 10): every model sees the same images
            target = y.expand(model.size, -1)
            losses = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
            sums[:, 0] += losses.view_as(target).sum(1)
            labels = logits.argmax(dim=2)
            sums[:, 1] += (labels == target).sum(dim=1)
            predicted[:, start:start + EVAL_CHUNK] = labels
        return sums, predicted


class GraphedStack(Stack):
    """``Stack``'s steps, the full batches of an epoch replayed from one CUDA graph captured at the start.

    Everything the graph reads or writes lives at a fixed address: the weights, their gradients (zeroed in
    place), Adam's state and its learning rate (a device tensor that StepLR fills, so the schedule needs no
    recapture), the epoch's permutations and the position of the next batch in them. The optimizer must be
    ``capturable``; ``train.train`` makes it so, also after loading a checkpoint.
    """

    def __init__(self, model: StackedModel, optimizer: torch.optim.Optimizer, split: Split, batch_size: int,
                 distort: Distort | None = None):
        super().__init__(model, optimizer, split, batch_size)
        if distort:
            raise ValueError("distorted training images (shift, elastic) are not captured in a CUDA graph yet; "
                             "train them without cuda_graphs")
        if not all(group.get("capturable") and torch.is_tensor(group["lr"]) for group in optimizer.param_groups):
            raise ValueError("a CUDA graph needs Adam with capturable=True and a tensor learning rate")
        device = split.x.device
        self.order = torch.zeros(model.size, len(split), dtype=torch.long, device=device)
        self.position = torch.zeros((), dtype=torch.long, device=device)
        self.offsets = torch.arange(batch_size, device=device)
        self.graph = self._capture()

    def _graph_step(self) -> None:
        self.step(self.order.index_select(1, self.position + self.offsets))
        self.position += self.batch_size

    def _capture(self) -> torch.cuda.CUDAGraph:
        # Capture needs a few warm-up steps on a side stream (they allocate Adam's state and cuBLAS's
        # workspaces); they change the weights and Adam's state, so every value is put back afterwards.
        fresh_optimizer = not self.optimizer.state
        with torch.no_grad():
            saved = [t.clone() for t in self._state_tensors()]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                self.position.zero_()
                self._graph_step()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._graph_step()
        torch.cuda.synchronize()
        with torch.no_grad():  # the parameters are leaves that require grad: restore them as data
            for tensor, value in zip(self._state_tensors(), saved):
                tensor.copy_(value)
            if fresh_optimizer:  # Adam's state was made by the warm-up: back to a fresh Adam's zeros
                for state in self.optimizer.state.values():
                    for value in state.values():
                        if torch.is_tensor(value):
                            value.zero_()
        return graph

    def _state_tensors(self) -> list[torch.Tensor]:
        """What the warm-up and capture may change: weights, buffers, gradients, sums, Adam's state."""
        tensors = [*self.model.parameters(), *self.model.buffers(), self.sums]
        tensors += [p.grad for p in self.model.parameters() if p.grad is not None]
        for state in self.optimizer.state.values():
            tensors += [v for v in state.values() if torch.is_tensor(v)]
        return tensors

    def epoch(self, shuffles: list[torch.Generator], distortions: list[torch.Generator] | None = None) -> torch.Tensor:
        self.model.train()
        self.sums.zero_()
        n, batch_size = len(self.split), self.batch_size
        self.order.copy_(self.shuffle(shuffles))
        self.position.zero_()
        full = n // batch_size
        for _ in range(full):
            self.graph.replay()
        if n - full * batch_size >= 2:  # a short last batch has other shapes: run it eagerly
            self.step(self.order[:, full * batch_size:])
        return self.sums.t().clone()
