"""Nothing waits for ever, and a cluster's door is locked: real schedulers, workers, kills and Ctrl-C.

A sweep with no worker, a lost worker or scheduler, a SLURM submission that fails, ends with a message and
exit status 2 within its documented time; Ctrl-C stops the notebooks it started before it lets go of its
output folder, and says so in a sentence; ``tls://`` works with certificates made here, and a plain
``tcp://`` address that is not loopback is warned about.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from helpers import TINY, interruptible, kill_tree, make_project, project_env, wait_for, write_params
from mnistlab.lab import lock, schedule

# Long enough to be caught training: many short epochs, a checkpoint after the first.
LONG = {"model": "nmodel", "hidden_size": 32, "epochs": 200, "step_size": 50, "train_size": 4000}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(root: Path, data_dir: Path, **extra) -> dict:
    return {**os.environ, "MNISTLAB_ROOT": str(root), "MNISTLAB_DATA": str(data_dir), "OMP_NUM_THREADS": "1", **extra}


def dask(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dask", *args], env=env, start_new_session=True,
                            preexec_fn=interruptible, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def scheduler(env: dict, port: int, *tls: str) -> subprocess.Popen:
    return dask(env, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0",
                "--no-show", *tls)


def worker(env: dict, address: str, *tls: str) -> subprocess.Popen:
    return dask(env, "worker", address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard", *tls)


def start_sweep(root: Path, env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mnistlab.cli", "sweep", *args], env=env, cwd=root,
                            start_new_session=True, preexec_fn=interruptible, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def kernels_under(pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [child for child in children if schedule._is_kernel(child)]


def quiet(folder: Path, seconds: float = 4) -> bool:
    """Nothing under ``folder`` changes for ``seconds``: no notebook is writing there any more."""
    def state():
        return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    before = state()
    time.sleep(seconds)
    return state() == before


@pytest.fixture
def project(tmp_path, data_dir):
    root = make_project(tmp_path / "project", analysis=False)
    return root


# Nothing waits for ever ---------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.waits
def test_a_scheduler_without_workers_ends_the_sweep_in_its_worker_timeout(project, data_dir):
    params = write_params(project / "params", "w", {**TINY, "model": "nmodel"})
    env = environment(project, data_dir)
    port = free_port()
    dask_scheduler = scheduler(env, port)
    try:
        started = time.monotonic()
        sweep = start_sweep(project, env, str(params), "--out", "site", "--scheduler", f"tcp://127.0.0.1:{port}",
                            "--worker-timeout", "5")
        out, err = sweep.communicate(timeout=120)
        assert sweep.returncode == 2, err
        # while it waited, it said so, and for how long
        assert f"waiting for a Dask worker to join the scheduler at tcp://127.0.0.1:{port}: the sweep waits up to " \
               "5 s in all (--worker-timeout), then stops" in out, out
        assert "no Dask worker joined within 5 s (--worker-timeout); start workers with `dask worker" in err
        assert "Nothing ran" in err and "Traceback" not in err
        assert time.monotonic() - started < 90
        assert not list((project / "site").rglob("*.ipynb")) and not list((project / "site").rglob("*.json"))
        with lock.hold(project / "site") as note:  # let go of, cleanly
            assert note == ""
    finally:
        kill_tree(dask_scheduler)


@pytest.mark.slow
@pytest.mark.waits
def test_workers_that_die_and_a_scheduler_that_dies_end_the_sweep(project, data_dir):
    """Mid-training: the only worker is killed (kernel and all): the sweep ends after --worker-timeout. Then,
    with a new worker, the scheduler is killed: the sweep ends within LOST_SECONDS."""
    params = write_params(project / "params", "long", LONG)
    env = environment(project, data_dir)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes = [scheduler(env, port)]
    try:
        processes.append(worker(env, address))
        sweep = start_sweep(project, env, str(params), "--out", "site", "--scheduler", address,
                            "--worker-timeout", "5")
        processes.append(sweep)
        checkpoint = project / "site" / "checkpoints" / "long-seed0.pt"
        wait_for(checkpoint.exists, sweep)
        for child in psutil.Process(processes[1].pid).children(recursive=True):
            child.kill()
        processes[1].kill()
        killed = time.monotonic()
        out, err = sweep.communicate(timeout=120)
        assert sweep.returncode == 2, err
        assert f"the scheduler at {address}: no Dask worker is there to run the notebooks; waiting up to 5 s " \
               "(--worker-timeout) for one, then the sweep stops" in out, out
        assert f"the scheduler at {address}: no Dask worker for 5 s (--worker-timeout)" in err, err
        assert time.monotonic() - killed < 60
        assert "Traceback" not in err and "KeyboardInterrupt" not in err

        processes.append(worker(env, address))
        sweep = start_sweep(project, env, str(params), "--out", "site", "--scheduler", address)
        processes.append(sweep)
        wait_for(lambda: kernels_under(processes[-2].pid), sweep)
        processes[0].kill()
        killed = time.monotonic()
        _, err = sweep.communicate(timeout=120)
        assert sweep.returncode == 2, err
        assert f"the scheduler at {address}: lost the Dask scheduler" in err, err
        assert time.monotonic() - killed < schedule.LOST_SECONDS + 30
        assert "Traceback" not in err, err
    finally:
        kill_tree(*processes)


def fake_tool(folder: Path, name: str, script: str) -> None:
    (folder / name).write_text(f"#!/bin/sh\n{script}\n")
    (folder / name).chmod(0o755)


def slurm_file(tmp_path: Path) -> Path:
    from helpers import ROOT

    options = yaml.safe_load((ROOT / "params" / "clusters" / "slurm.yaml").read_text())
    options["scheduler_options"] = {**options.get("scheduler_options", {}), "host": "127.0.0.1",
                                    "dashboard_address": None}  # the test's scheduler stays on loopback
    return write_params(tmp_path, "slurm-test", options)


@pytest.mark.slow
@pytest.mark.parametrize("sbatch, message", [
    (None, "--cluster slurm: sbatch is not on PATH"),
    ("echo 'sbatch: error: invalid partition specified: gpu' >&2; exit 1",
     "--cluster slurm: the job submission failed: Command exited with non-zero exit code"),
])
def test_a_slurm_submission_that_fails_ends_the_sweep_at_once(project, data_dir, tmp_path, sbatch, message):
    """SLURM's commands are stand-ins here (this machine has no SLURM): none at all, or an sbatch that refuses
    the job as a wrong partition does; the sweep's own dask-jobqueue cluster is real."""
    if shutil.which("sbatch"):
        pytest.skip("this machine has SLURM's sbatch; the test puts a stand-in first on PATH, or none")
    params = write_params(project / "params", "s", {**TINY, "model": "nmodel"})
    tools = tmp_path / "bin"
    tools.mkdir()
    if sbatch:
        fake_tool(tools, "sbatch", sbatch)
    env = environment(project, data_dir, PATH=f"{tools}:{os.environ['PATH']}")
    started = time.monotonic()
    sweep = start_sweep(project, env, str(params), "--out", "site", "--cluster", "slurm",
                        "--cluster-file", str(slurm_file(tmp_path)))
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 2, err
    assert message in err and "Nothing ran" in err and "Traceback" not in err, err
    if sbatch:
        assert "invalid partition specified: gpu" in err
    assert time.monotonic() - started < 60  # at once: not after a worker timeout


