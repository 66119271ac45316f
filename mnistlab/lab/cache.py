"""Up to date or not: one manifest per output, written last, that binds what was asked to the files it made.

A run or page is up to date when its manifest exists, names the same key (the training identity
of its seeds, or the inputs of a page) and every file it lists still has the SHA-256 it had when
the work finished. The manifest is deleted before any work starts and written atomically after
everything (notebook, HTML, records) is in place, so a kill at any moment in between leaves no
manifest, and the next sweep redoes the work: file presence and modification times decide nothing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text, read_regular, sha256_regular

RENDERER = "mnistlab.lab.render"  # turns every page into HTML: its code and templates are part of every page's key


def key(value: Any) -> str:
    """A short, stable digest of a JSON-able value (what was asked of a run or page)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:32]


MAX_MANIFEST = 1 << 20  # bytes; a manifest lists a few files


def file_hash(path: Path, follow: bool = False) -> str:
    """The SHA-256 of a regular file (``ReadError``, an ``OSError``, for a FIFO or a device), read through a link
    only with ``follow`` (a source, not a file of the report folder)."""
    return sha256_regular(path, follow=follow)


def code_of(notebook: Path) -> dict[str, str]:
    """The code a page's notebook runs, as digests by file (``origin.file_digest``: its syntax tree): the package
    modules its code cells import, transitively; modules beside the notebook that it imports (a page's own
    helpers) and theirs; and the renderer with its templates. Part of a page's key, so an edit of, say,
    ``backprop.py`` or ``stats.py`` redoes the page (retraining is never asked: runs are keyed by their training
    identity, and other training code is refused by its fingerprint)."""
    from .. import origin

    names = [*origin.notebook_imports(notebook), RENDERER]
    modules = dict(origin.imported([n for n in names if n.split(".")[0] == "mnistlab"], "mnistlab", origin.PACKAGE))
    for top in sorted({name.split(".")[0] for name in names}):
        beside = notebook.parent / top
        where = beside if (beside / "__init__.py").is_file() else beside.with_name(f"{top}.py")
        if where.is_file() or where.is_dir():
            modules.update({f"{notebook.parent.name}:{name}": path
                            for name, path in origin.imported([n for n in names if n.split(".")[0] == top], top,
                                                              where).items()})
    digests = {name: origin.file_digest(path) for name, path in sorted(modules.items())}
    templates = Path(__file__).parent / "templates"
    digests.update({f"templates/{path.relative_to(templates).as_posix()}": hashlib.sha256(path.read_bytes()).hexdigest()
                    for path in sorted(templates.rglob("*")) if path.is_file()})
    return digests


def stamp(manifest: Path, value_key: str, files: list[Path]) -> None:
    """Record that ``files`` are the finished result of ``value_key``; call only when all of them are written."""
    entry = {"key": value_key, "files": {f.name: file_hash(f) for f in files}}
    atomic_write_text(manifest, json.dumps(entry, indent=1) + "\n")


def fresh(manifest: Path, value_key: str) -> bool:
    """The manifest names ``value_key`` and every file it lists is there, unchanged."""
    return stale(manifest, value_key) is None


def stale(manifest: Path, value_key: str) -> str | None:
    """Why the work of ``manifest`` is not up to date, in a few words; None when it is (``fresh``)."""
    try:
        entry = json.loads(read_regular(manifest, MAX_MANIFEST, follow=False))
    except FileNotFoundError:
        return "never finished here"
    except (OSError, ValueError) as error:
        return f"its manifest is unreadable ({type(error).__name__})"
    try:
        if entry["key"] != value_key:
            return "its settings or inputs changed since it last ran"
        changed = []
        for name, digest in entry["files"].items():
            try:
                if file_hash(manifest.parent / name) != digest:
                    changed.append(f"{name} changed")
            except OSError:
                changed.append(f"{name} is missing")
    except (KeyError, TypeError, AttributeError):
        return "its manifest is unreadable"
    return "; ".join(changed) if changed else None


def invalidate(manifest: Path) -> None:
    manifest.unlink(missing_ok=True)


def vouches_but(manifest: Path, derived: Path) -> bool:
    """The manifest vouches for every file it lists except perhaps ``derived`` (a page, rendered from the others):
    they are there and unchanged. What ``restamp`` needs before it may vouch for a new ``derived``."""
    try:
        entry = json.loads(manifest.read_text())
        return all(name == derived.name or file_hash(manifest.parent / name) == digest
                   for name, digest in entry["files"].items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def restamp(manifest: Path, derived: Path) -> bool:
    """After ``derived`` (a page) was rendered anew from files the manifest still vouches for (``vouches_but``):
    the manifest, same key, vouching for the new ``derived``. A page re-rendered without training leaves its run
    up to date. False, and nothing written, when the manifest vouched for less."""
    if not vouches_but(manifest, derived):
        return False
    entry = json.loads(manifest.read_text())
    if derived.name not in entry["files"]:
        return False
    entry["files"][derived.name] = file_hash(derived)
    atomic_write_text(manifest, json.dumps(entry, indent=1) + "\n")
    return True


def only_derived_stale(manifest: Path, value_key: str, derived: Path) -> bool:
    """The work of ``manifest`` is up to date but for ``derived`` (its page, changed or missing): re-render the
    page, never redo the work (a run is never retrained because its HTML changed)."""
    try:
        entry = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(entry, dict) and entry.get("key") == value_key and derived.name in entry.get("files", {}) \
        and stale(manifest, value_key) is not None and vouches_but(manifest, derived)
