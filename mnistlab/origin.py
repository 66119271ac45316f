"""What made a record: the code that decides its numbers, and the hardware that computed them.

``code()``: the package version; the git commit and whether the code was changed since (when the
package runs from a checkout); and a fingerprint of the code that decides a run's numbers, with each
file's own digest so that a difference can be named file by file.

Which files: never a list written by hand, which would fall behind the code (it once left out
``config.py``, where the validation split is cut). ``fingerprinted()`` walks, without importing anything,
the imports of what trains (``ROOTS``: the training loop, ``spec``, the run the train notebook makes, and
``runner``, which loads its data and trains it),
in the module and inside its functions, transitively, within the package, with every package's
``__init__.py`` on the way; plus the modules named in ``MNISTLAB_PLUGINS`` (models from outside the
package) and the modules of their own packages they import; plus the code cells of
``notebooks/train.ipynb``. Left out: ``same_numbers.py`` (the table of fingerprints checked to give these
numbers: a ``--record`` would change the fingerprint it records) and whatever training does not import (the
CLI, the lab, the pages).

How: a file's digest is the SHA-256 of its syntax tree (``ast``), without docstrings, line numbers,
comments or layout, written out in a form that Python 3.10 to 3.13 share (empty fields left out), so that
a blank line, a comment or a reworded docstring is still this code; a file that does not parse is hashed
byte for byte. A notebook's digest is that of its code cells' trees, in order.

``hardware(device)``: the CPU's model, family and the kernel set torch dispatches to
(``torch.backends.cpu.get_cpu_capability()``), or the GPU's name and compute capability. Two EPYC
generations both read "AMD EPYC" and differ in the last bits of every run.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import platform
import subprocess
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import paths
from .models import PLUGINS_VARIABLE as PLUGINS, plugin_names
from .version import __version__

PACKAGE = Path(__file__).resolve().parent
ROOTS = ("mnistlab.train", "mnistlab.spec", "mnistlab.runner")  # what trains a run; all they import is fingerprinted
NOT_FINGERPRINTED = ("mnistlab.same_numbers",)  # imported by this module; it cannot change a number
NOTEBOOK = "notebooks/train.ipynb"


def code(plugins: Iterable[str] | None = None) -> dict[str, Any]:
    """The training code on disk now: version, git commit and dirty flag (None outside a checkout), fingerprint.
    ``plugins``: module names of models from outside the package (default: ``$MNISTLAB_PLUGINS``).
    (What a process trains with is what it imported: ``train.CODE``, read when ``mnistlab.train`` is imported.)"""
    sources = fingerprinted(plugins)
    files = {name: file_digest(path) for name, path in sources.items()}
    notebook = paths.project_root() / NOTEBOOK
    if notebook.is_file():
        files[NOTEBOOK] = notebook_digest(notebook)
    fingerprint = _digest(json.dumps(files, sort_keys=True).encode())
    checkout = [name for name, path in sources.items() if path.is_relative_to(PACKAGE.parent)]
    commit, dirty = _git(sorted([*checkout, *([NOTEBOOK] if NOTEBOOK in files else [])]))
    return {"mnistlab": __version__, "fingerprint": fingerprint, "files": files, "git_commit": commit,
            "git_dirty": dirty}


def fingerprinted(plugins: Iterable[str] | None = None) -> dict[str, Path]:
    """The source files whose change can change a run's numbers, by the name a record gives them
    (``mnistlab/config.py``; a plugin's relative to the folder above its top-level package)."""
    files = {_shown(path): path for path in imported(ROOTS, "mnistlab", PACKAGE).values()}
    for name in plugin_modules() if plugins is None else plugins:
        top = name.split(".")[0]
        spec = importlib.util.find_spec(top)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            raise ImportError(f"{PLUGINS} names {name!r}, which is not a Python module that can be found")
        folder = Path(spec.origin).resolve().parent
        base = folder if spec.submodule_search_locations else Path(spec.origin).resolve()
        for path in imported([name], top, base).values():
            files[path.relative_to(folder.parent if spec.submodule_search_locations else folder).as_posix()] = path
    return dict(sorted(files.items()))


def plugin_modules() -> list[str]:
    """The modules of models from outside the package: those ``$MNISTLAB_PLUGINS`` names (``models.plugin_names``)."""
    return plugin_names()


def imported(roots: Iterable[str], package: str, where: Path) -> dict[str, Path]:
    """The modules of ``package`` (found at ``where``: its folder, or its one file) that ``roots`` import,
    transitively and including the roots: module name -> file. Static: nothing is imported or run. A name
    imported from a package that is not a module of its own (``from . import __version__``) means the package's
    ``__init__.py``; imports of other packages are left out, and so is ``NOT_FINGERPRINTED``."""
    found: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in found or name in NOT_FINGERPRINTED:
            continue
        file = _module_file(name, package, where)
        if file is None:
            continue
        found[name] = file
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # a module's packages run first
        todo += _imports(file, name)
    return found


def notebook_imports(notebook: Path) -> list[str]:
    """The modules a notebook's code cells import (every name an import statement names)."""
    names = []
    for tree in _cell_trees(notebook):
        if isinstance(tree, ast.AST):
            names += _imported_names(tree, "", is_package=False)
    return names


def file_digest(path: Path) -> str:
    """The digest of a Python file's code: its syntax tree without docstrings (``_canonical``)."""
    return _source_digest(path.read_bytes())


@lru_cache(maxsize=512)
def _source_digest(data: bytes) -> str:
    """``file_digest`` of these bytes. Memoised by the bytes themselves, never by a file's name or time, so an edit
    is always seen: a sweep computes the keys of several pages over mostly the same modules, and this saves
    parsing each again (about 0.8 s a page key)."""
    try:
        tree = ast.parse(data)
    except (SyntaxError, ValueError):
        return _digest(data)
    return _digest(json.dumps(_canonical(_without_docstrings(tree))).encode())


def notebook_digest(notebook: Path) -> str:
    """The digest of a notebook's code cells, in order: their outputs, metadata and prose cannot change a
    result, nor can their comments or layout (a cell that does not parse, such as one with IPython magics,
    counts by its text)."""
    cells = [_canonical(tree) if isinstance(tree, ast.AST) else tree
             for tree in _cell_trees(notebook)]
    return _digest(json.dumps(cells).encode())


def same_numbers(fingerprint: str | None, now: dict[str, Any] | None = None) -> bool:
    """Whether training code of ``fingerprint`` gives this checkout's numbers: it is this code's (``now``,
    default ``code()``), or one checked bit for bit against it (``same_numbers.SAME_NUMBERS``)."""
    from .same_numbers import SAME_NUMBERS

    return bool(fingerprint) and (fingerprint == (now or code())["fingerprint"] or fingerprint in SAME_NUMBERS)


def hardware(device) -> dict[str, Any]:
    """The processor that trains on ``device`` (a torch.device), precisely enough to explain a difference."""
    import torch

    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {"kind": "gpu", "name": props.name, "capability": f"{props.major}.{props.minor}",
                "memory_gib": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda}
    cpu = _cpuinfo()
    return {"kind": "cpu", "name": cpu.get("model name") or platform.processor() or platform.machine(),
            "vendor": cpu.get("vendor_id"), "family": _int(cpu.get("cpu family")), "model": _int(cpu.get("model")),
            "capability": torch.backends.cpu.get_cpu_capability(), "cores": len(os.sched_getaffinity(0))}


def describe(hw: dict[str, Any] | None, cores: bool = True) -> str:
    """One line for a page: e.g. "AMD EPYC (family 25 model 17, AVX2, 2 cores)" or "NVIDIA H100 (sm 9.0)";
    without the cores the process could use when ``cores`` is false (they do not change a number, threads do).
    The model number is what tells two EPYC generations of one family apart (family 25: model 1 and 17)."""
    if not hw:
        return "not recorded"
    if hw.get("kind") == "gpu":
        return f"{hw['name']} (sm {hw['capability']})"
    model = f" model {hw['model']}" if hw.get("model") is not None else ""
    n = hw.get("cores")
    usable = f", {n} core{'' if n == 1 else 's'}" if cores else ""
    return f"{hw['name']} (family {hw.get('family')}{model}, {hw.get('capability')}{usable})"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _git(files: list[str]) -> tuple[str | None, bool | None]:
    """HEAD of the checkout the package runs from, and whether any fingerprinted file differs from it."""
    checkout = PACKAGE.parent
    if not (checkout / ".git").exists():
        return None, None
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(checkout), *args], check=True, capture_output=True, text=True,
                                  timeout=10).stdout
        commit = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--", *files).strip())
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, dirty


