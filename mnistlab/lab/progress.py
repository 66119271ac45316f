"""What a sweep says while it works: the plan before anything runs, the notebooks in flight, one counter.

Everything is counted in runs (a run: one params file with one seed, one record), whether a notebook
trains one seed (on a CPU) or several (on GPUs): the plan's "9 runs", the "[4/9 runs]" printed as each
notebook ends, and the summary at the end. Pages are counted apart ("[1/3 pages]").

While notebooks run, every ``EVERY`` seconds, one line per notebook in flight says its epoch and an
estimate of the time it has left, read from the notebook papermill is writing (``Task.partial``, saved
at most every ``execute.AUTOSAVE_SECONDS`` while a cell prints): the last state of the run's progress
bar, aged by the time since the file was saved. The files are on the shared filesystem every worker
writes to, so this works for a local cluster, an existing scheduler and SLURM alike.
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import paths
from . import cache
from .execute import Outcome, Task
from .formatting import commit_text, count, duration

EVERY = 30.0  # seconds between two reports of the notebooks in flight
UP_TO_DATE, TO_RUN, OLDER_CODE, KEPT = "up to date", "to run", "older code", "kept"
# tqdm's bar as the training loop prints it: "name:  40%|████      | 2/5 [00:06<00:09,  3.01s/epoch, ...]"
_BAR = re.compile(r"(\d+)/(\d+) \[([\d:]+)<([\d:?]+)(?:, +([\d.]+|\?)(s/epoch|epoch/s))?")


@dataclass
class Step:
    """One notebook of the plan: its runs, whether it runs, and why."""

    task: Task
    runs: list[str]  # the runs (records) it makes, one per seed; [task.name] for a page
    state: str  # UP_TO_DATE, TO_RUN, OLDER_CODE (up to date, but other training code made it) or KEPT
    why: str


@dataclass
class Plan:
    """What a sweep will do, said before it does anything (all of it, for ``--dry-run``)."""

    out: Path
    steps: list[Step]
    where: str
    pages: list[str] = field(default_factory=list)
    force: bool = False  # --force: every notebook and page is redone
    notes: list[str] = field(default_factory=list)  # what the pages will show less of than the last sweep's
    in_use: str = ""  # a dry run's: the sweep that holds the folder's lock now ("pid 412 on host since ...")

    def runs(self, *states: str) -> int:
        return sum(len(step.runs) for step in self.steps if not states or step.state in states)

    @property
    def stops(self) -> bool:
        """The sweep will stop before running anything: runs of other training code, neither forced nor kept."""
        return any(step.state == OLDER_CODE for step in self.steps)

    def text(self) -> str:
        notebooks = len(self.steps)
        into = paths.relative(self.out)
        lines = [f"Plan: {count(self.runs(), 'run')} in {count(notebooks, 'notebook')} into {into}: "
                 f"{self.runs(UP_TO_DATE, KEPT)} up to date, {self.runs(TO_RUN)} to run"
                 + (f", {self.runs(OLDER_CODE)} made by other training code" if self.stops else ""),
                 f"  where: {self.where}"]
        for step in self.steps:
            seeds = f" ({count(len(step.runs), 'run')})" if len(step.runs) > 1 else ""
            lines.append(f"  {step.task.name}{seeds}: {step.state}: {step.why}")
        if self.pages:
            when = "redone: --force" if self.force else \
                "each redone when its notebook, the code it imports or the records it reads changed"
            lines.append(f"  then the pages {', '.join(self.pages)} ({when}) and the index")
        lines += [f"note: {note}" for note in self.notes]
        if self.in_use:
            lines.append(f"note: {into} is in use by another sweep ({self.in_use}): the runs it has in flight are "
                         "shown as in flight there, and a sweep started now would be refused until it ends")
        if self.stops:
            lines.append("  The sweep stops here, before running anything: --force retrains the runs of other "
                         "training code, --keep-older-code keeps them as they are.")
        return "\n".join(lines)


def plan(out: Path, tasks: list[Task], *, force: bool = False, older: dict[str, tuple[dict, list[str]]] | None = None,
         keep_older_code: bool = False, where: str = "", pages: list[str] = (), notes: list[str] = (),
         in_use: str = "") -> Plan:
    """The plan for ``tasks`` (the run notebooks). ``older``: task name -> (the record's ``code``, the files
    that changed), for the up-to-date runs trained by other training code (``sweep.older_code``). ``in_use``: who
    holds the folder's lock (a dry run beside a sweep in flight): its unfinished runs are in flight, not
    interrupted."""
    older = older or {}
    steps = []
    for task in tasks:
        runs = [path.stem for path in task.records] or [task.name]
        if force:
            steps.append(Step(task, runs, TO_RUN, "--force"))
            continue
        reason = cache.stale(task.manifest, task.key)
        if reason is None and task.name in older:
            code, changed = older[task.name]
            since = ", ".join(changed) or "unknown"
            made = f"trained by other training code ({commit_text(code)}); changed since: {since}"
            steps.append(Step(task, runs, KEPT if keep_older_code else OLDER_CODE,
                              f"{made}; kept as it is (--keep-older-code)" if keep_older_code else made))
        elif reason is None:
            steps.append(Step(task, runs, UP_TO_DATE, "same settings; its notebook, page and records unchanged"))
        elif cache.only_derived_stale(task.manifest, task.key, task.html):
            steps.append(Step(task, runs, UP_TO_DATE, "same settings; its notebook and records unchanged; its page "
                              "changed or is missing and is re-rendered from its notebook, without training"))
        else:
            steps.append(Step(task, runs, TO_RUN, _why_run(task, reason, in_use)))
    return Plan(out=out, steps=steps, where=where, pages=list(pages), force=force, notes=list(notes), in_use=in_use)


def _why_run(task: Task, reason: str, in_use: str = "") -> str:
    if reason == "never finished here":
        if in_use and task.partial.exists():  # the sweep that holds the lock is executing it
            return "in flight in the sweep that holds this folder now"
        if _failed(task.output):
            reason = "it failed last time"
        elif task.output.exists() or task.partial.exists() or any(path.exists() for path in task.records):
            reason = "interrupted before it finished"
        else:
            reason = "not run yet"
    if any(path.exists() for path in task.checkpoints):
        reason += "; resumes from its checkpoint"
    return reason


def _failed(notebook: Path) -> bool:
    """Whether papermill recorded an exception in this executed notebook."""
    try:
        return bool(json.loads(notebook.read_text())["metadata"]["papermill"].get("exception"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def where(dask_client, shape: dict, *, scheduler: str | None = None, cluster: str | None = None,
          workers: int | None = None) -> str:
    """Where the notebooks will run, in words: the cluster, its workers, the kernels' threads, the dashboard."""
    nthreads = dask_client.nthreads()
    if scheduler:
        kind = f"the Dask scheduler at {scheduler}"
    elif cluster == "slurm":
        kind = "a SLURM cluster (dask-jobqueue)"
    else:
        kind = "a local Dask cluster"
    text = f"{kind}: {count(len(nthreads), 'worker')}" + (f" ({shape['layout']})" if shape.get("layout") else "")
    if cluster == "slurm":
        text += f" so far, of {count(workers or 1, 'job')} asked for"
    text += ", one notebook at a time each" if all(n == 1 for n in nthreads.values()) else ""
    text += ", one GPU each; each file's seeds train together in one notebook" if shape.get("gpus") else \
        "; a notebook per seed"
    threads = shape.get("threads")
    text += f"; each kernel trains with {count(threads, 'torch thread')}" if threads else \
        "; each kernel trains with its worker machine's cores"
    return text + "; " + dashboard(dask_client, local=not scheduler)


