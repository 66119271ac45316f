"""``mnistlab sweep``: every params file through notebooks/train.ipynb on a Dask cluster, then the pages and the site.

The steps, each in its own module: read and validate every params file (``params``: nothing runs
if one is wrong), lock the output folder (``lock``), skip what is up to date (``cache``) and refuse to
reuse, unasked, runs made by other training code, execute and render the rest where Dask puts them
(``schedule``, ``execute``), then the analysis, data and backprop pages, ``sweep.json`` and the index
(``site``). Under ``<out>``: ``runs/`` (one record per seed; one notebook and page per seed on a CPU
cluster, per params file on GPUs, where a file's seeds train together as one stack),
``checkpoints/`` while runs are unfinished, the pages, ``index.html`` and ``sweep.json``.

On a CPU each seed is a notebook of its own: a finished seed is published (and can be committed) as
soon as it ends, a kill costs only the seeds in flight, and several workers train the seeds of one
file at once. Cheaper runs are submitted first.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

from .. import origin, paths
from ..atomic import atomic_write_text, read_regular
from ..records import Record, RecordError
from . import cache
from .execute import Outcome, Task, execute, up_to_date
from .params import Job, ParamsError, identity, jobs, read_text, same_runs
from .protocol import DEVIATIONS
from .results import PageResult, RunResult, SweepResult

PAGES = ("analysis", "data", "backprop")  # executed after the runs, in this order on the index


def sweep(params: str | Path | list[str | Path], out: str | Path | None = None, *, workers: int | None = None,
          seeds: list[int] | None = None, force: bool = False, keep_older_code: bool = False,
          also: list[str | Path] | None = None, scheduler: str | None = None, cluster: str | None = None,
          cluster_file: str | Path | None = None,
          notebooks: str | Path | None = None, dry_run: bool = False, timeout: float | None = None,
          allow_other_files: bool = False, worker_timeout: float | None = None,
          cuda_graphs: bool = False) -> SweepResult:
    """Run every params file and seed, then the pages; write sweep.json and index.html.

    ``params``: folders of *.yaml or files. ``out``: relative to the project root (default
    ``reports/<first params folder or file name>``). A run that is up to date but was trained by other
    training code (``origin.code``) stops the sweep before anything runs, naming the runs and the files
    that changed, unless ``force`` (retrain them) or ``keep_older_code`` (keep them as they are).
    ``also``: folders of another sweep's records (e.g. ``reports/paper/runs``) that the analysis reads
    beside this sweep's, to compare with them; nothing of theirs is trained or listed as this sweep's run. Records
    there of other training code stop the sweep as its own runs' do (``keep_older_code`` reads them anyway), and a
    record of a run this sweep trains itself is left out (``also_records``).
    The plan (which runs are up to date and why, which will run, where) is printed first; ``dry_run``
    prints it and returns it (a ``progress.Plan``), touching nothing. ``timeout``: seconds each notebook
    may take; one that takes longer is stopped and fails alone. MathJax and the templates are checked
    before anything runs (``site.check``). ``out`` must be new, empty or a sweep's (``lock.check_out``):
    never the sources or the project root, and a folder of other files only with ``allow_other_files``.
    ``worker_timeout``: seconds without a worker that can run the notebooks before the sweep ends with a
    ``schedule.ClusterError`` (default ``schedule.WORKER_TIMEOUT``). ``cuda_graphs``: every run captures its
    training step as a CUDA graph (GPU workers only; ``benchmarks/gpu_check.py`` checks graphs on a node first);
    it changes no run's identity, so runs already up to date are kept as they are.
    """
    started = time.time()
    params = [Path(p) for p in (params if isinstance(params, (list, tuple)) else [params])]
    out = paths.resolve(out or Path("reports") / params[0].stem)
    notebooks = Path(notebooks) if notebooks else paths.project_root() / "notebooks"
    if not (notebooks / "train.ipynb").is_file():
        raise ParamsError(f"{paths.relative(notebooks / 'train.ipynb')}: no such notebook")
    todo = jobs(params, out, seeds)  # everything validated before anything runs or is locked
    about = [_readme(p / "README.md") for p in params if os.path.lexists(p / "README.md")]
    folders = [_record_folder(folder) for folder in also or []]
    others, also_notes = also_records(folders, todo)
    also_notes = same_runs(todo) + also_notes
    also_shown = sorted({paths.shown(folder) for folder in folders})
    also_older = older_records(others)
    if also_older and not keep_older_code and not dry_run:
        raise ParamsError(_older_also_text(also_older) + ". The pages would compare them with this code's runs as if "
                          "one code had made both: rerun with --keep-older-code to read them anyway, or leave the "
                          "folder out")
    if also_older:
        also_notes.append(_older_also_text(also_older) + (": read anyway (--keep-older-code)" if keep_older_code else
                                                          ": the sweep stops unless --keep-older-code"))
    from . import lock, progress, schedule, site

    lock.check_out(out, sources=[*params, notebooks], writes=_writes(todo, out), other_files=allow_other_files,
                   need=_space(todo))
    site.check()  # a render that cannot succeed fails now, not after the training

    pages = tuple(name for name in PAGES if (notebooks / f"{name}.ipynb").is_file())  # every page links these

    def make_plan(shape: dict, where: str, in_use: str = "") -> tuple[list, progress.Plan]:
        planned = [(job, seeds, replace(_run_task(job, seeds, notebooks, out, shape["threads"], cuda_graphs),
                                        timeout=timeout, pages=pages))
                   for job in todo for seeds in _notebook_seeds(job, per_seed=not shape["gpus"])]
        tasks = [task for _, _, task in planned]
        if not dry_run:
            _forget_foreign_records(planned)  # a record another run wrote over makes its run not up to date
        the_plan = progress.plan(out, tasks, force=force, keep_older_code=keep_older_code,
                                 older={task.name: (_code_of(task), files) for task, files in older_code(tasks)},
                                 where=where, in_use=in_use,
                                 pages=[name for name in PAGES if (notebooks / f"{name}.ipynb").is_file()],
                                 notes=since_last_sweep(out, [job.spec.name(seed) for job in todo
                                                              for seed in job.spec.seeds], also_shown) + also_notes)
        print(the_plan.text(), flush=True)
        return planned, the_plan

    runs = sum(len(job.spec.seeds) for job in todo)  # on a CPU, a notebook each
    if dry_run:  # the plan alone: no cluster started (a --scheduler is asked if it answers), nothing written
        shape, where = schedule.expected(workers=workers, scheduler=scheduler, cluster=cluster, runs=runs)
        return make_plan(shape, progress.expected_where(shape, where), in_use=lock.holder(out))[1]
    with lock.hold(out) as note:
        if note:
            print(note, flush=True)
        with schedule.client(workers=workers, scheduler=scheduler, cluster=cluster, cluster_file=cluster_file,
                             worker_timeout=worker_timeout or schedule.WORKER_TIMEOUT,
                             runs=runs) as (dask_client, shape):
            if cuda_graphs and not shape["gpus"]:
                raise ParamsError("--cuda-graphs: CUDA graphs need GPU workers, and this cluster has none; "
                                  "leave the option out to train eagerly")
            planned, the_plan = make_plan(shape, progress.where(dask_client, shape, scheduler=scheduler,
                                                                cluster=cluster, workers=workers))
            tasks = [task for _, _, task in planned]
            if not force and not keep_older_code:
                _refuse_older_code(tasks)
            outcomes = _execute_all(dask_client, tasks, force, shape["gpus"], "runs")
            runs = [result for job, seeds, task in planned
                    for result in _results(job, seeds, task, outcomes[task.name], out)]
            page_tasks = [replace(_page_task(name, notebooks, out, runs, shape["threads"], others), timeout=timeout,
                                  pages=pages) for name in pages]
            page_outcomes = _execute_all(dask_client, page_tasks, force, False, "pages")
        pages = [_page_result(name, notebooks, out, page_outcomes) for name in PAGES]
        result = SweepResult(params=[paths.relative(p) for p in params],
                             started=datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
                             wall_seconds=round(time.time() - started, 1), runs=runs, pages=pages,
                             about=about,
                             also=also_shown)
        atomic_write_text(out / "sweep.json", json.dumps(report(result), indent=1) + "\n")
        from .site import write_site

        index = write_site(out, result)
        print(_summary(result, index), flush=True)
        return result


def _notebook_seeds(job: Job, per_seed: bool) -> list[tuple[int, ...]]:
    """The seeds of each notebook a params file becomes: one notebook per seed, or one for all of them."""
    return [(seed,) for seed in job.spec.seeds] if per_seed else [tuple(job.spec.seeds)]


def _run_task(job: Job, seeds: tuple[int, ...], notebooks: Path, out: Path, threads: int | None,
              cuda_graphs: bool = False) -> Task:
    """The train notebook for ``seeds`` of one params file, its records and checkpoint under ``out``; with
    ``cuda_graphs``, its step captured as a CUDA graph."""
    name = job.name if len(seeds) == len(job.spec.seeds) and len(seeds) > 1 else job.spec.name(seeds[0])
    spec = job.spec.with_seeds(seeds, job.spec.checkpoint.with_name(f"{name}{job.spec.checkpoint.suffix}"))
    if cuda_graphs:
        spec = replace(spec, cuda_graphs=True, given={**spec.given, "cuda_graphs": True})
    cost = spec.config.hidden_size * spec.config.epochs * spec.config.train_size * len(seeds)
    return Task(name=name, source=notebooks / "train.ipynb", output=out / "runs" / f"{name}.ipynb",
                html=out / "runs" / f"{name}.html", parameters=spec.to_params(), site_root=out,
                key=cache.key({"runs": [c.identity() for c in spec.configs()], "tensorboard": spec.tensorboard}),
                records=tuple(spec.record_path(seed) for seed in seeds), checkpoints=tuple(spec.checkpoints()),
                threads=threads, cost=cost, spec=spec)


def older_code(tasks: list[Task]) -> list[tuple[Task, list[str]]]:
    """The up-to-date runs whose records were trained by other training code than this checkout's, each with
    the fingerprinted files that differ (all of them when the record does not say)."""
    now = origin.code()
    stale = []
    for task in tasks:
        if not up_to_date(task) and not cache.only_derived_stale(task.manifest, task.key, task.html):
            continue  # it will run anyway (a run whose page alone changed is kept, its page re-rendered)
        for path in task.records:
            try:
                code = load_record(path).code
            except RecordError:
                continue
            if not origin.same_numbers(code.get("fingerprint"), now):
                files = code.get("files") or {}
                changed = sorted(name for name in {*files, *now["files"]} if files.get(name) != now["files"].get(name))
                stale.append((task, changed))
                break
    return stale


def _refuse_older_code(tasks: list[Task]) -> None:
    stale = older_code(tasks)
    if not stale:
        return
    changed = sorted({name for _, names in stale for name in names})
    names = ", ".join(task.name for task, _ in stale[:8]) + (f" and {len(stale) - 8} more" if len(stale) > 8 else "")
    raise ParamsError(f"{len(stale)} up-to-date run(s) were trained by other training code than this checkout's "
                      f"({names}); changed since: {', '.join(changed)}. Rerun with --force to retrain them, or "
                      "--keep-older-code to keep their results as they are")


def _code_of(task: Task) -> dict:
    """The training code that made ``task``'s first readable record (``Record.code``)."""
    for path in task.records:
        try:
            return load_record(path).code
        except RecordError:
            continue
    return {}