# Ctrl-C --------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.waits
def test_ctrl_c_of_a_sweep_on_a_scheduler_stops_its_notebook_before_letting_go(project, data_dir):
    params = write_params(project / "params", "long", LONG)
    env = environment(project, data_dir)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes = [scheduler(env, port)]
    try:
        processes.append(worker(env, address))
        sweep = start_sweep(project, env, str(params), "--out", "site", "--scheduler", address)
        processes.append(sweep)
        wait_for((project / "site" / "checkpoints" / "long-seed0.pt").exists, sweep)
        assert kernels_under(processes[1].pid), "no kernel training on the worker"
        sweep.send_signal(signal.SIGINT)  # the sweep alone: the workers run elsewhere
        interrupted = time.monotonic()
        _, err = sweep.communicate(timeout=schedule.STOP_SECONDS + 60)
        assert sweep.returncode == 130, err
        assert not kernels_under(processes[1].pid), "the notebook still trains on the worker, unlocked"
        assert quiet(project / "site")
        assert time.monotonic() - interrupted < schedule.STOP_SECONDS + 30
        assert "stopping the notebooks of this sweep on 1 worker(s)" in err
        assert "mnistlab sweep: interrupted. The notebooks it started were stopped" in err
        assert "Traceback" not in err and "KeyboardInterrupt" not in err
        with lock.hold(project / "site"):
            pass
    finally:
        kill_tree(*processes)


