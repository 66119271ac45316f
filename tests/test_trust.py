"""What a sweep shows can be trusted (issue 32): nothing shown as right that other code made, nothing written
through a link planted in a report folder, nothing from data run in a browser, no wait or read without a bound.
docs/reliability.md names these tests beside the cases they hold."""

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
    ("backprop", "lab/backprop.py", "dL_db1 = dL_dz.sum(0)", "dL_db1 = 2 * dL_dz.sum(0)"),
    ("analysis", "lab/stats.py", "CONFIDENCE = 0.95", "CONFIDENCE = 0.9"),
    ("analysis", "lab/claims.py", "def ", "def _added():\n    return 1\n\n\ndef "),
    ("analysis", "lab/table1.py", "def ", "def _added():\n    return 1\n\n\ndef "),
    ("analysis", "lab/hw5.py", "97.35", "99.35"),
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
    sweep trains too) counted as two seeds: Table 1 said "seeds 2" with an interval of zero width. The plan names
    params files that train the same run; an ``--also`` record of a run this sweep trains is left out, its own read
    instead; and Table 1 counts any run once, listing the second record as left out."""
    from helpers import make_record, project_env, write_params
    from mnistlab.lab import cells, table1
    from mnistlab.lab.params import jobs, same_runs
    from mnistlab.lab.sweep import also_records

    root = make_project(tmp_path / "project")
    same = {"model": "nmodel", "hidden_size": 16, "epochs": 2}
    with project_env(root, data_dir):
        write_params(root / "twice", "a", {**same, "seeds": [0, 1]})
        write_params(root / "twice", "b", {**same, "seed": 1, "device": "cpu"})  # where it trains: no setting
        assert same_runs(jobs([root / "twice"], root / "site")) == [
            "twice/b.yaml trains seed 1 with the same settings as twice/a.yaml: the tables count that run once"]
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


# Nothing written through a link --------------------------------------------------------------------------------

def test_a_lock_file_that_is_a_link_is_refused_and_its_target_left_alone(tmp_path):
    """A symlink planted at <out>/.sweep.lock: the sweep followed it, truncated the target and wrote its JSON there.
    Now it is refused, in words, and the target keeps every byte; a FIFO there is refused without waiting."""
    import os

    from mnistlab.lab import lock
    from mnistlab.lab.params import ParamsError

    out = tmp_path / "site"
    out.mkdir()
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    (out / lock.LOCK_NAME).symlink_to(victim)
    with pytest.raises(ParamsError, match=r"site/.sweep.lock is a link: a sweep never writes through one"):
        with lock.hold(out):
            pass
    assert victim.read_text() == "keep me\n"
    (out / lock.LOCK_NAME).unlink()
    os.mkfifo(out / lock.LOCK_NAME)
    with pytest.raises(ParamsError, match=r"is not a regular file"):
        with lock.hold(out):
            pass


@pytest.mark.parametrize("folder", ["runs", "checkpoints", "_static", "runs/tensorboard"])
def test_a_folder_the_sweep_writes_into_may_not_be_a_link(tmp_path, folder):
    """runs/ as a link to another folder would have the sweep write records and delete stale ones there."""
    from mnistlab.lab import lock
    from mnistlab.lab.params import ParamsError

    out = tmp_path / "site"
    (out / "runs").mkdir(parents=True)
    (out / "sweep.json").write_text("{}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if (out / folder).exists():
        (out / folder).rmdir()
    (out / folder).symlink_to(elsewhere)
    with pytest.raises(ParamsError, match=rf"{folder} is a link"):
        lock.check_out(out)


def test_manifests_and_the_files_they_list_are_never_read_through_a_link_or_from_a_device(tmp_path):
    """A run is up to date only when its files are the ones it wrote: a link planted in place of one (to /dev/zero,
    which would be read until memory ran out) or a FIFO as its manifest makes it not up to date, at once."""
    import os

    from mnistlab.lab import cache

    page = tmp_path / "analysis.html"
    page.write_text("<p>page</p>")
    manifest = tmp_path / ".analysis.done"
    cache.stamp(manifest, "k", [page])
    assert cache.fresh(manifest, "k")
    page.unlink()
    page.symlink_to("/dev/zero")
    assert cache.stale(manifest, "k") == "analysis.html is missing"  # not read: a link
    page.unlink()
    page.write_text("<p>page</p>")
    assert cache.fresh(manifest, "k")
    manifest.unlink()
    os.mkfifo(manifest)
    assert cache.stale(manifest, "k").startswith("its manifest is unreadable")


# Every file read from a params folder is checked as it is read -------------------------------------------------

def finishes(function, seconds: float = 20):
    """``function()``'s exception or result, or a failure when it has not returned in ``seconds`` (it would hang)."""
    import threading

    outcome = {}

    def call():
        try:
            outcome["value"] = function()
        except BaseException as error:  # handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    return outcome.get("error", outcome.get("value"))


