"""Where a sweep's notebooks run: a Dask cluster, local by default, an existing one, or one on SLURM.

- default: a ``LocalCluster`` sized to the machine, one worker process per GPU, each pinned to its
  own GPU (``CUDA_VISIBLE_DEVICES`` in the worker's environment, which its kernels inherit); on a
  CPU machine one worker, whose kernel gets every core (at most ``OMP_NUM_THREADS`` where that is set);
- ``scheduler="tcp://HOST:8786"``: an existing cluster (``dask scheduler`` plus ``dask worker``s);
- ``cluster="slurm"``: dask-jobqueue's ``SLURMCluster``, one GPU per job, its options from a YAML file
  (``params/clusters/slurm.yaml``).

Workers of a remote cluster need the project, the data and the sweep's output folder on a shared
filesystem, and a ``python3`` Jupyter kernel. One notebook runs at a time per worker process
(papermill changes the working directory, which threads would share).

Nothing waits for ever. A scheduler that cannot be reached, or does not answer as a Dask scheduler, in
``CONNECT_SECONDS`` (an HTTP server on the port: ``_connect``), and any question to it (``_workers``), no worker (with
the GPU the runs ask for) within ``worker_timeout`` seconds (``WORKER_TIMEOUT``; ``--worker-timeout``),
a SLURM job submission that fails (no ``sbatch``, a wrong partition or account: at once), and, once the
runs are submitted, no such worker for ``worker_timeout`` seconds at a stretch or the scheduler gone for
``LOST_SECONDS`` each end the sweep with a ``ClusterError`` naming the cause: the runs not started stay
not started, the finished ones keep their records. Ctrl-C (or such an ending) cancels every notebook the
sweep submitted and stops the kernels of those running (``stop``), waiting up to ``STOP_SECONDS`` for
them to end, before the sweep lets go of its lock.

Security: a plain ``tcp://`` scheduler lets anyone who reaches it run code as the workers' user.
``tls://`` addresses use Dask's TLS settings (``distributed.comm.tls.*``, e.g. from
``DASK_DISTRIBUTED__COMM__TLS__CA_FILE``); a ``tcp://`` address that is not loopback gets a warning.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from distributed.diagnostics.plugin import WorkerPlugin

from .. import paths
from ..config import ConfigError
from .formatting import count
from .params import MAX_BYTES, ParamsError, read_text

DEFAULT_SLURM = "params/clusters/slurm.yaml"
CONNECT_SECONDS = 30  # to reach a --scheduler
WORKER_TIMEOUT = 300.0  # without a worker that can run the notebooks, at the start or at a stretch later
LOST_SECONDS = 10  # without the scheduler once the runs are submitted
STOP_SECONDS = 60  # after Ctrl-C, for the notebooks in flight to end before the lock is let go
POLL_SECONDS = 1.0


class ClusterError(ConfigError):
    """The cluster cannot run the sweep's notebooks (none reachable, no worker, a failed submission, lost)."""


def gpu_count() -> int:
    """NVIDIA GPUs this machine's workers may use, from the driver's /proc entries, else ``nvidia-smi -L``
    (containers often lack the /proc entries; importing torch to ask would cost seconds per sweep);
    ``CUDA_VISIBLE_DEVICES`` narrows them as it does for CUDA."""
    gpus = Path("/proc/driver/nvidia/gpus")
    count = len(list(gpus.iterdir())) if gpus.is_dir() else _nvidia_smi_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        count = min(count, len([d for d in visible.split(",") if d.strip() and not d.strip().startswith("-")]))
    return count


def _nvidia_smi_count() -> int:
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return 0  # no driver tools: no NVIDIA GPU to use
    return sum(line.startswith("GPU ") for line in listed.stdout.splitlines()) if listed.returncode == 0 else 0


class PinGPU(WorkerPlugin):
    """Worker plugin: worker ``i`` of a local cluster sees only GPU ``i mod n`` (and so do its kernels)."""

    name = "mnistlab-pin-gpu"

    def __init__(self, visible: list[str]):
        self.visible = visible

    def setup(self, worker) -> None:
        index = int(str(worker.name).rsplit("-", 1)[-1]) if str(worker.name)[-1:].isdigit() else 0
        os.environ["CUDA_VISIBLE_DEVICES"] = self.visible[index % len(self.visible)]