@pytest.mark.slow
@pytest.mark.waits
def test_ctrl_c_of_a_local_sweep_at_the_terminal_stops_everything_in_a_sentence(project, data_dir):
    params = write_params(project / "params", "long", LONG)
    env = environment(project, data_dir)
    sweep = start_sweep(project, env, str(params), "--out", "site")
    try:
        wait_for((project / "site" / "checkpoints" / "long-seed0.pt").exists, sweep)
        assert kernels_under(sweep.pid)
        os.killpg(sweep.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
        _, err = sweep.communicate(timeout=schedule.STOP_SECONDS + 60)
        assert sweep.returncode == 130, err
        assert not kernels_under(sweep.pid), "a kernel outlived the sweep"
        assert "mnistlab sweep: stopping the 1 notebook(s) of this sweep" in err
        assert err.rstrip().endswith("mnistlab sweep: interrupted. The notebooks it started were stopped before it "
                                     "let go of --out; finished runs keep their records and the same command skips "
                                     "them."), err  # the last word: nothing printed after it
        # Before the two sentences, only the run's own lines (its kernel's one per epoch: as many as the epochs it
        # finished before the interrupt reached it, more on a loaded machine); after them nothing.
        before, stopping = err.split("mnistlab sweep: stopping the 1 notebook(s)")
        assert "Traceback" not in err and len(stopping.strip().splitlines()) == 2, err
        assert all(re.match(r"nmodel-hs32-seed0: (training 200 epochs on |epoch \d+/200, )", line)
                   for line in before.strip().splitlines()), err
        assert quiet(project / "site")
        with lock.hold(project / "site"):
            pass
    finally:
        kill_tree(sweep)


# The door --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cores, workers, omp, threads", [
    (8, 1, None, 8), (8, 2, None, 4), (8, 3, None, 2), (2, 4, None, 1),  # the cores shared among the workers
    (8, 1, "1", 1), (8, 2, "3", 3), (8, 2, "16", 4),  # OMP_NUM_THREADS caps them, never raises them
    (8, 1, "", 8), (8, 1, "0", 8), (8, 1, "two", 8)])  # and is ignored where it is not a positive count
def test_each_local_kernel_gets_its_share_of_the_cores_and_no_more_than_omp_num_threads(monkeypatch, cores, workers,
                                                                                      omp, threads):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    assert schedule.kernel_threads(workers) == threads


