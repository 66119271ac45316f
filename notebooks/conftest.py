"""``pytest --nbval notebooks/`` (``make nbval``): every notebook under nbval, in minutes on a CPU.

train.ipynb's defaults are the HW5 report's protocol: 100 epochs, about 25-50 minutes a seed on a 2-core CPU.
Under nbval its parameters cell is followed, in memory only, by the small parameters of ``params/ci.yaml`` (a
few seconds of training) and an ``out_dir`` in a temporary folder, as papermill's injected cell would follow it.
The committed notebook is unchanged: ``papermill notebooks/train.ipynb … -p model wmodel`` still trains the
protocol. Pytest says so in its header, and the cell's output says so too.
``MNISTLAB_NBVAL_OUT``: the folder for the small runs' records instead of a temporary one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SMALL = HERE.parent / "params" / "ci.yaml"
NOTEBOOK = "train.ipynb"
_made: list[str] = []  # temporary folders this session made, removed at its end


def small_parameters(out_dir: str) -> dict:
    """The parameters train.ipynb runs with under nbval: ``params/ci.yaml``'s, records written to ``out_dir``."""
    return {**yaml.safe_load(SMALL.read_text()), "out_dir": out_dir}


def _nbval(config) -> bool:
    return bool(config.getoption("nbval", False) or config.getoption("nbval_lax", False))


def pytest_report_header(config):
    if _nbval(config):
        return (f"notebooks/conftest.py: {NOTEBOOK} runs with the small parameters of params/ci.yaml (seconds of "
                "training, records in a temporary folder), not its defaults (the HW5 report's protocol, 100 epochs)")
    return None


def pytest_collection_modifyitems(config, items):
    """After train.ipynb's parameters cell, the small parameters, as assignments the kernel runs next."""
    cells = [item for item in items if getattr(item, "cell", None) is not None
             and Path(str(item.fspath)).name == NOTEBOOK and "parameters" in item.cell.metadata.get("tags", [])]
    if not cells:
        return
    out = os.environ.get("MNISTLAB_NBVAL_OUT")
    if not out:
        out = tempfile.mkdtemp(prefix="mnistlab-nbval-")
        _made.append(out)
    assignments = "\n".join(f"{name} = {value!r}" for name, value in small_parameters(out).items())
    for item in cells:
        item.cell.source += ("\n\n# Added under nbval by notebooks/conftest.py (not in the notebook): params/ci.yaml\n"
                             f"{assignments}\n"
                             "print('nbval: small parameters from params/ci.yaml (notebooks/conftest.py), not the "
                             "defaults above')")


def pytest_sessionfinish(session, exitstatus):
    for folder in _made:
        shutil.rmtree(folder, ignore_errors=True)
