"""The output folder of a sweep: one that a sweep may write into, and one sweep at a time in it.

``check_out`` refuses, before anything is written, an output folder whose files a sweep would
overwrite or mix with its own: the project root or a folder above it, the sources (``notebooks/``,
``params/``, the package, ``.git``) or a folder inside them, and an existing folder that no sweep made
(it holds neither ``sweep.json`` nor ``.sweep.lock`` nor a finished run's manifest in ``runs/``, as a
study published run by run does) unless it is empty or holds only ``runs/`` and ``checkpoints/`` folders
without a file this sweep writes; ``other_files=True`` (``--allow-other-files``) lets a sweep into a
folder of other files, never into the sources.

A folder a sweep writes into (``runs/``, ``checkpoints/``, ``_static/``, ``runs/tensorboard/``) that is a link is
refused: the sweep would write and delete files wherever it points.

``<out>/.sweep.lock`` is held with ``flock`` for the whole sweep; it is opened without following a link. The
kernel lets go of it when the holder dies, however it dies, so a lock left by a killed sweep is stale by
construction: the next sweep takes it and says whose it was. The file's content (pid, host, start time) is only
there to name the holder to a sweep that is refused.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import stat
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from .. import paths
from .params import ParamsError

LOCK_NAME = ".sweep.lock"
MADE_BY_A_SWEEP = ("sweep.json", LOCK_NAME)  # a folder holding either was made by a sweep (the lock comes first)
RUN_MANIFESTS = "runs/.*.done"  # written last by a sweep for each run it finished: a published study's runs
SWEEP_FOLDERS = ("runs", "checkpoints")  # what a sweep writes into besides its own top-level files
SOURCES = ("notebooks", "params", ".git")  # of the project root; the package's own folder is added
# The folders under --out a sweep writes into: none of them may be a link (the top-level files are written by rename,
# which replaces a link rather than writing through it; .sweep.lock is opened without following one).
LINKS_REFUSED = ("runs", "checkpoints", "_static", "runs/tensorboard")


def check_out(out: Path, *, sources: Iterable[Path] = (), writes: Iterable[Path] = (), other_files: bool = False,
              need: int = 0) -> None:
    """Refuse ``out`` unless a sweep may write there (see the module's docstring); reads, writes nothing.

    ``sources``: more folders never to write into or below (e.g. this sweep's params folders and notebooks),
    or files whose folder is never to be ``out`` itself (a params file given by name). ``writes``: files
    this sweep writes under ``out``; one that exists in a folder no sweep made would be overwritten. ``need``:
    the bytes the sweep will write there, refused when its file system has less free.
    """
    shown = paths.relative(out)
    real = Path(os.path.realpath(out))
    root = Path(os.path.realpath(paths.project_root()))
    if real == root or real in root.parents:
        what = "the project root" if real == root else f"a folder above the project root ({paths.relative(root, real)})"
        raise ParamsError(f"--out {shown} is {what}: a sweep writes index.html, sweep.json, pages and runs/ there. "
                          "Sweep into a folder of its own, e.g. --out reports/<name>")
    package = Path(__file__).resolve().parents[1]
    for source in [*(root / name for name in SOURCES), package, *sources]:
        source = Path(os.path.realpath(source))
        folder = source if source.is_dir() else source.parent  # a file: only its own folder, not below it
        if real == folder or (folder == source and folder in real.parents):
            where = paths.relative(folder) if real == folder else f"inside {paths.relative(folder)}"
            raise ParamsError(f"--out {shown} is {where}, which holds the sources: the sweep's "
                              "executed notebooks, pages and records would overwrite or mix with them. Sweep into a "
                              "folder of its own, e.g. --out reports/<name>")
    existing = next(folder for folder in (real, *real.parents) if folder.exists())
    free = shutil.disk_usage(existing).free
    if need > free:
        raise ParamsError(f"--out {shown} has {_size(free)} free on its file system; this sweep writes about "
                          f"{_size(need)} there (records, checkpoints, notebooks and pages). Free some space, or "
                          "sweep into another --out")
    if not real.exists():
        return
    if not real.is_dir():
        raise ParamsError(f"--out {shown} is a file, not a folder")
    links = [name for name in LINKS_REFUSED if (real / name).is_symlink()]
    if links:
        raise ParamsError(f"--out {shown}: {', '.join(links)} is a link; a sweep writes its runs, checkpoints and "
                          "assets into these folders and never through a link (the files it points to would be "
                          "overwritten or deleted). Replace the link by a folder, or sweep into another --out")
    if other_files or made_by_a_sweep(real):
        return
    others = sorted(entry.name + ("/" if entry.is_dir() else "") for entry in real.iterdir()
                    if not (entry.name in SWEEP_FOLDERS and entry.is_dir() and not entry.is_symlink()))
    clash = sorted(paths.relative(path, real) for path in writes if path.exists() or path.is_symlink())
    if others or clash:
        listed = others or clash
        more = f" and {len(listed) - 5} more" if len(listed) > 5 else ""
        raise ParamsError(f"--out {shown} is a folder that no sweep made (no sweep.json, no finished runs), holding "
                          f"{', '.join(listed[:5])}{more}: a sweep would overwrite its files or mix its own with "
                          "them. Sweep into a new or empty folder, or pass --allow-other-files to write there anyway")


def made_by_a_sweep(folder: Path) -> bool:
    """``folder`` holds a sweep's report, its lock, or the runs it finished (a study published run by run)."""
    return (any((folder / name).exists() for name in MADE_BY_A_SWEEP)
            or next(folder.glob(RUN_MANIFESTS), None) is not None)


class LockError(ParamsError):
    """Another sweep is writing into the same output folder."""


@contextlib.contextmanager
def hold(out: Path) -> Iterator[str]:
    """Hold ``<out>/.sweep.lock`` while the block runs; yield a note on a stale lock taken over ('' if none)."""
    lock = out / LOCK_NAME
    try:
        out.mkdir(parents=True, exist_ok=True)
        # Never through a link (one planted there would have its target truncated and written over), never a FIFO
        # or device (opening one does not wait: O_NONBLOCK), and the file this process opened is the one checked.
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ParamsError(f"{paths.relative(lock)} is a link: a sweep never writes through one (it would "
                              "overwrite the file it points to). Remove the link and run again") from None
        raise ParamsError(f"cannot write to {paths.relative(out)}: {error.strerror or error}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ParamsError(f"{paths.relative(lock)} is not a regular file; remove it and run again")
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
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode(), 0)
        except OSError as error:  # a full file system: refuse now, in words, before anything runs
            raise ParamsError(f"cannot write to {paths.relative(out)}: {error.strerror or error}") from None
        try:
            yield note
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # released cleanly: an empty file is no one's
    finally:
        os.close(fd)  # closing releases the flock


def holder(out: Path) -> str:
    """Who holds ``<out>/.sweep.lock`` now, in words ("pid 412 on host since ..."); '' when no sweep does. Takes
    nothing: a dry run asks, and leaves the lock to whoever may want it."""
    try:
        fd = os.open(out / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return ""
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _describe(_read(fd))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return ""
    finally:
        os.close(fd)


def _read(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('since', '?')}"


def _size(n: float) -> str:
    from ..resources import size_text

    return size_text(n)
