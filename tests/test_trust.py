"""What a sweep shows can be trusted (issue 32): nothing shown as right that other code made, nothing written
through a link planted in a report folder, nothing from data run in a browser, no wait or read without a bound.
Each test names the case of docs/reliability.md it holds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import ROOT, make_project
from mnistlab import origin


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """The package copied to a folder of its own, which ``origin`` reads as the package: its files can be edited."""
    copy = tmp_path / "checkout" / "mnistlab"
    shutil.copytree(ROOT / "mnistlab", copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(origin, "PACKAGE", copy)
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(("page", "file", "old", "new"), [
    ("backprop", "backprop.py", "dL_db1 = dL_dz.sum(0)", "dL_db1 = 2 * dL_dz.sum(0)"),
    ("analysis", "lab/stats.py", "CONFIDENCE = 0.95", "CONFIDENCE = 0.9"),
    ("analysis", "lab/claims.py", "def ", "def _added():\n    return 1\n\n\ndef "),
    ("analysis", "lab/table1.py", "97.35", "99.35"),
    ("data", "data.py", "0.1307", "0.1306"),
])
def test_a_page_is_redone_when_the_package_code_its_notebook_imports_changes(package_copy, tmp_path, page, file, old,
                                                                             new):
    """Page keys (case "Up to date means consistent"): after doubling dL/db1 in backprop.py, a sweep said
    "backprop: up to date" and kept the page whose gradient checks had passed; the analysis page ignored edits of
    stats.py, claims.py and table1.py. The key now covers the code each page's notebook imports."""
    from mnistlab.lab.sweep import _page_task

    notebooks = make_project(tmp_path / "project", every_page=True) / "notebooks"
    out = tmp_path / "site"
    before = _page_task(page, notebooks, out, [], None).key
    assert _page_task(page, notebooks, out, [], None).key == before  # nothing changed: up to date
    edit(package_copy / file, old, new)
    assert _page_task(page, notebooks, out, [], None).key != before


def test_a_page_is_redone_when_a_module_beside_its_notebook_changes(tmp_path):
    """A page's own helpers may live beside its notebook (``import helpers`` from notebooks/): they are part of its
    code too, and so is what they import of their own."""
    from mnistlab.lab import cache

    notebooks = make_project(tmp_path / "project", analysis=False) / "notebooks"
    (notebooks / "pagehelp.py").write_text("from sub import value\n")
    (notebooks / "sub.py").write_text("value = 1\n")
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nbformat.write(new_notebook(cells=[new_code_cell("import pagehelp\nprint(pagehelp.value)")]),
                   notebooks / "backprop.ipynb")
    before = cache.code_of(notebooks / "backprop.ipynb")
    assert "notebooks:pagehelp" in before
    (notebooks / "pagehelp.py").write_text("from sub import value\nvalue = 2\n")
    assert cache.code_of(notebooks / "backprop.ipynb") != before
