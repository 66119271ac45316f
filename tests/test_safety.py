"""Nothing overwritten, nothing published that names this machine, failures early and in words.

The output folder of a sweep (``lock.check_out``), records written over by another process, machine paths in
``sweep.json``, what a run needs of memory and disk checked before training, names too long for a file
system, and write errors (a real full and a real read-only file system, made when the tests run as root).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT, TINY, copy_project, interruptible, make_project, project_env, snapshot, write_params
from mnistlab import cli
from mnistlab.lab import cache, lock, params
from mnistlab.lab.params import ParamsError

# The output folder -----------------------------------------------------------------------------------

@pytest.fixture
def project(tmp_path, data_dir):
    root = make_project(tmp_path / "project", analysis=False)
    write_params(root / "params", "a", {"model": "nmodel", **TINY})
    with project_env(root, data_dir):
        yield root


def sweep_cli(*args: str) -> int:
    # A scheduler nobody listens on: were the out check to let a sweep through, it would end at connecting.
    params_file = Path(os.environ["MNISTLAB_ROOT"]) / "params" / "a.yaml"
    return cli.main(["sweep", str(params_file), *args, "--scheduler", "tcp://127.0.0.1:9"])


@pytest.mark.parametrize("out, message", [
    ("notebooks", "--out notebooks is notebooks, which holds the sources"),
    ("notebooks/site", "--out notebooks/site is inside notebooks, which holds the sources"),
    ("params", "--out params is params, which holds the sources"),
    (".", "--out . is the project root"),
    ("..", "is a folder above the project root"),
])
def test_out_is_never_the_sources_or_the_project_root(project, capsys, out, message):
    before = snapshot(project.parent)
    assert sweep_cli("--out", out) == 2
    error = capsys.readouterr().err
    assert message in error and "Sweep into a folder of its own" in error, error
    assert snapshot(project.parent) == before  # not even a lock file


def test_out_is_never_the_file_system_root_or_home(project):
    # Asked directly, not through a sweep: a check that let them through must not fill / or ~ with a site.
    with pytest.raises(ParamsError, match="--out / is a folder above the project root"):
        lock.check_out(Path("/"))
    home = Path.home()
    if home in project.parents:
        with pytest.raises(ParamsError, match="is a folder above the project root"):
            lock.check_out(home)
    elif any(home.iterdir()) and not any((home / mark).exists() for mark in lock.MADE_BY_A_SWEEP):
        with pytest.raises(ParamsError, match="is a folder that no sweep made"):
            lock.check_out(home)


def test_out_is_never_the_package_even_through_a_link(project, capsys):
    (project / "link").symlink_to(ROOT / "mnistlab")
    assert sweep_cli("--out", "link") == 2
    assert "--out link is" in capsys.readouterr().err
    with pytest.raises(ParamsError, match="holds the sources"):
        lock.check_out(ROOT / "mnistlab" / "lab")


def test_a_folder_of_other_files_is_refused_unless_asked(project, capsys):
    site = project / "site"
    site.mkdir()
    (site / "index.html").write_text("my own page")
    (site / "notes.txt").write_text("mine")
    before = snapshot(site)
    assert sweep_cli("--out", "site") == 2
    error = capsys.readouterr().err
    assert ("--out site is a folder that no sweep made (no sweep.json, no finished runs), "
            "holding index.html, notes.txt") in error
    assert "--allow-other-files" in error and snapshot(site) == before
    lock.check_out(site, other_files=True)  # asked explicitly: allowed (a sweep would write there)
    with pytest.raises(ParamsError, match="is notebooks, which holds the sources"):
        lock.check_out(project / "notebooks", other_files=True)  # never the sources


def test_a_study_published_run_by_run_is_accepted_and_a_stray_manifest_name_is_not(project):
    # A fresh clone of a study published run by run holds the finished runs (each with the manifest a sweep
    # writes last), the MathJax copy and notes, but no sweep.json: the sweep must go on there, not refuse it.
    site = project / "site"
    (site / "runs").mkdir(parents=True)
    (site / "NOTES.md").write_text("notes")
    (site / "runs" / "a-seed0.json").write_text("{}")
    with pytest.raises(ParamsError, match="no sweep made"):
        lock.check_out(site)
    (site / "runs" / "a-seed0.done").write_text("{}")  # not a manifest's name (those start with a dot)
    with pytest.raises(ParamsError, match="no sweep made"):
        lock.check_out(site)
    (site / "runs" / ".a-seed0.done").write_text("{}")
    lock.check_out(site)
    assert lock.made_by_a_sweep(ROOT / "reports" / "paper")  # the published study itself


def test_a_folder_a_sweep_made_or_holding_only_a_sweeps_folders_is_accepted(project, tmp_path):
    jobs = params.jobs([project / "params" / "a.yaml"], project / "site")
    from mnistlab.lab.sweep import _writes

    site = project / "site"
    lock.check_out(site, writes=_writes(jobs, site))  # new
    site.mkdir()
    lock.check_out(site, writes=_writes(jobs, site))  # empty
    (site / "runs").mkdir()
    (site / "runs" / "stray-seed0.json").write_text("{}")  # another file in runs/: left alone, read by no page
    lock.check_out(site, writes=_writes(jobs, site))
    (site / "runs" / "a-seed0.json").write_text("{}")  # one this sweep writes: it would be overwritten
    with pytest.raises(ParamsError, match=r"holding runs/a-seed0\.json: a sweep would overwrite"):
        lock.check_out(site, writes=_writes(jobs, site))
    for mark in ("sweep.json", ".sweep.lock"):  # a sweep's folder (the lock is there from a sweep's first moment)
        (site / mark).write_text("")
        lock.check_out(site, writes=_writes(jobs, site))
        (site / mark).unlink()
    (tmp_path / "file").write_text("")
    with pytest.raises(ParamsError, match="is a file, not a folder"):
        lock.check_out(tmp_path / "file")


# Records and what is published -------------------------------------------------------------------------

def test_a_record_of_another_config_is_never_reported_for_the_run(project):
    from mnistlab.lab.execute import Outcome
    from mnistlab.lab.sweep import _results, _run_task

    out = project / "site"
    job = params.jobs([project / "params" / "a.yaml"], out)[0]
    task = _run_task(job, (0,), project / "notebooks", out, None)
    foreign = json.loads((ROOT / "tests" / "data" / "record-v1-bmodel-hs1000.json").read_text())  # bmodel, H=1000
    task.records[0].parent.mkdir(parents=True)
    task.records[0].write_text(json.dumps(foreign))
    task.output.write_text("{}")
    cache.stamp(task.manifest, task.key, [task.output, *task.records])  # bound, as a race would have left it
    [result] = _results(job, (0,), task, Outcome(task.name), out)
    assert result.status == "failed" and result.record is None and result.record_file is None
    assert "runs/a-seed0.json was written by another run (model 'bmodel', not 'nmodel', hidden_size 1000, not 16" \
        in result.error
    assert not task.manifest.exists()  # not up to date: the next sweep redoes it


@pytest.mark.slow
def test_a_record_written_over_by_another_process_makes_the_run_redone_and_no_path_is_published(finished_sweep,
                                                                                                   tmp_path, data_dir):
    """A real sweep (``a`` finished, ``nodata`` fails); then a real ``mnistlab train`` writes another config's
    record into ``a``'s file: the next sweep redoes the run instead of calling it up to date. A failing run's error
    (absolute paths of the data it did not find) is published in sweep.json without this machine's paths."""
    from mnistlab.lab.sweep import sweep

    project = copy_project(finished_sweep, tmp_path / "project")
    (project / "empty").mkdir()
    write_params(project / "params", "nodata", {"model": "nmodel", **TINY, "data_dir": str(project / "empty")})
    with project_env(project, data_dir):
        first = sweep([project / "params" / "a.yaml", project / "params" / "nodata.yaml"], "site")
        assert [run.status for run in first.runs] == ["complete", "failed"] and not first.runs[0].executed
        assert "MNIST data is not usable" in first.runs[1].error
        published = (project / "site" / "sweep.json").read_text()
        assert "empty/MNIST/raw/train-images-idx3-ubyte is missing" in published
        assert str(project) not in published and str(ROOT) not in published

        record = project / "site" / "runs" / "a-seed0.json"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-m", "mnistlab.cli", "train", "--model", "nmodel", "--hidden-size", "8",
                        "--epochs", "1", "--train-size", "500", "--run-name", "a", "--out-dir", "site/runs"],
                       check=True, env=env, capture_output=True, timeout=300)
        assert json.loads(record.read_text())["config"]["hidden_size"] == 8
        again = sweep(project / "params" / "a.yaml", "site")
    assert again.runs[0].executed and again.runs[0].record.config["hidden_size"] == 16
    assert json.loads(record.read_text())["config"]["hidden_size"] == 16


