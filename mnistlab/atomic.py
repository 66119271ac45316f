"""Writing a file so that readers see either the old one or the whole new one, and failing in words; reading one
that may be hostile.

Everything mnistlab writes (records, checkpoints, notebooks, pages, manifests, ``sweep.json``) goes
through ``atomic_write_bytes``: a temporary file beside the target, fsync, rename. A write that fails
raises ``WriteError`` naming the file, the cause and what to do, and leaves the old file as it was. The
rename replaces a link planted at the target; it never writes through it.

``read_regular`` reads a file that someone else may have put there (a params file, a manifest, a record
in a report folder): through one descriptor, opened without waiting (a FIFO would block its reader for
ever), checked to be a regular file (``/dev/zero`` would be read until memory runs out), never past
``limit`` bytes (``st_size`` is 0 for both), and, with ``follow=False``, not through a link.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
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


class ReadError(OSError):
    """A file that is not one to read: a link where none may be, not a regular file, or larger than allowed. Its
    message names the file and what it is (``kind``: "a FIFO", "a link", ...)."""

    kind = ""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


_KINDS = {stat.S_ISFIFO: "a FIFO", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
          stat.S_ISSOCK: "a socket", stat.S_ISDIR: "a folder"}
CHUNK = 1 << 20


@contextlib.contextmanager
def open_regular(path: str | os.PathLike, *, follow: bool = True) -> Iterator[int]:
    """A descriptor of ``path`` checked to be a regular file (``ReadError`` else); with ``follow=False`` a link
    there is refused too. Opening never waits, not even for a FIFO's writer."""
    from .paths import relative

    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        if error.errno == errno.ELOOP and not follow:
            link = ReadError(errno.ELOOP, f"{relative(path)} is a link; it is not followed here", str(path))
            link.kind = "a link"
            raise link from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS.items() if test(mode)), "a special file")
            error = ReadError(errno.EINVAL, f"{relative(path)} is {kind}, not a regular file", str(path))
            error.kind = kind
            raise error
        yield fd
    finally:
        os.close(fd)


def read_regular(path: str | os.PathLike, limit: int | None = None, *, follow: bool = True) -> bytes:
    """The bytes of ``path``, a regular file (``open_regular``) of at most ``limit`` bytes (``ReadError`` else),
    counted as they are read."""
    from .paths import relative

    chunks, total = [], 0
    with open_regular(path, follow=follow) as fd:
        while chunk := os.read(fd, CHUNK if limit is None else min(CHUNK, limit + 1 - total)):
            total += len(chunk)
            if limit is not None and total > limit:
                raise ReadError(errno.EFBIG, f"{relative(path)} is larger than {limit} bytes", str(path))
            chunks.append(chunk)
    return b"".join(chunks)


def sha256_regular(path: str | os.PathLike, *, follow: bool = False) -> str:
    """The SHA-256 of ``path``, a regular file not reached through a link (``open_regular``), read in chunks."""
    digest = hashlib.sha256()
    with open_regular(path, follow=follow) as fd:
        while chunk := os.read(fd, CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
