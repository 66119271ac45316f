"""`mnistlab sweep` for real: papermill in Dask workers, failures, the up-to-date cache, kills, the lock, clusters."""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import markupsafe
import nbformat
import pytest
import torch
import yaml

import mnistlab
from helpers import ROOT, TINY, copy_project, kill_tree, make_project, project_env, urls, wait_for, write_params
from mnistlab import cli
from mnistlab.lab import findings, lock, schedule
from mnistlab.lab.sweep import report, sweep
from mnistlab.records import Record

GOOD = ["<b>x-seed0", "<b>x-seed1", "nmodel-tiny-seed0"]


# One real sweep (the session fixture ``sweep_site`` in conftest.py) ------------------------------

@pytest.mark.slow
def test_sweep_writes_notebooks_records_pages_and_index(sweep_site):
    runs = sweep_site.out / "runs"
    for name in GOOD:
        record = Record.load(runs / f"{name}.json")
        assert record.status == "complete" and len(record.history) == TINY["epochs"]
    for seed in (0, 1):  # on a CPU, each seed of the file in a notebook of its own
        notebook = nbformat.read(runs / f"<b>x-seed{seed}.ipynb", as_version=4)
        assert notebook.metadata.papermill.parameters["seeds"] == [seed]
    assert not any((sweep_site.out / "checkpoints").glob("*"))  # deleted once recorded
    assert [page.status for page in sweep_site.result.pages] == ["complete"] * 3
    assert json.loads((sweep_site.out / "sweep.json").read_text()) == json.loads(json.dumps(report(sweep_site.result)))
    links = urls((sweep_site.out / "index.html").read_text())
    for href in links:
        assert not href.startswith(("/", "http:", "https:", "file:")), href
        assert (sweep_site.out / unquote(href.split("#")[0])).exists(), href
    assert {"analysis.html", "data.html", "backprop.html", "runs/%3Cb%3Ex-seed0.html", "runs/%3Cb%3Ex-seed1.html"} \
        <= set(links)


@pytest.mark.slow
def test_every_page_renders_without_an_error_and_shows_its_figures(sweep_site):
    """The pages as the sweep makes them from the real notebooks: no error output, no traceback on the page, and
    the figures as files of the site beside the page (nothing loaded from elsewhere, nothing inline): Figure 1's
    two grids of digits on the data page, at least one on the analysis page and on each run's."""
    pages = ["analysis", "data", "backprop", "runs/nmodel-tiny-seed0", "runs/<b>x-seed0"]
    for page in pages:
        notebook = nbformat.read(sweep_site.out / f"{page}.ipynb", as_version=4)
        errors = [output for cell in notebook.cells for output in cell.get("outputs", [])
                  if output.get("output_type") == "error"]
        assert not errors, (page, errors)
        path = sweep_site.out / f"{page}.html"
        html = path.read_text()
        assert html.startswith("<!DOCTYPE html>") and "Traceback" not in html, page
        assert "data:image" not in html, page
        figures = re.findall(r'<img [^>]*src="([^"]+)"', html)
        assert len(figures) >= (0 if page == "backprop" else 2 if page == "data" else 1), (page, len(figures))
        for src in figures:
            src = unquote(src)
            assert src.startswith(f"{Path(page).name}_files/") and (path.parent / src).is_file(), (page, src)


@pytest.mark.slow
def test_analysis_and_index_read_the_same_records(sweep_site):
    analysis = nbformat.read(sweep_site.out / "analysis.ipynb", as_version=4)
    printed = "".join(output.get("text", "") for cell in analysis.cells for output in cell.get("outputs", []))
    assert "3 records (3 in site/runs), 3 complete" in printed  # the sweep's own: not the stray one beside them
    index = (sweep_site.out / "index.html").read_text()
    assert "stray" not in index and all(name.replace("<", "&lt;").replace(">", "&gt;") in index for name in GOOD)
    # The index leads with the verdicts the analysis page reached: the same rows, read from its executed notebook.
    rows = findings.published(sweep_site.out / "analysis.ipynb")
    assert rows and all(row["verdict"] in {"supported", "contradicted", "within noise", "not tested here"}
                        for row in rows)
    lead = index[index.index("<h2>Findings</h2>"):index.index("<h2>Pages</h2>")]
    assert index.index("<h2>Findings</h2>") < index.index('id="table1"')
    assert f"{len(rows)} claims and questions: " in lead
    for row in rows:
        assert str(markupsafe.escape(row["name"])) in lead, row["name"]
        if row["verdict"] != "not tested here":
            assert str(markupsafe.escape(row["deciding number (95 % interval)"])) in lead