@contextlib.contextmanager
def client(*, workers: int | None = None, scheduler: str | None = None, cluster: str | None = None,
           cluster_file: str | os.PathLike | None = None, worker_timeout: float = WORKER_TIMEOUT,
           runs: int | None = None) -> Iterator[tuple[object, dict]]:
    """A Dask ``Client`` and what the tasks need to know of the cluster: ``{"gpus": bool, "threads": int | None}``
    (and, for a local cluster, ``"layout"``: how many workers and why, ``local_workers``; ``runs``: how many
    notebooks the sweep trains).

    Ends in a ``ClusterError`` rather than waiting for ever (see the module's docstring)."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        warning = plain_tcp_warning(scheduler)
        if warning:
            print(warning, file=sys.stderr, flush=True)
        with _answering(scheduler) as dask_client:
            _first_worker(dask_client, worker_timeout, f"the scheduler at {scheduler}",
                          f"start workers with `dask worker {scheduler} --nthreads 1` (and --resources GPU=1 on each "
                          "GPU node)")
            gpus = _cluster_has_gpus(dask_client)
            with guarded(dask_client, worker_timeout, gpus, f"the scheduler at {scheduler}"):
                yield dask_client, {"gpus": gpus, "threads": None}
        return
    if cluster == "slurm":
        with _slurm(workers, cluster_file, worker_timeout) as dask_client, \
                guarded(dask_client, worker_timeout, True, "the SLURM cluster"):
            yield dask_client, {"gpus": True, "threads": None}
        return
    if cluster not in (None, "local"):
        raise ParamsError(f"--cluster must be local or slurm; got {cluster!r}")
    gpus = gpu_count()
    n, layout = local_workers(workers, runs, gpus)
    resources = {"GPU": 1} if gpus else None
    threads = kernel_threads(n) if not gpus else None  # before the cluster starts: it sets OMP_NUM_THREADS=1 here
    with _environment_kept(), \
            LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address="127.0.0.1:0", resources=resources) as local, Client(local) as dask_client:
        dask_client.register_plugin(IgnoreInterrupts())
        if gpus:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if os.environ.get("CUDA_VISIBLE_DEVICES") \
                else [str(i) for i in range(gpus)]
            dask_client.register_plugin(PinGPU(visible))
        with guarded(dask_client, worker_timeout, bool(gpus), "the local cluster"):
            yield dask_client, {"gpus": bool(gpus), "threads": threads, "layout": layout}


def local_workers(workers: int | None, runs: int | None, gpus: int) -> tuple[int, str]:
    """How many workers a local cluster starts, and why, in words: ``workers`` when asked for; one per GPU; on a
    CPU, one per core but no more than the ``runs`` the sweep trains, each kernel on one torch thread. Runs side by
    side, one thread each, train more runs an hour than one run at a time on every core: on a 2-core EPYC (Zen 3),
    1.18x for H = 1000 runs of the HW5 protocol and 1.35x for the beyond study's (``benchmarks/epoch_parts.py
    --layouts``, docs/performance.md)."""
    if workers:
        return workers, "as asked by --workers"
    if gpus:
        return gpus, "one worker per GPU"
    cores = len(os.sched_getaffinity(0))
    n = max(1, min(cores, runs or 1))
    if n == cores:
        return n, ("one per core, one torch thread each: runs side by side train more runs an hour than one at "
                   "a time on every core")
    return n, f"no more workers than runs to train ({runs or 0}), the {count(cores, 'core')} shared among them"


def _answering(scheduler: str):
    """A Dask ``Client`` of ``scheduler``, or a ``ClusterError`` saying what to check when none answers within
    ``CONNECT_SECONDS``."""
    try:
        return _connect(scheduler, CONNECT_SECONDS)
    except (OSError, TimeoutError, ValueError, TypeError) as error:  # TypeError: tls:// without TLS settings
        raise ClusterError(f"--scheduler {scheduler}: no Dask scheduler answered within {CONNECT_SECONDS} s "
                           f"({_short(error)}); is `dask scheduler` running there, and is the address (and, "
                           "for tls://, Dask's TLS settings) right? Nothing ran") from None


def _connect(scheduler: str, seconds: float):
    """``Client(scheduler)``, or ``TimeoutError`` after ``seconds`` whatever answers there. Dask's own timeout
    bounds the connection, not what follows: a server that accepts it and answers something else (an HTTP server)
    kept the sweep waiting for ever, ``--dry-run`` too. The attempt runs in a thread of its own, left behind (a
    daemon: it does not keep the process alive) when it does not end in time."""
    from dask.distributed import Client

    outcome: dict = {}

    def attempt() -> None:
        try:
            outcome["client"] = Client(scheduler, timeout=f"{seconds}s")
        except BaseException as error:  # handed to the caller
            outcome["error"] = error

    thread = threading.Thread(target=attempt, name="mnistlab-connect", daemon=True)
    thread.start()
    thread.join(seconds)
    if "client" in outcome:
        return outcome["client"]
    if "error" in outcome:
        raise outcome["error"]
    raise TimeoutError(f"something accepted the connection but did not answer as a Dask scheduler in {seconds:g} s")


def expected(*, workers: int | None = None, scheduler: str | None = None,
             cluster: str | None = None, runs: int | None = None) -> tuple[dict, str]:
    """What ``client`` would give, found without starting or submitting anything (``--dry-run``; a ``scheduler``
    named is only asked whether it answers):
    the shape of the tasks (``{"gpus": bool, "threads": int | None}``) and where they would run, in words."""
    if scheduler:  # asked only whether it answers as a Dask scheduler, so a wrong address fails the dry run too
        _answering(scheduler).close()
        return {"gpus": False, "threads": None}, (f"the Dask scheduler at {scheduler} (it answered; nothing "
                                                  "submitted: a dry run); planned as for CPU workers")
    if cluster == "slurm":
        jobs = workers or 1
        return {"gpus": True, "threads": None}, (f"a SLURM cluster (dask-jobqueue) of {jobs} job{'s' * (jobs != 1)} "
                                                 "(not submitted: a dry run)")
    if cluster not in (None, "local"):
        raise ParamsError(f"--cluster must be local or slurm; got {cluster!r}")
    gpus = gpu_count()
    n, layout = local_workers(workers, runs, gpus)
    return {"gpus": bool(gpus), "threads": kernel_threads(n) if not gpus else None, "layout": layout}, \
        f"a local Dask cluster of {count(n, 'worker')}, not started (a dry run)"


@contextlib.contextmanager
def _environment_kept() -> Iterator[None]:
    """This process's environment as it was, once a local cluster is gone. Dask's nannies run in this process and,
    before they start each worker, write ``distributed.nanny.pre-spawn-environ`` (``OMP_NUM_THREADS=1`` and the
    like) into ``os.environ`` here, where a later sweep in the same process would take it for the user's."""
    import dask

    names = [*(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}), "PYTHONHASHSEED"]  # and its own
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def kernel_threads(workers: int) -> int:
    """Torch threads for each kernel of a local cluster of ``workers`` CPU workers: this machine's cores shared
    among them, and no more than ``OMP_NUM_THREADS`` where it is set, as torch itself would take it (more threads
    than cores, e.g. beside another job, wait on each other and train many times slower)."""
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    asked = os.environ.get("OMP_NUM_THREADS", "").strip()
    return min(threads, int(asked)) if asked.isdigit() and int(asked) > 0 else threads


