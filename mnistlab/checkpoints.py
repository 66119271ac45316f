"""Checkpoints: one file per training process's networks, saved while it trains and resumed from.

A checkpoint holds everything the next epoch depends on: the weights (one network's or a stack's),
Adam's state, the schedule, every random generator (shuffling, augmentation, and torch's global one,
which dropout draws from), and each seed's record so far. It names its configs and the training
code that wrote it (``origin.code``'s fingerprint): a checkpoint of another run, or of other training
code not checked to give the same numbers (``same_numbers``), is refused, never resumed silently.
Files are written atomically and read with ``weights_only=True`` (a crafted pickle runs nothing).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import origin
from .atomic import atomic_write_bytes
from .config import Config
from .paths import relative

if TYPE_CHECKING:
    from .records import Record
    from .spec import RunSpec

FORMAT = "mnistlab.checkpoint/4"  # 4: a stack's tensors under its network's own names, and the generators of
#                                   augmentation and dropout


class CheckpointError(RuntimeError):
    """A checkpoint cannot be resumed: unreadable, or written by another config or other training code."""


def save(path: str | os.PathLike, configs: list[Config], code: str, module: torch.nn.Module,
         optimizer: torch.optim.Optimizer, scheduler, generators: list[torch.Generator], records: list[Record]) -> None:
    """Write the checkpoint of a training process atomically (``code``: its training code's fingerprint)."""
    buffer = io.BytesIO()
    torch.save({
        "format": FORMAT,
        "code": code,
        "configs": [c.to_dict() for c in configs],
        "model": module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "generators": [g.get_state() for g in generators],
        "global_rng": _global_rng(module),
        "records": [record.checkpoint_state() for record in records],
    }, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint's contents; CheckpointError when it is unreadable or not of this format."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{path}: cannot read checkpoint ({error}); delete it to start over") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint (an older mnistlab's, or another program's); "
                              "delete it to start over")
    return state


def mismatch(state: dict[str, Any], configs: list[Config], code: dict[str, Any]) -> str | None:
    """Why a checkpoint's run is not ``configs`` trained by ``code`` (``origin.code()``), or None when it is."""
    saved = state["configs"]
    changed = sorted({key for config, old in zip(configs, saved) for key in config.differences(old)})
    if len(saved) != len(configs) or changed:
        return f"written by a run with different {', '.join(changed) or 'seeds'}"
    if not origin.same_numbers(state.get("code"), code):  # this code, or code checked to give its numbers
        return (f"written by other training code (fingerprint {str(state.get('code'))[:12]}, this code "
                f"{code['fingerprint'][:12]}); its epochs and this code's would make one record")
    return None


def resume(path: str | os.PathLike, configs: list[Config], code: dict[str, Any], module: torch.nn.Module,
           optimizer: torch.optim.Optimizer, scheduler, generators: list[torch.Generator],
           records: list[Record]) -> int:
    """Load a checkpoint into a freshly set-up training process; return the epochs it had trained."""
    state = read(path, map_location=generators[0].device)
    why = mismatch(state, configs, code)
    if why:
        raise CheckpointError(f"{path}: {why}; delete it or use another checkpoint path")
    lr = optimizer.param_groups[0]["lr"]
    module.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if torch.is_tensor(lr):  # keep the graph's device tensor, holding the saved rate
        lr.fill_(float(optimizer.param_groups[0]["lr"]))
        optimizer.param_groups[0]["lr"] = lr
    scheduler.load_state_dict(state["scheduler"])
    for generator, generator_state in zip(generators, state["generators"]):
        generator.set_state(generator_state.cpu())
    _set_global_rng(state["global_rng"])
    done = max(len(saved["history"]) for saved in state["records"])
    for record, saved in zip(records, state["records"]):
        record.restore(saved)
        record.resumed_after_epoch, record.resumed_from = done, _portable(path)  # this process trains the rest
    return done


def owned_by(spec: RunSpec, path: str | os.PathLike) -> bool:
    """Whether a checkpoint was written by ``spec``'s run (one of its seeds, or the stack of them all) with this
    training code; any other one would be refused on resume."""
    try:
        state = read(path)
    except CheckpointError:  # truncated, foreign, or not a checkpoint at all
        return False
    code = origin.code()
    mine = spec.configs()
    if len(state["configs"]) == 1:
        return any(mismatch(state, [config], code) is None for config in mine)
    return mismatch(state, mine, code) is None


def _global_rng(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """torch's global generators, which dropout draws from: the CPU's, and the CUDA device's it trains on."""
    states = {"cpu": torch.get_rng_state()}
    device = next(iter(module.state_dict().values())).device
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _set_global_rng(states: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(states["cpu"].cpu())
    if "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"].cpu())


def _portable(path: str | os.PathLike) -> str:
    """``path`` as a record may say it: relative to the project root, else its file name (no machine path)."""
    shown = relative(path)
    return Path(path).name if Path(shown).is_absolute() else shown
