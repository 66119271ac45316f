"""What made a record: the code that decides its numbers, and the hardware that computed them.

``code()``: the package version; the git commit and whether the code was changed since (when the
package runs from a checkout); and a fingerprint, the SHA-256 of the files that decide a run's numbers
(``FINGERPRINTED``: data loading, the models, the training loop and the record's arithmetic, and the
code cells of ``notebooks/train.ipynb``), with each file's own digest so that a difference can be
named file by file. The CLI, the paths, the config's validation and the lab are left out: they cannot
change a result.

``hardware(device)``: the CPU's model, family and the kernel set torch dispatches to
(``torch.backends.cpu.get_cpu_capability()``), or the GPU's name and compute capability. Two EPYC
generations both read "AMD EPYC" and differ in the last bits of every run.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from . import paths
from .version import __version__

PACKAGE = Path(__file__).resolve().parent
# The files whose contents decide a run's numbers, relative to the package; the train notebook separately.
FINGERPRINTED = ("config.py", "datasets.py", "data.py", "models.py", "augment.py", "optim.py", "resources.py",
                 "train.py", "steps.py", "stacked.py", "checkpoints.py", "records.py")
NOTEBOOK = "notebooks/train.ipynb"


def code() -> dict[str, Any]:
    """The training code on disk now: version, git commit and dirty flag (None outside a checkout), fingerprint.
    (What a process trains with is what it imported: ``train.CODE``, read when ``mnistlab.train`` is imported.)"""
    files = {f"mnistlab/{name}": _digest((PACKAGE / name).read_bytes()) for name in FINGERPRINTED}
    notebook = paths.project_root() / NOTEBOOK
    if notebook.is_file():
        files[NOTEBOOK] = _digest(_code_cells(notebook))
    fingerprint = _digest(json.dumps(files, sort_keys=True).encode())
    commit, dirty = _git(sorted(files))
    return {"mnistlab": __version__, "fingerprint": fingerprint, "files": files, "git_commit": commit,
            "git_dirty": dirty}


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


def _code_cells(notebook: Path) -> bytes:
    """The notebook's code, cell by cell: its outputs, metadata and prose cannot change a result."""
    cells = json.loads(notebook.read_text()).get("cells", [])
    sources = ["".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
               for cell in cells if cell.get("cell_type") == "code"]
    return json.dumps(sources).encode()


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
