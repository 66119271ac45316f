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
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
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
def test_the_package_and_the_node_scripts_run_on_the_oldest_python_allowed():
    version, python = oldest_python()
    if python is None:
        pytest.skip(f"no Python {version} on this machine (pyproject.toml's requires-python)")
    files = [*map(str, sorted((ROOT / "mnistlab").rglob("*.py"))), str(ROOT / "benchmarks" / "gpu_check.py"),
             str(ROOT / "scripts" / "gpu_node.py")]
    done = subprocess.run([python, "-I", "-c", STDLIB_NAMES, *files], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"Python {version}:\n{done.stdout}{done.stderr}"
    assert ast.parse((ROOT / "mnistlab" / "train.py").read_text())  # the files were read (not an empty list)


# The wheel folder and what travels -----------------------------------------------------------------------------

sys.path.insert(0, str(ROOT / "scripts"))
import gpu_bundle  # noqa: E402
import gpu_node  # noqa: E402
import gpu_rehearsal  # noqa: E402

# What travels must leave 8 MiB of the node's 64 (47.9 MiB on 2026-12-07); `make gpu-bundle` checks the same.
TRAVEL_LIMIT_MIB = 56


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    """The wheel folder: the checkout's build/gpu-wheels when built from the current lists, else one built here
    (it downloads from PyPI and npm)."""
    folder = ROOT / gpu_node.WHEELS
    manifest = folder / "MANIFEST"
    if manifest.is_file() and f"lists {gpu_bundle.lists_digest()}" in manifest.read_text():
        return folder
    if os.environ.get("MNISTLAB_OFFLINE") == "1":
        pytest.skip("MNISTLAB_OFFLINE=1: building the wheel folder needs the package registries")
    folder = tmp_path_factory.mktemp("wheels") / "gpu-wheels"
    gpu_bundle.build(folder)
    return folder


@pytest.mark.slow
def test_the_wheel_folder_brings_what_the_node_lacks_for_python_3_10_to_3_12_and_nothing_it_has(wheels):
    names = {gpu_bundle.canonicalize_name(gpu_bundle.parse_wheel_filename(p.name)[0]) for p in wheels.glob("*.whl")}
    assert {"papermill", "nbconvert", "nbformat", "nbclient", "ipykernel", "jupyter-client", "pyzmq", "dask",
            "distributed", "setuptools"} <= names
    node = gpu_bundle.node_closure(gpu_rehearsal.node_names())
    assert {"torch", "numpy", "scipy", "pandas", "jinja2", "pyyaml", "pytest"} <= node
    assert not names & (node - {"setuptools"}), "a package the node has travels anyway"
    assert not names & set(gpu_node.LEFT_OUT)
    assert gpu_bundle.resolves(wheels) == {"3.10": [], "3.11": [], "3.12": []}
    for version in ("cp310", "cp311", "cp312"):  # the binary packages, for each Python
        assert any(version in p.name for p in wheels.glob("pyzmq-*.whl")), version
    assert (wheels / gpu_node.MNIST_TARBALL).is_file() and (wheels / gpu_node.MATHJAX_GZ).is_file()
    sizes = gpu_bundle.travel(wheels)
    print(gpu_bundle.describe(sizes))
    assert sizes["wheel_folder_bytes"] < 30 * 2**20  # 25.4 MiB on 2026-12-07: 13.8 of wheels, 11 of MNIST


@pytest.mark.slow
def test_what_travels_fits_the_node_with_room_to_spare(wheels):
    sizes = gpu_bundle.travel(wheels)
    assert sizes["total_bytes"] <= TRAVEL_LIMIT_MIB * 2**20, gpu_bundle.describe(sizes)


# The node script on a stand-in node -------------------------------------------------------------------------

@pytest.mark.slow
def test_the_node_scripts_fast_parts_offline_on_a_stand_in_node(wheels, tmp_path):
    findings = gpu_rehearsal.rehearse(tmp_path, node="linked", fast=True, budget=600, wheels=wheels)
    failed = {name: detail for name, (passed, detail) in findings["checks"].items() if not passed}
    assert not failed, failed
    assert set(findings["checks"]) >= {"gpu-node.sh exits 0", "OUT from the environment is not written",
                                       "every phase ok", "the GPU-only parts say they were skipped",
                                       "only what the node lacks is installed"}


def run_node(tmp_path, wheels, *args, env=None):
    """scripts/gpu-node.sh RESULTS ARGS in a copy of the checkout, on a linked stand-in node; (process, results)."""
    python = gpu_rehearsal.linked_node(tmp_path / "node")
    gpu_rehearsal.copy_checkout(tmp_path / "checkout", wheels)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MNISTLAB_", "PYTHON", "VIRTUAL_ENV"))}
    environment.update(PATH=f"{python.parent}:{os.environ['PATH']}", OMP_NUM_THREADS="1", TMPDIR=str(tmp_path),
                       **(env or {}))
    results = tmp_path / "results"
    process = subprocess.Popen([tmp_path / "checkout" / "scripts" / "gpu-node.sh", results, *args], env=environment,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, results


@pytest.mark.slow
def test_without_a_cuda_torch_the_node_script_stops_after_the_probe_and_says_why(wheels, tmp_path):
    process, results = run_node(tmp_path, wheels)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 3, output
    summary = json.loads((results / "node.json").read_text())
    assert list(summary["phases"]) == ["probe", "pack"]
    assert summary["phases"]["probe"]["status"] == "stopped"
    assert summary["phases"]["probe"]["why"].startswith("no CUDA torch: torch ")
    assert "no CUDA torch" in (results / "node.log").read_text() and "no CUDA torch" in output
    assert sorted(p.name for p in results.iterdir()) == ["node.json", "node.log", "records.tar.gz"]


@pytest.mark.slow
def test_a_node_run_cut_off_during_its_check_still_packs_what_it_found(wheels, tmp_path):
    process, results = run_node(tmp_path, wheels, "--rehearsal", "--phases", "probe,data,check",
                                "--check-args", "--hidden-sizes 16 --steps 3 --train-size 500 --parts "
                                "schedule_in_place,host_syncs,step_times")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # until the check has written its first part
        check = results / "check.json"
        if check.is_file() and json.loads(check.read_text())["parts"]:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)  # what a node's time limit sends
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 1, output
    summary = json.loads((results / "node.json").read_text())
    assert summary["interrupted"] and not summary["ok"]
    assert summary["phases"]["probe"]["status"] == summary["phases"]["data"]["status"] == "ok"
    assert summary["phases"]["check"]["status"] == "interrupted"
    assert summary["phases"]["pack"]["status"] == "ok"
    assert json.loads((results / "check.json").read_text())["parts"]["schedule_in_place"]["status"] == "ok"
    assert "interrupted: packing what there is" in (results / "node.log").read_text()
