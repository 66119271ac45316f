"""Writing a file so that readers see either the old one or the whole new one, and failing in words.

Everything mnistlab writes (records, checkpoints, notebooks, pages, manifests, ``sweep.json``) goes
through ``atomic_write_bytes``: a temporary file beside the target, fsync, rename. A write that fails
raises ``WriteError`` naming the file, the cause and what to do, and leaves the old file as it was.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # reading the umask means setting it; put it straight back


class WriteError(OSError):
    """A file could not be written (a full or read-only file system, a name too long, no permission). An
    ``OSError`` with the same errno, whose message names the file, the cause and what to do; the file as it
    was before (if any) is untouched."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


_WRITE_ADVICE = {errno.ENOSPC: "the file system is full: free some space and run again",
                 errno.EDQUOT: "the disk quota is used up: free some space and run again",
                 errno.EROFS: "the file system is read-only: write elsewhere",
                 errno.ENAMETOOLONG: "a name in the path is longer than the file system allows: shorten it",
                 errno.EACCES: "no permission to write there: write elsewhere",
                 errno.EPERM: "no permission to write there: write elsewhere"}


def write_error(error: OSError, path: str | os.PathLike) -> WriteError:
    """``error`` (raised writing ``path``) as a ``WriteError`` naming the file relative to the project root."""
    from .paths import relative

    advice = _WRITE_ADVICE.get(error.errno)
    cause = error.strerror or str(error) or type(error).__name__
    return WriteError(error.errno, f"cannot write {relative(path)}: {cause}" + (f" ({advice})" if advice else ""),
                      str(path))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` so that readers see either the old file or the whole new one."""
    return atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` under a temporary name beside ``path`` and rename it; ``WriteError`` when it cannot."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; published files must be readable by a web server
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(error, WriteError):
            raise
        raise write_error(error, path) from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path