@pytest.mark.slow
def test_a_local_clusters_kernel_gets_every_core_and_the_cluster_leaves_no_environment_behind(monkeypatch):
    """Dask's nannies write OMP_NUM_THREADS=1 into this process's environment as they start their workers. Read
    after that, it capped every kernel of a plain `make report` at one thread of a 2-core machine; left there, it
    caps the next sweep in the same process too."""
    monkeypatch.setattr(schedule, "gpu_count", lambda: 0)  # a CPU cluster, on a GPU machine too
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHONHASHSEED", "0")  # one the nannies replace (with 6640): it must come back as it was
    with schedule.client(workers=1, worker_timeout=30) as (_, shape):
        assert (shape["gpus"], shape["threads"]) == (False, len(os.sched_getaffinity(0)))
    left = {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"} & set(os.environ)
    assert not left and os.environ["PYTHONHASHSEED"] == "0", (left, os.environ["PYTHONHASHSEED"])


def test_a_cpu_sweep_trains_one_run_per_core_on_one_thread_each_and_says_so(monkeypatch):
    """Two one-thread runs side by side train more runs an hour than one two-thread run (docs/performance.md): a
    local CPU cluster starts a worker per core, no more than the runs to train, unless --workers says otherwise."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    workers, why = schedule.local_workers(None, 45, 0)
    assert workers == 4 and "one per core" in why
    assert schedule.local_workers(None, 3, 0)[0] == 3  # no idle worker
    assert schedule.local_workers(None, 0, 0)[0] == 1  # pages only
    assert schedule.local_workers(2, 45, 0) == (2, "as asked by --workers")
    assert schedule.local_workers(None, 45, 2)[0] == 2  # one per GPU
    monkeypatch.setattr(schedule, "gpu_count", lambda: 0)
    shape, where = schedule.expected(runs=45)
    assert shape["threads"] == 1 and "of 4 workers," in where
    shape, where = schedule.expected(runs=1)
    assert shape["threads"] == 4 and "of 1 worker," in where


def test_a_plain_tcp_address_that_is_not_loopback_is_warned_about():
    warning = schedule.plain_tcp_warning("tcp://10.1.2.3:8786")
    assert "plain TCP, neither encrypted nor authenticated" in warning and "tls://" in warning
    assert schedule.plain_tcp_warning("node7:8786") is not None  # no scheme is TCP
    for address in ("tcp://127.0.0.1:8786", "tcp://localhost:8786", "tcp://[::1]:8786", "tls://10.1.2.3:8786"):
        assert schedule.plain_tcp_warning(address) is None, address


def test_the_slurm_recipe_locks_the_door_with_tls(tmp_path):
    """The shipped params/clusters/slurm.yaml: its scheduler speaks only TLS, and each job gets the worker's
    certificate and key through the shared folder, readable by the user alone."""
    options = yaml.safe_load(slurm_file(tmp_path).read_text())
    assert options["security"] is True
    shared = tmp_path / "shared" / "dask-tls"
    cluster = schedule.slurm_cluster(cluster_file=write_params(tmp_path, "tls-slurm", {
        **options, "shared_temp_directory": str(shared)}))
    try:
        script = cluster.job_script()
        assert cluster.scheduler_address.startswith("tls://127.0.0.1:")
        keys = [path for path in shared.iterdir() if ".key." in path.name]
        assert keys and all(path.stat().st_mode & 0o077 == 0 for path in keys)  # the user's alone
    finally:
        cluster.close()
    assert f"--tls-ca-file {shared}/" in script and f"--tls-key {shared}/" in script and "--tls-cert" in script
    assert shared.stat().st_mode & 0o777 == 0o700


def make_certificates(folder: Path) -> dict:
    """A CA, and a certificate for 127.0.0.1 signed by it (scheduler, workers and the sweep share it)."""
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=mnistlab test CA",
            "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "node.key",
            "-out", "node.csr")
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
            "-extfile", "ext.cnf", "-out", "node.pem")
    return {"ca": folder / "ca.pem", "cert": folder / "node.pem", "key": folder / "node.key"}


@pytest.mark.slow
@pytest.mark.waits
def test_a_sweep_on_a_tls_scheduler_with_certificates_made_here(project, data_dir, tmp_path):
    certs = make_certificates(tmp_path)
    params = write_params(project / "params", "tls", {**TINY, "model": "nmodel"})
    tls = {"DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(certs["ca"]),
           "DASK_DISTRIBUTED__COMM__TLS__SCHEDULER__CERT": str(certs["cert"]),
           "DASK_DISTRIBUTED__COMM__TLS__SCHEDULER__KEY": str(certs["key"]),
           "DASK_DISTRIBUTED__COMM__TLS__WORKER__CERT": str(certs["cert"]),
           "DASK_DISTRIBUTED__COMM__TLS__WORKER__KEY": str(certs["key"]),
           "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(certs["cert"]),
           "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(certs["key"]),
           "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True"}
    env = environment(project, data_dir, **tls)
    port = free_port()
    address = f"tls://127.0.0.1:{port}"
    processes = [dask(env, "scheduler", "--protocol", "tls", "--host", "127.0.0.1", "--port", str(port),
                      "--dashboard-address", ":0", "--no-show")]
    try:
        processes.append(worker(env, address))
        plain = start_sweep(project, environment(project, data_dir), str(params), "--out", "site-plain",
                            "--scheduler", address, "--worker-timeout", "5")
        processes.append(plain)
        _, err = plain.communicate(timeout=120)
        assert plain.returncode == 2 and "no Dask scheduler answered" in err  # without the certificates: no way in
        sweep = start_sweep(project, env, str(params), "--out", "site", "--scheduler", address)
        processes.append(sweep)
        out, err = sweep.communicate(timeout=600)
        assert sweep.returncode == 0, err
        assert "plain TCP" not in err
        with project_env(project, data_dir):
            from mnistlab.records import Record

            assert Record.load(project / "site" / "runs" / "tls-seed0.json").status == "complete"
    finally:
        kill_tree(*processes)


def _queued_beside_it(seconds: float) -> int:
    """Sleep ``seconds`` on a Dask worker; how many other tasks were queued on that worker when this one began."""
    from distributed import get_worker

    state = get_worker().state
    queued = len(state.ready) + len(state.constrained)  # sent to this worker, waiting for its one thread
    time.sleep(seconds)
    return queued


@pytest.mark.slow
@pytest.mark.waits
def test_runs_are_submitted_as_workers_free_up_so_none_waits_behind_another():
    """The study's pattern: two long runs on two workers, the first ending a second before the other, then four
    more. Given all six at once, Dask queued the four on both workers, and when the first run ended its worker took
    all four, leaving the other idle for a whole run. The sweep's feed submits a run only when a worker is free."""
    from distributed import Client, LocalCluster

    from mnistlab.lab.progress import Watch
    from mnistlab.lab.sweep import Feed

    class Run:  # what the feed and the watch read of a task
        def __init__(self, name, seconds):
            self.name, self.seconds, self.records = name, seconds, ()

    runs = [Run("first", 1.0), Run("second", 2.0), *(Run(f"next{i}", 1.5) for i in range(4))]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,  # in-process: inproc://, no sockets
                      dashboard_address=None) as cluster, Client(cluster) as client:
        feed = Feed(client, lambda run: _queued_beside_it(run.seconds), runs, "runs", False)
        assert [task.name for task in feed.futures.values()] == ["first", "second"]  # two workers, two runs
        watch = Watch(runs, "runs")
        finished = {feed.futures[f].name: f.result() for f in watch.as_completed(feed.futures, more=feed.top_up)}
    assert sorted(finished) == sorted(run.name for run in runs)
    assert all(queued == 0 for queued in finished.values()), finished  # no run was queued behind another
