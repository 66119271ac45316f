"""The training loop: data resident on the device, no DataLoader, one host sync per epoch."""

from __future__ import annotations

import contextlib
import io
import math
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import __version__
from .config import Config
from .data import MNISTSplits, Split, load
from .models import build_model
from .records import Record, atomic_write_bytes

EVAL_CHUNK = 5000  # images per forward pass when evaluating; bounds memory at H=5000


class CheckpointError(RuntimeError):
    """A checkpoint cannot be resumed: unreadable, or written by a different config."""


def run(config: Config | None = None, *, data: MNISTSplits | None = None,
        checkpoint: str | os.PathLike | None = None, tensorboard_dir: str | os.PathLike | None = None,
        progress: bool = False) -> Record:
    """Train ``config`` and return its Record.

    ``data``: splits already loaded (on any device), to skip loading. ``checkpoint``: a file
    written after every epoch and resumed from when present. ``tensorboard_dir``: where to log
    scalars. ``progress``: show a tqdm bar over epochs. A loss that turns NaN or inf ends the
    run early with ``record.status == "diverged"``.
    """
    config = config or Config()
    device = config.resolved_device()
    with _fast_cpu_math(device):
        if data is None:
            data = load(config.data_dir, device=device, train_size=config.train_size)
        train, val, test = (_on(split, device) for split in (data.train, data.val, data.test))
        if len(train) != config.train_size:
            raise ValueError(f"data.train has {len(train)} images but config.train_size is {config.train_size}")

        torch.manual_seed(config.seed)
        model = build_model(config.model, config.hidden_size).to(device)
        fused = device.type in ("cuda", "cpu")
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.999), fused=fused)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
        shuffle = torch.Generator(device=device).manual_seed(config.seed)
        record = Record(config=config.to_dict(), environment=environment(device, fused))

        if checkpoint is not None and Path(checkpoint).is_file():
            _resume(checkpoint, config, model, optimizer, scheduler, shuffle, record)
        writer = _tensorboard(tensorboard_dir)
        bar = _progress_bar(progress, config, initial=len(record.history))
        try:
            for epoch in range(len(record.history) + 1, config.epochs + 1):
                started = time.perf_counter()
                lr = optimizer.param_groups[0]["lr"]
                train_sums = train_epoch(model, optimizer, train, config.batch_size, shuffle)
                val_sums, test_sums = evaluate(model, val), evaluate(model, test)
                scheduler.step()
                # The one host synchronisation of the epoch.
                sums = torch.cat([train_sums, val_sums, test_sums]).tolist()
                row = {"epoch": epoch, "lr": lr, **_metrics("train", sums[0:2], len(train)),
                       **_metrics("val", sums[2:4], len(val)), **_metrics("test", sums[4:6], len(test)),
                       "seconds": time.perf_counter() - started}
                record.history.append(row)
                if writer is not None:
                    for key, value in row.items():
                        if key not in ("epoch", "seconds"):
                            writer.add_scalar(key.replace("_", "/", 1), value, epoch)
                bar.update(1)
                bar.set_postfix(train_loss=f"{row['train_loss']:.4f}", test_acc=f"{row['test_acc']:.2f}")
                if not all(math.isfinite(row[k]) for k in ("train_loss", "val_loss", "test_loss")):
                    record.status, record.diverged_epoch = "diverged", epoch
                    break
                if checkpoint is not None:
                    _save_checkpoint(checkpoint, config, model, optimizer, scheduler, shuffle, record)
        finally:
            bar.close()
            if writer is not None:
                writer.close()
    return record


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, split: Split, batch_size: int,
                generator: torch.Generator) -> torch.Tensor:
    """One shuffled pass; returns [summed loss, correct count] as a device tensor (no sync)."""
    model.train()
    n = len(split)
    order = torch.randperm(n, generator=generator, device=split.x.device)
    loss_sum = torch.zeros((), device=split.x.device)
    correct = torch.zeros((), device=split.x.device, dtype=torch.long)
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        if len(index) == 1 and start > 0:
            break  # a lone last image cannot be batch-normalised; the next epoch reshuffles it in
        x, y = split.x[index], split.y[index]  # (B, 784), (B,)
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)  # (B, 10)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(index)
        correct += (logits.detach().argmax(dim=1) == y).sum()
    return torch.stack([loss_sum, correct.to(loss_sum.dtype)])


@torch.no_grad()
def evaluate(model: nn.Module, split: Split) -> torch.Tensor:
    """[summed cross-entropy, correct count] over ``split`` in eval mode, as a device tensor."""
    model.eval()
    loss_sum = torch.zeros((), device=split.x.device)
    correct = torch.zeros((), device=split.x.device)
    for start in range(0, len(split), EVAL_CHUNK):
        x, y = split.x[start:start + EVAL_CHUNK], split.y[start:start + EVAL_CHUNK]
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(dim=1) == y).sum()
    return torch.stack([loss_sum, correct])


def environment(device: torch.device, fused_adam: bool) -> dict[str, object]:
    """Where a run ran, saved in its record."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_name()
    return {
        "mnistlab": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": name,
        "cpu_threads": torch.get_num_threads(),
        "fused_adam": fused_adam,
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return f"{names[0]} ({os.cpu_count()} cores)"
    except (OSError, IndexError):
        return platform.processor() or platform.machine()


def _metrics(prefix: str, sums: list[float], n: int) -> dict[str, float]:
    loss_sum, correct = sums
    return {f"{prefix}_loss": loss_sum / n, f"{prefix}_acc": 100.0 * correct / n}


def _on(split: Split, device: torch.device) -> Split:
    return split if split.x.device == device else Split(split.x.to(device), split.y.to(device))


@contextlib.contextmanager
def _fast_cpu_math(device: torch.device) -> Iterator[None]:
    """Flush denormals on CPU while training: after a few hundred Adam steps they slow it several-fold."""
    if device.type != "cpu" or not torch.set_flush_denormal(True):
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def _tensorboard(log_dir: str | os.PathLike | None):
    if log_dir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

    return SummaryWriter(os.fspath(log_dir))


def _progress_bar(enabled: bool, config: Config, initial: int):
    # Plain text on stdout, not a widget: it reads the same in JupyterLab, a terminal and a papermill report.
    from tqdm import tqdm

    return tqdm(total=config.epochs, initial=initial, desc=config.run_name, unit="epoch", file=sys.stdout,
                disable=not enabled, mininterval=2.0)


# Settings that must match for a checkpoint to be resumed; device and data_dir may differ.
_RESUME_KEYS = ("model", "hidden_size", "epochs", "lr", "step_size", "gamma", "batch_size", "train_size", "seed")


def _save_checkpoint(path, config, model, optimizer, scheduler, generator, record) -> None:
    buffer = io.BytesIO()
    torch.save({
        "config": config.to_dict(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "generator": generator.get_state(),
        "history": record.history,
    }, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _resume(path, config, model, optimizer, scheduler, generator, record) -> None:
    try:
        state = torch.load(path, map_location=generator.device, weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{path}: cannot read checkpoint ({error}); delete it to start over") from error
    saved = state.get("config", {})
    changed = [k for k in _RESUME_KEYS if saved.get(k) != getattr(config, k)]
    if changed:
        raise CheckpointError(f"{path}: written by a run with different {', '.join(changed)}; "
                              "delete it or use another checkpoint path")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"].cpu())
    record.history[:] = state["history"]
    record.environment["resumed_after_epoch"] = len(state["history"])  # this process ran only the later epochs