def test_every_params_file_is_checked_for_kind_and_size_as_it_is_read(tmp_path):
    """Only a folder's first file was checked: a FIFO among the .yaml files hung --dry-run, a link to /dev/zero was
    read until memory ran out (st_size is 0 for both). Every file is now refused, named, at once."""
    import os

    from helpers import write_params
    from mnistlab.lab.params import ParamsError, jobs

    params = tmp_path / "params"
    write_params(params, "a", {"model": "nmodel"})
    os.mkfifo(params / "b.yaml")
    (params / "c.yaml").symlink_to("/dev/zero")
    (params / "d.yaml").write_text("model: nmodel\n" + "#" * (64 * 1024))
    error = finishes(lambda: jobs([params], tmp_path / "site"))
    assert isinstance(error, ParamsError)
    lines = str(error).splitlines()
    assert lines[0].endswith("b.yaml: it is a FIFO; a params file must be a regular file")
    assert lines[1].endswith("c.yaml: it is a character device; a params file must be a regular file")
    assert lines[2].endswith("d.yaml: more than 65536 bytes; a params file is at most 65536 bytes")


def test_a_readme_or_last_sweep_json_that_is_a_fifo_or_device_is_never_waited_on(tmp_path, data_dir):
    """A params folder's README.md (shown on the index) that is a FIFO would have hung the sweep after its training;
    it is now read, and refused, before anything runs. A FIFO as the last sweep.json says nothing."""
    import os

    from helpers import project_env, write_params
    from mnistlab.lab.params import ParamsError
    from mnistlab.lab.sweep import since_last_sweep, sweep

    root = make_project(tmp_path / "project")
    params = write_params(root / "params", "a", {"model": "nmodel"}).parent
    os.mkfifo(params / "README.md")
    with project_env(root, data_dir):
        error = finishes(lambda: sweep(params, "site"))
    assert isinstance(error, ParamsError) and "params/README.md: it is a FIFO" in str(error)
    assert not (root / "site").exists()
    (root / "site").mkdir()
    os.mkfifo(root / "site" / "sweep.json")
    assert finishes(lambda: since_last_sweep(root / "site", ["a-seed0"], [])) == []


# Nothing from data runs in a browser; nothing written through a planted link; braces in a run's name -----------

HOSTILE = ("<img src=x onerror=\"document.title='PWNED'\"> $\\href{javascript:document.title='PWNED'}{click}$ *em* "
           "[link](javascript:document.title='PWNED')")


def hostile_record():
    """The issue's record: made by this code (so --also reads it), its processor's name (and more of its text) an
    HTML element whose onerror runs script, and TeX that MathJax would make a javascript: link of."""
    from helpers import make_record

    record = make_record("bmodel", seed=0, code=origin.code())
    data = record.to_dict()
    for segment in data["provenance"]["segments"]:
        segment["hardware"]["name"] = HOSTILE
        segment["device_name"] = HOSTILE
    return data


