"""`mnistlab sweep`: validation before anything runs, real papermill runs, resume, failures, the index page."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import nbformat
import pytest
import torch
import yaml
from nbformat.v4 import new_notebook

import mnistlab
from mnistlab import cli, sweep
from mnistlab.records import Record

ROOT = Path(__file__).resolve().parent.parent
GOOD = ["<b>x-seed0", "nmodel-tiny-seed0"]


class IndexPage(HTMLParser):
    """The links and the runs table's rows (cell texts) of index.html, as a reader sees them."""

    def __init__(self, text):
        super().__init__()
        self.links, self.rows, self._in_runs, self._in_body, self._cell = [], [], False, False, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a":
            self.links.append(attrs["href"])
        elif tag == "table":
            self._in_runs = attrs.get("id") == "runs"
        elif self._in_runs and tag == "tbody":
            self._in_body = True
        elif self._in_runs and self._in_body and tag == "tr":
            self.rows.append([])
        elif self._in_runs and tag == "td":
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1].append(self._cell)
            self._cell = None
        elif tag == "table":
            self._in_runs = self._in_body = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def index(site) -> IndexPage:
    return IndexPage((site.out / "index.html").read_text())


def write_params(folder: Path, name: str, params) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(params if isinstance(params, str) else yaml.safe_dump(params))
    return path


# Refused before anything runs -------------------------------------------------------------------

TINY = {"model": "nmodel", "hidden_size": 16, "epochs": 2, "train_size": 500}


@pytest.mark.parametrize("content, key, extra", [
    ({**TINY, "hiden_size": 32}, "hiden_size", []),
    ({**TINY, "hidden_size": "big"}, "hidden_size", []),
    ({**TINY, "epochs": 0}, "epochs", []),
    ("model: nmodel\nlr: 1e-3\n", "lr", []),  # YAML 1.1 reads 1e-3 (no dot) as a string
    ("- nmodel\n- bmodel\n", "mapping", []),
    ("model: [nmodel\n", "YAML", []),
    ({**TINY, "out_dir": "elsewhere"}, "out_dir", []),
    ({**TINY, "seed": 3}, "seed", ["--seeds", "0,1"]),
])
def test_invalid_params_file_is_refused_before_anything_runs(tmp_path, capsys, content, key, extra):
    params = tmp_path / "params"
    write_params(params, "good", TINY)
    write_params(params, "bad", content)
    out = tmp_path / "site"
    assert cli.main(["sweep", str(params), "--out", str(out), *extra]) == 2
    error = capsys.readouterr().err
    assert "bad.yaml" in error and key in error and "good.yaml" not in error
    assert not out.exists()


def test_every_invalid_file_is_named_at_once(tmp_path, capsys):
    params = tmp_path / "params"
    write_params(params, "one", {**TINY, "batch_size": -1})
    write_params(params, "two", {**TINY, "model": "xmodel"})
    assert cli.main(["sweep", str(params), "--out", str(tmp_path / "site")]) == 2
    error = capsys.readouterr().err
    assert "one.yaml: batch_size" in error and "two.yaml: model" in error


def test_bad_arguments_are_refused(tmp_path, capsys):
    write_params(tmp_path, "good", TINY)
    for args in (["--seeds", "0,x"], ["--seeds", "1,1"], ["--workers", "0"]):
        with pytest.raises(SystemExit) as exit:
            cli.main(["sweep", str(tmp_path / "good.yaml"), *args])
        assert exit.value.code == 2
    assert cli.main(["sweep", str(tmp_path / "empty-folder")]) == 2
    assert "no params file" in capsys.readouterr().err


def test_exit_status_is_1_when_anything_failed(monkeypatch, tmp_path):
    monkeypatch.setattr(sweep, "sweep", lambda *args, **kwargs: {"ok": False})
    assert cli.main(["sweep", str(tmp_path)]) == 1


