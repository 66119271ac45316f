"""Params files: YAML mappings of train-notebook parameters, read strictly, one run per file and seed.

A params file is data a colleague (or a stranger) hands you, so it is read defensively: a regular
file (never a FIFO or a device, checked as it is read), at most 64 KiB counted as it is read, no
anchors or aliases (a few hundred bytes of aliases expand to gigabytes), no duplicated keys (YAML
would silently keep the last), and numbers as YAML 1.2 reads them (``1e-3`` is a float, not the
string YAML 1.1 makes of it). Every problem names the file and the key.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .. import paths
from ..atomic import ReadError, read_regular
from ..config import ConfigError
from ..spec import RunSpec

MAX_BYTES = 64 * 1024
SET_BY_SWEEP = ("out_dir", "run_name", "checkpoint")  # each run's files live under the sweep's --out


class ParamsError(ConfigError):
    """A params file or sweep argument is invalid; nothing has run. The message names the file and key."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without anchors, aliases or duplicated keys, with YAML 1.2's floats."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.constructor.ConstructorError(
                None, None, "anchors and aliases (&name, *name) are not allowed in a params file", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.yaml_implicit_resolvers = {key: list(value)
                                        for key, value in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_StrictLoader.add_implicit_resolver(  # YAML 1.2 floats: 1e-3, 1E5, -2.5e+3 (1.1 wants a dot and a sign)
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$"),
    list("-+0123456789."))


def read_text(file: Path, limit: int, what: str) -> str:
    """A small text file given to the sweep (a params file, a folder's README.md, a cluster file), checked as it is
    read (``atomic.read_regular``): a regular file, of at most ``limit`` bytes, in UTF-8. A FIFO would block the
    sweep for ever and ``/dev/zero`` fill the memory, and both have a size of 0; ParamsError for either."""
    try:
        return read_regular(file, limit).decode()
    except FileNotFoundError:
        raise ParamsError("no such file") from None
    except ReadError as error:
        if error.errno == errno.EFBIG:
            raise ParamsError(f"more than {limit} bytes; {what} is at most {limit} bytes") from None
        raise ParamsError(f"it is {error.kind or 'not a regular file'}; {what} must be a regular file") from None
    except OSError as error:
        raise ParamsError(f"cannot read it ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise ParamsError(f"not UTF-8 text; {what} must be") from None


def read(file: Path, reserved: tuple[str, ...] = SET_BY_SWEEP) -> dict[str, Any]:
    """A params file's parameters; ParamsError when it is not a small, plain mapping of names to values, or sets
    one of ``reserved`` (a sweep's: what it sets for each run; ``mnistlab train -f`` reserves none)."""
    try:
        text = read_text(file, MAX_BYTES, "a params file")
        params = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a safe loader, made stricter)
    except yaml.MarkedYAMLError as error:
        where = f"line {error.problem_mark.line + 1}: " if error.problem_mark else ""
        raise ParamsError(f"not a valid params file: {where}{error.problem}") from None
    except FileNotFoundError:
        raise ParamsError("no such file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ParamsError(f"cannot read it as YAML ({_short(error)})") from None
    if not isinstance(params, dict) or not all(isinstance(key, str) for key in params):
        raise ParamsError("expected a mapping of train-notebook parameter names to values; "
                          f"got {type(params).__name__}")
    clash = sorted(set(params) & set(reserved))
    if clash:
        raise ParamsError(f"{', '.join(clash)} is set by the sweep for each run; remove it from the file")
    return params


@dataclass(frozen=True)
class Job:
    """One params file of a sweep: one notebook that trains all its seeds."""

    file: Path
    params: dict[str, Any]  # as written in the file, seeds included
    spec: RunSpec  # validated, with the sweep's out_dir, run_name and checkpoint

    @property
    def name(self) -> str:
        return self.spec.run_name


def jobs(params: list[Path], out: Path, seeds: list[int] | None = None) -> list[Job]:
    """Every params file read and validated before anything runs; one ParamsError listing every problem."""
    files = []
    for path in params:
        found = sorted(path.glob("*.yaml")) if path.is_dir() else [path] if path.exists() else []
        if not found:  # each file found is checked as it is read (``read_text``): a FIFO among them, say
            raise ParamsError(f"{paths.relative(path)}: no params file (a folder of *.yaml, or one .yaml file)")
        files += found
    result, errors, owners = [], [], {}
    for file in files:
        try:
            job = _job(file, out, seeds)
        except ConfigError as error:  # ParamsError too
            errors.append(f"{paths.relative(file)}: {error}")
            continue
        if job.name in owners:  # both would write out/runs/<name>.*: refuse rather than overwrite
            other = paths.relative(owners[job.name])
            errors.append(f"{paths.relative(file)}: run name {job.name!r} is also {other}'s; "
                          "rename one file, or sweep them into different --out folders")
        owners.setdefault(job.name, file)
        result.append(job)
    if errors:
        raise ParamsError("\n".join(errors))
    return result


def _job(file: Path, out: Path, seeds: list[int] | None) -> Job:
    params = read(file)
    if seeds is not None and ("seed" in params or "seeds" in params):
        raise ParamsError("seed is set both here and by --seeds; remove one")
    given = {**params, **({"seeds": list(seeds)} if seeds is not None else {})}
    spec = RunSpec.from_params(**given, out_dir=str(out / "runs"), run_name=file.stem,
                               checkpoint=str(out / "checkpoints" / f"{file.stem}.pt"))
    data_dir = spec.config.data_dir
    if data_dir is not None and not paths.resolve(data_dir).is_dir():
        raise ParamsError(f"data_dir {params['data_dir']!r} is not a folder (relative paths are taken from the "
                          "project root)")
    return Job(file=file, params=given, spec=spec)


def identity(config) -> str:
    """A run's training identity (``Config.identity``, its seed included) as a key."""
    return repr(sorted(config.identity().items()))


def same_runs(todo: list[Job]) -> list[str]:
    """Notes on params files that train a run another file trains too (the same settings and seed; where they train
    may differ, as when one asks for a GPU): each is trained, and the tables count the run once (``cells.included``),
    where two records of it counted as two seeds."""
    first, notes = {}, []
    for job in todo:
        for config in job.spec.configs():
            other = first.setdefault(identity(config), job)
            if other is not job:
                notes.append(f"{paths.relative(job.file)} trains seed {config.seed} with the same settings as "
                             f"{paths.relative(other.file)}: the tables count that run once")
    return notes


def _short(error: Exception) -> str:
    return " ".join(str(error).split())[:300]