def test_record_text_shown_as_markdown_is_escaped_before_it_becomes_html():
    """nbconvert passes raw HTML in Markdown into the page: a record's processor name reached analysis.html as a live
    <img onerror=...>. The analysis page's Markdown of record text (where the runs trained) escapes it."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    from mnistlab import Record
    from mnistlab.lab import provenance

    record = Record.from_dict(hostile_record())
    html = markdown2html_mistune(provenance.machines_note([record]))
    assert "<img" not in html and "&lt;img src=x onerror=&quot;" in html
    assert '<span class="tex2jax_ignore">' in html and "<em>" not in html and "<a " not in html
    assert provenance.markdown_text("cpu: AMD EPYC (family 25 model 1, AVX2), 1 thread") == \
        "cpu: AMD EPYC (family 25 model 1, AVX2), 1 thread"  # plain text as it was


@pytest.mark.slow
def test_a_hostile_record_a_planted_link_and_braces_in_a_name_through_a_real_sweep(tmp_path, data_dir):
    """One real sweep, three of the issue's cases:
    - a record through --also whose text is HTML and TeX: in analysis.html and the index, shown, never live (and, in
      headless Chromium when it is installed, no script ran and no javascript: link was made);
    - a link planted at runs/.<run>.partial.ipynb: papermill wrote the executed notebook through it, and the published
      notebook became the link; the target is now untouched and the notebook a file;
    - a params file named nmodel-{{v2}}.yaml: papermill's str.format() of its paths wrote the notebook elsewhere,
      leaving a stray .partial.ipynb, every run; now the notebook lands where it should.
    The sweep's own runs ask for a GPU this machine lacks, so they fail in their first cells, without training."""
    import json
    import os
    import subprocess

    from helpers import project_env, write_params
    from mnistlab.lab.sweep import sweep

    root = make_project(tmp_path / "project")
    failing = {"model": "nmodel", "hidden_size": 16, "epochs": 1, "device": "cuda:7"}
    params = write_params(root / "params", "nmodel-{{v2}}", failing).parent
    write_params(params, "plain", {**failing, "hidden_size": 17})
    also = root / "elsewhere" / "runs"
    also.mkdir(parents=True)
    (also / "bmodel-hs16-seed0.json").write_text(json.dumps(hostile_record()))
    runs = root / "site" / "runs"
    runs.mkdir(parents=True)
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    (runs / ".plain-seed0.partial.ipynb").symlink_to(victim)
    with project_env(root, data_dir, OMP_NUM_THREADS="1"):
        result = sweep(params, "site", also=["elsewhere/runs"], workers=1, timeout=600)
    assert victim.read_text() == "keep me\n"
    for name in ("nmodel-{{v2}}-seed0", "plain-seed0"):
        notebook = runs / f"{name}.ipynb"
        assert notebook.is_file() and not notebook.is_symlink()
    assert sorted(p.name for p in runs.glob(".*partial*")) == []
    assert all("cuda:7" in run.error and "wrote no notebook" not in run.error for run in result.runs)
    page = (root / "site" / "analysis.html").read_text()
    assert {p.name: p.status for p in result.pages}["analysis"] == "complete"
    assert "&lt;img src=x onerror=" in page  # the text is shown ...
    assert "<img src=x" not in page  # ... never as an element
    assert "<img src=x" not in (root / "site" / "index.html").read_text()
    chromium = shutil.which("chromium")
    if chromium is None:
        return
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
                          "--virtual-time-budget=20000", "--dump-dom", (root / "site" / "analysis.html").as_uri()],
                         capture_output=True, text=True, timeout=180, env={**os.environ, "HOME": str(tmp_path)}).stdout
    assert "<mjx-container" in dom  # MathJax ran over the page
    assert "PWNED" not in dom.split("</title>")[0] and 'href="javascript:' not in dom


@pytest.mark.slow
@pytest.mark.waits
def test_a_scheduler_address_where_something_else_answers_ends_the_sweep_within_its_bound(tmp_path, data_dir):
    """--scheduler tcp://127.0.0.1:PORT where PORT is an HTTP server hung the sweep past 7 minutes, --dry-run too;
    the docs promise exit 2 within 30 s. It now ends in CONNECT_SECONDS, naming the cause, nothing run."""
    import os
    import socket
    import subprocess
    import sys
    import time

    from helpers import kill_tree, write_params
    from mnistlab.lab import schedule

    root = make_project(tmp_path / "project", analysis=False)
    params = write_params(root / "params", "a", {"model": "nmodel", "hidden_size": 16, "epochs": 1})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    http = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    env = {**os.environ, "MNISTLAB_ROOT": str(root), "MNISTLAB_DATA": str(data_dir)}
    try:
        for _ in range(100):  # until it listens
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        started = time.monotonic()
        sweep = subprocess.run([sys.executable, "-m", "mnistlab.cli", "sweep", str(params), "--out", "site",
                                "--scheduler", f"tcp://127.0.0.1:{port}", "--dry-run"], env=env, cwd=root,
                               capture_output=True, text=True, timeout=schedule.CONNECT_SECONDS + 120)
        took = time.monotonic() - started
    finally:
        kill_tree(http)
    assert sweep.returncode == 2, sweep.stderr
    assert f"no Dask scheduler answered within {schedule.CONNECT_SECONDS} s" in sweep.stderr
    assert "did not answer as a Dask scheduler" in sweep.stderr and "Traceback" not in sweep.stderr
    assert took < schedule.CONNECT_SECONDS + 60  # the bound, plus starting Python and importing the lab
    assert not (root / "site").exists()
