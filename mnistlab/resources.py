"""What a run needs of its machine, estimated before it starts: memory and disk, and what the machine has.

The counts come from the model itself (``models.sizes``: its parameters, buffers and the outputs of
its layers for one batch, counted on torch's meta device), not from per-model arithmetic, so a model
of your own is estimated as the study's are. Torch is imported only to count.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from . import paths
from .config import Config, ConfigError
from .models import sizes

if TYPE_CHECKING:
    from .spec import RunSpec

EVAL_CHUNK = 5000  # images per forward pass when evaluating (steps.py): bounds memory at H = 5000
FLOAT = 4  # bytes


def memory_needed(config: Config, seeds: int = 1) -> dict[str, int]:
    """Bytes a run holds at its peak (float32), for ``seeds`` networks trained at the same time: the model's state,
    what is computed from it each step (weight norm's w), gradients and Adam's two moments; the activations of a
    training step at ``batch_size`` (and their gradients) or of an evaluation pass of ``EVAL_CHUNK`` images,
    whichever is larger; and the data, once."""
    b = config.batch_size
    step = sizes(config.model, config.hidden_size, b, config.dropout)
    evaluation = sizes(config.model, config.hidden_size, EVAL_CHUNK)
    state = seeds * FLOAT * (step["state"] + step["computed"] + 3 * step["parameters"])
    train = 2 * FLOAT * (b * 784 + step["activations"])  # the batch and its activations, and their gradients
    evaluate = FLOAT * (EVAL_CHUNK * 784 + evaluation["activations"])
    images = (config.train_size + 20_000) * (FLOAT * 784 + 8)  # train, validation and test; int64 labels
    activations = (f"activations at batch_size {b}" if train >= evaluate
                   else f"activations of an evaluation of {EVAL_CHUNK} images")
    needed = {"weights, gradients and Adam state": state, activations: seeds * max(train, evaluate),
              "the data": images}
    return {**needed, "total": sum(needed.values())}


def disk_needed(spec: RunSpec, at_once: int) -> dict[str, int]:
    """Bytes a run writes, by kind: records (predictions and history, one per seed), checkpoints (one per seed, or
    the stack's, each holding the model's state, Adam's and the records, plus a copy while one replaces another),
    TensorBoard. ``at_once``: the seeds trained together (``spec.at_once()``)."""
    config = spec.config
    record = 2 * 10_000 + 300 * config.epochs + 20_000
    needed = {"records": len(spec.seeds) * record}
    if spec.checkpoint is not None:
        counted = sizes(config.model, config.hidden_size, config.batch_size, config.dropout)
        one = at_once * (FLOAT * (counted["state"] + 2 * counted["parameters"]) + record)
        needed["checkpoints"] = (len(spec.seeds) // at_once + 1) * one
    if spec.tensorboard:
        needed["tensorboard"] = len(spec.seeds) * 200 * config.epochs
    return needed


def check(spec: RunSpec, device, at_once: int) -> None:
    """Refuse a run whose estimated memory is more than ``device`` has free, or whose files do not fit on disk."""
    _check_memory(spec.config, device, at_once)
    _check_disk(spec, at_once)


def available_memory() -> int | None:
    """Bytes this process may still allocate: the kernel's MemAvailable, or less under a cgroup memory limit."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        available = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    for limit, used in ((Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")),
                        (Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
                         Path("/sys/fs/cgroup/memory/memory.usage_in_bytes"))):
        try:
            text = limit.read_text().strip()
            if text != "max" and int(text) < 2**60:
                available = min(available, max(0, int(text) - int(used.read_text())))
        except (OSError, ValueError):
            continue
        break
    return available


def size_text(n: float) -> str:
    """Bytes for a message: "12.3 MB"."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000


def _check_memory(config: Config, device, at_once: int) -> None:
    needed = memory_needed(config, at_once)
    if device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        where = f"{device} has {size_text(free)} free"
    elif device.type == "cpu":
        free = available_memory()
        where = f"this machine has {size_text(free)} available" if free is not None else ""
    else:
        free = None
    if free is not None and needed["total"] > free:
        parts = ", ".join(f"{name} {size_text(value)}" for name, value in needed.items() if name != "total")
        seeds = f" for {at_once} seeds trained together" if at_once > 1 else ""
        raise ConfigError(f"this run needs about {size_text(needed['total'])} of memory{seeds} ({parts}); {where}. "
                          f"Use a smaller batch_size (now {config.batch_size}) or hidden_size "
                          f"(now {config.hidden_size}), or a machine with more memory")


def _check_disk(spec: RunSpec, at_once: int) -> None:
    needed = disk_needed(spec, at_once)
    places: dict[int, tuple[Path, list[str]]] = {}
    for what in needed:
        folder = spec.checkpoint.parent if what == "checkpoints" else spec.out_dir
        places.setdefault(os.stat(folder).st_dev, (folder, []))[1].append(what)
    for folder, names in places.values():
        free = shutil.disk_usage(folder).free
        wanted = sum(needed[name] for name in names)
        if wanted > free:
            parts = ", ".join(f"{name} {size_text(needed[name])}" for name in names)
            raise ConfigError(f"{paths.relative(folder)} has {size_text(free)} free; this run writes about "
                              f"{size_text(wanted)} there ({parts}). Free some space or write elsewhere (out_dir, "
                              "checkpoint)")