# Fail early and clearly ---------------------------------------------------------------------------------

def test_a_name_too_long_for_the_file_system_is_refused_at_validation(tmp_path):
    from mnistlab import RunSpec
    from mnistlab.config import ConfigError
    from mnistlab.spec import MAX_NAME_BYTES, NAME_OVERHEAD

    longest = MAX_NAME_BYTES - NAME_OVERHEAD - len("-seed0")
    RunSpec.from_params(run_name="r" * longest, out_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"run_name 'r{59}\.\.\. \(228 characters\) is too long.*at most 231 bytes"):
        RunSpec.from_params(run_name="r" * (longest + 1), out_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="it is 232"):  # bytes, not characters
        RunSpec.from_params(run_name="é" * (longest // 2) + "rr", out_dir=str(tmp_path))
    # The bound is the real one: the longest name a run makes from the longest run name fits this file system.
    made = tmp_path / f"..{'r' * longest}-seed0.done.abcdefgh.tmp"
    made.write_text("")
    assert len(made.name) <= MAX_NAME_BYTES
    # A params file's name is its run name: refused before anything runs, naming the file.
    file = write_params(tmp_path / "params", "p" * 240, {"model": "nmodel", **TINY})
    with pytest.raises(ParamsError, match=rf"{'p' * 40}.*\.yaml: run_name .* is too long"):
        params.jobs([file], tmp_path / "out")
    with pytest.raises(ConfigError, match=r"out_dir: the name 'x{59}.*is longer than the 255 bytes"):
        RunSpec.from_params(out_dir=str(tmp_path / ("x" * 256)))


def test_memory_is_estimated_per_seed_of_a_stack_and_the_protocol_fits():
    from mnistlab import Config
    from mnistlab.resources import memory_needed

    issue = memory_needed(Config(model="nmodel", hidden_size=100_000, batch_size=50_000))
    assert issue["activations at batch_size 50000"] >= 3 * 4 * 50_000 * 100_000  # fc1, ReLU and their gradients
    paper = memory_needed(Config(model="bmodel", hidden_size=5000))
    assert paper["total"] < 1e9  # the protocol's largest cell fits any machine that can run torch
    one, five = memory_needed(Config(hidden_size=2000), 1), memory_needed(Config(hidden_size=2000), 5)
    assert five["the data"] == one["the data"]  # loaded once for the stack
    assert five["weights, gradients and Adam state"] == 5 * one["weights, gradients and Adam state"]


@pytest.mark.slow
def test_a_run_larger_than_the_memory_is_refused_before_training_naming_the_numbers(tmp_path, data_dir):
    done = subprocess.run([sys.executable, "-m", "mnistlab.cli", "train", "--model", "nmodel", "--hidden-size",
                           "100000", "--batch-size", "50000", "--epochs", "1", "--out-dir", str(tmp_path / "records"),
                           "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "mnistlab train: this run needs about" in done.stderr and "activations at batch_size 50000" in done.stderr
    assert "this machine has" in done.stderr and "available" in done.stderr and "smaller batch_size" in done.stderr
    assert "Traceback" not in done.stderr and not list((tmp_path / "records").glob("*"))


@pytest.fixture
def small_file_system(tmp_path):
    """A real tmpfs of its own (size and inodes given), mounted for the test; needs root and mount(2)."""
    mounted = []

    def mount(size: str = "1m", inodes: int | None = None, readonly: bool = False) -> Path:
        if os.geteuid() != 0:
            pytest.skip("a real full or read-only file system needs root to mount a tmpfs; not root here")
        folder = tmp_path / f"fs{len(mounted)}"
        folder.mkdir()
        options = f"size={size}" + (f",nr_inodes={inodes}" if inodes else "") + (",ro" if readonly else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
def test_write_errors_name_the_file_and_keep_the_old_one(small_file_system, tmp_path):
    from mnistlab.atomic import WriteError, atomic_write_text

    full = small_file_system("64k")
    atomic_write_text(full / "sweep.json", "the finished one\n")
    filler = os.open(full / "filler", os.O_WRONLY | os.O_CREAT)  # fill it for real
    try:
        with pytest.raises(OSError) as full_now:
            while True:
                os.write(filler, b"x" * 4096)
        assert full_now.value.errno == 28
    finally:
        os.close(filler)
    with pytest.raises(WriteError) as error:
        atomic_write_text(full / "sweep.json", "y" * 100_000)
    assert error.value.errno == 28 and f"cannot write {full}/sweep.json: No space left on device" in str(error.value)
    assert "the file system is full" in str(error.value)
    assert (full / "sweep.json").read_text() == "the finished one\n" and sorted(p.name for p in full.iterdir()) == \
        ["filler", "sweep.json"]  # no temporary file left
    readonly = small_file_system(readonly=True)
    with pytest.raises(WriteError, match="Read-only file system .the file system is read-only: write elsewhere"):
        atomic_write_text(readonly / "x.json", "{}")
    with pytest.raises(WriteError, match="File name too long"):
        atomic_write_text(tmp_path / ("n" * 300), "{}")


@pytest.mark.slow
def test_a_sweep_into_a_full_file_system_is_refused_with_the_numbers(small_file_system, project, capsys):
    out = small_file_system("1m")
    assert cli.main(["sweep", str(project / "params" / "a.yaml"), "--out", str(out / "site"),
                     "--scheduler", "tcp://127.0.0.1:9"]) == 2
    error = capsys.readouterr().err
    assert f"--out {out}/site has 1.0 MB free on its file system; this sweep writes about" in error, error
    assert not any(out.iterdir())
    no_inodes = small_file_system("1m", inodes=1)
    with pytest.raises(ParamsError, match="cannot write to .*: No space left on device"):
        with lock.hold(no_inodes):
            pass


@pytest.mark.slow
def test_a_full_file_system_at_the_record_keeps_the_checkpoint_and_the_run_resumes(small_file_system, data_dir):
    """A real tmpfs with room for one file more than its root: the check before training passes, the checkpoint
    after epoch 1 takes the last inode, and the record at the end cannot be written (ENOSPC). The message names
    the record and the checkpoint; with room again the same command resumes and writes the record."""
    folder = small_file_system("10m", inodes=2)
    command = [sys.executable, "-m", "mnistlab.cli", "train", "--model", "nmodel", "--hidden-size", "16",
               "--epochs", "2", "--train-size", "500", "--out-dir", str(folder), "--checkpoint",
               str(folder / "run.pt"), "--data-dir", str(data_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2, done.stderr
    assert f"mnistlab train: cannot write {folder}/nmodel-hs16-seed0.json: No space left on device" in done.stderr
    assert f"the checkpoint {folder}/run.pt keeps the epochs up to its last save" in done.stderr
    assert "Traceback" not in done.stderr
    assert (folder / "run.pt").exists() and not (folder / "nmodel-hs16-seed0.json").exists()
    subprocess.run(["mount", "-o", "remount,nr_inodes=100", str(folder)], check=True)
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    record = json.loads((folder / "nmodel-hs16-seed0.json").read_text())
    assert record["status"] == "complete" and record["provenance"]["resumed_after_epoch"] == 1


@pytest.mark.cuda
def test_a_stack_larger_than_the_gpus_free_memory_is_refused_naming_it(tmp_path, data_dir):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from mnistlab import RunSpec, runner
    from mnistlab.config import ConfigError

    free, _ = torch.cuda.mem_get_info()
    hidden = 100_000
    batch = min(50_000, int(free // (4 * 2 * 3 * hidden)) + 1000)  # activations alone past what is free
    spec = RunSpec.from_params(model="nmodel", hidden_size=hidden, batch_size=batch, seeds=[0, 1], device="cuda",
                               out_dir=str(tmp_path), data_dir=str(data_dir))
    with pytest.raises(ConfigError, match=r"for 2 seeds trained together .* cuda(:0)? has .* free"):
        runner.check(spec)


@pytest.mark.slow
def test_ctrl_c_of_mnistlab_train_says_in_a_sentence_what_it_kept(tmp_path, data_dir):
    checkpoint = tmp_path / "run.pt"
    command = [sys.executable, "-m", "mnistlab.cli", "train", "--model", "nmodel", "--hidden-size", "32", "--epochs",
               "200", "--train-size", "4000", "--out-dir", str(tmp_path), "--checkpoint", str(checkpoint),
               "--data-dir", str(data_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    train = subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=interruptible,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not checkpoint.exists() and train.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert checkpoint.exists(), train.communicate()
        os.killpg(train.pid, signal.SIGINT)  # a terminal's Ctrl-C
        _, err = train.communicate(timeout=120)
    finally:
        if train.poll() is None:
            os.killpg(train.pid, signal.SIGKILL)
            train.wait()
    assert train.returncode == 130, err
    assert err.strip() == (f"mnistlab train: interrupted. Seeds that ended saved their records; the same command "
                           f"resumes the others from {checkpoint}."), err
    import torch

    assert len(torch.load(checkpoint, weights_only=True)["records"][0]["history"]) >= 1


@pytest.mark.parametrize("model", ["nmodel", "bmodel", "wmodel"])
def test_disk_is_estimated_from_the_model_for_every_model(model, tmp_path):
    """The counts come from the module (batch norm included, which cannot count a batch of one image)."""
    from mnistlab import RunSpec
    from mnistlab.models import sizes
    from mnistlab.resources import disk_needed

    spec = RunSpec.from_params(model=model, hidden_size=1000, checkpoint=str(tmp_path / "c.pt"))
    needed = disk_needed(spec, 1)
    state = sizes(model, 1000, 100)["state"]
    assert needed["checkpoints"] >= 2 * 4 * state and needed["records"] > 20_000