def plain_tcp_warning(address: str) -> str | None:
    """A warning for a scheduler address that is plain TCP and not loopback; None for tls:// or loopback."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme != "tcp":
        return None
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (f"mnistlab sweep: warning: --scheduler {address} is plain TCP, neither encrypted nor authenticated: "
            "anyone who can reach it can run code as you on every worker. Use tls:// with Dask's TLS settings "
            "(distributed.comm.tls.*), or a scheduler on loopback reached through an SSH tunnel")


def _workers(dask_client, where: str, seconds: float = CONNECT_SECONDS) -> dict:
    """The scheduler's workers (address -> info), asked with a bound: ``Client.scheduler_info()`` waits for ever on
    a scheduler that keeps the connection open and stops answering (stopped, or not what it seemed)."""
    try:
        info = dask_client.sync(dask_client.scheduler.identity, n_workers=-1, callback_timeout=seconds)
    except TimeoutError:
        raise ClusterError(f"{where}: the Dask scheduler did not answer within {seconds:g} s") from None
    return info.get("workers", {}) if isinstance(info, dict) else {}


WAITING_EVERY = 30.0  # seconds between two "still waiting for a worker" lines


def _first_worker(dask_client, timeout: float, where: str, hint: str, failed=None) -> None:
    """Wait up to ``timeout`` s for a worker, saying so at once and every ``WAITING_EVERY`` s; ``failed()``
    (polled) may name a reason to stop at once."""
    started = time.monotonic()
    deadline, said = started + timeout, None
    while not _workers(dask_client, where):
        reason = failed() if failed else None
        if reason:
            raise ClusterError(f"{where}: {reason}. Nothing ran")
        now = time.monotonic()
        if now > deadline:
            raise ClusterError(f"{where}: no Dask worker joined within {timeout:g} s (--worker-timeout); {hint}. "
                               "Nothing ran")
        if said is None or now - said >= WAITING_EVERY:
            waited = f"still no worker after {now - started:.0f} s; " if said is not None else ""
            print(f"waiting for a Dask worker to join {where}: {waited}the sweep waits up to {timeout:g} s in all "
                  f"(--worker-timeout), then stops; {hint}", flush=True)
            said = now
        time.sleep(POLL_SECONDS)


class Watchdog(threading.Thread):
    """While a sweep's notebooks run: the scheduler gone for ``LOST_SECONDS``, or no worker that can run them
    (one with a GPU when they ask for one) for ``timeout`` seconds, interrupts the sweep's main thread as
    Ctrl-C would, with ``reason`` saying why."""

    def __init__(self, dask_client, timeout: float, gpus: bool, where: str):
        super().__init__(name="mnistlab-watchdog", daemon=True)
        self.dask_client, self.timeout, self.gpus, self.where = dask_client, timeout, gpus, where
        self.reason = ""
        self.lost = False
        self._done = threading.Event()
        self._main = threading.main_thread().ident if threading.current_thread() is threading.main_thread() else None

    def run(self) -> None:
        lost_since = idle_since = None
        while not self._done.wait(POLL_SECONDS):
            now = time.monotonic()
            if self.dask_client.status != "running":
                lost_since = lost_since or now
                if now - lost_since >= LOST_SECONDS:
                    self.lost = True
                    return self._fire(f"{self.where}: lost the Dask scheduler (no answer for {LOST_SECONDS} s)")
                continue
            try:
                workers = _workers(self.dask_client, self.where, LOST_SECONDS).values()
            except ClusterError:  # connected, but no answer in LOST_SECONDS: as good as lost
                self.lost = True
                return self._fire(f"{self.where}: lost the Dask scheduler (no answer for {LOST_SECONDS} s)")
            except Exception:  # the scheduler went away between the two calls: the next round says so
                continue
            lost_since = None
            able = [w for w in workers if not self.gpus or w.get("resources", {}).get("GPU")]
            if able:
                idle_since = None
                continue
            if idle_since is None:
                need = "with a GPU (resources GPU=1) " if self.gpus else ""
                print(f"{self.where}: no Dask worker {need}is there to run the notebooks; waiting up to "
                      f"{self.timeout:g} s (--worker-timeout) for one, then the sweep stops", flush=True)
            idle_since = idle_since or now
            if now - idle_since >= self.timeout:
                need = "with a GPU (resources GPU=1) " if self.gpus else ""
                return self._fire(f"{self.where}: no Dask worker {need}for {self.timeout:g} s (--worker-timeout); "
                                  "the runs not started stay not started")

    def _fire(self, reason: str) -> None:
        self.reason = reason
        if self._main is not None and not self._done.is_set():
            signal.pthread_kill(self._main, signal.SIGINT)  # wakes the main thread wherever it waits

    def stop(self) -> None:
        self._done.set()


@contextlib.contextmanager
def guarded(dask_client, timeout: float, gpus: bool, where: str) -> Iterator[Watchdog]:
    """Run the block under a ``Watchdog``; its interruption becomes a ``ClusterError`` naming the cause."""
    watchdog = Watchdog(dask_client, timeout, gpus, where)
    watchdog.start()
    kept = "Runs that finished keep their records and are up to date for the next sweep"
    try:
        yield watchdog
    except KeyboardInterrupt:
        watchdog.stop()
        if watchdog.reason:
            _quiet_dask()
            raise ClusterError(f"{watchdog.reason}. {kept}") from None
        raise
    except Exception as error:
        watchdog.stop()
        if dask_client.status == "running":
            raise
        _quiet_dask()  # the client's reconnection, cancelled as it closes, would log a traceback
        raise ClusterError(f"{where}: lost the Dask scheduler ({_short(error)}). {kept}") from None
    finally:
        watchdog.stop()


def _quiet_dask() -> None:
    """Dask's own logging off for the rest of this process, which is ending with a message of its own."""
    import logging

    for name in ["distributed", *logging.Logger.manager.loggerDict]:  # Dask sets some children's levels itself
        if name == "distributed" or name.startswith("distributed."):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def stop(dask_client, futures, wait: float = STOP_SECONDS) -> None:
    """Cancel ``futures`` (the sweep's notebooks) and stop the kernels of those running: Ctrl-C, or a cluster
    that cannot go on. Waits up to ``wait`` seconds for the running ones to end, saying so; a notebook on a
    worker that also runs others' tasks, or on a cluster that cannot be reached, is named, not stopped."""
    keys = {future.key for future in futures if not future.done()}
    if not keys:
        return
    _quiet_dask()  # the sweep ends here: Dask's warnings about the tasks and workers it stops are noise now
    local = type(getattr(dask_client, "cluster", None)).__name__ == "LocalCluster"
    try:
        processing = dask_client.processing() if dask_client.status == "running" and not local else {}
    except Exception:
        processing = {}
    running = {worker: sorted(set(queued) & keys) for worker, queued in processing.items() if set(queued) & keys}
    if local:  # its workers stop with the sweep: their logs about it would be noise
        with contextlib.suppress(Exception):
            dask_client.run(_silence, on_error="ignore")
    with contextlib.suppress(Exception):
        dask_client.cancel(list(futures), force=True)
    if local:  # the workers are this process's children, and their kernels its grandchildren: stop them here
        kernels = [child for child in _children() if _is_kernel(child)]
        if kernels:
            print(f"mnistlab sweep: stopping the {len(kernels)} notebook(s) of this sweep before letting go of the "
                  "output folder ...", file=sys.stderr, flush=True)
            _kill_and_wait(kernels, wait)
        return
    if not running:
        if dask_client.status != "running":
            print(f"mnistlab sweep: the cluster cannot be reached: {len(keys)} notebook(s) of this sweep may still "
                  "be running on its workers", file=sys.stderr, flush=True)
        return
    print(f"mnistlab sweep: stopping the notebooks of this sweep on {len(running)} worker(s) and waiting up to "
          f"{wait:g} s for them to end before letting go of the output folder ...", file=sys.stderr, flush=True)
    try:
        answers = dask_client.run(stop_kernels, sorted(keys), wait, workers=list(running), on_error="return")
    except Exception as error:
        answers = {worker: error for worker in running}
    for worker, answer in answers.items():
        if isinstance(answer, BaseException):
            print(f"mnistlab sweep: {worker}: could not stop its notebook ({_short(answer)}); it may still be "
                  "running there", file=sys.stderr, flush=True)
        elif answer:
            print(f"mnistlab sweep: {worker}: {answer}", file=sys.stderr, flush=True)


