"""``mnistlab sweep``: every params file through notebooks/train.ipynb on a Dask cluster, then the pages and the site.

The steps, each in its own module: read and validate every params file (``params``: nothing runs
if one is wrong), lock the output folder (``lock``), skip what is up to date (``cache``), execute
and render the rest where Dask puts them (``schedule``, ``execute``), then the analysis, data and
backprop pages, ``sweep.json`` and the index (``site``). Under ``<out>``: ``runs/`` (one notebook
and page per params file, one record per seed), ``checkpoints/`` while runs are unfinished, the
pages, ``index.html`` and ``sweep.json``.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from .. import paths
from ..records import Record, RecordError, atomic_write_text
from . import cache
from .execute import Outcome, Task, execute, up_to_date
from .params import Job, ParamsError, jobs
from .results import PageResult, RunResult, SweepResult

PAGES = ("analysis", "data", "backprop")  # executed after the runs, in this order on the index


def sweep(params: str | Path | list[str | Path], out: str | Path | None = None, *, workers: int | None = None,
          seeds: list[int] | None = None, force: bool = False, scheduler: str | None = None,
          cluster: str | None = None, cluster_file: str | Path | None = None,
          notebooks: str | Path | None = None) -> SweepResult:
    """Run every params file (all its seeds in one notebook), then the pages; write sweep.json and index.html.

    ``params``: folders of *.yaml or files. ``out``: relative to the project root (default
    ``reports/<first params folder or file name>``).
    """
    started = time.time()
    params = [Path(p) for p in (params if isinstance(params, (list, tuple)) else [params])]
    out = paths.resolve(out or Path("reports") / params[0].stem)
    notebooks = Path(notebooks) if notebooks else paths.project_root() / "notebooks"
    if not (notebooks / "train.ipynb").is_file():
        raise ParamsError(f"{paths.relative(notebooks / 'train.ipynb')}: no such notebook")
    todo = jobs(params, out, seeds)  # everything validated before anything runs or is locked

    from . import lock, schedule

    with lock.hold(out) as note:
        if note:
            print(note, flush=True)
        with schedule.client(workers=workers, scheduler=scheduler, cluster=cluster,
                             cluster_file=cluster_file) as (dask_client, shape):
            tasks = [_run_task(job, notebooks, out, shape["threads"]) for job in todo]
            outcomes = _execute_all(dask_client, tasks, force, shape["gpus"], "runs")
            runs = [result for job, task in zip(todo, tasks) for result in _results(job, task, outcomes[task.name], out)]
            page_tasks = [_page_task(name, notebooks, out, runs, shape["threads"]) for name in PAGES
                          if (notebooks / f"{name}.ipynb").is_file()]
            page_outcomes = _execute_all(dask_client, page_tasks, force, False, "pages")
        pages = [_page_result(name, notebooks, out, page_outcomes) for name in PAGES]
        result = SweepResult(params=[paths.relative(p) for p in params],
                             started=datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
                             wall_seconds=round(time.time() - started, 1), runs=runs, pages=pages,
                             about=[(p / "README.md").read_text() for p in params if (p / "README.md").is_file()])
        atomic_write_text(out / "sweep.json", json.dumps(report(result), indent=1) + "\n")
        from .site import write_site

        index = write_site(out, result)
        print(_summary(result, index), flush=True)
        return result


def _run_task(job: Job, notebooks: Path, out: Path, threads: int | None) -> Task:
    """The train notebook for one params file: all its seeds, its records and checkpoints under ``out``."""
    spec = job.spec
    parameters = {**job.params, "seeds": list(spec.seeds), "out_dir": paths.relative(spec.out_dir),
                  "run_name": spec.run_name, "checkpoint": paths.relative(spec.checkpoint)}
    parameters.pop("seed", None)
    identity = [config.identity() for config in spec.configs()]
    return Task(name=job.name, source=notebooks / "train.ipynb", output=out / "runs" / f"{job.name}.ipynb",
                html=out / "runs" / f"{job.name}.html", parameters=parameters, site_root=out,
                key=cache.key({"runs": identity, "tensorboard": spec.tensorboard}),
                records=tuple(spec.record_path(seed) for seed in spec.seeds),
                checkpoints=tuple(spec.checkpoints()), threads=threads)


def _page_task(name: str, notebooks: Path, out: Path, runs: list[RunResult], threads: int | None) -> Task:
    """A page over the sweep: redone when its notebook or any record it reads changed."""
    source = notebooks / f"{name}.ipynb"
    parameters = {}
    records = sorted({out / run.record_file for run in runs if run.record_file})
    if name == "analysis":
        parameters = {"records_dir": paths.relative(out / "runs"),
                      "records": [paths.relative(record) for record in records]}
    inputs = {"notebook": cache.file_hash(source), "parameters": parameters,
              "records": [cache.file_hash(record) for record in records] if name == "analysis" else []}
    return Task(name=name, source=source, output=out / f"{name}.ipynb", html=out / f"{name}.html",
                parameters=parameters, site_root=out, key=cache.key(inputs), threads=threads)


def _execute_all(dask_client, tasks: list[Task], force: bool, gpus: bool, what: str) -> dict[str, Outcome]:
    """Submit the tasks that are not up to date; print one line as each finishes; return every outcome by name."""
    from dask.distributed import as_completed

    outcomes = {task.name: None for task in tasks}
    pending = [task for task in tasks if force or not up_to_date(task)]
    for task in tasks:
        if task not in pending:
            print(f"{task.name}: up to date", flush=True)
    resources = {"GPU": 1} if gpus else None
    futures = {dask_client.submit(execute, task, key=f"{what}-{task.name}-{uuid.uuid4().hex[:8]}",
                                  resources=resources, pure=False): task for task in pending}
    try:
        for done, future in enumerate(as_completed(futures), start=1):
            task = futures[future]
            try:
                outcome = future.result()
            except Exception as error:  # the worker died (KilledWorker) or could not unpickle: this task alone fails
                outcome = Outcome(task.name, error=f"{type(error).__name__}: {error}")
            outcomes[task.name] = outcome
            status = f"FAILED: {outcome.error}" if outcome.error else "done"
            print(f"[{done}/{len(futures)} {what}] {task.name}: {status} ({outcome.seconds:.0f} s)", flush=True)
    except KeyboardInterrupt:
        for future in futures:
            future.cancel()
        raise
    return outcomes


def _results(job: Job, task: Task, outcome: Outcome | None, out: Path) -> list[RunResult]:
    """One result per seed, from its record (what the notebook reported) and the task's outcome."""
    results = []
    for seed, record_path in zip(job.spec.seeds, task.records):
        params = {**job.params, "seed": seed}
        params.pop("seeds", None)
        result = RunResult(name=job.spec.name(seed), params=params, status="failed",
                           executed=outcome is not None, error=outcome.error if outcome else "",
                           notebook=_relative_if(task.output, out), html=_relative_if(task.html, out),
                           record_file=_relative_if(record_path, out))
        try:
            result.record = Record.load(record_path)
        except RecordError as error:
            result.error = result.error or str(error)
            result.record_file = None
        else:
            result.status = result.record.status if not result.error else "failed"
        results.append(result)
    return results