@pytest.mark.slow
def test_the_analysis_page_shows_table_1s_intervals_whole(sweep_site):
    # pandas cuts a table's text to 50 characters by default: the interval over seeds and test images, last in
    # each cell of several seeds, was lost to "..." on the published page.
    analysis = nbformat.read(sweep_site.out / "analysis.ipynb", as_version=4)
    table = next(cell for cell in analysis.cells if "table1.text(table)" in cell.source)
    shown = "".join(output.get("data", {}).get("text/html", "") for output in table.outputs)
    assert re.search(r"± \d+\.\d\d · seeds \[[\d.]+, [\d.]+\] · seeds\+images \[[\d.]+, [\d.]+\]", shown), shown[:3000]
    assert "..." not in shown and "…" not in shown


@pytest.mark.slow
def test_everything_a_sweep_writes_stays_under_out(sweep_site):
    events = list((sweep_site.out / "runs" / "tensorboard" / "nmodel-tiny-seed0").glob("events.out.tfevents.*"))
    assert events, "tensorboard: true wrote no event file under --out"
    assert sorted(p.name for p in sweep_site.root.iterdir()) == ["notebooks", "params", "site"]
    assert not (ROOT / "runs").exists() or not any((ROOT / "runs").rglob("nmodel-tiny*"))


@pytest.mark.slow
def test_published_files_name_no_machine_path(sweep_site):
    for path in sweep_site.out.rglob("*"):
        if path.is_file() and path.suffix in (".html", ".ipynb", ".json"):
            text = path.read_text()
            assert str(ROOT) not in text and str(sweep_site.root) not in text, path


@pytest.mark.slow
def test_failing_run_fails_alone_and_is_reported(sweep_site):
    result = sweep_site.result
    assert not result.ok and result.failed == ["no-gpu-seed0"]
    failed = next(run for run in result.runs if run.name == "no-gpu-seed0")
    assert failed.status == "failed" and failed.error.startswith("ConfigError: device 'cuda:7' is not available")
    assert failed.record is None and failed.html == "runs/no-gpu-seed0.html"  # partly executed, kept, rendered
    assert "ConfigError" in (sweep_site.out / failed.html).read_text()
    assert "no-gpu-seed0: FAILED: ConfigError" in sweep_site.log and "FAILED no-gpu-seed0" in sweep_site.log


@pytest.mark.slow
def test_second_sweep_skips_what_is_up_to_date(sweep_site, data_dir, capsys):
    good = sweep_site.root / "params-good"
    for stem in ("nmodel-tiny", "<b>x"):
        good.mkdir(exist_ok=True)
        (good / f"{stem}.yaml").write_bytes((sweep_site.params / f"{stem}.yaml").read_bytes())
    before = {path: path.stat().st_mtime_ns for path in sweep_site.out.rglob("*.ipynb")}
    with project_env(sweep_site.root, data_dir):
        result = sweep(good, "site")
    assert not any(run.executed for run in result.runs) and [r.status for r in result.runs] == ["complete"] * 3
    assert not any(page.executed for page in result.pages[1:])  # data and backprop; analysis reads other records now
    assert {path: path.stat().st_mtime_ns for path in sweep_site.out.rglob("*.ipynb")
            if path in before and path.name != "analysis.ipynb"} == \
        {path: mtime for path, mtime in before.items() if path.name != "analysis.ipynb"}
    log = capsys.readouterr().out
    assert "nmodel-tiny-seed0: up to date" in log and "<b>x-seed0: up to date" in log and "<b>x-seed1: up" in log


