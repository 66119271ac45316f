"""One run specification: a run's parameters from any entry point, validated once, every path resolved once.

The train notebook's parameters cell, ``mnistlab train``, a params YAML file and the sweep all
go through ``RunSpec.from_params``: it refuses unknown names, builds the validated ``Config``
(the training identity) and resolves the run's paths by the one rule of ``mnistlab.paths``
(relative to the project root). ``RunSpec.to_params`` gives back the parameters that make it again,
which is what a sweep hands papermill. ``parameters()`` is the notebook's parameters cell as data;
a test holds the two together.

What only the machine that trains can check (is the device there, is the data intact, can the
records be written, is there memory and disk for it) is ``runner.check``'s; ``runner.run`` trains.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from . import paths
from .config import Config, ConfigError, _show, cell_name, did_you_mean, seed_name

# Where a run writes, beside its Config: name -> (type, default, meaning). The notebook's parameters cell says the same.
OPTIONS: dict[str, tuple[type, Any, str]] = {
    "seeds": (list, [], "several seeds trained in one go, e.g. [0, 1, 2]; empty: just seed"),
    "out_dir": (str, "reports/records", "folder of the record JSON files (and TensorBoard logs)"),
    "run_name": (str, "", "record file name stem; empty: <model>-hs<hidden_size>; -seed<seed> is appended"),
    "checkpoint": (str, "", "file saved after the first and the last epoch and once a minute between, and "
                   "resumed from; empty: none"),
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
    given: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)  # from_params' parameters

    @classmethod
    def from_params(cls, **params: Any) -> RunSpec:
        """Validate the train notebook's parameters (papermill's, a params file's, the CLI's, the sweep's)."""
        known = parameters()
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ConfigError(f"unknown parameter(s) {', '.join(_show(u) for u in unknown)}"
                              f"{did_you_mean(unknown[0], known)}; valid: {', '.join(known)}")
        values = {name: params.get(name, default) for name, (_, default) in known.items()}
        # A notebook always has a seed (its default); only another value beside seeds is a contradiction.
        seeds = tuple(seed_list(values.pop("seeds")))
        if seeds and values["seed"] != known["seed"][1]:
            raise ConfigError(f"seed ({_show(values['seed'])}) and seeds ({_show(list(seeds))}) are both set; give one")
        seeds = seeds or (values["seed"],)
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
        run_name = values["run_name"] or cell_name(config.model, config.hidden_size)
        if set(run_name) & set("/\\\0") or run_name.startswith("."):
            raise ConfigError(f"run_name is a file name: no '/', '\\' or leading '.'; got {_show(run_name)}")
        checkpoint = paths.resolve(values["checkpoint"]) if values["checkpoint"] else None
        _check_name_length(run_name, seeds)
        for name, path in (("out_dir", paths.resolve(values["out_dir"])), ("checkpoint", checkpoint)):
            if path is not None:
                _check_path_length(name, path, seeds if name == "checkpoint" else ())
        return cls(config=config, seeds=seeds, out_dir=paths.resolve(values["out_dir"]), run_name=run_name,
                   checkpoint=checkpoint, tensorboard=values["tensorboard"], cuda_graphs=values["cuda_graphs"],
                   given=dict(params))

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any]) -> RunSpec:
        """From a notebook's globals after papermill injected its parameters: a mistyped name (``-p hiddensize 20``)
        is refused here, where papermill would only warn and train with the default."""
        names = {name: value for name, value in namespace.items() if _user_variable(name, value)}
        return cls.from_params(**names)

    def __repr__(self) -> str:
        # Shown in published notebooks: paths relative to the project root where inside it (a sweep also cuts its
        # site's folder from the outputs it publishes: lab.execute.publishable).
        checkpoint = paths.relative(self.checkpoint) if self.checkpoint else None
        return (f"RunSpec(config={self.config!r}, seeds={list(self.seeds)}, out_dir={paths.relative(self.out_dir)!r}, "
                f"run_name={self.run_name!r}, checkpoint={checkpoint!r}, tensorboard={self.tensorboard}, "
                f"cuda_graphs={self.cuda_graphs})")

    def to_params(self) -> dict[str, Any]:
        """The train-notebook parameters that make this run again (``from_params(**spec.to_params()) == spec``):
        those it was given, in their order, with its seeds as ``seeds`` and its paths relative to the project
        root where inside it. What a sweep hands papermill, and what its notebook publishes."""
        own = {"seeds": list(self.seeds), "out_dir": paths.relative(self.out_dir), "run_name": self.run_name}
        if self.checkpoint or "checkpoint" in self.given:
            own["checkpoint"] = paths.relative(self.checkpoint) if self.checkpoint else ""
        params = {}
        for name, value in self.given.items():
            if name in ("out_dir", "run_name", "checkpoint"):
                params.setdefault("seeds", own["seeds"])  # a seed given as seed: in its place, before the paths
            if name != "seed":
                params[name] = own.get(name, value)
        return {**params, **own}

    def with_seeds(self, seeds: list[int] | tuple[int, ...], checkpoint: Path | None) -> RunSpec:
        """This run for some of its ``seeds`` (one notebook of a sweep), its checkpoint at ``checkpoint``."""
        if not seeds or not set(seeds) <= set(self.seeds):
            raise ValueError(f"seeds {list(seeds)} are not among this run's {list(self.seeds)}")
        config = Config(**{**self.config.to_dict(), "seed": seeds[0]})
        return replace(self, config=config, seeds=tuple(seeds), checkpoint=checkpoint)

    def configs(self) -> list[Config]:
        """One Config per seed."""
        return [Config(**{**self.config.to_dict(), "seed": seed}) for seed in self.seeds]

    def name(self, seed: int) -> str:
        return seed_name(self.run_name, seed)

    def record_path(self, seed: int) -> Path:
        return self.out_dir / f"{self.name(seed)}.json"

    def checkpoint_path(self, seed: int) -> Path | None:
        """The checkpoint file of one seed: the given path itself when there is one seed."""
        if self.checkpoint is None or len(self.seeds) == 1:
            return self.checkpoint
        return self.checkpoint.with_name(seed_name(self.checkpoint.stem, seed) + self.checkpoint.suffix)

    def tensorboard_dir(self, seed: int) -> Path | None:
        return self.out_dir / "tensorboard" / self.name(seed) if self.tensorboard else None

    def at_once(self) -> int:
        """How many seeds train at the same time: all of a stack, else one after another."""
        return len(self.seeds) if self.stacked() else 1

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


