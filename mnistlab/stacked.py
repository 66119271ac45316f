"""Several seeds of one config trained at once: a stack of K networks, one batched product per layer.

At batch 100 one step of these networks is a few dozen tiny kernels, so a GPU waits on launches,
not on arithmetic (issue 11). Stacking K seeds makes every kernel K times larger for the same
launches, and on CUDA the whole step can be captured once as a CUDA graph and replayed.

Each seed is still its own run: its initial weights are copied from ``build_model`` after
``torch.manual_seed(seed)`` (as ``train.run`` builds them), it shuffles with its own generator,
its batch norm keeps its own statistics, and its gradient is that of its own loss, because the
stack's loss is the sum of the K models' mean batch losses and the models share no weight.
Adam is elementwise, so one Adam over the stacked tensors is K Adams. Results agree with
``train.run`` to float rounding, not bit for bit: a batched product sums in another order.
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .config import Config, ConfigError
from .data import MNISTSplits, Split, load
from .models import build_model
from .records import Record, atomic_write_bytes
from .train import (EVAL_CHUNK, CheckpointError, _fast_cpu_math, _portable, _splits, environment, finish_epoch,
                    utc_now)

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


def check_seeds(configs: list[Config]) -> list[Config]:
    """The configs of one stack: at least one, distinct seeds, and identical in everything else."""
    if not configs:
        raise ConfigError("run_seeds needs at least one config; got an empty list")
    first = configs[0]
    seeds = [c.seed for c in configs]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must differ (one record per seed); got {seeds}")
    for config in configs[1:]:
        differing = first.differences({**config.identity(), "seed": first.seed})
        differing += [key for key in ("device", "data_dir") if getattr(config, key) != getattr(first, key)]
        if differing:
            values = ", ".join(f"{key}={getattr(first, key)!r} vs {getattr(config, key)!r}" for key in differing)
            raise ConfigError(f"seeds trained together must share every setting but the seed; seed {config.seed} "
                              f"differs from seed {first.seed} in {values}; train them in separate stacks")
    return list(configs)


def run_seeds(configs: list[Config], *, data: MNISTSplits | None = None,
              checkpoint: str | os.PathLike | None = None, progress: bool = False,
              cuda_graphs: bool | None = None) -> list[Record]:
    """Train several seeds of one config together; one Record per seed, as ``train.run`` would give.

    ``data``: splits already loaded. ``checkpoint``: the stack's checkpoint file (one for all its
    seeds), written after every epoch and resumed from when present. ``cuda_graphs``: None (the default)
    or False trains eagerly; True captures the training step as a CUDA graph (CUDA only; off by
    default until checked against the eager loop on a real GPU). A seed that blows up (the rule
    is ``records.divergence``) is marked diverged and its record stops there; the others train on:
    the models share nothing, so its NaNs cannot reach them. Each record's epoch ``seconds`` are the
    whole stack's; its provenance segment names the seeds it shared them with (``stacked_seeds``).
    """
    configs = check_seeds(configs)
    first = configs[0]
    device = first.resolved_device()
    if cuda_graphs and device.type != "cuda":
        raise ConfigError(f"cuda_graphs=True needs a CUDA device; these configs train on {device}; "
                          "pass cuda_graphs=None (eager) or device='cuda'")
    graphs = bool(cuda_graphs)
    with _fast_cpu_math(device):
        if data is None:
            data = load(first.data_dir, device=device, train_size=first.train_size, validation=first.validation)
        train, val, test = _splits(data, first, device)

        seeds = [c.seed for c in configs]
        model = StackedModel.from_seeds(first.model, first.hidden_size, seeds).to(device)
        fused = device.type in ("cuda", "cpu")
        # A tensor learning rate lives in device memory, so StepLR changes it under a captured graph.
        initial_lr = torch.tensor(first.lr, device=device) if graphs else first.lr
        optimizer = torch.optim.Adam(model.parameters(), lr=initial_lr, betas=(0.9, 0.999), fused=fused, capturable=graphs)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=first.step_size, gamma=first.gamma)
        shuffles = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        # Each seed's epoch time is the stack's: the record says which seeds shared it, and how.
        here = {**environment(device, fused), "stacked_seeds": seeds, "cuda_graphs": graphs}
        records = [Record(config=c.to_dict(), environment=dict(here)) for c in configs]

        if checkpoint is not None and Path(checkpoint).is_file():
            _resume(checkpoint, configs, model, optimizer, scheduler, shuffles, records)
        trainer = (GraphedTrainer if graphs else EagerTrainer)(model, optimizer, train, first.batch_size)
        started_utc = utc_now()
        done = max(len(record.history) for record in records)  # a diverged seed's history stops early
        bar = _progress_bar(progress, configs, initial=done)
        try:
            for epoch in range(done + 1, first.epochs + 1):
                started = time.perf_counter()
                lr = float(optimizer.param_groups[0]["lr"])
                train_sums = trainer.epoch(shuffles)
                val_sums = evaluate(model, val)[0] if val is not None else torch.zeros(model.size, 0, device=device)
                test_sums, predicted = evaluate(model, test)
                scheduler.step()
                # The one host synchronisation of the epoch: K rows of six (or four) sums.
                sums = torch.cat([train_sums, val_sums, test_sums], dim=1).tolist()
                seconds = time.perf_counter() - started
                for record, s, labels in zip(records, sums, predicted):
                    if record.status == "diverged":
                        continue  # its record ended there; its NaNs ride along without reaching the others
                    finish_epoch(record, epoch, lr, seconds, s, (train, val, test), labels, here, started_utc)
                bar.update(1)
                if all(record.status == "diverged" for record in records):
                    break
                if checkpoint is not None:
                    _save_checkpoint(checkpoint, configs, model, optimizer, scheduler, shuffles, records)
        finally:
            bar.close()
    return records


def stack_name(configs: list[Config], suffix: str = "") -> str:
    """E.g. ``wmodel-hs1000-seeds0-1-2``: names the stack's checkpoint and progress bar."""
    first = configs[0]
    return f"{first.model}-hs{first.hidden_size}-seeds{'-'.join(str(c.seed) for c in configs)}{suffix}"