@pytest.mark.slow
def test_a_notebook_runs_where_the_temporary_folder_is_too_deep_for_a_unix_socket(tmp_path):
    """A kernel talks to papermill over Unix sockets, whose paths may have 107 bytes. Under a deep TMPDIR (a test's
    or a batch job's scratch folder) the notebook still runs, with its sockets elsewhere; it used to fail with
    "File name too long" and leave a zmq context whose collection hung the Dask worker for ever."""
    deep = tmp_path / ("d" * 50) / ("e" * 50)
    deep.mkdir(parents=True)
    cells = [nbformat.v4.new_code_cell("print(6 * 7)")]
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": kernel}), tmp_path / "one.ipynb")
    code = ("import sys; from pathlib import Path; from mnistlab.lab.execute import Task, execute\n"
            "here = Path(sys.argv[1])\n"
            "task = Task(name='one', source=here / 'one.ipynb', output=here / 'out' / 'one.ipynb',\n"
            "            html=here / 'out' / 'one.html', parameters={}, site_root=here / 'out', key='k')\n"
            "print(repr(execute(task).error))")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "TMPDIR": str(deep)}, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "''", result.stdout + result.stderr[-3000:]
    outputs = nbformat.read(tmp_path / "out" / "one.ipynb", as_version=4).cells[0].outputs
    assert outputs[0].text == "42\n" and (tmp_path / "out" / "one.html").is_file()
    assert not list(deep.iterdir()), "the sockets' folder was left behind"


# Kills, locks and changed parameters --------------------------------------------------------------

def start_sweep(params: Path, out: str, root: Path, data_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "MNISTLAB_ROOT": str(root), "MNISTLAB_DATA": str(data_dir), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "mnistlab.cli", "sweep", str(params), "--out", out], env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_a_kill_mid_run_never_leaves_a_stale_page_up_to_date(finished_sweep, tmp_path, data_dir):
    root = copy_project(finished_sweep, tmp_path / "project")
    out = root / "site"
    params = write_params(root / "params", "a", {"model": "nmodel", **TINY, "hidden_size": 8})
    process = start_sweep(params, "site", root, data_dir)
    record = out / "runs" / "a-seed0.json"
    # The new record is written before the notebook is saved and rendered: kill right then.
    wait_for(lambda: record.exists() and Record.load(record).config["hidden_size"] == 8, process)
    kill_tree(process)
    assert Record.load(record).config["hidden_size"] == 8, "the sweep did not get as far as the new record"
    assert not (out / "runs" / ".a-seed0.done").exists()  # the manifest went first: nothing claims to be up to date

    with project_env(root, data_dir):
        result = sweep(params, "site")
    assert result.ok and result.runs[0].executed  # redone, not taken as up to date
    assert result.runs[0].record.config["hidden_size"] == 8
    assert nbformat.read(out / "runs" / "a-seed0.ipynb", as_version=4).metadata.papermill.parameters["hidden_size"] == 8


@pytest.mark.slow
@pytest.mark.long
def test_killed_run_resumes_with_the_same_history(tmp_path, data_dir):
    root = make_project(tmp_path / "project", analysis=False)
    # Many short epochs: the kill lands after the first checkpoint and well before the last epoch.
    settings = {"model": "nmodel", "hidden_size": 32, "epochs": 20, "step_size": 8, "train_size": 2000}
    params = write_params(root / "params", "slow", settings)
    out = root / "site"
    checkpoint, record = out / "checkpoints" / "slow-seed0.pt", out / "runs" / "slow-seed0.json"
    process = start_sweep(params, "site", root, data_dir)
    wait_for(checkpoint.exists, process)
    kill_tree(process)
    assert checkpoint.exists(), "no checkpoint before the sweep ended or timed out"
    saved = torch.load(checkpoint, weights_only=True)["records"][0]["history"]
    assert 1 <= len(saved) < settings["epochs"] and not record.exists()

    # The same settings uninterrupted, the same way and in the same sweep (a notebook kernel in a sweep's worker): a
    # bare `mnistlab train` process, or another thread count, sums in another order and differs in the last bits
    # (start_sweep's one thread, here too).
    straight = write_params(root / "params", "straight", settings)
    with project_env(root, data_dir, OMP_NUM_THREADS="1"):
        result = sweep([params, straight], "site")
    assert [run.status for run in result.runs] == ["complete", "complete"]
    resumed = Record.load(record)
    assert resumed.history[:len(saved)] == saved  # the epochs before the kill, timings included: resumed, not redone
    assert resumed.resumed_after_epoch == len(saved)
    uninterrupted = result.runs[1].record.history
    assert result.runs[1].record.resumed_after_epoch is None
    without_seconds = [[{k: v for k, v in row.items() if k != "seconds"} for row in rows]
                       for rows in (resumed.history, uninterrupted)]
    assert without_seconds[0] == without_seconds[1]
    assert not checkpoint.exists()


