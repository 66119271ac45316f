"""The settings of one training run, validated on construction, the run's training identity, and its name.

How a run is named is said here once (``cell_name``, ``seed_name``): ``wmodel-hs1000-seed0``.

No torch here: a params file is checked in well under a second. What can only be checked on the
machine that trains (is CUDA there, is the data intact, can the output be written) is checked by
``mnistlab.spec`` just before training.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from .datasets import DATASETS
from .models import MODELS, unregistered_hint  # the registry: every model a config may name (torch-free)

SCHEDULES = {
    "step": "StepLR: the rate times gamma every step_size epochs (the HW5 report's)",
    "cosine": "cosine annealing from lr to 0 over the epochs, set at the start of each epoch",
}
# The classic split of the 60,000 official training images: the first 50,000 train, the last 10,000 validate.
TRAIN_SIZE, FULL_TRAIN_SIZE = 50_000, 60_000
MAX_HIDDEN_SIZE = 100_000  # 784 x 100k floats is 300 MB of weights; more is a typo, not a study
MAX_SEED = 2**32 - 1  # numpy's and most tools' seed range; torch's is wider
MAX_SHIFT = 14  # pixels: half the image; more moves every digit out of the frame
MAX_ELASTIC = 1000.0  # alpha in pixels; Simard et al. used 34
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
# Where a run trains, not what it trains: these may differ between a checkpoint or record and its run.
PLACE_KEYS = ("device", "data_dir")
# Settings added after the first records: older records lack them and trained with their defaults.
ADDED_LATER = ("validation", "schedule", "dropout", "shift", "elastic", "dataset")
# Of those, the ones a run's identity names only when set otherwise: every run before them had the default, so
# adding such an option changes no earlier run's identity, nor the key a sweep keeps its runs under. (validation
# came before sweeps kept keys, and stays named.)
NAMED_WHEN_SET = ("schedule", "dropout", "shift", "elastic", "dataset")


class ConfigError(ValueError):
    """A setting has the wrong type or an invalid value; the message names it."""

    def _render_traceback_(self) -> list[str]:
        # IPython's hook (notebook kernels, so papermill too): the message is the whole story, not the stack
        # of frames that found it.
        return [f"{type(self).__name__}: {self}"]


@dataclass(frozen=True)
class Config:
    """One run of the study. Defaults are the paper protocol (README.md, "What it does")."""

    model: str = "wmodel"  # a registered model: nmodel, bmodel, wmodel (mnistlab.models.MODELS)
    hidden_size: int = 1000  # hidden units H
    epochs: int = 100  # passes over the training images
    lr: float = 0.01  # Adam's initial learning rate
    schedule: str = "step"  # learning-rate schedule: step (StepLR, the HW5 report's) or cosine (to 0 over the epochs)
    step_size: int = 20  # epochs between learning-rate decays (StepLR)
    gamma: float = 0.1  # learning-rate decay factor (StepLR)
    batch_size: int = 100  # images per Adam step
    dropout: float = 0.0  # probability of dropping each hidden unit in training; 0: no dropout
    shift: int = 0  # random translation of each training image by up to this many pixels; 0: none
    elastic: float = 0.0  # elastic distortion of training images, alpha in pixels (Simard et al.: 34); 0: none
    dataset: str = "mnist"  # the images and labels (mnistlab.datasets.DATASETS)
    train_size: int = TRAIN_SIZE  # first N of the training images
    validation: bool = True  # hold the last 10,000 images out; False: train on all 60,000, as the HW5 report did
    seed: int = 0  # initialisation, shuffling, dropout and augmentation
    device: str = "auto"  # auto (CUDA when present), cpu, cuda, cuda:N, mps
    data_dir: str | None = None  # None: $MNISTLAB_DATA or data/ in the project

    def __post_init__(self) -> None:
        _choice(self, "model", MODELS)
        _integer(self, "hidden_size", low=1, high=MAX_HIDDEN_SIZE)
        _integer(self, "epochs", low=1, high=100_000)
        _number(self, "lr")
        _choice(self, "schedule", SCHEDULES)
        _integer(self, "step_size", low=1)
        _number(self, "gamma")
        _number(self, "dropout", low=0.0, below=1.0)
        _integer(self, "shift", low=0, high=MAX_SHIFT)
        _number(self, "elastic", low=0.0, high=MAX_ELASTIC)
        _choice(self, "dataset", DATASETS)
        if not isinstance(self.validation, bool):
            raise ConfigError(f"validation must be true or false; got {_show(self.validation)}")
        _integer(self, "train_size", low=1, high=self.max_train_size)
        smallest = MODELS[self.model].min_batch_size  # batch norm cannot normalise a batch of one image
        if self.train_size < smallest:
            raise ConfigError(f"train_size must be at least {smallest} for {self.model}, whose batches need "
                              f"{smallest} images or more; got {self.train_size}")
        _integer(self, "batch_size", low=smallest, high=self.train_size)
        _integer(self, "seed", low=0, high=MAX_SEED)
        if not isinstance(self.device, str) or not DEVICE_PATTERN.fullmatch(self.device):
            raise ConfigError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; got {_show(self.device)}")
        if self.data_dir is not None:
            if not isinstance(self.data_dir, (str, os.PathLike)) or not str(self.data_dir):
                raise ConfigError(f"data_dir must be a path or None; got {_show(self.data_dir)}")
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))

    @property
    def max_train_size(self) -> int:
        return TRAIN_SIZE if self.validation else FULL_TRAIN_SIZE

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def run_name(self) -> str:
        """A readable default name, e.g. ``wmodel-hs1000-seed0``."""
        return seed_name(cell_name(self.model, self.hidden_size), self.seed)

    def identity(self) -> dict[str, Any]:
        """What the run trains: every setting but where it trains (and but the options of ``NAMED_WHEN_SET`` left at
        their defaults). Two runs with the same identity train the same network the same way, so a checkpoint or
        record of one belongs to the other."""
        defaults = {f.name: f.default for f in fields(Config) if f.name in NAMED_WHEN_SET}
        return {key: value for key, value in self.to_dict().items()
                if key not in PLACE_KEYS and not (key in defaults and value == defaults[key])}

    def differences(self, saved: Mapping[str, Any]) -> list[str]:
        """The training settings in which a saved config (a checkpoint's or record's) differs from this one."""
        defaults = {f.name: f.default for f in fields(Config) if f.name in ADDED_LATER}
        saved = {**defaults, **saved}
        mine = {**self.identity(), **{key: getattr(self, key) for key in NAMED_WHEN_SET}}
        return [key for key, value in mine.items() if saved.get(key) != value]

    def resolved_device(self):
        """The torch device this config trains on (imports torch)."""
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


def cell_name(model: str, hidden_size: int) -> str:
    """``wmodel-hs1000``: a model at a hidden size, the default stem of a run's files (``RunSpec.run_name``)."""
    return f"{model}-hs{hidden_size}"


