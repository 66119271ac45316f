"""A sweep that says what it does (the plan first, the notebooks in flight, one counter, a dry run, a timeout)
and what it writes: valid notebooks, finished progress bars, nothing trained when the render cannot work."""

import contextlib
import io
import json
import re
import shutil
import time

import nbformat
import pytest

from helpers import TINY, kernels_of, make_project, project_env, snapshot, write_params
from mnistlab import cli
from mnistlab.lab import assets, progress
from mnistlab.lab.sweep import sweep

DASHBOARD = r"(Dask dashboard: http://127\.0\.0\.1:\d+/status|Dask's pages of its workers: " \
            r"http://127\.0\.0\.1:\d+/info/main/workers\.html \(its dashboard needs the bokeh package\))"


# The shared sweep (conftest.sweep_site): what it printed and what it wrote --------------------------------

@pytest.mark.slow
def test_the_plan_comes_first_and_says_what_runs_where(sweep_site):
    log = sweep_site.log
    plan = log[:log.index("\n[1/")]  # everything before the first notebook ended
    runs = len(sweep_site.result.runs)
    assert re.search(rf"^Plan: {runs} runs in \d+ notebooks into site: 0 up to date, {runs} to run$", plan, re.M), plan
    assert re.search(r"^  where: a local Dask cluster: 2 workers \(as asked by --workers\), one notebook at a time "
                     r"each; .*each kernel trains "
                     rf"with \d+ torch threads?; {DASHBOARD}$", plan, re.M), plan
    for run in sweep_site.result.runs:
        assert re.search(rf"^  {re.escape(run.name)}: to run: not run yet$", plan, re.M), run.name
    assert "then the pages analysis, data, backprop" in plan


@pytest.mark.slow
def test_one_set_of_counters_in_runs(sweep_site):
    runs = len(sweep_site.result.runs)  # 4 runs: 4 notebooks on a CPU, 3 on GPUs (<b>x's two seeds together)
    counters = re.findall(r"^\[(\d+)/(\d+) (runs|pages)\] ", sweep_site.log, re.M)
    assert {int(total) for done, total, what in counters if what == "runs"} == {runs}, counters
    done = [int(done) for done, _, what in counters if what == "runs"]
    assert done == sorted(done) and done[-1] == runs
    assert [(int(d), int(t)) for d, t, what in counters if what == "pages"] == [(1, 3), (2, 3), (3, 3)]
    assert re.search(rf"^… \d+/{runs} runs done after ", sweep_site.log, re.M)
    assert f"{runs} runs ({runs} executed, 0 up to date)" in sweep_site.log


@pytest.mark.slow
def test_notebooks_in_flight_are_reported(sweep_site):
    """Every 2 s here (30 s in a real sweep): each notebook that has started says where it is, in one of four
    states (progress.Progress.read)."""
    reports = re.findall(r"^… \d+/\d+ (?:runs|pages) done after [^\n]*in flight:\n((?:  [^\n]*\n)+)", sweep_site.log,
                         re.M)
    assert reports, sweep_site.log
    lines = "".join(reports).splitlines()
    names = {run.name for run in sweep_site.result.runs} | {"analysis", "data", "backprop"}
    for line in lines:
        name, _, what = line.strip().rpartition(": ")
        # a notebook's cell or epoch; "executed" between papermill's last save and its page; "running" when
        # its file is caught mid-write
        states = r"cell \d+ of \d+|epoch \d+/\d+, .*|executed; rendering its page|running"
        assert name in names and re.fullmatch(states, what), line


@pytest.mark.slow
def test_every_notebook_the_sweep_writes_is_valid(sweep_site):
    """Jupyter refuses to open an invalid notebook ("Notebook validation failed")."""
    written = [path for path in sweep_site.out.rglob("*.ipynb") if not path.name.startswith(".")]
    assert len(written) == len(sweep_site.result.runs) + 3  # a notebook per run on a CPU, and three pages
    for path in written:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)  # raises nbformat.ValidationError
        assert notebook.nbformat == 4, path


@pytest.mark.slow
def test_run_pages_show_the_finished_progress_bar_not_its_history(sweep_site):
    for run in sweep_site.result.runs:
        if run.status != "complete":
            continue
        notebook = nbformat.read(sweep_site.out / run.notebook, as_version=4)
        training = next(cell for cell in notebook.cells if "training" in cell.metadata.get("tags", []))
        text = "".join(output.get("text", "") for output in training.outputs)
        assert "\r" not in text, run.name
        bars = re.findall(r"\d+%\|.*\| (\d+)/(\d+)", text)
        assert bars == [(str(TINY["epochs"]), str(TINY["epochs"]))], (run.name, text)  # one bar, at its end
        page = (sweep_site.out / run.html).read_text()
        assert len(re.findall(r"\d+%\|", page)) == 1, run.name