def _page_result(name: str, notebooks: Path, out: Path, outcomes: dict[str, Outcome]) -> PageResult:
    if not (notebooks / f"{name}.ipynb").is_file():
        return PageResult(name, status="missing", error=f"{paths.relative(notebooks / name)}.ipynb does not exist")
    outcome = outcomes.get(name)
    error = outcome.error if outcome else ""
    return PageResult(name, status="failed" if error else "complete", executed=outcome is not None, error=error,
                      html=_relative_if(out / f"{name}.html", out))


def report(result: SweepResult) -> dict:
    """sweep.json: every run and page with its status and its files, relative to the out folder."""
    runs = []
    for run in result.runs:
        entry = {key: value for key, value in asdict(run).items() if key != "record"}
        entry["summary"] = run.record.summary if run.record else None
        runs.append(entry)
    return {"params": result.params, "about": result.about, "started": result.started, "wall_seconds": result.wall_seconds,
            "ok": result.ok, "failed": result.failed, "runs": runs, "pages": [asdict(page) for page in result.pages]}


def _relative_if(path: Path, out: Path) -> str | None:
    return path.relative_to(out).as_posix() if path.exists() else None


def _summary(result: SweepResult, index: Path) -> str:
    ran = sum(run.executed for run in result.runs)
    lines = [f"{len(result.runs)} runs ({ran} executed, {len(result.runs) - ran} up to date) "
             f"in {result.wall_seconds:.0f} s"]
    lines += [f"FAILED {name}" for name in result.failed]
    lines.append(f"index: {paths.relative(index)}")
    return "\n".join(lines)