class EagerTrainer:
    """One shuffled pass per call, a step at a time from Python."""

    def __init__(self, model: StackedModel, optimizer: torch.optim.Optimizer, split: Split, batch_size: int):
        self.model, self.optimizer, self.split, self.batch_size = model, optimizer, split, batch_size
        device = split.x.device
        self.sums = torch.zeros(2, model.size, device=device)  # summed loss and correct count per model
        for p in model.parameters():
            # Gradients are zeroed in place, never set to None, so their memory stays put for a CUDA graph.
            p.grad = torch.zeros_like(p)

    def epoch(self, generators: list[torch.Generator]) -> torch.Tensor:
        """One pass; returns (K, 2): each model's [summed loss, correct count], on the device (no sync)."""
        self.model.train()
        self.sums.zero_()
        n, batch_size = len(self.split), self.batch_size
        order = self.shuffle(generators)
        for start in range(0, n, batch_size):
            if n - start == 1 and start > 0:
                break  # a lone last image cannot be batch-normalised; the next epoch reshuffles it in (as train.run)
            self.step(order[:, start:start + batch_size])
        return self.sums.t().clone()

    def shuffle(self, generators: list[torch.Generator]) -> torch.Tensor:
        """(K, n): each model's own permutation, drawn as ``train.run`` draws it."""
        device = self.split.x.device
        return torch.stack([torch.randperm(len(self.split), generator=g, device=device) for g in generators])

    def step(self, index: torch.Tensor) -> None:
        """One Adam step of every model on its own batch ``index`` (K, B)."""
        x, y = self.split.x[index], self.split.y[index]  # (K, B, 784), (K, B)
        self.optimizer.zero_grad(set_to_none=False)
        logits = self.model(x)  # (K, B, 10)
        losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view_as(y).mean(dim=1)  # (K,)
        losses.sum().backward()  # d(sum)/d(model k) = d(loss k)/d(model k): the models share no weight
        self.optimizer.step()
        self.sums[0] += losses.detach() * index.shape[1]
        self.sums[1] += (logits.detach().argmax(dim=2) == y).sum(dim=1)