def _silence() -> None:
    """In a worker that is about to stop (``Client.run``): no more log lines to the sweep's terminal."""
    import logging

    logging.disable(logging.CRITICAL)


class IgnoreInterrupts(WorkerPlugin):
    """Worker plugin for a local cluster: Ctrl-C at the terminal reaches every process of its group, the workers
    too, which would die printing tracebacks; the sweep handles it instead (``stop``) and closes them."""

    name = "mnistlab-ignore-interrupts"

    def setup(self, worker) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _children() -> list:
    import psutil

    return psutil.Process().children(recursive=True)


def _kill_and_wait(processes: list, wait: float) -> list:
    """SIGKILL ``processes`` and wait up to ``wait`` s for them to go; those still there."""
    import psutil

    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()
    _, alive = psutil.wait_procs(processes, timeout=wait)
    return alive


async def stop_kernels(keys: list[str], wait: float, dask_worker=None) -> str:
    """On a worker (``Client.run``): kill the Jupyter kernels under this worker process when every task it
    executes is one of ``keys``, then wait until those tasks have ended; '' when done, else why not."""
    import asyncio

    import psutil

    def executing() -> set[str]:
        return {ts.key for ts in dask_worker.state.tasks.values()
                if ts.state in ("executing", "long-running", "cancelled", "resumed")}

    mine = executing() & set(keys)
    if not mine:
        return ""
    others = executing() - set(keys)
    if others:
        return f"not stopped: this worker also runs {len(others)} task(s) of others, whose kernels look the same"
    kernels = [child for child in psutil.Process().children(recursive=True) if _is_kernel(child)]
    for kernel in kernels:
        with contextlib.suppress(psutil.Error):
            kernel.kill()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        alive = [k for k in kernels if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]
        if not alive and not executing() & set(keys):
            return ""
        await asyncio.sleep(0.2)
    return f"{len(executing() & set(keys))} notebook(s) still ending after {wait:g} s"


