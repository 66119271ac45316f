"""A run specification run: checked on the machine that trains, then trained, each record saved as its seed ends.

Every entry point trains through here: the train notebook, ``mnistlab train`` and, through the
notebook, a sweep. ``check`` refuses before any training what only the training machine can tell
(device, data, output folder, memory, disk); ``run`` trains every seed, together as a stack where
that pays (``RunSpec.stacked``), and says so when a record it saves replaces an older one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from . import paths, resources
from .atomic import WriteError
from .config import ConfigError
from .data import DataError, verify
from .datasets import DATASETS
from .progress import kernel_terminal
from .records import Record
from .spec import RunSpec
from .train import train


def check(spec: RunSpec) -> None:
    """Refuse, before any training, what only the training machine can tell: device, data, output folder, room."""
    import torch

    device = spec.config.device
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' is not available on this machine; use device: auto or cpu")
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r} is not available on this machine "
                              f"({torch.cuda.device_count()} CUDA devices); use device: auto or cpu")
    resolved = spec.config.resolved_device()
    if spec.cuda_graphs and resolved.type != "cuda":
        raise ConfigError(f"cuda_graphs is for CUDA devices; this run trains on {resolved}")
    if spec.cuda_graphs and (spec.config.shift or spec.config.elastic):
        raise ConfigError("cuda_graphs cannot capture distorted training images (shift, elastic) yet; "
                          "set cuda_graphs: false")
    if spec.config.data_dir is not None and not paths.resolve(spec.config.data_dir).is_dir():
        raise ConfigError(f"data_dir {spec.config.data_dir!r} is not a folder (relative: from the project root)")
    try:
        verify(spec.config.data_dir)
    except DataError as error:
        raise ConfigError(f"data_dir: {error}") from None
    for folder in [spec.out_dir] + ([spec.checkpoint.parent] if spec.checkpoint else []):
        _check_writable(folder)
    resources.check(spec, resolved, spec.at_once())


def run(spec: RunSpec, *, progress: bool = False) -> list[Record]:
    """Check, then train every seed (together, when ``spec.stacked()``), saving each record as soon as its seed
    ends; return the records."""
    check(spec)
    config = spec.config
    _say_what_is_replaced(spec)
    data = DATASETS[config.dataset].load(config.data_dir, device=config.resolved_device(),
                                         train_size=config.train_size, validation=config.validation)  # once

    def save(record: Record) -> None:
        seed = record.config["seed"]
        try:
            record.save(spec.record_path(seed))
        except WriteError as error:  # the message, and what is kept: the finished seeds, the last checkpoint
            kept = (f"; the checkpoint {paths.relative(spec.checkpoint_path(seed) or '')} keeps the epochs up to "
                    "its last save, and the same command resumes from it"
                    if spec.checkpoint else "; without a checkpoint this seed's training is lost")
            raise WriteError(error.errno, f"{error.strerror}{kept}", error.filename) from None

    if spec.stacked():
        return train(spec.configs(), data=data, checkpoint=spec.checkpoint, progress=progress,
                     tensorboard_dirs=[spec.tensorboard_dir(seed) for seed in spec.seeds],
                     cuda_graphs=spec.cuda_graphs, on_end=save)
    return [train([config], data=data, checkpoint=spec.checkpoint_path(config.seed), progress=progress,
                  tensorboard_dirs=[spec.tensorboard_dir(config.seed)], on_end=save)[0]
            for config in spec.configs()]


def _say_what_is_replaced(spec: RunSpec) -> None:
    """A record already at a seed's path is replaced when that seed ends: say so now, in the notebook and on the
    terminal, not silently afterwards."""
    for seed in spec.seeds:
        path = spec.record_path(seed)
        if path.is_file():
            message = f"{paths.relative(path)} exists: this run replaces it when seed {seed} ends"
            print(message, flush=True)
            terminal = kernel_terminal()  # a notebook's kernel: the terminal behind it too (papermill's)
            if terminal is not None:
                print(message, file=terminal, flush=True)


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ConfigError(f"cannot write to {paths.relative(folder)!r}: {error.strerror or error}") from None
