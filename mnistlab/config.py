"""The settings of one training run, validated on construction."""

from __future__ import annotations

import math
import os
from pathlib import Path
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from .data import TRAIN_SIZE
from .models import MODELS


class ConfigError(ValueError):
    """A setting has the wrong type or an invalid value; the message names it."""


@dataclass(frozen=True)
class Config:
    """One run of the study. Defaults are the paper protocol (PROTOCOL.md)."""

    model: str = "wmodel"  # one of nmodel, bmodel, wmodel
    hidden_size: int = 1000  # hidden units H
    epochs: int = 100  # passes over the training images
    lr: float = 0.01  # Adam's initial learning rate
    step_size: int = 20  # epochs between learning-rate decays (StepLR)
    gamma: float = 0.1  # learning-rate decay factor
    batch_size: int = 100  # images per Adam step
    train_size: int = TRAIN_SIZE  # first N of the 50k training images
    seed: int = 0  # initialisation and shuffling
    device: str = "auto"  # auto (CUDA when present), cpu, cuda, cuda:N
    data_dir: str | None = None  # None: $MNISTLAB_DATA or data/

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"model must be one of {', '.join(MODELS)}; got {self.model!r}")
        _integer(self, "hidden_size", low=1)
        _integer(self, "epochs", low=1)
        _number(self, "lr", positive=True)
        _integer(self, "step_size", low=1)
        _number(self, "gamma", positive=True)
        _integer(self, "batch_size", low=2 if self.model == "bmodel" else 1)
        _integer(self, "train_size", low=1, high=TRAIN_SIZE)
        _integer(self, "seed", low=0)
        if not isinstance(self.device, str):
            raise ConfigError(f"device must be a string such as 'auto', 'cpu' or 'cuda'; got {self.device!r}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError:
                raise ConfigError(f"device must be 'auto' or a torch device such as 'cpu', 'cuda', 'cuda:1'; "
                                  f"got {self.device!r}") from None
        if self.data_dir is not None:
            if not isinstance(self.data_dir, (str, os.PathLike)) or not str(self.data_dir):
                raise ConfigError(f"data_dir must be a path or None; got {self.data_dir!r}")
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """Build from a mapping, refusing unknown keys by name."""
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; valid: {', '.join(cls.field_names())}")
        return cls(**values)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def run_name(self) -> str:
        """A readable default name, e.g. ``wmodel-hs1000-seed0``."""
        return f"{self.model}-hs{self.hidden_size}-seed{self.seed}"

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


def _integer(config: Config, name: str, low: int, high: int | None = None) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer; got {value!r} ({type(value).__name__})")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name} must be {bound}; got {value}")


def _number(config: Config, name: str, positive: bool) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number; got {value!r} ({type(value).__name__})")
    if not math.isfinite(value) or (positive and value <= 0):
        raise ConfigError(f"{name} must be a finite number greater than 0; got {value}")
    object.__setattr__(config, name, float(value))


@dataclass(frozen=True)
class RunOptions:
    """Where a notebook run writes: its record, optional checkpoint and TensorBoard scalars."""

    out_dir: str = "reports/records"  # folder of record JSON files
    run_name: str = ""  # empty: Config.run_name
    checkpoint: str = ""  # file saved each epoch and resumed from; empty: none
    tensorboard: bool = False  # log scalars to runs/<run_name>/

    @property
    def record_path(self) -> str:
        return os.path.join(project_path(self.out_dir), f"{self.run_name}.json")

    @property
    def tensorboard_dir(self) -> str | None:
        return os.path.join(project_path("runs"), self.run_name) if self.tensorboard else None


def project_path(path: str) -> str:
    """A relative path taken from the project checkout, where papermill is run from; JupyterLab and the
    sweep start kernels in notebooks/, and their records and TensorBoard runs must land in the same place."""
    root = Path(__file__).resolve().parent.parent
    if os.path.isabs(path) or not (root / "pyproject.toml").is_file():
        return path
    return str(root / path)


def parse_params(**params: Any) -> tuple[Config, RunOptions]:
    """Validate the train notebook's parameters (papermill's or a params file's) into a Config and RunOptions."""
    option_names = [f.name for f in fields(RunOptions)]
    unknown = sorted(set(params) - set(Config.field_names()) - set(option_names))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {', '.join(unknown)}; "
                          f"valid: {', '.join(Config.field_names() + option_names)}")
    settings = {k: v for k, v in params.items() if k in Config.field_names()}
    if settings.get("data_dir") == "":
        settings["data_dir"] = None  # papermill parameters are typed str; empty means the default
    config = Config(**settings)
    options = {k: params.get(k, f.default) for f in fields(RunOptions) for k in [f.name]}
    for name in ("out_dir", "run_name", "checkpoint"):
        if not isinstance(options[name], str):
            raise ConfigError(f"{name} must be a string; got {options[name]!r} ({type(options[name]).__name__})")
    if not options["out_dir"]:
        raise ConfigError("out_dir must not be empty")
    if not isinstance(options["tensorboard"], bool):
        raise ConfigError(f"tensorboard must be true or false; got {options['tensorboard']!r}")
    options["run_name"] = options["run_name"] or config.run_name
    if set(options["run_name"]) & set("/\\\0") or options["run_name"].startswith("."):
        raise ConfigError(f"run_name is a file name: no '/', '\\' or leading '.'; got {options['run_name']!r}")
    return config, RunOptions(**options)
