"""The GPU path, rehearsed here: what a GPU node needs of the code, and the node script (docs/gpu.md).

- the package on the oldest Python ``requires-python`` allows (a GPU node's system Python is often 3.10), and
  training on torch and numpy alone (no tqdm unless a bar is shown);
- the wheel folder (``scripts/gpu-bundle.sh``): wheels for Python 3.10-3.12 of what the node lacks and nothing
  it has, MNIST and MathJax; what would travel to the node (the tracked files and that folder) measured;
- the node script's fast parts (``scripts/gpu-node.sh OUTDIR``), offline, on a stand-in node: a Python that
  sees only the node's packages, with ``OUT`` set in its environment. ``make gpu-rehearsal`` runs the whole
  script, the sweep included, in a fresh virtual environment.
"""

import ast
import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mnistlab import Config, run

ROOT = Path(__file__).resolve().parent.parent


# What the node needs of the code ---------------------------------------------------------------------------

def test_training_without_a_progress_bar_needs_no_tqdm(small_data, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `import tqdm` raises ImportError, as where it is not installed
    record = run(Config(model="nmodel", hidden_size=16, epochs=1, train_size=2000, device="cpu"), data=small_data)
    assert record.status == "complete"
    with pytest.raises(ImportError):  # a bar that is asked for still needs it
        run(Config(model="nmodel", hidden_size=16, epochs=1, train_size=2000, device="cpu"), data=small_data,
            progress=True)


def oldest_python() -> tuple[str, str | None]:
    """The oldest Python version pyproject.toml allows, and an interpreter of it on this machine (or None)."""
    match = re.search(r'^requires-python = ">=(\d+\.\d+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert match, "pyproject.toml: requires-python is not of the form >=X.Y"
    version = match.group(1)
    found = [*sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}"))),
             shutil.which(f"python{version}")]
    for path in filter(None, found):  # a pyenv shim is on PATH whether or not it can run that version
        if subprocess.run([path, "-c", "pass"], capture_output=True).returncode == 0:
            return version, path
    return version, None


# Run by the oldest Python: every file compiles, and every name imported from its standard library exists there
# (`from datetime import UTC` is 3.11's). Third-party imports are the node's business (its probe).
STDLIB_NAMES = """
import ast, importlib, importlib.util, sys
problems = []
for path in sys.argv[1:]:
    tree = ast.parse(open(path).read(), path)
    compile(tree, path, "exec")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules = [(node.module, [a.name for a in node.names])]
        elif isinstance(node, ast.Import):
            modules = [(a.name, []) for a in node.names]
        else:
            continue
        for module, names in modules:
            if module.split(".")[0] not in sys.stdlib_module_names:
                continue
            try:
                imported = importlib.import_module(module)
            except ImportError as error:
                problems.append(f"{path}:{node.lineno}: {error}")
                continue
            problems += [f"{path}:{node.lineno}: {module} has no {name}" for name in names
                         if name != "*" and not hasattr(imported, name)
                         and not (hasattr(imported, "__path__") and importlib.util.find_spec(f"{module}.{name}"))]
print("\\n".join(problems))
sys.exit(1 if problems else 0)
"""


@pytest.mark.slow
def test_the_package_and_the_node_check_run_on_the_oldest_python_allowed():
    version, python = oldest_python()
    if python is None:
        pytest.skip(f"no Python {version} on this machine (pyproject.toml's requires-python)")
    files = [*map(str, sorted((ROOT / "mnistlab").rglob("*.py"))), str(ROOT / "benchmarks" / "gpu_check.py")]
    done = subprocess.run([python, "-I", "-c", STDLIB_NAMES, *files], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"Python {version}:\n{done.stdout}{done.stderr}"
    assert ast.parse((ROOT / "mnistlab" / "train.py").read_text())  # the files were read (not an empty list)
