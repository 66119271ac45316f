"""Shared fixtures: the real MNIST files, fetched as a user would (``make test`` runs ``mnistlab fetch``),
and throwaway projects for sweeps."""

import contextlib
import os
from pathlib import Path

import pytest

import mnistlab

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_dir():
    """The verified raw files' root (``<root>/MNIST/raw``); fetches them when missing."""
    return mnistlab.fetch().folder.parent.parent


@pytest.fixture(scope="session")
def small_data(data_dir):
    """2,000 training images plus the full validation and test splits, on the CPU."""
    return mnistlab.load(data_dir, train_size=2000)


def make_project(root: Path) -> Path:
    """A project root of its own for a sweep: the real train and analysis notebooks; data and backprop as
    one-cell stand-ins (their own tests execute them), which keeps a sweep to seconds."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    notebooks = root / "notebooks"
    notebooks.mkdir(parents=True)
    for name in ("train", "analysis"):
        (notebooks / f"{name}.ipynb").symlink_to(ROOT / "notebooks" / f"{name}.ipynb")
    for name in ("data", "backprop"):
        cells = [new_markdown_cell(f"# {name} (stand-in)"), new_code_cell("print(1 + 1)")]
        nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                          "language": "python"}}),
                       notebooks / f"{name}.ipynb")
    return root


@contextlib.contextmanager
def project_env(root: Path, data_dir: Path, **extra: str):
    """This process, and the Dask workers and kernels it starts, take ``root`` as the project root."""
    saved = {key: os.environ.get(key) for key in ("MNISTLAB_ROOT", "MNISTLAB_DATA", *extra)}
    os.environ.update({"MNISTLAB_ROOT": str(root), "MNISTLAB_DATA": str(data_dir), **extra})
    try:
        yield root
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


TINY = {"hidden_size": 16, "epochs": 2, "step_size": 1, "train_size": 500}


@pytest.fixture(scope="session")
def sweep_site(tmp_path_factory, data_dir):
    """One tiny sweep on a real two-worker Dask LocalCluster over loopback, built once.

    ``nmodel-tiny`` (with TensorBoard) and ``<b>x`` (a wmodel, two seeds in one notebook) complete;
    ``no-gpu`` asks for a GPU this machine lacks and fails inside its notebook. The notebooks in flight are
    reported every 2 s (30 s in real sweeps), and each notebook may take 10 minutes (``--timeout``).
    """
    import io
    from types import SimpleNamespace

    import yaml

    from mnistlab.lab import progress
    from mnistlab.lab.sweep import sweep

    root = make_project(tmp_path_factory.mktemp("project"))
    params = root / "params"
    params.mkdir()
    files = {"nmodel-tiny": {"model": "nmodel", "tensorboard": True}, "<b>x": {"model": "wmodel", "seeds": [0, 1]},
             "no-gpu": {"model": "nmodel", "device": "cuda:7"}}
    for stem, values in files.items():
        (params / f"{stem}.yaml").write_text(yaml.safe_dump({**values, **TINY}))
    stray = root / "site" / "runs" / "stray-seed0.json"  # a record left by something else: read by neither page
    stray.parent.mkdir(parents=True)
    stray.write_bytes((ROOT / "tests" / "data" / "record-v1-bmodel-hs1000.json").read_bytes())
    log = io.StringIO()
    every, progress.EVERY = progress.EVERY, 2.0
    try:
        with project_env(root, data_dir, OMP_NUM_THREADS="1"), contextlib.redirect_stdout(log):
            result = sweep(params, "site", workers=2, timeout=600)
    finally:
        progress.EVERY = every
    return SimpleNamespace(root=root, params=params, out=root / "site", result=result, log=log.getvalue())