def since_last_sweep(out: Path, names: list[str], also: list[str]) -> list[str]:
    """What this sweep's index and pages will leave out that the last sweep into ``out`` showed (its
    ``sweep.json``): runs it listed that this sweep does not (``--seeds`` or a params file left out, say), and
    other sweeps' record folders it read (``--also``). Either changes what the pages compare, which a sweep
    rerun with an option forgotten would do without a word; the files of the runs left out stay in ``runs/``.
    A missing or unreadable ``sweep.json``, or a part of it that is not what a sweep writes, says nothing."""
    try:
        before = json.loads(read_regular(out / "sweep.json", MAX_SWEEP_JSON, follow=False))
    except (OSError, ValueError):  # a FIFO, a device or a link there too: never read
        return []
    if not isinstance(before, dict):
        return []
    from .formatting import count

    notes = []
    runs = before.get("runs")
    listed = [run["name"] for run in runs if isinstance(run, dict) and isinstance(run.get("name"), str)] \
        if isinstance(runs, list) else []
    now = set(names)
    left = [name for name in listed if name not in now]
    if left:
        notes.append(f"the last sweep into {paths.shown(out)} listed {count(len(listed), 'run')}; this one leaves "
                     f"out {len(left)} of them (the first: {left[0]}), so the index and the pages will not show "
                     "them, though their files stay in runs/ (were --seeds or a params file left out?)")
    then = before.get("also")  # None: a sweep.json from before it said
    if isinstance(then, list) and all(isinstance(folder, str) for folder in then):
        dropped = [folder for folder in then if folder not in also]
        if dropped:
            flags = [f"--also {folder}" for folder in dropped if not folder.startswith(paths.HIDDEN)]
            keep = f" (give {' '.join(flags)} to keep them)" if flags else ""
            notes.append(f"the last sweep into {paths.shown(out)} read {', '.join(dropped)} beside its own runs; "
                         f"this one does not, so its pages will leave those records out{keep}")
    return notes


