"""Where a sweep's notebooks run: a Dask cluster, local by default, an existing one, or one on SLURM.

- default: a ``LocalCluster`` sized to the machine, one worker process per GPU, each pinned to its
  own GPU (``CUDA_VISIBLE_DEVICES`` in the worker's environment, which its kernels inherit); on a
  CPU machine one worker, whose kernel gets every core;
- ``scheduler="tcp://HOST:8786"``: an existing cluster (``dask scheduler`` plus ``dask worker``s);
- ``cluster="slurm"``: dask-jobqueue's ``SLURMCluster``, one GPU per job, its options from a YAML file
  (``params/clusters/slurm.yaml``).

Workers of a remote cluster need the project, the data and the sweep's output folder on a shared
filesystem, and a ``python3`` Jupyter kernel. One notebook runs at a time per worker process
(papermill changes the working directory, which threads would share).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin

from .. import paths
from .params import ParamsError

DEFAULT_SLURM = "params/clusters/slurm.yaml"


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
           cluster_file: str | os.PathLike | None = None) -> Iterator[tuple[object, dict]]:
    """A Dask ``Client`` and what the tasks need to know of the cluster: ``{"gpus": bool, "threads": int | None}``."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler, timeout="30s") as dask_client:
            yield dask_client, {"gpus": _cluster_has_gpus(dask_client), "threads": None}
        return
    if cluster == "slurm":
        with _slurm(workers, cluster_file) as dask_client:
            yield dask_client, {"gpus": True, "threads": None}
        return
    if cluster not in (None, "local"):
        raise ParamsError(f"--cluster must be local or slurm; got {cluster!r}")
    gpus = gpu_count()
    n = workers or max(gpus, 1)  # on a CPU machine one run at a time: torch already uses every core
    resources = {"GPU": 1} if gpus else None
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", resources=resources) as local, Client(local) as dask_client:
        if gpus:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if os.environ.get("CUDA_VISIBLE_DEVICES") \
                else [str(i) for i in range(gpus)]
            dask_client.register_plugin(PinGPU(visible))
        threads = max(1, len(os.sched_getaffinity(0)) // n) if not gpus else None
        yield dask_client, {"gpus": bool(gpus), "threads": threads}


def slurm_cluster(workers: int | None = None, cluster_file: str | os.PathLike | None = None):
    """dask-jobqueue's SLURMCluster with the options of ``cluster_file`` (YAML), not yet scaled."""
    import yaml
    from dask_jobqueue import SLURMCluster

    file = paths.resolve(cluster_file or DEFAULT_SLURM)
    try:
        options = yaml.safe_load(Path(file).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ParamsError(f"{paths.relative(file)}: cannot read the cluster options ({error})") from None
    if not isinstance(options, dict):
        raise ParamsError(f"{paths.relative(file)}: expected a mapping of SLURMCluster options")
    try:
        return SLURMCluster(**options)
    except (TypeError, ValueError) as error:
        raise ParamsError(f"{paths.relative(file)}: {error}") from None


@contextlib.contextmanager
def _slurm(workers: int | None, cluster_file) -> Iterator[object]:
    from dask.distributed import Client

    with slurm_cluster(workers, cluster_file) as cluster, Client(cluster) as dask_client:
        cluster.scale(jobs=workers or 1)
        yield dask_client


def _cluster_has_gpus(dask_client) -> bool:
    workers = dask_client.scheduler_info().get("workers", {}).values()
    return any(worker.get("resources", {}).get("GPU") for worker in workers)