@pytest.mark.slow
def test_dry_run_prints_the_plan_and_touches_nothing(sweep_site, data_dir, capsys):
    changed = write_params(sweep_site.root / "params-changed", "nmodel-tiny", {"model": "nmodel", **TINY,
                                                                               "hidden_size": 8})
    before = snapshot(sweep_site.root)
    try:
        with project_env(sweep_site.root, data_dir):
            plan = sweep([sweep_site.params / "<b>x.yaml", sweep_site.params / "no-gpu.yaml", changed], "site",
                         dry_run=True)
            assert sweep(changed, "elsewhere", dry_run=True).runs() == 1
        assert snapshot(sweep_site.root) == before, "a dry run wrote, moved or deleted something"
    finally:  # the shared sweep's project as the other tests expect it, whatever order they run in
        shutil.rmtree(changed.parent)
    assert not (sweep_site.root / "elsewhere").exists()
    out = capsys.readouterr().out
    assert "Plan: 4 runs in 4 notebooks into site: 2 up to date, 2 to run\n" in out
    states = {step.task.name: (step.state, step.why) for step in plan.steps}
    assert states["<b>x-seed1"] == ("up to date", "same settings; its notebook, page and records unchanged")
    assert states["no-gpu-seed0"] == ("to run", "it failed last time")
    assert states["nmodel-tiny-seed0"] == ("to run", "its settings or inputs changed since it last ran")
    assert "  nmodel-tiny-seed0: to run: its settings or inputs changed since it last ran" in out
    assert "  <b>x-seed1: up to date: same settings" in out
    assert "  nmodel-tiny-seed0: to run: not run yet" in out  # into the new folder


# Sweeps of their own -------------------------------------------------------------------------------------

def test_a_sweep_without_mathjax_stops_before_anything_trains(tmp_path, data_dir, capsys):
    root = make_project(tmp_path / "project")
    params = write_params(root / "params", "quick", {"model": "nmodel", **TINY})
    bare = tmp_path / "data"  # the MNIST files, but no MathJax
    bare.mkdir()
    (bare / "MNIST").symlink_to(data_dir / "MNIST")
    started = time.monotonic()
    with project_env(root, bare):
        assert cli.main(["sweep", str(params), "--out", "site"]) == 2
        missing = capsys.readouterr().err
        (bare / "mathjax").mkdir()
        (bare / "mathjax" / assets.MATHJAX_SCRIPT).write_text("not mathjax")
        assert cli.main(["sweep", str(params), "--out", "site"]) == 2
        corrupt = capsys.readouterr().err
    assert "data/mathjax/tex-svg-full.js is missing" in missing and "run `mnistlab fetch-mathjax`" in missing
    assert "SHA-256 differs); run `mnistlab fetch-mathjax` to replace it" in corrupt
    assert not (root / "site").exists(), "the sweep got as far as its output folder"
    assert time.monotonic() - started < 60


@pytest.mark.slow
@pytest.mark.long
def test_timeout_stops_a_notebook_that_runs_too_long_and_the_others_go_on(tmp_path, data_dir):
    """One worker: the notebook after the stopped one (the pages) runs on the worker whose kernel was stopped."""
    root = make_project(tmp_path / "project", analysis=False)  # the pages are not what this is about
    params = root / "params"
    write_params(params, "endless", {"model": "nmodel", **TINY, "epochs": 20000, "step_size": 1000})
    log = io.StringIO()
    every, progress.EVERY = progress.EVERY, 3.0
    try:
        with project_env(root, data_dir, OMP_NUM_THREADS="1"), contextlib.redirect_stdout(log):
            result = sweep(params, "site", workers=1, timeout=30)
    finally:
        progress.EVERY = every
    (endless,) = result.runs
    assert endless.status == "failed" and endless.record is None
    assert endless.error == "timed out: the notebook ran longer than --timeout 30 s and was stopped"
    assert (root / "site" / endless.html).is_file()  # its page shows how far it got
    assert re.search(r"^\[1/1 runs\] endless-seed0: FAILED: timed out", log.getvalue(), re.M), log.getvalue()
    # while it ran, what it was doing was reported: how far it got in 30 s depends on this machine's load (a kernel
    # took 15-46 s to start on a loaded machine); the epoch and time left are the next test's, which waits for them
    assert re.search(r"^… 0/1 runs done after .*(in flight|none in flight yet)", log.getvalue(), re.M), log.getvalue()
    # the others went on, on the same worker: the three pages, and the index
    assert [(page.status, page.executed) for page in result.pages] == [("complete", True)] * 3, log.getvalue()
    assert (root / "site" / "index.html").is_file()
    assert not kernels_of(root), "the kernel of the stopped notebook is still running"