def also_records(folders: list[Path], todo: list[Job]) -> tuple[list[Path], list[str]]:
    """The record files of ``--also`` folders that the pages read beside this sweep's runs, and notes on those left
    out: a file that is not a regular file (a link to a device, a FIFO: never read), or a record of a run this
    sweep trains itself (the same settings and seed), which would count as a second seed of it."""
    from ..config import Config

    own = {identity(config) for job in todo for config in job.spec.configs()}
    files, notes, same = [], [], []
    for path in sorted(path for folder in folders for path in folder.glob("*.json")):
        if not is_regular_file(path):
            notes.append(f"--also: {paths.shown(path)} is not a regular file (a FIFO or a device?); not read")
            continue
        try:
            config = Record.load(path).config
            known = Config(**{k: v for k, v in config.items() if k in Config.field_names()})
        except (RecordError, ValueError, TypeError):
            files.append(path)  # the analysis says what is wrong with it
            continue
        if identity(known) in own:
            same.append(paths.shown(path))
            continue
        files.append(path)
    if same:
        notes.append(f"--also: {len(same)} record(s) are of runs this sweep trains itself, with the same settings and "
                     f"seed ({', '.join(same[:3])}{' ...' if len(same) > 3 else ''}): this sweep's own are read "
                     "instead, each run counted once")
    return files, notes