@pytest.mark.slow
def test_a_second_sweep_into_a_folder_in_use_is_refused_and_a_dead_holder_is_stale(tmp_path, capsys):
    out = tmp_path / "site"
    code = f"from mnistlab.lab import lock; import time\nwith lock.hold(__import__('pathlib').Path({str(out)!r})):\n" \
           "    print('held', flush=True); time.sleep(120)"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        params = write_params(tmp_path / "params", "a", {"model": "nmodel", **TINY})
        assert cli.main(["sweep", str(params), "--out", str(out)]) == 2
        error = capsys.readouterr().err
        assert "is in use by another sweep" in error and f"pid {holder.pid} on {socket.gethostname()}" in error
    finally:
        holder.kill()
        holder.wait()
    with lock.hold(out) as note:  # the holder died without letting go: its lock is stale
        assert f"took over the lock of a sweep that ended without releasing it (pid {holder.pid}" in note
    with lock.hold(out) as note:
        assert note == ""  # released cleanly last time


# Clusters ------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.waits
def test_sweep_on_an_existing_scheduler_with_two_workers(tmp_path, data_dir):
    root = make_project(tmp_path / "project", analysis=False)
    params = write_params(root / "params", "remote", {"model": "bmodel", **TINY})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "MNISTLAB_ROOT": str(root), "MNISTLAB_DATA": str(data_dir), "OMP_NUM_THREADS": "1"}
    dask = [sys.executable, "-m", "dask"]
    processes = [subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                   "--dashboard-address", ":0", "--no-show"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    processes += [subprocess.Popen([*dask, "worker", address, "--nthreads", "1", "--host", "127.0.0.1",
                                    "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                  for _ in range(2)]
    try:
        from dask.distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)
        with project_env(root, data_dir):
            result = sweep(params, "site", scheduler=address)
        assert result.ok and result.runs[0].record.status == "complete"
        assert (root / "site" / "index.html").exists()
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_slurm_job_script_asks_for_one_gpu_per_job(tmp_path):
    options = yaml.safe_load((ROOT / "params" / "clusters" / "slurm.yaml").read_text())
    # Keep the test's scheduler on loopback; the rest is the shipped file.
    local = write_params(tmp_path, "slurm", {**options, "scheduler_options": {"host": "127.0.0.1",
                                                                                "dashboard_address": None}})
    cluster = schedule.slurm_cluster(cluster_file=local)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH --gres=gpu:1" in script and "--resources GPU=1" in script
    assert "#SBATCH --cpus-per-task=4" in script and "#SBATCH -t 04:00:00" in script


@pytest.mark.slow
def test_runs_of_other_training_code_are_never_reused_silently(finished_sweep, tmp_path, data_dir, capsys):
    """A real edit of a fingerprinted file (a code cell of the project's train notebook, which the kernels
    fingerprint): the next sweep stops before running anything and names the run and the file; the user
    keeps the old results (--keep-older-code) or retrains them (--force)."""
    root = copy_project(finished_sweep, tmp_path / "project")
    params = root / "params" / "a.yaml"
    first = Record.load(root / "site" / "runs" / "a-seed0.json")
    notebook = root / "notebooks" / "train.ipynb"
    notebook.unlink()
    edited = nbformat.read(ROOT / "notebooks" / "train.ipynb", as_version=4)  # a copy of its own, edited
    code_cell = next(cell for cell in edited.cells if cell.cell_type == "code" and "tags" not in cell.metadata)
    code_cell.source += "\nprint('edited')"
    nbformat.write(edited, notebook)
    with project_env(root, data_dir):
        with pytest.raises(mnistlab.lab.params.ParamsError,
                           match=r"1 up-to-date run\(s\) were trained by other training code.*a-seed0.*"
                                 r"changed since: notebooks/train.ipynb.*--force.*--keep-older-code"):
            sweep(params, "site")
        kept = sweep(params, "site", keep_older_code=True)
        assert not kept.runs[0].executed and kept.runs[0].record.code == first.code
        retrained = sweep(params, "site", force=True)
    assert retrained.runs[0].executed
    assert retrained.runs[0].record.code["fingerprint"] != first.code["fingerprint"]
    assert retrained.runs[0].record.code["files"]["mnistlab/models.py"] == first.code["files"]["mnistlab/models.py"]


@pytest.mark.slow
def test_a_page_changed_or_gone_is_rendered_again_and_its_run_never_retrained(finished_sweep, tmp_path, data_dir,
                                                                             capsys):
    """A run's manifest vouches for its page too; a page edited, or re-rendered by a newer template, used to make its
    run "to run" again: hours of training for a page. Now the page is rendered again from its notebook and the run
    stays up to date; `mnistlab render --site` re-renders the whole report and leaves every run up to date."""
    root = copy_project(finished_sweep, tmp_path / "project")
    params, runs = root / "params" / "a.yaml", root / "site" / "runs"
    kept = {name: (runs / name).read_bytes() for name in ("a-seed0.ipynb", "a-seed0.json")}
    (runs / "a-seed0.html").write_text("<p>edited by hand</p>")
    with project_env(root, data_dir, OMP_NUM_THREADS="1"):
        (step,) = sweep(params, "site", dry_run=True).steps
        assert step.state == "up to date" and "re-rendered from its notebook, without training" in step.why
        again = sweep(params, "site")
        assert again.ok and not again.runs[0].executed
        assert "a-seed0: page re-rendered from its notebook (its notebook and records unchanged: nothing retrained)" \
            in capsys.readouterr().out
        assert "mnistlab-nav" in (runs / "a-seed0.html").read_text()
        (runs / "a-seed0.html").unlink()  # gone
        assert cli.main(["render", "--site", "site"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert "runs/a-seed0.html: re-rendered; up to date" in lines and "site/index.html: re-rendered" in lines
        assert "pages were last re-rendered" in (root / "site" / "index.html").read_text()
        assert all(step.state == "up to date" for step in sweep(params, "site", dry_run=True).steps)
        # Re-rendering an up-to-date report changes no byte of it: not even the index's date of the last render.
        site = {path: path.read_bytes() for path in (root / "site").rglob("*") if path.is_file()}
        assert cli.main(["render", "--site", "site"]) == 0
        assert "site/index.html: up to date" in capsys.readouterr().out.splitlines()
        assert {path: path.read_bytes() for path in (root / "site").rglob("*") if path.is_file()} == site
    assert {name: (runs / name).read_bytes() for name in kept} == kept  # the run's notebook and record untouched


@pytest.mark.slow
def test_another_sweeps_records_are_read_beside_and_a_plan_says_when_they_are_left_out(finished_sweep, tmp_path,
                                                                                       data_dir, capsys):
    """``--also``, as the learning-rate study reads the paper's lr 0.01 runs: the pages read the other folder's
    records beside this sweep's runs, sweep.json names the folder, and the next sweep's plan says when it would
    leave them out (the cases: ``test_a_plan_says_what_its_pages_will_show_less_of_than_the_last_sweeps``)."""
    root = copy_project(finished_sweep, tmp_path / "project")
    other = root / "paper" / "runs"
    other.mkdir(parents=True)
    (other / "bmodel-hs1000.json").write_bytes((ROOT / "tests" / "data" / "record-v1-bmodel-hs1000.json").read_bytes())
    params = root / "params" / "a.yaml"
    with project_env(root, data_dir):
        result = sweep(params, "site", also=["paper/runs"], keep_older_code=True)  # a record of format 1: code unknown
        assert not result.runs[0].executed and {page.name: page.executed for page in result.pages}["analysis"]
        read = nbformat.read(root / "site" / "analysis.ipynb", as_version=4).metadata.papermill.parameters["records"]
        assert sorted(read) == ["paper/runs/bmodel-hs1000.json", "site/runs/a-seed0.json"]
        assert json.loads((root / "site" / "sweep.json").read_text())["also"] == ["paper/runs"]
        capsys.readouterr()
        plan = sweep(params, "site", dry_run=True)
    assert plan.notes == ["the last sweep into site read paper/runs beside its own runs; this one does not, so its "
                          "pages will leave those records out (give --also paper/runs to keep them)"]
    assert f"note: {plan.notes[0]}" in capsys.readouterr().out


def test_a_plan_says_what_its_pages_will_show_less_of_than_the_last_sweeps(tmp_path):
    """From the last sweep.json alone: runs it listed that this sweep leaves out (``--seeds`` forgotten on the
    published study), and ``--also`` folders it read that this one does not. More runs or more folders, or a
    sweep.json that is missing, unreadable or not what a sweep writes, say nothing and never stop the sweep."""
    from mnistlab.lab.sweep import since_last_sweep

    out = tmp_path / "site"
    out.mkdir()

    def last(content) -> Path:
        (out / "sweep.json").write_text(content if isinstance(content, str) else json.dumps(content))
        return out

    runs = [{"name": f"a-seed{seed}"} for seed in range(5)]
    assert since_last_sweep(out, ["a-seed0"], []) == []  # no sweep before
    assert since_last_sweep(last("{not json"), ["a-seed0"], []) == []
    assert since_last_sweep(last([1, 2]), ["a-seed0"], []) == []
    assert since_last_sweep(last({"runs": runs}), [f"a-seed{seed}" for seed in range(6)], []) == []  # more: fine
    (left,) = since_last_sweep(last({"runs": runs, "also": []}), ["a-seed0"], [])
    assert left.startswith("the last sweep into ") and "listed 5 runs; this one leaves out 4 of them (the first: " \
        "a-seed1)" in left and "were --seeds or a params file left out?" in left
    (dropped,) = since_last_sweep(last({"runs": runs, "also": ["paper/runs", "x/runs"]}), [r["name"] for r in runs],
                                  ["x/runs"])
    assert "read paper/runs beside its own runs; this one does not" in dropped and \
        dropped.endswith("(give --also paper/runs to keep them)")
    assert since_last_sweep(last({"runs": runs, "also": ["x/runs"]}), [r["name"] for r in runs],
                            ["x/runs", "y/runs"]) == []  # a folder added
    (hidden,) = since_last_sweep(last({"runs": runs, "also": ["…/runs"]}), [r["name"] for r in runs], [])
    assert "read …/runs beside" in hidden and "give --also" not in hidden  # a path it cannot name: no hint
    # What a sweep does not write is passed over part by part: bad runs say nothing of runs, bad folders of folders.
    assert since_last_sweep(last({"runs": "x", "also": [None]}), ["a-seed0"], []) == []
    (only,) = since_last_sweep(last({"runs": [1, {"name": 2}], "also": ["p/runs"]}), ["a-seed0"], [])
    assert "read p/runs" in only


def test_gpus_are_counted_by_nvidia_smi_where_the_driver_has_no_proc_entries(tmp_path, monkeypatch):
    if Path("/proc/driver/nvidia/gpus").is_dir():
        pytest.skip("this machine's driver has /proc entries: they are what is counted")
    assert schedule.gpu_count() == 0 or __import__("shutil").which("nvidia-smi")  # none here, unless a tool says so
    tool = tmp_path / "nvidia-smi"
    tool.write_text("#!/bin/sh\n[ \"$1\" = -L ] || exit 9\n"
                    "echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)'\n"
                    "echo 'GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-2)'\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert schedule.gpu_count() == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert schedule.gpu_count() == 1
