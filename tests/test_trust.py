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


def test_another_sweeps_records_of_other_training_code_stop_the_sweep_unless_kept(tmp_path, data_dir):
    """``--also`` read records of other training code (fingerprint and commit changed) into the analysis in silence,
    though a sweep refuses its own runs of other code ("never reuses, unasked, runs of other training code"). Now
    the sweep stops before anything runs, naming the records and the files that changed; --keep-older-code reads
    them anyway, and the plan says so."""
    from helpers import make_record, project_env, write_params
    from mnistlab.lab.params import ParamsError
    from mnistlab.lab.sweep import older_records, sweep

    root = make_project(tmp_path / "project")
    params = write_params(root / "params", "a", {"model": "nmodel", "hidden_size": 16, "epochs": 1})
    other = root / "paper" / "runs"
    other.mkdir(parents=True)
    now = origin.code()
    older = {**now, "fingerprint": "d" * 64, "files": {**now["files"], "mnistlab/config.py": "e" * 64}}
    make_record("bmodel", seed=0, code=older).save(other / "bmodel-seed0.json")
    make_record("wmodel", seed=0, code=now).save(other / "wmodel-seed0.json")
    with project_env(root, data_dir):
        with pytest.raises(ParamsError, match=r"--also: 1 record\(s\) were trained by other training code than this "
                                              r"checkout's \(paper/runs/bmodel-seed0.json\); changed since: "
                                              r"mnistlab/config.py\. .*--keep-older-code"):
            sweep(params, "site", also=["paper/runs"])
        assert not (root / "site").exists()  # nothing ran, nothing was written
        older = older_records(sorted(other.glob("*.json")))  # what --keep-older-code reads anyway, the plan noting it
    assert [(path.name, changed) for path, changed in older] == [("bmodel-seed0.json", ["mnistlab/config.py"])]


def test_a_run_counts_once_however_many_records_it_has(tmp_path, data_dir):
    """Two records of the same settings and seed (two params files alike, or ``--also`` a folder holding a run this
    sweep trains too) counted as two seeds: Table 1 said "seeds 2" with an interval of zero width. Two params files
    that train the same run are refused; an ``--also`` record of a run this sweep trains is left out, its own read
    instead; and Table 1 counts any run once, listing the second record as left out."""
    from helpers import make_record, project_env, write_params
    from mnistlab.lab import cells, table1
    from mnistlab.lab.params import ParamsError, jobs
    from mnistlab.lab.sweep import also_records

    root = make_project(tmp_path / "project")
    same = {"model": "nmodel", "hidden_size": 16, "epochs": 2}
    with project_env(root, data_dir):
        write_params(root / "twice", "a", {**same, "seeds": [0, 1]})
        write_params(root / "twice", "b", {**same, "seed": 1})
        with pytest.raises(ParamsError, match=r"twice/b.yaml: seed 1 has the same settings as in twice/a.yaml"):
            jobs([root / "twice"], root / "site")
        todo = jobs([write_params(root / "params", "a", same)], root / "site")
        other = root / "paper" / "runs"
        other.mkdir(parents=True)
        make_record(seed=0, epochs=2).save(other / "nmodel-hs16-seed0.json")  # the run params/a.yaml trains
        make_record(seed=1, epochs=2).save(other / "nmodel-hs16-seed1.json")  # another seed: read
        files, notes = also_records([other], todo)
    assert [path.name for path in files] == ["nmodel-hs16-seed1.json"]
    assert "this sweep's own are read instead" in notes[0] and "nmodel-hs16-seed0.json" in notes[0]
    records = [make_record(seed=0, acc=90.0), make_record(seed=0, acc=91.0), make_record(seed=1, acc=92.0)]
    table = table1.compute(records)
    assert table["seeds"].tolist() == [2]
    assert cells.excluded(records) == ["nmodel-hs16-seed0 [epochs=2]: a second record of the same settings and "
                                       "seed, counted once"]