@pytest.mark.slow
@pytest.mark.long
def test_a_run_in_flight_is_reported_with_its_epoch_and_time_left(tmp_path, data_dir):
    """`mnistlab sweep` as a user runs it: its report of a run in flight names the epoch and the time left. The test
    waits for that line (as long as a loaded machine needs, up to 10 minutes), not for a fixed time, then ends the
    run as a crash would: its kernel killed, the run failed, the sweep on to its pages."""
    import os
    import signal
    import subprocess
    import sys

    from helpers import kill_tree

    root = make_project(tmp_path / "project", analysis=False)
    params = write_params(root / "params", "endless", {"model": "nmodel", **TINY, "epochs": 20000, "step_size": 1000})
    env = {**os.environ, "MNISTLAB_ROOT": str(root), "MNISTLAB_DATA": str(data_dir), "OMP_NUM_THREADS": "1"}
    log = tmp_path / "sweep.log"
    with log.open("w") as out:
        sweeping = subprocess.Popen([sys.executable, "-u", "-m", "mnistlab", "sweep", str(params), "--out", "site"],
                                    env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    in_flight = re.compile(r"^  endless-seed0: epoch (\d+)/20000, about (.+) left$", re.M)
    try:
        deadline = time.monotonic() + 600
        while not in_flight.search(log.read_text()):
            assert sweeping.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(1)
        for pid in kernels_of(root):
            os.kill(pid, signal.SIGKILL)
        assert sweeping.wait(timeout=600) == 1, log.read_text()  # the run failed; the pages and index were made
    finally:
        kill_tree(sweeping)
    text = log.read_text()
    epoch, left = in_flight.search(text).groups()
    assert int(epoch) >= 1 and re.fullmatch(r"[\d.]+ s|\d+ min \d+ s|\d+ h \d+ min", left), (epoch, left)
    assert re.search(r"^\[1/1 runs\] endless-seed0: FAILED: ", text, re.M) and (root / "site" / "index.html").is_file()


def test_a_dry_run_starts_no_cluster_and_names_a_run_in_flight_in_another_sweep(tmp_path, data_dir, capsys):
    """It started a Dask cluster (38 s, a dashboard URL printed) and called another sweep's run in flight
    "interrupted … resumes". A test not marked slow fails if it starts a process: this one starts none."""
    from mnistlab.lab import lock

    root = make_project(tmp_path / "project", analysis=False)
    params = write_params(root / "params", "a", {"model": "nmodel", **TINY})
    out = root / "site"
    with project_env(root, data_dir), lock.hold(out):  # another sweep holds the folder...
        (out / "runs").mkdir()
        (out / "runs" / ".a-seed0.partial.ipynb").write_text("{}")  # ...and is executing this run
        (out / "checkpoints").mkdir()
        (out / "checkpoints" / "a-seed0.pt").write_bytes(b"")
        before = snapshot(root)
        plan = sweep(params, "site", dry_run=True)
        assert snapshot(root) == before
    text = capsys.readouterr().out
    assert plan.steps[0].why == "in flight in the sweep that holds this folder now"
    assert "interrupted" not in text and "resumes" not in text
    assert re.search(r"^note: site is in use by another sweep \(pid \d+ on .+ since .+\): the runs it has in flight "
                     r"are shown as in flight there", text, re.M), text
    assert re.search(r"where: a local Dask cluster of 1 worker, not started \(a dry run\)(: [^;]+)?; a notebook per "
                     "seed", text), text
    assert "dashboard" not in text.lower() and "http" not in text
    # with the folder free again, the same files read as what they are: a run interrupted, with its checkpoint
    with project_env(root, data_dir):
        assert sweep(params, "site", dry_run=True).steps[0].why == \
            "interrupted before it finished; resumes from its checkpoint"


def test_plan_of_a_notebook_that_was_never_run(tmp_path):
    """The reasons a plan gives, on a notebook's files alone: no Dask, no kernel."""
    from mnistlab.lab.execute import Task

    out = tmp_path / "site"
    task = Task(name="a-seed0", source=tmp_path / "train.ipynb", output=out / "runs" / "a-seed0.ipynb",
                html=out / "runs" / "a-seed0.html", parameters={}, site_root=out, key="k",
                records=(out / "runs" / "a-seed0.json",), checkpoints=(out / "checkpoints" / "a-seed0.pt",))
    assert progress.plan(out, [task]).steps[0].why == "not run yet"
    task.checkpoints[0].parent.mkdir(parents=True)
    task.checkpoints[0].write_bytes(b"")
    assert progress.plan(out, [task]).steps[0].why == "not run yet; resumes from its checkpoint"
    assert progress.plan(out, [task], force=True).steps[0].why == "--force"
    task.output.parent.mkdir(parents=True)
    task.output.write_text(json.dumps({"metadata": {"papermill": {"exception": True}}}))
    assert progress.plan(out, [task]).steps[0].why == "it failed last time; resumes from its checkpoint"


def test_reading_a_notebook_in_flight():
    """The epoch and time left from the last state of the progress bar papermill saved."""
    bar = "\rwmodel-hs1000-seed0:  37%|███▋      | 37/100 [08:33<16:05, 15.33s/epoch, test_acc=98.55]"
    notebook = {"cells": [{"cell_type": "code", "metadata": {"papermill": {"status": "completed"}}, "outputs": []},
                          {"cell_type": "code", "metadata": {"papermill": {"status": "running"}},
                           "outputs": [{"output_type": "stream", "name": "stdout", "text": bar}]}]}
    assert progress.reading(notebook, age=5) == "epoch 37/100, about 16 min 0 s left"
    notebook["cells"][1]["outputs"] = []
    assert progress.reading(notebook) == "cell 2 of 2"
    start = "\rx:   0%|          | 0/100 [00:00<?, ?epoch/s]"
    notebook["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": [start]}]
    assert progress.reading(notebook) == "epoch 0/100, time left not yet known"