def _is_kernel(process) -> bool:
    import psutil

    try:
        return any("ipykernel" in part for part in process.cmdline())
    except psutil.Error:
        return False


def _short(error: BaseException) -> str:
    return " ".join(str(error).split())[:300] or type(error).__name__


def slurm_cluster(workers: int | None = None, cluster_file: str | os.PathLike | None = None):
    """dask-jobqueue's SLURMCluster with the options of ``cluster_file`` (YAML), not yet scaled."""
    import yaml
    from dask_jobqueue import SLURMCluster

    file = paths.resolve(cluster_file or DEFAULT_SLURM)
    try:
        options = yaml.safe_load(read_text(Path(file), MAX_BYTES, "a cluster file")) or {}
    except ParamsError as error:
        raise ParamsError(f"{paths.relative(file)}: {error}") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{paths.relative(file)}: cannot read the cluster options ({error})") from None
    if not isinstance(options, dict):
        raise ParamsError(f"{paths.relative(file)}: expected a mapping of SLURMCluster options")
    if options.get("shared_temp_directory"):  # where the jobs read their TLS key: the user's alone
        shared = Path(os.path.expandvars(str(options["shared_temp_directory"]))).expanduser()
        try:
            shared.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            raise ParamsError(f"{paths.relative(file)}: shared_temp_directory {shared}: {error.strerror}") from None
    if not options.get("security"):
        print(f"mnistlab sweep: warning: {paths.relative(file)} sets no security: the scheduler listens in plain "
              "TCP, and anyone who can reach it can run code as you on every node; set security: true (see "
              f"{DEFAULT_SLURM})", file=sys.stderr, flush=True)
    try:
        return SLURMCluster(**options)
    except ImportError as error:  # security: true without the cryptography package
        raise ParamsError(f"{paths.relative(file)}: security: true needs the cryptography package "
                          f"(pip install -e \".[slurm]\"): {error}") from None
    except (TypeError, ValueError) as error:
        raise ParamsError(f"{paths.relative(file)}: {error}") from None


