"""The settings of one training run, validated on construction, the run's training identity, and its name.

How a run is named is said here once (``cell_name``, ``seed_name``): ``wmodel-hs1000-seed0``.

No torch here: a params file is checked in well under a second. What can only be checked on the
machine that trains (is CUDA there, is the data intact, can the output be written) is checked by
``mnistlab.spec`` just before training.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

MODELS = {
    "nmodel": "fc1 -> ReLU -> fc2 (plain)",
    "bmodel": "fc1 -> BatchNorm1d -> ReLU -> fc2 (batch norm before the non-linearity)",
    "wmodel": "weight-normalised fc1 -> ReLU -> weight-normalised fc2 (w = g v / ||v||)",
}
# The classic split of the 60,000 official training images: the first 50,000 train, the last 10,000 validate.
TRAIN_SIZE, FULL_TRAIN_SIZE = 50_000, 60_000
MAX_HIDDEN_SIZE = 100_000  # 784 x 100k floats is 300 MB of weights; more is a typo, not a study
MAX_SEED = 2**32 - 1  # numpy's and most tools' seed range; torch's is wider
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
# Where a run trains, not what it trains: these may differ between a checkpoint or record and its run.
PLACE_KEYS = ("device", "data_dir")
# Defaults of settings that older records lack, so that their identity still compares.
_OLDER_DEFAULTS = {"validation": True}


class ConfigError(ValueError):
    """A setting has the wrong type or an invalid value; the message names it."""

    def _render_traceback_(self) -> list[str]:
        # IPython's hook (notebook kernels, so papermill too): the message is the whole story, not the stack
        # of frames that found it.
        return [f"{type(self).__name__}: {self}"]


@dataclass(frozen=True)
class Config:
    """One run of the study. Defaults are the paper protocol (README.md, "What it does")."""

    model: str = "wmodel"  # one of nmodel, bmodel, wmodel
    hidden_size: int = 1000  # hidden units H
    epochs: int = 100  # passes over the training images
    lr: float = 0.01  # Adam's initial learning rate
    step_size: int = 20  # epochs between learning-rate decays (StepLR)
    gamma: float = 0.1  # learning-rate decay factor
    batch_size: int = 100  # images per Adam step
    train_size: int = TRAIN_SIZE  # first N of the training images
    validation: bool = True  # hold the last 10,000 images out; False: train on all 60,000, as the HW5 report did
    seed: int = 0  # initialisation and shuffling
    device: str = "auto"  # auto (CUDA when present), cpu, cuda, cuda:N, mps
    data_dir: str | None = None  # None: $MNISTLAB_DATA or data/ in the project

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or self.model not in MODELS:
            raise ConfigError(f"model must be one of {', '.join(MODELS)}; got {_show(self.model)}")
        _integer(self, "hidden_size", low=1, high=MAX_HIDDEN_SIZE)
        _integer(self, "epochs", low=1, high=100_000)
        _number(self, "lr")
        _integer(self, "step_size", low=1)
        _number(self, "gamma")
        if not isinstance(self.validation, bool):
            raise ConfigError(f"validation must be true or false; got {_show(self.validation)}")
        _integer(self, "train_size", low=1, high=self.max_train_size)
        _integer(self, "batch_size", low=2 if self.model == "bmodel" else 1, high=self.train_size)
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
        """What the run trains: every setting but where it trains. Two runs with the same identity
        train the same network the same way, so a checkpoint or record of one belongs to the other."""
        return {key: value for key, value in self.to_dict().items() if key not in PLACE_KEYS}

    def differences(self, saved: Mapping[str, Any]) -> list[str]:
        """The training settings in which a saved config (a checkpoint's or record's) differs from this one."""
        saved = {**_OLDER_DEFAULTS, **saved}
        return [key for key, value in self.identity().items() if saved.get(key) != value]

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


def _integer(config: Config, name: str, low: int, high: int | None = None) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer; got {_show(value)} ({type(value).__name__})")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name} must be {bound}; got {_show(value)}")


def _number(config: Config, name: str) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number; got {_show(value)} ({type(value).__name__})")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a finite number greater than 0; got {_show(value)}")
    object.__setattr__(config, name, float(value))