def older_records(files: list[Path]) -> list[tuple[Path, list[str]]]:
    """The records among ``files`` trained by other training code than this checkout's (``origin.same_numbers``),
    each with the fingerprinted files that differ (all of them when the record does not say)."""
    now = origin.code()
    stale = []
    for path in files:
        try:
            code = Record.load(path).code
        except RecordError:
            continue
        if not origin.same_numbers(code.get("fingerprint"), now):
            recorded = code.get("files") or {}
            stale.append((path, sorted(name for name in {*recorded, *now["files"]}
                                       if recorded.get(name) != now["files"].get(name))))
    return stale


def _older_also_text(stale: list[tuple[Path, list[str]]]) -> str:
    names = ", ".join(paths.shown(path) for path, _ in stale[:4]) + (" ..." if len(stale) > 4 else "")
    changed = sorted({name for _, names in stale for name in names})
    return (f"--also: {len(stale)} record(s) were trained by other training code than this checkout's ({names}); "
            f"changed since: {', '.join(changed[:6])}{' ...' if len(changed) > 6 else ''}")


def is_regular_file(path: Path) -> bool:
    """``path`` is (or links to) a regular file: not a FIFO, which would block its reader for ever, nor a device
    such as /dev/zero, which would be read until memory runs out."""
    import stat

    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


