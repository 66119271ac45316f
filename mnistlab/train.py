"""The training loop: data resident on the device, no DataLoader, one host sync per epoch."""

from __future__ import annotations

import contextlib
import io
import os
import platform
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import __version__
from .config import Config
from .data import MNISTSplits, Split, load
from .models import build_model
from .paths import relative
from .records import (Record, atomic_write_bytes, divergence, encode_labels, epoch_row, predictions_to_keep,
                      unknown_segment)

EVAL_CHUNK = 5000  # images per forward pass when evaluating; bounds memory at H=5000


class CheckpointError(RuntimeError):
    """A checkpoint cannot be resumed: unreadable, or written by a different config."""


def run(config: Config | None = None, *, data: MNISTSplits | None = None,
        checkpoint: str | os.PathLike | None = None, tensorboard_dir: str | os.PathLike | None = None,
        progress: bool = False) -> Record:
    """Train ``config`` and return its Record.

    ``data``: splits already loaded (on any device), to skip loading. ``checkpoint``: a file
    written after every epoch and resumed from when present. ``tensorboard_dir``: where to log
    scalars. ``progress``: show a tqdm bar over epochs. A run that blows up (``records.divergence``)
    stops early with ``record.status == "diverged"``.
    """
    config = config or Config()
    device = config.resolved_device()
    with _fast_cpu_math(device):
        if data is None:
            data = load(config.data_dir, device=device, train_size=config.train_size, validation=config.validation)
        train, val, test = _splits(data, config, device)

        torch.manual_seed(config.seed)
        model = build_model(config.model, config.hidden_size).to(device)
        fused = device.type in ("cuda", "cpu")
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.999), fused=fused)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
        shuffle = torch.Generator(device=device).manual_seed(config.seed)
        here = environment(device, fused)
        record = Record(config=config.to_dict(), environment=here)

        if checkpoint is not None and Path(checkpoint).is_file():
            _resume(checkpoint, config, model, optimizer, scheduler, shuffle, record)
        started_utc = utc_now()
        writer = _tensorboard(tensorboard_dir)
        bar = _progress_bar(progress, config, initial=len(record.history))
        try:
            for epoch in range(len(record.history) + 1, config.epochs + 1):
                started = time.perf_counter()
                lr = optimizer.param_groups[0]["lr"]
                train_sums = train_epoch(model, optimizer, train, config.batch_size, shuffle)
                val_sums = evaluate(model, val)[0] if val is not None else torch.zeros(0, device=device)
                test_sums, predicted = evaluate(model, test)
                scheduler.step()
                # The one host synchronisation of the epoch.
                sums = torch.cat([train_sums, val_sums, test_sums]).tolist()
                reason = finish_epoch(record, epoch, lr, time.perf_counter() - started, sums, (train, val, test),
                                      predicted, here, started_utc)
                row = record.history[-1]
                if writer is not None:
                    for key, value in row.items():
                        if key not in ("epoch", "seconds") and value is not None:
                            writer.add_scalar(key.replace("_", "/", 1), value, epoch)
                bar.update(1)
                bar.set_postfix(train_loss=f"{row['train_loss']:.4g}", test_acc=f"{row['test_acc']:.2f}")
                if reason is not None:
                    break
                if checkpoint is not None:
                    _save_checkpoint(checkpoint, config, model, optimizer, scheduler, shuffle, record)
        finally:
            bar.close()
            if writer is not None:
                writer.close()
    return record


def finish_epoch(record: Record, epoch: int, lr: float, seconds: float, sums: list[float],
                 splits: tuple[Split, Split | None, Split], predicted: torch.Tensor, here: dict, started_utc: str) -> str | None:
    """Write one epoch into ``record`` from its sums ([loss, correct] per measured split, read back once):
    the history row, the provenance, the kept predictions, and the divergence rule; return why it diverged."""
    train, val, test = splits
    row = epoch_row(epoch, lr, seconds, (*sums[0:2], len(train)),
                    (*sums[2:4], len(val)) if val is not None else None, (*sums[-2:], len(test)))
    record.history.append(row)
    record.trained(epoch, here, started_utc)
    reason = divergence(row)
    if reason is not None:
        record.status, record.diverged_epoch, record.diverged_reason = "diverged", epoch, reason
    keep_predictions(record, predicted, last=epoch == record.config["epochs"] or reason is not None)
    return reason


def keep_predictions(record: Record, predicted: torch.Tensor, last: bool) -> None:
    """Copy the epoch's test predictions (a device tensor) to the host only when the record keeps them."""
    keep = predictions_to_keep(record.history, last)
    if keep:
        labels = encode_labels(predicted.cpu().numpy())  # after the epoch's sync: the values are ready
        record.predictions.update(dict.fromkeys(keep, labels))


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
def evaluate(model: nn.Module, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """[summed cross-entropy, correct count] over ``split`` in eval mode, and the predicted labels
    (uint8), both on the device: no host sync."""
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
    return torch.stack([loss_sum, correct]), predicted


def environment(device: torch.device, fused_adam: bool) -> dict[str, object]:
    """This process: where it trains, with how many threads, with which versions (a record's segment keys)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_name()
    return {
        "mnistlab": __version__,
        "torch": str(torch.__version__),  # a str subclass that weights_only checkpoints refuse
        "python": platform.python_version(),
        "device": str(device),
        "device_name": name,
        "threads": torch.get_num_threads(),
        "fused_adam": fused_adam,
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return f"{names[0]} ({os.cpu_count()} cores)"
    except (OSError, IndexError):
        return platform.processor() or platform.machine()


def utc_now() -> str:
    """The time now, UTC, ISO 8601 to the second (a segment's ``started``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _splits(data: MNISTSplits, config: Config, device: torch.device) -> tuple[Split, Split | None, Split]:
    """The splits on ``device``, checked against the config; no validation split when it has none."""
    if len(data.train) != config.train_size:
        raise ValueError(f"data.train has {len(data.train)} images but config.train_size is {config.train_size}")
    if config.validation and data.val is None:
        raise ValueError("config.validation is true but data has no validation split (data.val is None); "
                         "load the data with validation=True")
    val = _on(data.val, device) if config.validation else None
    return _on(data.train, device), val, _on(data.test, device)


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


def _save_checkpoint(path, config, model, optimizer, scheduler, generator, record) -> None:
    buffer = io.BytesIO()
    torch.save({
        "config": config.to_dict(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "generator": generator.get_state(),
        "history": record.history,
        "predictions": record.predictions,
        "segments": record.segments,
    }, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _resume(path, config, model, optimizer, scheduler, generator, record) -> None:
    try:
        state = torch.load(path, map_location=generator.device, weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{path}: cannot read checkpoint ({error}); delete it to start over") from error
    changed = config.differences(state.get("config", {}))
    if changed:
        raise CheckpointError(f"{path}: written by a run with different {', '.join(changed)}; "
                              "delete it or use another checkpoint path")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(state["generator"].cpu())
    done = len(state["history"])
    record.history[:] = state["history"]
    record.predictions.update(state.get("predictions", {}))
    # Checkpoints from before provenance was kept: who trained their epochs is unknown.
    record.segments[:] = state.get("segments") or ([unknown_segment(1, done)] if done else [])
    record.resumed_after_epoch, record.resumed_from = done, _portable(path)


def _portable(path: str | os.PathLike) -> str:
    """``path`` as a record may say it: relative to the project root, else its file name (no machine path)."""
    shown = relative(path)
    return Path(path).name if Path(shown).is_absolute() else shown

