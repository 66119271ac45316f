"""Shared fixtures: the real MNIST files, fetched as a user would (``make test`` runs ``mnistlab fetch``)."""

import pytest

import mnistlab


@pytest.fixture(scope="session")
def data_dir():
    """The verified raw files' root (``<root>/MNIST/raw``); fetches them when missing."""
    return mnistlab.fetch().folder.parent.parent


@pytest.fixture(scope="session")
def small_data(data_dir):
    """2,000 training images plus the full validation and test splits, on the CPU."""
    return mnistlab.load(data_dir, train_size=2000)


@pytest.fixture(scope="session")
def sweep_site(tmp_path_factory, data_dir):
    """One tiny sweep, built once for test_sweep and test_site_browser.

    Runs ``nmodel-tiny`` and ``<b>x`` (a wmodel) complete; ``no-data`` fails inside the notebook.
    The train and analysis notebooks are the real ones; data and backprop are one-cell stand-ins
    (their own tests execute them), which keeps the sweep to seconds.
    """
    import contextlib
    import io
    from pathlib import Path
    from types import SimpleNamespace

    import nbformat
    import yaml
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    from mnistlab.sweep import NOTEBOOKS, sweep

    root = tmp_path_factory.mktemp("sweep")
    params, notebooks = root / "params", root / "notebooks"
    params.mkdir()
    notebooks.mkdir()
    for name in ("train", "analysis"):
        (notebooks / f"{name}.ipynb").symlink_to(Path(NOTEBOOKS) / f"{name}.ipynb")
    for name in ("data", "backprop"):
        cells = [new_markdown_cell(f"# {name} (stand-in)"), new_code_cell("print(1 + 1)")]
        nbformat.write(new_notebook(cells=cells), notebooks / f"{name}.ipynb")
    tiny = {"hidden_size": 16, "epochs": 2, "step_size": 1, "train_size": 500}
    files = {"nmodel-tiny": {"model": "nmodel"}, "<b>x": {"model": "wmodel"},
             "no-data": {"model": "nmodel", "data_dir": str(root / "nowhere")}}
    for stem, values in files.items():
        (params / f"{stem}.yaml").write_text(yaml.safe_dump({**values, **tiny}))
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        report = sweep(params, root / "site", workers=2, notebooks=notebooks)
    return SimpleNamespace(root=root, params=params, notebooks=notebooks, out=root / "site", report=report,
                           log=log.getvalue())