def expected_where(shape: dict, cluster: str) -> str:
    """Where the notebooks would run, in words, for a dry run (``schedule.expected``): no cluster, no dashboard."""
    text = cluster + (f": {shape['layout']}" if shape.get("layout") else "")
    text += ("; one GPU each; each file's seeds would train together in one notebook" if shape.get("gpus")
             else "; a notebook per seed")
    threads = shape.get("threads")
    return text + (f"; each kernel would train with {count(threads, 'torch thread')}" if threads else "")


def dashboard(dask_client, local: bool = True) -> str:
    """Where to watch the cluster: Dask's dashboard, or, on a local cluster without bokeh (which the dashboard
    needs), the scheduler's plain pages of its workers."""
    try:
        link = dask_client.dashboard_link or ""
    except (KeyError, AttributeError, OSError):
        link = ""
    if not link:
        return "no Dask dashboard"
    if local and importlib.util.find_spec("bokeh") is None and link.endswith("/status"):
        return (f"Dask's pages of its workers: {link.removesuffix('/status')}/info/main/workers.html "
                "(its dashboard needs the bokeh package)")
    return f"Dask dashboard: {link}"


class Watch:
    """The notebooks of one stage (runs or pages) as they finish, with a counter, and a report of those in
    flight every ``EVERY`` seconds."""

    def __init__(self, tasks: list[Task], what: str):
        self.what = what  # "runs" or "pages"
        self.size = {task.name: (len(task.records) or 1) for task in tasks}
        self.total = sum(self.size.values())
        self.done = 0
        self.started = time.time()
        self.readings: dict[str, str] = {}  # the last reading of each notebook in flight

    def finished(self, task: Task, outcome: Outcome) -> str:
        """The line for a notebook that ended: "[4/9 runs] name: done (12 s)"."""
        self.done += self.size.get(task.name, 1)
        status = f"FAILED: {outcome.error}" if outcome.error else "done"
        return f"[{self.done}/{self.total} {self.what}] {task.name}: {status} ({duration(outcome.seconds)})"

    def as_completed(self, futures: dict, more: Callable[[], dict] | None = None) -> Iterator:
        """Each of ``futures`` (future -> task) as it finishes; in between, every EVERY seconds, ``in_flight``.
        ``more``: called after each wait, returns the futures it submitted (added to ``futures`` and waited for)."""
        from dask.distributed import wait

        remaining = set(futures)
        reported = time.monotonic()
        while remaining:
            try:
                done, _ = wait(list(remaining), timeout=max(0.1, reported + EVERY - time.monotonic()),
                               return_when="FIRST_COMPLETED")
            except TimeoutError:
                done = set()
            for future in [f for f in futures if f in done]:  # in submission order
                remaining.discard(future)
                yield future
            if more:
                added = more()
                futures.update(added)
                remaining.update(added)
            if remaining and time.monotonic() - reported >= EVERY:
                print(self.in_flight([futures[f] for f in futures if f in remaining]), flush=True)
                reported = time.monotonic()

    def in_flight(self, tasks: list[Task]) -> str:
        """ "… 4/9 runs done, 2 in flight after 3 min 10 s:" and one line per notebook that has started."""
        now = time.time()
        lines = []
        for task in tasks:
            reading = self.read(task, now)
            if reading:
                lines.append(f"  {task.name}: {reading}")
        head = f"… {self.done}/{self.total} {self.what} done after {duration(now - self.started)}, "
        head += f"{len(lines)} in flight:" if lines else "none in flight yet (waiting for a worker or a kernel)"
        return "\n".join([head, *lines])

    def read(self, task: Task, now: float) -> str | None:
        """What ``task``'s notebook says of itself now; None when it has not started in this sweep."""
        try:
            saved = task.partial.stat().st_mtime
            if saved < self.started - 1:
                return None  # left by an earlier, interrupted sweep
            notebook = json.loads(task.partial.read_text())
        except FileNotFoundError:  # not started, or executed: papermill has renamed it to the output
            try:
                return "executed; rendering its page" if task.output.stat().st_mtime >= self.started - 1 else None
            except OSError:
                return None
        except (OSError, ValueError):  # caught mid-write: say what was said last
            return self.readings.get(task.name, "running")
        self.readings[task.name] = reading(notebook, now - saved)
        return self.readings[task.name]