@contextlib.contextmanager
def _slurm(workers: int | None, cluster_file, worker_timeout: float = WORKER_TIMEOUT) -> Iterator[object]:
    """SLURM jobs as workers; a submission that fails (no sbatch, a wrong partition or account) ends it at once."""
    from dask.distributed import Client
    from distributed.core import Status

    with slurm_cluster(workers, cluster_file) as cluster, Client(cluster) as dask_client:
        command = shlex.split(cluster.job_cls.submit_command)[0]
        if not shutil.which(command):
            raise ClusterError(f"--cluster slurm: {command} is not on PATH: SLURM's commands must be on the machine "
                               "that runs the sweep. Nothing ran")
        # What cluster.scale(jobs=n) does, but with the submission awaited here rather than in a callback of the
        # event loop, which would only log its failure and leave the sweep waiting for a worker that never comes.
        while len(cluster.worker_spec) < (workers or 1):
            cluster.worker_spec.update(cluster.new_worker_spec())
        options = paths.relative(paths.resolve(cluster_file or DEFAULT_SLURM))
        failure = None
        try:
            cluster.sync(cluster._correct_state)
        except (RuntimeError, OSError) as error:
            failure = f"the job submission failed: {_short(error)}"
        unsubmitted = [name for name, job in cluster.workers.items() if job.status.name != "running"]
        for name in unsubmitted:  # never started: nothing to cancel, and closing the cluster would trip over them
            cluster.workers.pop(name).status = Status.failed
            cluster.worker_spec.pop(name, None)
        if failure or not cluster.workers:
            raise ClusterError(f"--cluster slurm: {failure or 'no job was submitted'}. Check the partition, account "
                               f"and other options in {options}. Nothing ran")
        _first_worker(dask_client, worker_timeout, "--cluster slurm",
                      "the jobs are submitted but none has started (queued, or failing at start: see squeue and "
                      "the jobs' logs)")
        yield dask_client


def slots(dask_client, gpus: bool) -> int:
    """How many notebooks the cluster can run at once now: its workers' threads, or on GPUs its workers with a GPU
    (each takes one notebook at a time); 1 while it has none, or cannot say, so that the first run waits there."""
    try:
        workers = _workers(dask_client, "the cluster", LOST_SECONDS).values()
    except Exception:  # the scheduler is going away: the watchdog says so
        return 1
    if gpus:
        return max(1, sum(1 for worker in workers if worker.get("resources", {}).get("GPU")))
    return max(1, sum(worker.get("nthreads", 1) for worker in workers))


def _cluster_has_gpus(dask_client) -> bool:
    workers = _workers(dask_client, "the cluster").values()
    return any(worker.get("resources", {}).get("GPU") for worker in workers)