def test_a_notebook_of_several_seeds_counts_as_its_runs(tmp_path):
    """On GPUs a params file's seeds train in one notebook: the counter still counts runs, as the plan does."""
    from mnistlab.lab.execute import Outcome, Task

    def task(name, seeds):
        return Task(name=name, source=tmp_path / "train.ipynb", output=tmp_path / f"{name}.ipynb",
                    html=tmp_path / f"{name}.html", parameters={}, site_root=tmp_path, key=name,
                    records=tuple(tmp_path / f"{name}-seed{seed}.json" for seed in seeds))

    stack, single = task("wmodel-hs1000", [0, 1, 2]), task("nmodel-hs1000", [0])
    watch = progress.Watch([stack, single], "runs")
    assert watch.finished(single, Outcome(single.name, seconds=12)) == "[1/4 runs] nmodel-hs1000: done (12 s)"
    assert watch.finished(stack, Outcome(stack.name, error="boom", seconds=3.2)) == \
        "[4/4 runs] wmodel-hs1000: FAILED: boom (3.2 s)"
    assert progress.plan(tmp_path, [stack, single]).text().startswith("Plan: 4 runs in 2 notebooks into ")


def test_plan_names_the_commit_of_runs_made_by_other_training_code(tmp_path):
    from mnistlab.lab import cache
    from mnistlab.lab.execute import Task

    out = tmp_path / "site"
    record = out / "runs" / "a-seed0.json"
    task = Task(name="a-seed0", source=tmp_path / "train.ipynb", output=out / "runs" / "a-seed0.ipynb",
                html=out / "runs" / "a-seed0.html", parameters={}, site_root=out, key="k", records=(record,))
    for path in (task.output, task.html, record):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    cache.stamp(task.manifest, "k", [task.output, task.html, record])  # up to date
    code = {"fingerprint": "f" * 64, "git_commit": "6158bf1" + "0" * 33, "git_dirty": False}
    older = {"a-seed0": (code, ["mnistlab/models.py"])}
    stopped = progress.plan(out, [task], older=older)
    assert stopped.stops and stopped.steps[0].state == progress.OLDER_CODE
    assert "  a-seed0: older code: trained by other training code (commit 6158bf1); changed since: " \
           "mnistlab/models.py" in stopped.text() and "The sweep stops here" in stopped.text()
    kept = progress.plan(out, [task], older=older, keep_older_code=True)
    assert not kept.stops and kept.steps[0].why.endswith("; kept as it is (--keep-older-code)")
    assert kept.text().splitlines()[0].endswith(": 1 up to date, 0 to run")