def reading(notebook: dict, age: float = 0.0) -> str:
    """A notebook being executed, in words: the epoch of its last progress bar and the time left, or its cell.

    ``age``: seconds since the notebook was saved, taken off the bar's estimate of the time left.
    """
    cells = [cell for cell in notebook.get("cells", []) if cell.get("cell_type") == "code"]
    text = "".join(_text(output.get("text", "")) for cell in cells for output in cell.get("outputs", [])
                   if output.get("output_type") == "stream")
    bars = _BAR.findall(text)
    if bars:
        n, total, _, left, _, _ = bars[-1]
        if int(n) >= int(total):
            return f"epoch {n}/{total}, training done; writing the records and the page"
        estimate = _seconds(left)
        when = "time left not yet known" if estimate is None else f"about {duration(max(estimate - age, 0))} left"
        return f"epoch {n}/{total}, {when}"
    states = [cell.get("metadata", {}).get("papermill", {}).get("status") for cell in cells]
    finished = sum(state == "completed" for state in states)
    return f"cell {min(finished + 1, len(cells))} of {len(cells)}"


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _seconds(clock: str) -> float | None:
    """tqdm's "01:05" or "1:02:03" in seconds; None for "?"."""
    if "?" in clock:
        return None
    seconds = 0.0
    for part in clock.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds
