"""One sweep at a time per output folder.

``<out>/.sweep.lock`` is held with ``flock`` for the whole sweep. The kernel lets go of it when
the holder dies, however it dies, so a lock left by a killed sweep is stale by construction: the
next sweep takes it and says whose it was. The file's content (pid, host, start time) is only
there to name the holder to a sweep that is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from .. import paths
from .params import ParamsError

LOCK_NAME = ".sweep.lock"


class LockError(ParamsError):
    """Another sweep is writing into the same output folder."""


@contextlib.contextmanager
def hold(out: Path) -> Iterator[str]:
    """Hold ``<out>/.sweep.lock`` while the block runs; yield a note on a stale lock taken over ('' if none)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise ParamsError(f"cannot write to {paths.relative(out)}: {error.strerror or error}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockError(f"{paths.relative(out)} is in use by another sweep ({_describe(_read(fd))}); "
                            "wait for it to finish, or sweep into another --out") from None
        previous = _read(fd)
        note = f"took over the lock of a sweep that ended without releasing it ({_describe(previous)})" \
            if previous else ""
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield note
        finally:
            os.ftruncate(fd, 0)  # released cleanly: an empty file is no one's
    finally:
        os.close(fd)  # closing releases the flock


def _read(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('since', '?')}"
