"""Sweeps: each params file (once per seed) through notebooks/train.ipynb with papermill, then the site."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from .config import Config, ConfigError, parse_params
from .records import Record, RecordError, atomic_write_text

# torch, nbformat, nbconvert and the site (pandas, matplotlib) are imported where they are used,
# so that a bad params file is refused in a second.

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"  # the checkout's (editable install)
PAGES = ("analysis", "data", "backprop")  # executed after the runs; analysis gets records_dir
SET_BY_SWEEP = ("out_dir", "run_name", "checkpoint")
# A record or checkpoint is reused when it matches on these; device and data_dir are where, not what.
TRAINING_KEYS = tuple(k for k in Config.field_names() if k not in ("device", "data_dir"))
_RENDER_LOCK = threading.Lock()  # nbconvert does not promise thread safety; rendering takes a second


class SweepError(ConfigError):
    """A params file or sweep argument is invalid; nothing has run. The message names the file and key."""


@dataclass
class Run:
    """One training run of a sweep: a params file with one seed, and how it went."""

    name: str  # <params file stem>-seed<seed>
    params: dict[str, Any]  # the file's train-notebook parameters, seed included
    folder: Path  # <out>/runs: notebook, HTML and record
    config: Config | None = None  # set once the parameters are validated
    status: str = "pending"  # complete, diverged or failed
    executed: bool = False  # False: up to date from an earlier sweep
    error: str = ""
    summary: dict[str, Any] | None = None
    environment: dict[str, Any] | None = None

    @property
    def notebook(self) -> Path:
        return self.folder / f"{self.name}.ipynb"

    @property
    def html(self) -> Path:
        return self.folder / f"{self.name}.html"

    @property
    def record(self) -> Path:
        return self.folder / f"{self.name}.json"

    @property
    def checkpoint(self) -> Path:
        return self.folder.parent / "checkpoints" / f"{self.name}.pt"

    def notebook_parameters(self) -> dict[str, Any]:
        return {**self.params, "out_dir": str(self.folder), "run_name": self.name, "checkpoint": str(self.checkpoint)}


@dataclass
class Page:
    """A notebook executed once per sweep (analysis, data, backprop) and how it went."""

    name: str
    status: str = "pending"  # complete, failed or missing
    executed: bool = False
    error: str = ""


def sweep(params: str | os.PathLike | list[str | os.PathLike], out: str | os.PathLike | None = None, *,
          workers: int | None = None, seeds: list[int] | None = None, force: bool = False,
          notebooks: str | os.PathLike = NOTEBOOKS) -> dict:
    """Run every params file (per seed), then the pages; write index.html and sweep.json; return sweep.json's content.

    ``params``: a folder of *.yaml, one file, or a list of either.
    """
    started = time.time()
    params = [Path(p) for p in (params if isinstance(params, (list, tuple)) else [params])]
    notebooks = Path(notebooks)
    # Absolute: the kernels run in the notebooks' folder. Default: the first folder's name, or file's stem.
    out = (Path(out) if out else Path("reports") / params[0].stem).absolute()
    if not (notebooks / "train.ipynb").is_file():
        raise SweepError(f"{notebooks / 'train.ipynb'}: no such notebook")
    runs = load_runs(params, out / "runs", seeds)
    train_all(runs, notebooks, workers, force)
    pages = [make_page(name, notebooks, out, force, [run.record for run in runs]) for name in PAGES]
    report = _report(params, out, runs, pages, started)
    atomic_write_text(out / "sweep.json", json.dumps(report, indent=1) + "\n")
    from .site import write_index

    index = write_index(out, report)
    print(_summary(report, index))
    return report


def load_runs(params: list[Path], folder: Path, seeds: list[int] | None = None) -> list[Run]:
    """Read and validate every params file before anything runs; raise one SweepError listing every problem."""
    files = []
    for path in params:
        found = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        if not found or not found[0].is_file():
            raise SweepError(f"{path}: no params file (a folder of *.yaml, or one .yaml file)")
        files += found
    runs, errors = [], []
    for file in files:
        try:
            runs += _runs_of(file, folder, seeds)
        except ConfigError as error:  # SweepError too
            errors.append(f"{file}: {error}")
    if errors:
        raise SweepError("\n".join(errors))
    return runs


def _runs_of(file: Path, folder: Path, seeds: list[int] | None) -> list[Run]:
    params = read_params(file)
    if seeds is not None and "seed" in params:
        raise SweepError("seed is set both here and by --seeds; remove one")
    if isinstance(params.get("data_dir"), str) and params["data_dir"]:
        # Relative to where the sweep was started: the kernels run in the notebooks' folder.
        params["data_dir"] = os.path.abspath(params["data_dir"])
    runs = []
    for seed in seeds if seeds is not None else [params.get("seed", 0)]:
        run = Run(name=f"{file.stem}-seed{seed}", params={**params, "seed": seed}, folder=folder)
        run.config, _ = parse_params(**run.notebook_parameters())
        runs.append(run)
    return runs


def read_params(file: Path) -> dict[str, Any]:
    """A params file's train-notebook parameters; SweepError when it is not a mapping or sets the sweep's keys."""
    try:
        params = yaml.safe_load(file.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise SweepError(f"cannot read it as YAML ({error})") from None
    if not isinstance(params, dict) or not all(isinstance(key, str) for key in params):
        raise SweepError(f"expected a mapping of train-notebook parameter names to values; got {type(params).__name__}")
    reserved = sorted(set(params) & set(SET_BY_SWEEP))
    if reserved:
        raise SweepError(f"{', '.join(reserved)} is set by the sweep for each run; remove it from the file")
    return params


def train_all(runs: list[Run], notebooks: Path, workers: int | None, force: bool) -> None:
    """Execute the runs that are not up to date, ``workers`` at a time, with a progress bar and a line per run."""
    todo = [run for run in runs if force or not _reuse(run)]
    environments = worker_environments(workers)
    slots: queue.SimpleQueue[dict[str, str]] = queue.SimpleQueue()
    for env in environments:
        slots.put(env)
    with tqdm(total=len(runs), desc="sweep", unit="run") as bar, ThreadPoolExecutor(len(environments)) as pool:
        for run in runs:
            if run not in todo:
                bar.update(1)
                bar.write(_line(run))
        futures = [pool.submit(_train_in_slot, run, notebooks, slots, force) for run in todo]
        try:
            for future in as_completed(futures):
                bar.update(1)
                bar.write(_line(future.result()))
        except KeyboardInterrupt:
            for future in futures:
                future.cancel()  # the pool would otherwise start every queued run before letting go
            raise


def worker_environments(workers: int | None) -> list[dict[str, str]]:
    """One set of environment variables per worker: its own GPU when there are GPUs, else a share of the cores."""
    import torch

    gpus = torch.cuda.device_count()
    workers = workers or max(gpus, 1)  # on CPU one run at a time: torch already uses every core
    if workers < 1:
        raise SweepError(f"workers must be at least 1; got {workers}")
    if gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if os.environ.get("CUDA_VISIBLE_DEVICES") \
            else [str(i) for i in range(gpus)]
        return [{"CUDA_VISIBLE_DEVICES": visible[i % gpus]} for i in range(workers)]
    if workers == 1:
        return [{}]
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    return [{"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads} for _ in range(workers)]


def _train_in_slot(run: Run, notebooks: Path, slots: queue.SimpleQueue, force: bool) -> Run:
    env = slots.get()
    try:
        train_one(run, notebooks / "train.ipynb", notebooks, env, force)
    except Exception as error:  # one run's trouble (a disk error, a bad notebook) must not stop the others
        run.status, run.error = "failed", f"{type(error).__name__}: {error}"
    finally:
        slots.put(env)
    return run


def train_one(run: Run, train: Path, cwd: Path, env: dict[str, str], force: bool) -> Run:
    """Execute and render one run; resume from its checkpoint unless ``force``; delete the checkpoint once recorded."""
    if force or _stale_checkpoint(run):
        run.checkpoint.unlink(missing_ok=True)
    run.record.unlink(missing_ok=True)  # from other parameters, or being redone: never report it for this run
    run.executed = True
    run.error = execute(train, run.notebook, run.notebook_parameters(), cwd, env)
    render(run.notebook, run.html)
    _read_record(run)
    if run.summary is not None:
        run.checkpoint.unlink(missing_ok=True)
    if run.error:
        run.status = "failed"
    return run


def execute(source: Path, output: Path, parameters: dict[str, Any], cwd: Path, env: dict[str, str]) -> str:
    """Execute a notebook with papermill in its own process into ``output``; return its error ('' if none).

    A failed notebook is kept (partly executed, with its traceback). The kernel runs in ``cwd``
    (the notebooks' folder, as in Jupyter) with ``env`` added to this process's environment.
    """
    partial = output.with_name(f".{output.stem}.partial.ipynb")
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "papermill", str(source), str(partial), "--kernel", "python3",
               "--cwd", str(cwd), "--no-progress-bar", "--parameters_yaml", yaml.safe_dump(parameters)]
    result = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)
    if partial.exists():
        os.replace(partial, output)
    elif output.exists():
        output.unlink()  # papermill never started it: an older notebook would mislead
    if result.returncode == 0:
        return ""
    tail = result.stderr.strip().splitlines()[-1:] or [f"papermill exited with status {result.returncode}"]
    return (output.exists() and notebook_error(output)) or tail[0]


def render(notebook: Path, html: Path) -> None:
    """The executed notebook as one self-contained HTML file (figures are data URIs); none without a notebook."""
    import nbformat
    from nbconvert import HTMLExporter

    if not notebook.exists():
        html.unlink(missing_ok=True)  # an older page would show another run's results
        return
    with _RENDER_LOCK:
        body, _ = HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    atomic_write_text(html, body)


def notebook_error(notebook: Path) -> str:
    """The first error an executed notebook shows, as 'Name: message'; '' when it ran through."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"{output.ename}: {output.evalue}"
    if nb.metadata.get("papermill", {}).get("exception"):
        return "the notebook stopped with an exception"
    return ""


def make_page(name: str, notebooks: Path, out: Path, force: bool, inputs: list[Path]) -> Page:
    """Execute and render ``<name>.ipynb`` into ``out`` unless its HTML is newer than every input and error-free."""
    page, source = Page(name), notebooks / f"{name}.ipynb"
    notebook, html = out / f"{name}.ipynb", out / f"{name}.html"
    if not source.is_file():
        page.status, page.error = "missing", f"{source} does not exist"
        return page
    if not force and _page_up_to_date(notebook, html, inputs):
        page.status = "complete"
        return page
    parameters = {"records_dir": str(out / "runs")} if name == "analysis" else {}
    page.executed = True
    page.error = execute(source, notebook, parameters, notebooks, {})
    render(notebook, html)
    page.status = "failed" if page.error else "complete"
    return page


def _page_up_to_date(notebook: Path, html: Path, inputs: list[Path]) -> bool:
    """Rendered after every input last changed, from a notebook that ran through."""
    if not (notebook.exists() and html.exists()):
        return False
    newest_input = max((path.stat().st_mtime for path in inputs if path.exists()), default=0.0)
    return html.stat().st_mtime >= newest_input and not notebook_error(notebook)


def _reuse(run: Run) -> bool:
    """Take a run from an earlier sweep: same training settings, HTML rendered, notebook ran through."""
    if not (run.html.exists() and run.notebook.exists()) or not _record_matches(run):
        return False
    if notebook_error(run.notebook):
        return False
    _read_record(run)
    return True


def _record_matches(run: Run) -> bool:
    try:
        saved = Record.load(run.record).config
    except RecordError:
        return False
    wanted = run.config.to_dict()
    return all(saved.get(key) == wanted[key] for key in TRAINING_KEYS)


def _read_record(run: Run) -> None:
    """Status, summary and environment from the run's record; 'failed' when it wrote none."""
    try:
        record = Record.load(run.record)
    except RecordError as error:
        run.status, run.error = "failed", run.error or str(error)
        return
    run.status, run.summary, run.environment = record.status, record.summary, record.environment


def _stale_checkpoint(run: Run) -> bool:
    """A checkpoint left by a run with other training settings, which the notebook would refuse."""
    if not run.checkpoint.exists():
        return False
    import torch

    try:
        saved = torch.load(run.checkpoint, map_location="cpu", weights_only=True).get("config", {})
    except Exception:  # truncated or foreign: starting over is the only way on
        return True
    wanted = run.config.to_dict()
    return any(saved.get(key) != wanted[key] for key in TRAINING_KEYS)


def _line(run: Run) -> str:
    """One line per finished run: name, status, accuracies, training time."""
    done = "ran" if run.executed else "up to date"
    if run.summary is None or run.summary.get("best_test_acc") is None:
        return f"{run.name}: {run.status.upper()} ({done}) {run.error}"
    s = run.summary
    return (f"{run.name}: {run.status} ({done}), best test {s['best_test_acc']:.2f} %, "
            f"val-selected {s['val_selected_test_acc']:.2f} %, {s['epochs_run']} epochs in {s['seconds']:.0f} s"
            + (f"; {run.error}" if run.error else ""))


def _report(params: list[Path], out: Path, runs: list[Run], pages: list[Page], started: float) -> dict:
    """sweep.json: every run and page with its status and where its files are (relative to the out folder)."""
    def files(run: Run) -> dict[str, str | None]:
        return {key: f"runs/{path.name}" if path.exists() else None
                for key, path in (("notebook", run.notebook), ("html", run.html), ("record", run.record))}

    failed = [r.name for r in runs if r.status != "complete"] + [p.name for p in pages if p.status != "complete"]
    return {
        "params": " ".join(str(p) for p in params),
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(time.time() - started, 1),
        "ok": not failed,
        "failed": failed,
        "runs": [{"name": r.name, "params": r.params, "status": r.status, "executed": r.executed, "error": r.error,
                  "summary": r.summary, "environment": r.environment, **files(r)} for r in runs],
        "pages": [{**asdict(p), "html": f"{p.name}.html" if (out / f"{p.name}.html").exists() else None}
                  for p in pages],
    }


def _summary(report: dict, index: Path) -> str:
    runs = report["runs"]
    ran = sum(r["executed"] for r in runs)
    lines = [f"{len(runs)} runs ({ran} executed, {len(runs) - ran} up to date) in {report['wall_seconds']:.0f} s"]
    lines += [f"FAILED {name}" for name in report["failed"]]
    lines.append(f"index: {index}")
    return "\n".join(lines)