def test_workers_get_one_gpu_each_or_a_share_of_the_cores(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert sweep.worker_environments(None) == [{"CUDA_VISIBLE_DEVICES": "3"}, {"CUDA_VISIBLE_DEVICES": "5"}]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert [env["CUDA_VISIBLE_DEVICES"] for env in sweep.worker_environments(3)] == ["0", "1", "0"]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert sweep.worker_environments(None) == [{}]
    assert sweep.worker_environments(2) == [{"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4"}] * 2


@pytest.fixture
def fake_papermill(tmp_path, monkeypatch):
    """The bookkeeping alone: papermill replaced by a stand-in that writes what train.ipynb would.

    A run's record has status ``diverged`` when its lr is above 1e6. Returns the notebooks folder
    (empty notebooks) and the list of executed runs' names.
    """
    executed = []

    def fake_execute(source, output, parameters, cwd, env):
        output.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(new_notebook(), output)
        if source.name == "train.ipynb":
            config, options = mnistlab.parse_params(**parameters)
            assert not Path(options.checkpoint).exists() or not stale(options.checkpoint, config)
            executed.append(options.run_name)
            diverged = config.lr > 1e6
            row = {key: 1.0 for key in ("lr", "train_loss", "train_acc", "val_loss", "val_acc", "test_acc", "seconds")}
            history = [{**row, "epoch": 1, "test_loss": float("nan") if diverged else 1.0}]
            Record(config=config.to_dict(), environment={}, history=history,
                   status="diverged" if diverged else "complete").save(options.record_path)
        return ""

    monkeypatch.setattr(sweep, "execute", fake_execute)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for name in ("train", *sweep.PAGES):
        nbformat.write(new_notebook(), notebooks / f"{name}.ipynb")
    return notebooks, executed


def stale(checkpoint, config) -> bool:
    return torch.load(checkpoint, weights_only=True)["config"]["hidden_size"] != config.hidden_size


def test_diverged_run_counts_as_failed(tmp_path, fake_papermill, capsys):
    notebooks, _ = fake_papermill
    params = write_params(tmp_path / "params", "big-lr", {**TINY, "lr": 1e30})
    report = sweep.sweep(params, tmp_path / "site", notebooks=notebooks)
    assert not report["ok"] and report["failed"] == ["big-lr-seed0"]
    assert report["runs"][0]["status"] == "diverged"
    assert "big-lr-seed0: diverged" in capsys.readouterr().out
    assert '<td class="failed">diverged' in (tmp_path / "site" / "index.html").read_text()


def test_changed_parameters_redo_the_run_from_scratch(tmp_path, fake_papermill):
    notebooks, executed = fake_papermill
    params, out = tmp_path / "params", tmp_path / "site"
    write_params(params, "a", TINY)
    write_params(params, "b", TINY)
    assert sweep.sweep(params, out, notebooks=notebooks)["ok"] and sorted(executed) == ["a-seed0", "b-seed0"]
    write_params(params, "b", {**TINY, "hidden_size": 32})
    # A checkpoint left by an interrupted run of b's old settings: the notebook would refuse to resume from it.
    (out / "checkpoints").mkdir(exist_ok=True)
    torch.save({"config": mnistlab.Config(**TINY).to_dict()}, out / "checkpoints" / "b-seed0.pt")
    report = sweep.sweep(params, out, notebooks=notebooks)
    assert report["ok"] and executed[2:] == ["b-seed0"]  # a is up to date
    assert Record.load(out / "runs" / "b-seed0.json").config["hidden_size"] == 32
    assert not (out / "checkpoints" / "b-seed0.pt").exists()
    assert sweep.sweep(params, out, notebooks=notebooks, force=True)["ok"]
    assert sorted(executed[3:]) == ["a-seed0", "b-seed0"]


def test_several_params_paths_make_one_sweep(tmp_path, fake_papermill):
    notebooks, executed = fake_papermill
    a = write_params(tmp_path / "one", "a", TINY)
    write_params(tmp_path / "two", "b", TINY)
    write_params(tmp_path / "two", "c", TINY)
    report = sweep.sweep([a, tmp_path / "two"], tmp_path / "site", notebooks=notebooks)
    assert report["ok"] and sorted(executed) == ["a-seed0", "b-seed0", "c-seed0"]
    assert [run["name"] for run in report["runs"]] == ["a-seed0", "b-seed0", "c-seed0"]
    with pytest.raises(sweep.SweepError, match="no params file"):
        sweep.sweep([a, tmp_path / "absent"], tmp_path / "site", notebooks=notebooks)


# A real sweep (the session fixture ``sweep_site`` in conftest.py) ----------------------------

@pytest.mark.slow
def test_sweep_writes_notebooks_records_html_analysis_and_index(sweep_site):
    runs = sweep_site.out / "runs"
    for name in GOOD:
        assert Record.load(runs / f"{name}.json").status == "complete"
        assert nbformat.read(runs / f"{name}.ipynb", as_version=4).metadata.papermill.parameters["run_name"] == name
        assert "data:image/png;base64," in (runs / f"{name}.html").read_text()  # figures embedded
        assert not (sweep_site.out / "checkpoints" / f"{name}.pt").exists()  # deleted once recorded
    for page in ("analysis", "data", "backprop"):
        assert (sweep_site.out / f"{page}.html").exists()
    assert [page["status"] for page in sweep_site.report["pages"]] == ["complete"] * 3
    assert json.loads((sweep_site.out / "sweep.json").read_text()) == sweep_site.report

    page = index(sweep_site)
    assert sorted(row[0] for row in page.rows) == sorted(GOOD + ["no-data-seed0"])
    for href in page.links:
        assert not href.startswith(("/", "http:", "https:", "file:")), href
        assert (sweep_site.out / unquote(href)).is_file(), href
    assert {"analysis.html", "data.html", "backprop.html", "runs/%3Cb%3Ex-seed0.html"} <= set(page.links)


@pytest.mark.slow
def test_failing_run_fails_alone_and_is_reported(sweep_site):
    report = sweep_site.report
    assert not report["ok"] and report["failed"] == ["no-data-seed0"]
    failed = next(run for run in report["runs"] if run["name"] == "no-data-seed0")
    assert failed["status"] == "failed" and failed["error"].startswith("DataError")
    assert failed["record"] is None and failed["html"] == "runs/no-data-seed0.html"  # partly executed, kept, rendered
    assert "DataError" in (sweep_site.out / failed["html"]).read_text()
    assert "no-data-seed0: FAILED" in sweep_site.log and "FAILED no-data-seed0" in sweep_site.log
    row = next(row for row in index(sweep_site).rows if row[0] == "no-data-seed0")
    assert row[1].startswith("failed") and "DataError" in row[1]


@pytest.mark.slow
def test_run_names_are_escaped_in_the_index(sweep_site):
    text = (sweep_site.out / "index.html").read_text()
    assert "&lt;b&gt;x-seed0" in text and "<b>x" not in text
    assert "<b>x-seed0" in [row[0] for row in index(sweep_site).rows]


@pytest.mark.slow
def test_second_sweep_skips_up_to_date_runs_and_pages(sweep_site, tmp_path, capsys):
    out = tmp_path / "site"
    shutil.copytree(sweep_site.out, out)  # copies keep their times, so the copy is as up to date as the original
    params = tmp_path / "params"
    params.mkdir()
    for stem in ("nmodel-tiny", "<b>x"):
        shutil.copy(sweep_site.params / f"{stem}.yaml", params)
    before = {path: path.stat().st_mtime_ns for path in out.rglob("*.ipynb")}
    report = sweep.sweep(params, out, notebooks=sweep_site.notebooks)
    assert report["ok"]
    assert not any(run["executed"] for run in report["runs"]) and not any(p["executed"] for p in report["pages"])
    assert {path: path.stat().st_mtime_ns for path in out.rglob("*.ipynb")} == before
    log = capsys.readouterr().out
    assert all(f"{name}: complete (up to date)" in log for name in GOOD)


@pytest.mark.slow
def test_killed_run_resumes_with_the_same_history(tmp_path, data_dir, monkeypatch):
    # One thread in the kernels and here: sums in another order differ in the last bits, and two
    # threads on a busy two-core machine crawl.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "train.ipynb").symlink_to(ROOT / "notebooks" / "train.ipynb")  # no pages: only the run matters
    # Many short epochs: the kill lands after the first checkpoint and well before the last epoch.
    settings = {"model": "nmodel", "hidden_size": 32, "epochs": 10, "step_size": 4, "train_size": 4000}
    params = write_params(tmp_path, "slow", settings)
    out = tmp_path / "site"
    checkpoint, record = out / "checkpoints" / "slow-seed0.pt", out / "runs" / "slow-seed0.json"

    code = f"from mnistlab.sweep import sweep; sweep({str(params)!r}, {str(out)!r}, notebooks={str(notebooks)!r})"
    process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    kill_tree(process)
    assert checkpoint.exists(), "no checkpoint before the sweep ended or timed out"
    saved = torch.load(checkpoint, weights_only=True)["history"]
    assert 1 <= len(saved) < settings["epochs"] and not record.exists()

    report = sweep.sweep(params, out, notebooks=notebooks)
    assert report["runs"][0]["status"] == "complete"
    resumed = Record.load(record).history
    assert resumed[:len(saved)] == saved  # the epochs before the kill, timings included: resumed, not redone
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        uninterrupted = mnistlab.run(mnistlab.Config(**settings)).history
    finally:
        torch.set_num_threads(threads)
    without_seconds = [[{k: v for k, v in row.items() if k != "seconds"} for row in rows]
                       for rows in (resumed, uninterrupted)]
    assert without_seconds[0] == without_seconds[1]
    assert not checkpoint.exists()


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL the process, its group and every descendant: jupyter starts kernels in a session of their own."""
    doomed = descendants(process.pid)
    os.killpg(process.pid, signal.SIGKILL)
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


def descendants(pid: int) -> list[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found