def seed_name(stem: str, seed: int) -> str:
    """``<stem>-seed<seed>``: one seed's name, from a run's stem (its record, notebook and checkpoint files)."""
    return f"{stem}-seed{seed}"


def _show(value: Any) -> str:
    """A value for an error message: its repr, cut short (a hostile file can hold a huge one)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + f"... ({len(text)} characters)"


def did_you_mean(value: Any, valid) -> str:
    """ " (did you mean 'nmodel'?)" for a near-miss of one of ``valid``, else empty."""
    close = difflib.get_close_matches(value, list(valid), n=1) if isinstance(value, str) else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def _choice(config: Config, name: str, valid: Mapping[str, Any]) -> None:
    value = getattr(config, name)
    if not isinstance(value, str) or value not in valid:
        hint = f". {unregistered_hint()}" if valid is MODELS else ""
        raise ConfigError(f"{name} must be one of {', '.join(valid)}; got {_show(value)}{did_you_mean(value, valid)}"
                          f"{hint}")


def _integer(config: Config, name: str, low: int, high: int | None = None) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer; got {_show(value)} ({type(value).__name__})")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name} must be {bound}; got {_show(value)}")


def _number(config: Config, name: str, low: float | None = None, high: float | None = None,
            below: float | None = None) -> None:
    """A finite number, greater than 0 unless ``low`` is given; at most ``high``; less than ``below``."""
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number; got {_show(value)} ({type(value).__name__})")
    if not math.isfinite(value) or (value <= 0 if low is None else value < low) \
            or (high is not None and value > high) or (below is not None and value >= below):
        bounds = ["greater than 0" if low is None else f"at least {low:g}"]
        bounds += [f"at most {high:g}"] if high is not None else []
        bounds += [f"less than {below:g}"] if below is not None else []
        raise ConfigError(f"{name} must be a finite number {' and '.join(bounds)}; got {_show(value)}")
    object.__setattr__(config, name, float(value))