def _cpuinfo() -> dict[str, str]:
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().split("\n\n")[0].splitlines()  # the first processor's block
    except OSError:
        return {}
    return {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in lines)}


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _module_file(name: str, package: str, where: Path) -> Path | None:
    """The file of module ``name`` if it belongs to ``package`` (at ``where``), else None."""
    parts = name.split(".")
    if parts[0] != package:
        return None
    if where.is_file():  # a package of one module
        return where if len(parts) == 1 else None
    base = where.joinpath(*parts[1:])
    for file in (base / "__init__.py", base.with_name(base.name + ".py") if len(parts) > 1 else None):
        if file is not None and file.is_file():
            return file
    return None


def _imports(file: Path, name: str) -> list[str]:
    return list(_source_imports(file.read_bytes(), name, file.name == "__init__.py"))


@lru_cache(maxsize=512)
def _source_imports(data: bytes, name: str, is_package: bool) -> tuple[str, ...]:
    """``_imported_names`` of these bytes, memoised by them (as ``_source_digest``)."""
    try:
        tree = ast.parse(data)
    except (SyntaxError, ValueError):
        return ()
    return tuple(_imported_names(tree, name, is_package))


def _imported_names(tree: ast.AST, name: str, is_package: bool) -> list[str]:
    """Every module an import statement of ``tree`` (module ``name``) may mean, anywhere in it (a function's
    own imports too): ``from .x import y`` gives ``x`` and ``x.y`` (``y`` may be a module)."""
    here = name.split(".") if is_package else name.split(".")[:-1]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 > len(here) or not name:
                    continue
                base = here[:len(here) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            else:
                base = node.module.split(".")
            names.append(".".join(base))
            names += [".".join([*base, alias.name]) for alias in node.names if alias.name != "*"]
    return names


def _cell_trees(notebook: Path) -> list:
    """Each code cell's syntax tree, or its text (stripped) when it does not parse (IPython magics)."""
    cells = json.loads(notebook.read_text()).get("cells", [])
    trees = []
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        try:
            trees.append(ast.parse(source))
        except (SyntaxError, ValueError):
            trees.append(source.strip())
    return trees


def _without_docstrings(tree: ast.AST) -> ast.AST:
    """``tree`` with the docstring of its module, classes and functions removed (in place)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                node.body = node.body[1:]
    return tree


def _canonical(node: Any) -> Any:
    """A syntax tree as plain JSON data that Python 3.10-3.13 write alike: node type and fields, without the
    empty fields newer versions add (``type_params=[]``) or leave out, positions, ``kind`` (``u''``) or type
    comments."""
    if isinstance(node, ast.AST):
        fields = {}
        for field, value in ast.iter_fields(node):
            if value is None or value == [] or field in ("kind", "type_comment"):
                continue
            fields[field] = _canonical(value)
        return [type(node).__name__, fields]
    if isinstance(node, list):
        return [_canonical(item) for item in node]
    return [type(node).__name__, repr(node)]


def _shown(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()
