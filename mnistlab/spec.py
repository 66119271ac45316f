"""One run specification: a run's parameters from any entry point, validated once, every path resolved once.

The train notebook's parameters cell, ``mnistlab train``, a params YAML file and the sweep all
go through ``RunSpec.from_params``: it refuses unknown names, builds the validated ``Config``
(the training identity) and resolves the run's paths by the one rule of ``mnistlab.paths``
(relative to the project root). ``PARAMETERS`` is the notebook's parameters cell as data;
a test holds the two together.

``RunSpec.check()`` makes the checks that need the machine that trains (is the device there, is
the data intact, can the records be written), so that a run fails before training, not after.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from . import paths
from .config import Config, ConfigError, _show

# Where a run writes, beside its Config: name -> (type, default, meaning). The notebook's parameters cell says the same.
OPTIONS: dict[str, tuple[type, Any, str]] = {
    "seeds": (list, [], "several seeds trained in one go, e.g. [0, 1, 2]; empty: just seed"),
    "out_dir": (str, "reports/records", "folder of the record JSON files (and TensorBoard logs)"),
    "run_name": (str, "", "record file name stem; empty: <model>-hs<hidden_size>; -seed<seed> is appended"),
    "checkpoint": (str, "", "file saved after each epoch and resumed from; empty: none"),
    "tensorboard": (bool, False, "also log scalars to <out_dir>/tensorboard/<run>/"),
    "cuda_graphs": (bool, False, "capture the training step as a CUDA graph (CUDA only; not yet checked on a GPU)"),
}


def parameters() -> dict[str, tuple[type, Any]]:
    """Every train-notebook parameter with its type and default, in the parameters cell's order."""
    settings = {f.name: (_field_type(f.type), f.default) for f in fields(Config)}
    settings["data_dir"] = (str, "")  # None in Config; a notebook parameter is a plain string
    return {**settings, **{name: (kind, default) for name, (kind, default, _) in OPTIONS.items()}}