def _field_type(annotation: Any) -> type:
    return {"str": str, "int": int, "float": float, "bool": bool}.get(str(annotation).split(" ")[0], str)


def seed_list(seeds: Any) -> list[int]:
    """A list of seeds, or text such as ``0,1,2`` (papermill's ``-p seeds 0,1,2``, ``--seeds``), checked: whole
    numbers, distinct, each a valid ``Config.seed``. Empty when none are given."""
    if isinstance(seeds, str):
        try:
            seeds = [int(part) for part in seeds.split(",") if part.strip()]
        except ValueError:
            raise ConfigError(f"seeds must be a list of whole numbers such as [0, 1, 2]; got {_show(seeds)}") from None
    if not isinstance(seeds, (list, tuple)):
        raise ConfigError(f"seeds must be a list of whole numbers such as [0, 1, 2]; got {_show(seeds)}")
    if len(set(map(repr, seeds))) != len(seeds):
        raise ConfigError(f"seeds must be distinct; got {_show(seeds)}")
    for seed in seeds:
        Config(seed=seed)  # each seed validated as Config.seed is
    return list(seeds)


def _user_variable(name: str, value: Any) -> bool:
    """A name a notebook's parameters cell or papermill's injected cell defined (not IPython's own)."""
    import types

    return not (name.startswith("_") or name in ("In", "Out", "get_ipython", "exit", "quit", "open")
                or isinstance(value, (types.ModuleType, types.FunctionType, type)))


# A name longer than this is refused by the usual file systems (ext4, XFS, btrfs, tmpfs, NFS: 255 bytes per name).
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096  # PATH_MAX on Linux
# What the files a run makes add to <run_name>-seed<seed>: the longest is a sweep's manifest while it is
# written, "." + ".<name>.done" + ".XXXXXXXX.tmp" (atomic.atomic_write_bytes), 20 bytes; 24 leaves room.
NAME_OVERHEAD = 24


def _check_name_length(run_name: str, seeds: tuple[int, ...]) -> None:
    longest = max(len(seed_name(run_name, seed).encode()) for seed in seeds)
    if longest + NAME_OVERHEAD > MAX_NAME_BYTES:
        raise ConfigError(f"run_name {_show(run_name)} is too long: the files a run makes from it "
                          f"(<run_name>-seed<seed> and up to {NAME_OVERHEAD} bytes more) must fit a file system's "
                          f"{MAX_NAME_BYTES} bytes per name, so <run_name>-seed<seed> can be at most "
                          f"{MAX_NAME_BYTES - NAME_OVERHEAD} bytes; it is {longest}. Shorten it (in a sweep, the "
                          "params file's name)")


def _check_path_length(name: str, path: Path, seeds: tuple[int, ...]) -> None:
    suffix = max((len(seed_name("", seed)) for seed in seeds), default=0) + NAME_OVERHEAD if seeds else 0
    for part in path.parts:
        if len(part.encode()) + (suffix if part == path.name else 0) > MAX_NAME_BYTES:
            raise ConfigError(f"{name}: the name {_show(part)} is longer than the {MAX_NAME_BYTES} bytes a file system "
                              "allows per name (with what a run appends to it); shorten it")
    if len(str(path).encode()) + MAX_NAME_BYTES > MAX_PATH_BYTES:
        raise ConfigError(f"{name}: {_show(str(path))} is {len(str(path).encode())} bytes; with the files a run "
                          f"makes in it, it would pass the {MAX_PATH_BYTES} bytes a path may have; shorten it")