MAX_README = 1 << 20  # bytes of a params folder's README.md, shown on the index
MAX_SWEEP_JSON = 64 << 20  # bytes of the last sweep.json read back (a study of thousands of runs is a few MB)


def _readme(path: Path) -> str:
    try:
        return read_text(path, MAX_README, "a params folder's README.md")
    except ParamsError as error:
        raise ParamsError(f"{paths.relative(path)}: {error}") from None


def load_record(path: Path) -> Record:
    """A record of the report folder, read only when it is a regular file there (``RecordError`` else): a link
    planted in place of one (to /dev/zero, say) or a FIFO is never read."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise RecordError(f"{paths.relative(path)} is a link or not a regular file; not read")
    return Record.load(path)


def _record_folder(folder: str | Path) -> Path:
    path = paths.resolve(folder)
    if not path.is_dir():
        raise ParamsError(f"--also {folder}: not a folder of records (relative paths are taken from the project root)")
    return path


def _page_task(name: str, notebooks: Path, out: Path, runs: list[RunResult], threads: int | None,
               others: list[Path] = ()) -> Task:
    """A page over the sweep: redone when its notebook, the code it imports (``cache.code_of``) or any record it
    reads changed."""
    source = notebooks / f"{name}.ipynb"
    parameters = {}
    own = sorted({out / run.record_file for run in runs if run.record_file})
    records = [*own, *sorted(set(others) - set(own))]  # a run's own record first: it counts where two are alike
    if name == "analysis":
        parameters = {"records_dir": paths.relative(out / "runs"),
                      "records": [paths.relative(record) for record in records]}
    inputs = {"notebook": cache.file_hash(source, follow=True), "code": cache.code_of(source), "parameters": parameters,
              "records": [cache.file_hash(record, follow=True) for record in records] if name == "analysis" else []}
    if name == "analysis" and DEVIATIONS.is_file():  # the page shows them
        inputs["deviations"] = cache.file_hash(DEVIATIONS, follow=True)
    return Task(name=name, source=source, output=out / f"{name}.ipynb", html=out / f"{name}.html",
                parameters=parameters, site_root=out, key=cache.key(inputs), threads=threads)


def _execute_all(dask_client, tasks: list[Task], force: bool, gpus: bool, what: str) -> dict[str, Outcome]:
    """Submit the tasks that are not up to date; print one line as each finishes, and every 30 s the epoch and
    time left of those in flight (``progress.Watch``); return every outcome by name."""
    from .progress import Watch

    outcomes = {task.name: None for task in tasks}
    if not force:
        _rerender_pages(tasks)
    pending = [task for task in tasks if force or not up_to_date(task)]
    for task in tasks:
        if task not in pending and what != "runs":  # the plan has named the runs that are up to date
            print(f"{task.name}: up to date", flush=True)
    watch = Watch(pending, what)
    # Cheapest first: finished runs arrive early, the long ones last.
    feed = Feed(dask_client, execute, sorted(pending, key=lambda task: task.cost), what, gpus)
    futures = feed.futures
    try:
        for future in watch.as_completed(futures, more=feed.top_up):
            task = futures[future]
            try:
                outcome = future.result()
            except Exception as error:  # the worker died (KilledWorker) or could not unpickle: this task alone fails
                outcome = Outcome(task.name, error=f"{type(error).__name__}: {error}")
            outcomes[task.name] = outcome
            print(watch.finished(task, outcome), flush=True)
    except KeyboardInterrupt:  # Ctrl-C, or the cluster's watchdog: no notebook of this sweep goes on unlocked
        from .schedule import stop

        stop(dask_client, list(futures))
        raise
    return outcomes


def _rerender_pages(tasks: list[Task]) -> None:
    """Tasks whose notebook and records are as finished but whose page changed or is missing: the page rendered
    anew from the notebook, here and now, and the task up to date again. Nothing is retrained for a page."""
    from .render import rerender

    for task in tasks:
        if cache.only_derived_stale(task.manifest, task.key, task.html):
            from .execute import _records

            if rerender(task.output, task.html, task.site_root, _records(task), pages=task.pages):
                print(f"{task.name}: page re-rendered from its notebook (its notebook and records unchanged: "
                      "nothing retrained)", flush=True)


class Feed:
    """Submits ``tasks`` to Dask in their order, never more at once than the cluster can run (``schedule.slots``),
    and more as they finish (``top_up``). Dask, given them all at once, queues several on one worker; it knows no
    notebook's duration, and when one worker finishes a run early it can take every queued run from the other,
    which then sits idle while they wait behind one another (seen in the study: one of two workers idle for a
    whole 36-minute run). A run that is not yet submitted waits here instead, for the first free worker."""

    def __init__(self, dask_client, fn, tasks: list[Task], what: str, gpus: bool):
        self.dask_client, self.fn, self.what, self.gpus = dask_client, fn, what, gpus
        self.waiting = list(tasks)
        self.futures: dict = {}  # future -> task, in submission order; the watch and ``stop`` read it
        self.top_up()

    def top_up(self) -> dict:
        """Submit the next tasks while the cluster has free slots; the futures submitted (future -> task)."""
        from . import schedule

        running = sum(1 for future in self.futures if not future.done())
        free = schedule.slots(self.dask_client, self.gpus) - running
        new = {}
        while self.waiting and free > 0:
            task = self.waiting.pop(0)
            future = self.dask_client.submit(self.fn, task, key=f"{self.what}-{task.name}-{uuid.uuid4().hex[:8]}",
                                             resources={"GPU": 1} if self.gpus else None, pure=False)
            new[future] = task
            free -= 1
        self.futures.update(new)
        return new


def _results(job: Job, seeds: tuple[int, ...], task: Task, outcome: Outcome | None, out: Path) -> list[RunResult]:
    """One result per seed, from its record (what the notebook reported) and the task's outcome."""
    results = []
    for seed, record_path in zip(seeds, task.records):
        params = {key: _public(value, out) if isinstance(value, str) else value  # data_dir: /home/...
                  for key, value in {**job.params, "seed": seed}.items() if key != "seeds"}
        result = RunResult(name=job.spec.name(seed), params=params, status="failed",
                           executed=outcome is not None, error=_public(outcome.error if outcome else "", out),
                           notebook=_relative_if(task.output, out), html=_relative_if(task.html, out),
                           record_file=_relative_if(record_path, out))
        try:
            result.record = load_record(record_path)
        except RecordError as error:
            result.error = result.error or _public(str(error), out)
            result.record_file = None
        else:
            foreign = _foreign(job, seed, result.record)
            if foreign:  # written over by another process: never reported for this run, nor up to date
                cache.invalidate(task.manifest)
                result.error = result.error or (f"{result.record_file} was written by another run ({foreign}); "
                                                "it is not this run's record, and the next sweep redoes the run")
                result.record, result.record_file = None, None
            result.status = result.record.status if result.record and not result.error else "failed"
        results.append(result)
    return results