@dataclass(frozen=True)
class RunSpec:
    """A validated run: its Config (seed = the first seed), the seeds, and where it writes (absolute paths)."""

    config: Config
    seeds: tuple[int, ...]
    out_dir: Path
    run_name: str  # the stem; each seed's record is <run_name>-seed<seed>.json
    checkpoint: Path | None
    tensorboard: bool
    cuda_graphs: bool = False

    @classmethod
    def from_params(cls, **params: Any) -> RunSpec:
        """Validate the train notebook's parameters (papermill's, a params file's, the CLI's, the sweep's)."""
        known = parameters()
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ConfigError(f"unknown parameter(s) {', '.join(_show(u) for u in unknown)}; valid: {', '.join(known)}")
        values = {name: params.get(name, default) for name, (_, default) in known.items()}
        # A notebook always has a seed (its default); only another value beside seeds is a contradiction.
        seeds = _seeds(values.pop("seeds"), values["seed"], explicit_seed=values["seed"] != known["seed"][1])
        settings = {name: values[name] for name in Config.field_names()}
        settings["seed"] = seeds[0]
        if settings["data_dir"] == "":
            settings["data_dir"] = None  # a notebook parameter is a string; empty means the default
        config = Config(**settings)
        for name in ("out_dir", "run_name", "checkpoint"):
            if not isinstance(values[name], str):
                raise ConfigError(f"{name} must be a string; got {_show(values[name])} ({type(values[name]).__name__})")
        if not values["out_dir"]:
            raise ConfigError("out_dir must not be empty")
        for name in ("tensorboard", "cuda_graphs"):
            if not isinstance(values[name], bool):
                raise ConfigError(f"{name} must be true or false; got {_show(values[name])}")
        run_name = values["run_name"] or f"{config.model}-hs{config.hidden_size}"
        if set(run_name) & set("/\\\0") or run_name.startswith("."):
            raise ConfigError(f"run_name is a file name: no '/', '\\' or leading '.'; got {_show(run_name)}")
        checkpoint = paths.resolve(values["checkpoint"]) if values["checkpoint"] else None
        for seed in seeds[1:]:
            Config(**{**config.to_dict(), "seed": seed})  # each seed validated as Config.seed is
        return cls(config=config, seeds=seeds, out_dir=paths.resolve(values["out_dir"]), run_name=run_name,
                   checkpoint=checkpoint, tensorboard=values["tensorboard"], cuda_graphs=values["cuda_graphs"])

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any]) -> RunSpec:
        """From a notebook's globals after papermill injected its parameters: a mistyped name (``-p hiddensize 20``)
        is refused here, where papermill would only warn and train with the default."""
        names = {name: value for name, value in namespace.items() if _user_variable(name, value)}
        return cls.from_params(**names)

    def __repr__(self) -> str:
        # Shown in published notebooks: paths as the project names them, never this machine's absolute paths.
        checkpoint = paths.relative(self.checkpoint) if self.checkpoint else None
        return (f"RunSpec(config={self.config!r}, seeds={list(self.seeds)}, out_dir={paths.relative(self.out_dir)!r}, "
                f"run_name={self.run_name!r}, checkpoint={checkpoint!r}, tensorboard={self.tensorboard}, "
                f"cuda_graphs={self.cuda_graphs})")

    def configs(self) -> list[Config]:
        """One Config per seed."""
        return [Config(**{**self.config.to_dict(), "seed": seed}) for seed in self.seeds]

    def name(self, seed: int) -> str:
        return f"{self.run_name}-seed{seed}"

    def record_path(self, seed: int) -> Path:
        return self.out_dir / f"{self.name(seed)}.json"

    def checkpoint_path(self, seed: int) -> Path | None:
        """The checkpoint file of one seed: the given path itself when there is one seed."""
        if self.checkpoint is None or len(self.seeds) == 1:
            return self.checkpoint
        return self.checkpoint.with_name(f"{self.checkpoint.stem}-seed{seed}{self.checkpoint.suffix}")

    def tensorboard_dir(self, seed: int) -> Path | None:
        return self.out_dir / "tensorboard" / self.name(seed) if self.tensorboard else None

    def check(self) -> None:
        """Refuse, before any training, what only the training machine can tell: device, data, output folder."""
        from .data import DataError, verify

        device = self.config.device
        if device.startswith("cuda") or device == "mps":
            import torch

            if device == "mps" and not torch.backends.mps.is_available():
                raise ConfigError("device 'mps' is not available on this machine; use device: auto or cpu")
            if device.startswith("cuda"):
                index = int(device.partition(":")[2] or 0)
                if index >= torch.cuda.device_count():
                    raise ConfigError(f"device {device!r} is not available on this machine "
                                      f"({torch.cuda.device_count()} CUDA devices); use device: auto or cpu")
        if self.cuda_graphs and self.config.resolved_device().type != "cuda":
            raise ConfigError(f"cuda_graphs is for CUDA devices; this run trains on {self.config.resolved_device()}")
        if self.config.data_dir is not None and not paths.resolve(self.config.data_dir).is_dir():
            raise ConfigError(f"data_dir {self.config.data_dir!r} is not a folder (relative: from the project root)")
        try:
            verify(self.config.data_dir)
        except DataError as error:
            raise ConfigError(f"data_dir: {error}") from None
        for folder in [self.out_dir] + ([self.checkpoint.parent] if self.checkpoint else []):
            _check_writable(folder)

    def stacked(self) -> bool:
        """Train the seeds together as one stack of models: on CUDA, where one batched product per layer
        replaces K small ones (on a CPU it gains nothing, and separate runs stay bit-identical to one
        seed alone), and whenever the step is captured as a CUDA graph."""
        if self.cuda_graphs:
            return True
        return len(self.seeds) > 1 and self.config.resolved_device().type == "cuda"

    def checkpoints(self) -> list[Path]:
        """Every checkpoint file this run may write: the stack's, or one per seed."""
        if self.checkpoint is None:
            return []
        return sorted({self.checkpoint, *(self.checkpoint_path(seed) for seed in self.seeds)})

    def owns_checkpoint(self, path: str | os.PathLike) -> bool:
        """Whether a checkpoint was written by this run (by one of its seeds, or by the stack of them all)
        with this training code; any other one would be refused on resume (imports torch)."""
        from .train import CheckpointError, checkpoint_mismatch, read_checkpoint

        try:
            state = read_checkpoint(path)
        except CheckpointError:  # truncated, foreign, or not a checkpoint at all
            return False
        mine = self.configs()
        if len(state["configs"]) == 1:
            return any(checkpoint_mismatch(state, [config]) is None for config in mine)
        return checkpoint_mismatch(state, mine) is None

    def run(self, *, progress: bool = False) -> list:
        """Check, train every seed (together, when ``stacked``), save each record as soon as its seed ends;
        return the records."""
        from .data import load
        from .train import train

        self.check()
        config = self.config
        data = load(config.data_dir, device=config.resolved_device(), train_size=config.train_size,
                    validation=config.validation)  # once for every seed

        def save(record) -> None:
            record.save(self.record_path(record.config["seed"]))

        if self.stacked():
            return train(self.configs(), data=data, checkpoint=self.checkpoint, progress=progress,
                         tensorboard_dirs=[self.tensorboard_dir(seed) for seed in self.seeds],
                         cuda_graphs=self.cuda_graphs, on_end=save)
        return [train([config], data=data, checkpoint=self.checkpoint_path(config.seed), progress=progress,
                      tensorboard_dirs=[self.tensorboard_dir(config.seed)], on_end=save)[0]
                for config in self.configs()]

def _field_type(annotation: Any) -> type:
    return {"str": str, "int": int, "float": float, "bool": bool}.get(str(annotation).split(" ")[0], str)


def _seeds(seeds: Any, seed: Any, explicit_seed: bool) -> tuple[int, ...]:
    if isinstance(seeds, str):  # papermill -p seeds 0,1,2 gives a string
        try:
            seeds = [int(part) for part in seeds.split(",") if part.strip()]
        except ValueError:
            raise ConfigError(f"seeds must be a list of whole numbers such as [0, 1, 2]; got {_show(seeds)}") from None
    if not isinstance(seeds, (list, tuple)):
        raise ConfigError(f"seeds must be a list of whole numbers such as [0, 1, 2]; got {_show(seeds)}")
    if not seeds:
        return (seed,)
    if explicit_seed:
        raise ConfigError(f"seed ({_show(seed)}) and seeds ({_show(seeds)}) are both set; give one")
    if len(set(map(repr, seeds))) != len(seeds):
        raise ConfigError(f"seeds must be distinct; got {_show(seeds)}")
    return tuple(seeds)  # each is validated as Config.seed


def _user_variable(name: str, value: Any) -> bool:
    """A name a notebook's parameters cell or papermill's injected cell defined (not IPython's own)."""
    import types

    return not (name.startswith("_") or name in ("In", "Out", "get_ipython", "exit", "quit", "open")
                or isinstance(value, (types.ModuleType, types.FunctionType, type)))


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ConfigError(f"cannot write to {paths.relative(folder)!r}: {error.strerror or error}") from None

