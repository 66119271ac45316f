"""Where the project is, and the one rule for every path a run is given.

A relative path is relative to the project root; an absolute path stays as it is. The root is
``$MNISTLAB_ROOT`` when set, else the checkout this package was installed from (an editable
install, the usual case), else the current directory. Every entry point (the notebooks' kernels,
the command line, params files, the sweep and its workers) resolves paths through ``resolve``,
so ``out_dir: reports/x`` means the same folder wherever the kernel happens to start.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT_ENV = "MNISTLAB_ROOT"
DATA_ENV = "MNISTLAB_DATA"
HIDDEN = "…/"  # what stands for the folders of a path outside every base a published file may name
# An absolute POSIX path inside free text (an error message, a parameter): at the start, or after a space,
# quote, bracket, "=" or ","; not inside a URL, a fraction or markup.
_ABSOLUTE = re.compile(r"(?<![^\s'\"=(\[,])/(?:[\w.@+-]+/)*[\w.@+-]+/?")
_CHECKOUT = Path(__file__).resolve().parent.parent


def project_root() -> Path:
    """``$MNISTLAB_ROOT``, else the checkout holding this package, else the current directory."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).expanduser().resolve()
    if (_CHECKOUT / "pyproject.toml").is_file():
        return _CHECKOUT
    return Path.cwd()


def data_dir() -> Path:
    """Where downloaded data lives (MNIST under ``MNIST/raw``, MathJax under ``mathjax``): ``$MNISTLAB_DATA``,
    else ``data/`` in the project root."""
    return resolve(os.environ[DATA_ENV]) if os.environ.get(DATA_ENV) else project_root() / "data"


def resolve(path: str | os.PathLike) -> Path:
    """``path`` by the project's one rule: relative to the project root, absolute paths unchanged."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_root() / path


def relative(path: str | os.PathLike, start: str | os.PathLike | None = None) -> str:
    """``path`` relative to ``start`` (default: the project root) when it lies inside it; else unchanged.

    What the published files say about a path: never the absolute path of the machine they were made on.
    """
    path, start = Path(path), Path(start) if start is not None else project_root()
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(start)).as_posix()
    except ValueError:
        return str(path)


def shown(path: str | os.PathLike, *bases: str | os.PathLike) -> str:
    """``path`` as a published file shows it: relative to the first of ``bases`` (default: the project root)
    that holds it, else ``…/`` and its last part. Never this machine's absolute path."""
    for base in bases or (project_root(),):
        text = relative(path, base)
        if not Path(text).is_absolute():
            return text
    return HIDDEN + Path(path).name


def public(text: object, *bases: str | os.PathLike) -> str:
    """``text`` with every absolute path in it ``shown`` (relative to ``bases``, else cut to its last part)."""
    return _ABSOLUTE.sub(lambda match: shown(match.group(0), *bases), str(text))