def _page_result(name: str, notebooks: Path, out: Path, outcomes: dict[str, Outcome]) -> PageResult:
    if not (notebooks / f"{name}.ipynb").is_file():
        return PageResult(name, status="missing", error=f"{paths.relative(notebooks / name)}.ipynb does not exist")
    outcome = outcomes.get(name)
    error = _public(outcome.error, out) if outcome else ""
    return PageResult(name, status="failed" if error else "complete", executed=outcome is not None, error=error,
                      html=_relative_if(out / f"{name}.html", out))


def report(result: SweepResult) -> dict:
    """sweep.json: every run and page with its status and its files, relative to the out folder."""
    runs = []
    for run in result.runs:
        entry = {key: value for key, value in asdict(run).items() if key != "record"}
        entry["summary"] = run.record.summary if run.record else None
        runs.append(entry)
    return {"params": [_public(p, paths.project_root()) for p in result.params], "about": result.about,
            "also": result.also,
            "started": result.started, "wall_seconds": result.wall_seconds, "ok": result.ok, "failed": result.failed,
            "runs": runs, "pages": [asdict(page) for page in result.pages]}


def _relative_if(path: Path, out: Path) -> str | None:
    return path.relative_to(out).as_posix() if path.exists() else None


def _summary(result: SweepResult, index: Path) -> str:
    from .formatting import count  # runs counted as the plan and the "[4/9 runs]" lines count them

    ran = sum(run.executed for run in result.runs)
    lines = [f"{count(len(result.runs), 'run')} ({ran} executed, {len(result.runs) - ran} up to date) "
             f"in {result.wall_seconds:.0f} s"]
    lines += [f"FAILED {name}" for name in result.failed]
    lines.append(f"index: {paths.relative(index)}")
    return "\n".join(lines)


