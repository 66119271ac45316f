"""One run specification: a run's parameters from any entry point, validated once, every path resolved once.

The train notebook's parameters cell, ``mnistlab train``, a params YAML file and the sweep all
go through ``RunSpec.from_params``: it refuses unknown names, builds the validated ``Config``
(the training identity) and resolves the run's paths by the one rule of ``mnistlab.paths``
(relative to the project root). ``RunSpec.to_params`` gives back the parameters that make it again,
which is what a sweep hands papermill. ``parameters()`` is the notebook's parameters cell as data;
a test holds the two together.

``RunSpec.check()`` makes the checks that need the machine that trains (is the device there, is
the data intact, can the records be written), so that a run fails before training, not after.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from . import paths
from .atomic import WriteError
from .config import Config, ConfigError, _show, cell_name, seed_name

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
    given: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)  # from_params' parameters

    @classmethod
    def from_params(cls, **params: Any) -> RunSpec:
        """Validate the train notebook's parameters (papermill's, a params file's, the CLI's, the sweep's)."""
        known = parameters()
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ConfigError(f"unknown parameter(s) {', '.join(_show(u) for u in unknown)}; valid: {', '.join(known)}")
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
        self.check_memory()
        self.check_disk()

    def at_once(self) -> int:
        """How many seeds train at the same time: all of a stack, else one after another."""
        return len(self.seeds) if self.stacked() else 1

    def check_memory(self) -> None:
        """Refuse a run whose estimated memory (``memory_needed``) is more than the training device has free."""
        device = self.config.resolved_device()
        needed = memory_needed(self.config, self.at_once())
        if device.type == "cuda":
            import torch

            free, _ = torch.cuda.mem_get_info(device)
            where = f"{device} has {_size(free)} free"
        elif device.type == "cpu":
            free = available_memory()
            where = f"this machine has {_size(free)} available" if free is not None else ""
        else:
            free = None
        if free is not None and needed["total"] > free:
            parts = ", ".join(f"{name} {_size(value)}" for name, value in needed.items() if name != "total")
            seeds = f" for {self.at_once()} seeds trained together" if self.at_once() > 1 else ""
            raise ConfigError(f"this run needs about {_size(needed['total'])} of memory{seeds} ({parts}); {where}. "
                              f"Use a smaller batch_size (now {self.config.batch_size}) or hidden_size "
                              f"(now {self.config.hidden_size}), or a machine with more memory")

    def check_disk(self) -> None:
        """Refuse a run whose files (``disk_needed``) do not fit in the free space of the folders it writes to."""
        needed = disk_needed(self)
        places: dict[int, tuple[Path, list[str]]] = {}
        for what in needed:
            folder = self.checkpoint.parent if what == "checkpoints" else self.out_dir
            places.setdefault(os.stat(folder).st_dev, (folder, []))[1].append(what)
        for folder, names in places.values():
            free = shutil.disk_usage(folder).free
            wanted = sum(needed[name] for name in names)
            if wanted > free:
                parts = ", ".join(f"{name} {_size(needed[name])}" for name in names)
                raise ConfigError(f"{paths.relative(folder)} has {_size(free)} free; this run writes about "
                                  f"{_size(wanted)} there ({parts}). Free some space or write elsewhere (out_dir, "
                                  "checkpoint)")

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
            try:
                record.save(self.record_path(record.config["seed"]))
            except WriteError as error:  # the message, and what is kept: the finished seeds, the last checkpoint
                kept = (f"; the checkpoint {paths.relative(self.checkpoint_path(record.config['seed']) or '')} keeps "
                        "the epochs up to its last save, and the same command resumes from it"
                        if self.checkpoint else "; without a checkpoint this seed's training is lost")
                raise WriteError(error.errno, f"{error.strerror}{kept}", error.filename) from None

        if self.stacked():
            return train(self.configs(), data=data, checkpoint=self.checkpoint, progress=progress,
                         tensorboard_dirs=[self.tensorboard_dir(seed) for seed in self.seeds],
                         cuda_graphs=self.cuda_graphs, on_end=save)
        return [train([config], data=data, checkpoint=self.checkpoint_path(config.seed), progress=progress,
                      tensorboard_dirs=[self.tensorboard_dir(config.seed)], on_end=save)[0]
                for config in self.configs()]

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
EVAL_CHUNK = 5000  # mnistlab.steps.EVAL_CHUNK (a test holds them together): images per evaluation pass
_ACTIVATIONS = {"nmodel": 3, "bmodel": 5, "wmodel": 3}  # (B, H) tensors alive in a training step, forward and back


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


def parameter_count(config: Config) -> int:
    """Trainable scalars of one network (``models.count_parameters`` without building it)."""
    h = config.hidden_size
    count = 784 * h + h + h * 10 + 10
    if config.model == "bmodel":
        count += 2 * h
    if config.model == "wmodel":
        count += h + 10  # the scales g; v has the weights' shape
    return count


def memory_needed(config: Config, seeds: int = 1) -> dict[str, int]:
    """Bytes a run holds at its peak (float32), for ``seeds`` networks trained at the same time: weights,
    gradients and Adam's two moments; the activations of a training step at ``batch_size`` or of an
    evaluation pass of ``EVAL_CHUNK`` images, whichever is larger; and the data, once."""
    weights = 4 * parameter_count(config) * (2 if config.model == "wmodel" else 1)  # w = g v / |v| is a copy
    state = seeds * 4 * weights  # weights, gradients, exp_avg, exp_avg_sq
    h, b = config.hidden_size, config.batch_size
    train = 2 * 4 * b * (784 + _ACTIVATIONS[config.model] * h + 10)  # the batch and its activations, and their grads
    evaluate = 4 * EVAL_CHUNK * (784 + 2 * h + 10)
    images = (config.train_size + 20_000) * (4 * 784 + 8)  # train, validation and test, float32 images, int64 labels
    needed = {"weights, gradients and Adam state": state,
              f"activations at batch_size {b}" if train >= evaluate else f"activations of an evaluation of "
              f"{EVAL_CHUNK} images": seeds * max(train, evaluate), "the data": images}
    return {**needed, "total": sum(needed.values())}


def disk_needed(spec: RunSpec, at_once: int | None = None) -> dict[str, int]:
    """Bytes a run writes, by kind: records (predictions and history, one per seed), checkpoints (one per seed, or
    the stack's, each holding weights, Adam state and records, plus a copy while one replaces another), TensorBoard.
    ``at_once``: the seeds trained together (default ``spec.at_once()``, which may import torch to ask)."""
    config = spec.config
    record = 2 * 10_000 + 300 * config.epochs + 20_000
    needed = {"records": len(spec.seeds) * record}
    if spec.checkpoint is not None:
        at_once = at_once or spec.at_once()
        one = at_once * (3 * 4 * parameter_count(config) + record)
        needed["checkpoints"] = (len(spec.seeds) // at_once + 1) * one
    if spec.tensorboard:
        needed["tensorboard"] = len(spec.seeds) * 200 * config.epochs
    return needed


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


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ConfigError(f"cannot write to {paths.relative(folder)!r}: {error.strerror or error}") from None