class GraphedTrainer(EagerTrainer):
    """The same steps, the full batches of an epoch replayed from one CUDA graph captured at the start."""

    def __init__(self, model: StackedModel, optimizer: torch.optim.Optimizer, split: Split, batch_size: int):
        super().__init__(model, optimizer, split, batch_size)
        device = split.x.device
        # Static inputs of the graph: the epoch's permutations and the position of the next batch in them.
        self.order = torch.zeros(model.size, len(split), dtype=torch.long, device=device)
        self.position = torch.zeros((), dtype=torch.long, device=device)
        self.offsets = torch.arange(batch_size, device=device)
        self.graph = self._capture()

    def _graph_step(self) -> None:
        self.step(self.order.index_select(1, self.position + self.offsets))
        self.position += self.batch_size

    def _capture(self) -> torch.cuda.CUDAGraph:
        # Capture needs a few warm-up steps on a side stream (they allocate Adam's state and
        # cuBLAS workspaces); they change the weights, so everything is put back afterwards.
        fresh_optimizer = not self.optimizer.state
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
        for tensor, value in zip(self._state_tensors(), saved):
            tensor.copy_(value)
        if fresh_optimizer:  # Adam's state was made by the warm-up: back to a fresh Adam's zeros
            for state in self.optimizer.state.values():
                for value in state.values():
                    value.zero_()
        return graph

    def _state_tensors(self) -> list[torch.Tensor]:
        tensors = [*self.model.parameters(), *self.model.buffers(), self.sums]
        for state in self.optimizer.state.values():
            tensors += [v for v in state.values() if torch.is_tensor(v)]
        return tensors

    def epoch(self, generators: list[torch.Generator]) -> torch.Tensor:
        self.model.train()
        self.sums.zero_()
        n, batch_size = len(self.split), self.batch_size
        self.order.copy_(self.shuffle(generators))
        self.position.zero_()
        full = n // batch_size
        for _ in range(full):
            self.graph.replay()
        if n - full * batch_size >= 2:  # a short last batch has other shapes: run it eagerly
            self.step(self.order[:, full * batch_size:])
        return self.sums.t().clone()


@torch.no_grad()
def evaluate(model: StackedModel, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, 2): each model's [summed cross-entropy, correct count] over ``split`` in eval mode, and (K, N)
    its predicted labels (uint8), both on the device: no host sync (as ``train.evaluate``)."""
    model.eval()
    sums = torch.zeros(model.size, 2, device=split.x.device)
    predicted = torch.empty(model.size, len(split), dtype=torch.uint8, device=split.x.device)
    for start in range(0, len(split), EVAL_CHUNK):
        x, y = split.x[start:start + EVAL_CHUNK], split.y[start:start + EVAL_CHUNK]
        logits = model(x)  # (K, N, 10): every model sees the same images
        target = y.expand(model.size, -1)
        sums[:, 0] += F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view_as(target).sum(1)
        labels = logits.argmax(dim=2)
        sums[:, 1] += (labels == target).sum(dim=1)
        predicted[:, start:start + EVAL_CHUNK] = labels
    return sums, predicted


def _progress_bar(enabled: bool, configs: list[Config], initial: int):
    from tqdm import tqdm

    return tqdm(total=configs[0].epochs, initial=initial, desc=stack_name(configs), unit="epoch", file=sys.stdout,
                disable=not enabled, mininterval=2.0)


def _save_checkpoint(path, configs, model, optimizer, scheduler, generators, records) -> None:
    buffer = io.BytesIO()
    torch.save({
        "configs": [c.to_dict() for c in configs],
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "generators": [g.get_state() for g in generators],
        "records": [{"history": r.history, "predictions": r.predictions, "segments": r.segments, "status": r.status,
                     "diverged_epoch": r.diverged_epoch, "diverged_reason": r.diverged_reason} for r in records],
    }, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _resume(path, configs, model, optimizer, scheduler, generators, records) -> None:
    try:
        state = torch.load(path, map_location=generators[0].device, weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{path}: cannot read checkpoint ({error}); delete it to start over") from error
    saved = state.get("configs", [])
    changed = sorted({key for config, old in zip(configs, saved) for key in config.differences(old)})
    if len(saved) != len(configs) or changed:
        raise CheckpointError(f"{path}: written by a stack with different {', '.join(changed) or 'seeds'}; "
                              "delete it or use another checkpoint path")
    lr = optimizer.param_groups[0]["lr"]
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if torch.is_tensor(lr):  # keep the graph's device tensor, holding the saved rate
        lr.fill_(float(optimizer.param_groups[0]["lr"]))
        optimizer.param_groups[0]["lr"] = lr
    scheduler.load_state_dict(state["scheduler"])
    for generator, generator_state in zip(generators, state["generators"]):
        generator.set_state(generator_state.cpu())
    done = max(len(saved_record["history"]) for saved_record in state["records"])
    for record, saved_record in zip(records, state["records"]):
        record.history[:] = saved_record["history"]
        record.predictions.update(saved_record["predictions"])
        record.segments[:] = saved_record["segments"]
        record.status, record.diverged_epoch = saved_record["status"], saved_record["diverged_epoch"]
        record.diverged_reason = saved_record["diverged_reason"]
        record.resumed_after_epoch, record.resumed_from = done, _portable(path)  # this process trains only later epochs