def _writes(todo: list[Job], out: Path) -> list[Path]:
    """The run files a sweep of ``todo`` may write under ``out`` (one notebook per seed or per file)."""
    files = []
    for job in todo:
        for name in {job.name, *(job.spec.name(seed) for seed in job.spec.seeds)}:
            files += [out / "runs" / f"{name}{suffix}" for suffix in (".ipynb", ".html", ".json")]
            files.append(out / "checkpoints" / f"{name}.pt")
    return files


def _foreign(job: Job, seed: int, record: Record) -> str:
    """How a record's config differs from the run's of ``seed`` ('' when it is the run's own)."""
    config = next(c for c in job.spec.configs() if c.seed == seed)
    return ", ".join(f"{key} {record.config.get(key)!r}, not {value!r}" for key, value in config.identity().items()
                     if key in config.differences(record.config))


def _forget_foreign_records(planned: list[tuple[Job, tuple[int, ...], Task]]) -> None:
    """Make a run not up to date whose manifest binds a record of another config (written over by another process
    after the run finished: a ``mnistlab train`` into the same file, an orphaned notebook)."""
    for job, seeds, task in planned:
        if not task.manifest.exists():
            continue
        for seed, path in zip(seeds, task.records):
            try:
                foreign = _foreign(job, seed, load_record(path))
            except RecordError:
                continue
            if foreign:
                cache.invalidate(task.manifest)
                print(f"{task.name}: {paths.relative(path, task.site_root)} was written by another run ({foreign}); "
                      "redoing the run", flush=True)
                break


def _public(text: str, out: Path) -> str:
    """An error as the published files say it: no absolute path of this machine (``site.public_text``)."""
    from .site import public_text

    return public_text(text, out) if text else text


def _space(todo: list[Job]) -> int:
    """Bytes a sweep of ``todo`` writes: each run's records and checkpoints (``resources.disk_needed``), a notebook
    and page per seed, the three pages and the index."""
    from ..resources import disk_needed  # counts on torch's meta device: imported only when a sweep has runs

    seeds = [len(job.spec.seeds) for job in todo]  # the most a file's checkpoints take: its seeds as one stack
    runs = sum(sum(disk_needed(job.spec, n).values()) + n * 5 * 2**20 for job, n in zip(todo, seeds))
    return runs + 30 * 2**20
