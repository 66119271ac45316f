"""Executing one notebook where it runs (a Dask worker): papermill's API, then the page, then the manifest.

A task is plain data (paths, parameters and, for a run, its ``RunSpec``), so it travels to any
worker; what it returns is plain data too. Nothing here raises for a notebook that fails: the error
comes back as text and the other tasks go on.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import paths
from ..spec import RunSpec
from . import cache


@dataclass(frozen=True)
class Task:
    """One notebook to execute with ``parameters`` into ``output`` and render as ``html``."""

    name: str
    source: Path  # the notebook in notebooks/
    output: Path  # the executed notebook
    html: Path
    parameters: dict[str, Any]  # relative paths only: they are published in the notebook
    site_root: Path  # the sweep's out folder, for the page's relative links
    key: str  # what is asked (cache.key); the manifest binds it to the files
    records: tuple[Path, ...] = ()  # records the notebook must write (a run's), in seed order
    checkpoints: tuple[Path, ...] = ()  # deleted once the records are written
    threads: int | None = None  # torch threads for the kernel; None: every core of the worker's machine
    cost: int = 0  # relative training work (sweeps submit the cheapest first)
    timeout: float | None = None  # seconds the whole notebook may take; None: no limit (not part of ``key``)
    spec: RunSpec | None = None  # the run a train notebook makes (its ``parameters`` are ``spec.to_params()``)
    pages: tuple[str, ...] | None = None  # the site's pages its page's navigation links; None: those there now

    @property
    def manifest(self) -> Path:
        return self.output.with_name(f".{self.output.stem}.done")

    @property
    def partial(self) -> Path:
        """Where papermill writes (and autosaves) the notebook while it runs; renamed to ``output`` at the end."""
        return self.output.with_name(f".{self.output.stem}.partial.ipynb")


@dataclass
class Outcome:
    name: str
    error: str = ""  # '' when the notebook ran through and wrote its records
    seconds: float = 0.0
    host: str = field(default_factory=lambda: os.uname().nodename)


def up_to_date(task: Task) -> bool:
    return cache.fresh(task.manifest, task.key)


def execute(task: Task) -> Outcome:
    """Execute, render and stamp ``task``; any failure comes back in ``Outcome.error``."""
    started = time.perf_counter()
    outcome = Outcome(task.name)
    cache.invalidate(task.manifest)
    try:
        _forget_other_runs(task)
        outcome.error = _papermill(task)
        from .render import render

        render(task.output, task.html, task.site_root, _records(task), pages=task.pages)
        missing = [paths.relative(path, task.site_root) for path in task.records if not path.exists()]
        if not outcome.error and missing:
            outcome.error = f"the notebook wrote no record {', '.join(missing)}"
        if not outcome.error:
            for checkpoint in task.checkpoints:
                checkpoint.unlink(missing_ok=True)
            cache.stamp(task.manifest, task.key, [task.output, task.html, *task.records])
    except Exception as error:  # a disk error, a broken notebook file: this task fails, the sweep goes on
        outcome.error = outcome.error or f"{type(error).__name__}: {error}"
    outcome.seconds = time.perf_counter() - started
    return outcome


def _forget_other_runs(task: Task) -> None:
    """Records are rewritten by this execution: an older one must never be reported for it. Checkpoints
    of other training settings (an interrupted run of an earlier params file) would be refused: drop them."""
    for record in task.records:
        record.unlink(missing_ok=True)
    for checkpoint in task.checkpoints if task.spec is not None else ():
        if checkpoint.is_symlink() or (checkpoint.exists() and not checkpoint.is_file()):
            checkpoint.unlink()  # never read nor written through a link, nor a FIFO or device: no run wrote it
        elif checkpoint.exists():
            from ..checkpoints import owned_by  # imports torch: only when there is a checkpoint to judge

            if not owned_by(task.spec, checkpoint):
                checkpoint.unlink()

# papermill saves the notebook it is executing at most this often (when a cell prints): the sweep reads a
# run's epoch from that file while it trains. Papermill's default is 30 s.
AUTOSAVE_SECONDS = 10


def _papermill(task: Task) -> str:
    """Run papermill in this process; the executed notebook (partly, on failure) lands at ``task.output``."""
    import nbformat
    import papermill
    from nbclient.exceptions import CellTimeoutError
    from papermill.exceptions import PapermillExecutionError

    partial = task.partial
    task.output.parent.mkdir(parents=True, exist_ok=True)
    # A notebook left by a killed run, or a link planted there: papermill opens the path and writes through it.
    partial.unlink(missing_ok=True)
    threads = str(task.threads or len(os.sched_getaffinity(0)))
    # Dask pins its workers to one thread; the kernel is a process of its own and gets what the task says.
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = threads
    os.environ[paths.ROOT_ENV] = str(paths.project_root())  # the kernel resolves paths as this process does
    from .render import FIGURES_ENV, figure_folder

    os.environ[FIGURES_ENV] = str(figure_folder(task.html))  # plots.show writes its figures' SVG beside the page
    error = ""
    with unix_sockets() as ipc:
        limits = {}
        if task.timeout:  # one deadline for the whole notebook: each cell may take what is left of it
            deadline = time.monotonic() + task.timeout
            limits["timeout_func"] = lambda cell: max(1, int(deadline - time.monotonic()) + 1)
        try:
            papermill.execute_notebook(_literal(task.source), _literal(partial), parameters=task.parameters,
                                       kernel_name="python3",
                                       cwd=task.source.parent, progress_bar=False, log_output=False, config=ipc,
                                       autosave_cell_every=AUTOSAVE_SECONDS, **limits)
        except PapermillExecutionError as failure:
            error = f"{failure.ename}: {failure.evalue}"
        except CellTimeoutError:  # nbclient interrupted the cell; papermill shuts the kernel down on the way out
            error = f"timed out: the notebook ran longer than --timeout {task.timeout:g} s and was stopped"
        except Exception as failure:  # the kernel died, or papermill could not start it
            error = f"{type(failure).__name__}: {failure}"
    if not partial.exists() or partial.is_symlink():
        task.output.unlink(missing_ok=True)  # papermill never started it: an older notebook would mislead
        task.html.unlink(missing_ok=True)
        if partial.is_symlink():  # planted while the notebook ran: neither read nor published
            partial.unlink()
            raise RuntimeError(f"{paths.relative(partial, task.site_root)} became a link while the notebook ran")
        raise RuntimeError(error or "papermill wrote no notebook")
    notebook = nbformat.read(partial, as_version=4)
    # Published: name files as the project does, never by this machine's absolute paths (tracebacks and
    # warnings name source files by where the package and the output folder happen to be).
    notebook.metadata.papermill["input_path"] = paths.relative(task.source)
    notebook.metadata.papermill["output_path"] = paths.relative(task.output, task.site_root)
    installed = Path(__file__).resolve().parents[2]  # the checkout (editable install) or site-packages
    prefixes = sorted({f"{task.site_root}/", f"{paths.project_root()}/", f"{installed}/"}, key=len, reverse=True)
    publishable(notebook, prefixes)
    nbformat.write(notebook, partial)
    os.replace(partial, task.output)
    return error


def _literal(path: Path) -> str:
    """``path`` as papermill takes it: papermill formats its paths with the parameters (``str.format``), so a brace
    in a run's name (``nmodel-{{v2}}.yaml``) made it write the notebook elsewhere, after the run had trained."""
    return str(path).replace("{", "{{").replace("}", "}}")


# A Unix socket's path must fit in sockaddr_un's sun_path: 108 bytes on Linux, 104 on macOS, the final NUL
# included. jupyter_client names the kernel's five sockets "<ip>-1" to "<ip>-5" (a higher number when taken).
SOCKET_PATH_MAX = 103
_SOCKET_NAME = "/kernel-99"  # the longest name jupyter_client gives one, past the folder


@contextlib.contextmanager
def unix_sockets():
    """papermill's ``config`` for a kernel that talks to this process over Unix sockets in a folder of its own:
    no TCP port to race other kernels for, and no warning about unencrypted TCP on every kernel start."""
    from traitlets.config import Config

    with _socket_folder() as sockets:
        yield Config({"KernelManager": {"transport": "ipc", "ip": f"{sockets}/kernel"}})


def _socket_folder() -> tempfile.TemporaryDirectory:
    """A new folder for the kernel's Unix sockets whose socket paths fit ``SOCKET_PATH_MAX``: in the temporary
    folder (``TMPDIR``) when its path is short enough, else in /tmp. With a deep ``TMPDIR`` (a test's or a batch
    job's scratch folder) zmq cannot connect ("File name too long"), and papermill leaves behind a live kernel
    and a zmq context whose collection blocks the worker for ever."""
    for parent in (None, "/tmp"):
        folder = tempfile.TemporaryDirectory(prefix="mnistlab-kernel-", dir=parent)
        if len(os.fsencode(folder.name + _SOCKET_NAME)) <= SOCKET_PATH_MAX:
            return folder
        folder.cleanup()
    raise RuntimeError(f"no folder for the kernel's sockets: {tempfile.gettempdir()} and /tmp give paths longer "
                       f"than the {SOCKET_PATH_MAX} bytes a Unix socket may have; set TMPDIR to a shorter folder")


# Wording that the prose (markdown cells) of a notebook executed with older code may still carry, and what the
# notebook says now. Prose only: code cells and outputs are what ran and stay as they are. "The seed" was once the
# name of the HW5 report, and reads as a random seed.
ERRATA = {"The seed reported the best test accuracy": "The HW5 report gave the best test accuracy"}


def publishable(notebook, prefixes: list[str] = ()):
    """``notebook`` as the site publishes it, changed in place and returned: a valid notebook (outputs only
    in code cells), no ``prefixes`` (machine paths) in its outputs, each stream as a terminal would have
    left it (a progress bar that redrew itself with carriage returns shows only its last state), each
    image as its page shows it (``web_images``), and its prose in today's words (``ERRATA``, listed in its
    metadata under ``mnistlab.errata`` where one applied)."""
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    coalesce = CoalesceStreamsPreprocessor()
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown":
            _correct(notebook, cell)
        if cell.cell_type != "code":
            continue
        cell.outputs = _without_terminal_lines([_without(list(prefixes), output) for output in cell.get("outputs", [])])
        coalesce.preprocess_cell(cell, {}, index)
    web_images(notebook)
    return notebook


def _correct(notebook, cell) -> None:
    """Apply ``ERRATA`` to one markdown cell, noting each correction in the notebook's metadata."""
    for old, new in ERRATA.items():
        if old in cell.source:
            cell.source = cell.source.replace(old, new)
            noted = notebook.metadata.setdefault("mnistlab", {}).setdefault("errata", [])
            entry = f"{old!r} → {new!r} (prose only)"
            if entry not in noted:
                noted.append(entry)


# What a run says on the terminal behind its kernel (``progress.Progress``, ``runner``): "<run>: training N epochs
# on …", "<run>: epoch N/M, …", "<file> exists: this run replaces it when seed N ends". Kernels of code older than
# ``progress.kernel_terminal`` wrote them where ipykernel also copied them into the notebook, as stderr: a line per
# epoch between the progress bar's redraws, which kept it from collapsing to its last state.
_TERMINAL_LINE = re.compile(r"^[^\n]*?: (?:training \d+ epochs? on |epoch \d+/\d+, )[^\n]*(?:\n|\Z)"
                            r"|^[^\n]* exists: this run replaces it when seed \d+ ends(?:\n|\Z)", re.M)


def _without_terminal_lines(outputs: list) -> list:
    """``outputs`` without the terminal's lines (``_TERMINAL_LINE``) in their stderr streams, and without a stream
    left empty. Where lines went from between two pieces of a progress bar (stdout text not ended by a newline,
    then stdout again), the second piece redraws the first, as its carriage return did before an earlier
    ``publishable`` cut it from each piece alone: coalesced, the bar shows only its last state."""
    kept, cut = [], False
    for output in outputs:
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            text = "".join(output["text"]) if isinstance(output.get("text"), list) else output.get("text", "")
            output["text"] = _TERMINAL_LINE.sub("", text)
            if not output["text"]:
                cut = True
                continue
        elif cut and _stdout(output) and kept and _stdout(kept[-1]) and not kept[-1]["text"].endswith("\n"):
            output["text"] = "\r" + output["text"]
        cut = False
        kept.append(output)
    return kept


def _stdout(output) -> bool:
    return output.get("output_type") == "stream" and output.get("name") == "stdout" \
        and isinstance(output.get("text"), str)


PALETTE = b"\x03"  # a PNG's colour type (byte 25: after the signature, IHDR's length, name, size and bit depth)
#                    when it has a palette


def web_images(notebook) -> int:
    """Every PNG output of ``notebook`` re-encoded in place as its page serves it (``render.web_png``: at most 256
    colours, about a third of the bytes, the same picture to the eye); the bytes saved. The figures of the runs'
    notebooks were most of a published report's bytes; the numbers they plot are in the records."""
    import base64

    from .render import web_png

    saved = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else ():
            data = output.get("data", {})
            if "image/png" not in data:
                continue
            png = base64.b64decode(data["image/png"])
            if png[25:26] == PALETTE:  # re-encoded already (or drawn in a palette): left as it is, so that a
                continue               # second pass changes nothing
            smaller = web_png(png)
            if len(smaller) < len(png):
                data["image/png"] = base64.b64encode(smaller).decode("ascii")
                saved += len(png) - len(smaller)
    return saved


def republish(notebook: Path) -> int | None:
    """An executed notebook a sweep published with older code, published as a sweep publishes it now
    (``publishable``: its images re-encoded, the terminal's lines out of its streams), with its manifest
    (``.<stem>.done`` beside it) vouching for the new file: the bytes saved (0 when nothing changed), or None, and
    nothing written, where the manifest does not vouch for every file it lists (a run a sweep redoes anyway: its
    notebook is left as it is). Its page is then rendered anew (``render.rerender``)."""
    import nbformat

    from ..atomic import atomic_write_text

    manifest = notebook.with_name(f".{notebook.stem}.done")
    html = notebook.with_suffix(".html")
    if not (cache.vouches_but(manifest, notebook) and cache.vouches_but(manifest, html)):
        return None
    before = notebook.read_bytes()
    text = nbformat.writes(publishable(nbformat.reads(before.decode(), as_version=4)))
    after = (text if text.endswith("\n") else f"{text}\n").encode()  # as nbformat.write ends a file
    if after == before:
        return 0
    atomic_write_text(notebook, after.decode())
    if not cache.restamp(manifest, notebook):  # it vouched a moment ago: a file changed meanwhile
        raise RuntimeError(f"{notebook.name}: its manifest no longer vouches for the other files")
    return len(before) - len(after)


def _without(prefixes: list[str], value):
    """``value`` (an output: strings, lists, dicts) with every ``prefixes`` entry removed from its strings."""
    if isinstance(value, str):
        for prefix in prefixes:
            value = value.replace(prefix, "")
        return value
    if isinstance(value, list):
        return [_without(prefixes, item) for item in value]
    if isinstance(value, dict):
        return type(value)({key: _without(prefixes, item) for key, item in value.items()})
    return value


def _records(task: Task) -> list:
    """The records the notebook wrote (the page notes which of them were resumed)."""
    from ..records import Record, RecordError

    records = []
    for path in task.records:
        try:
            records.append(Record.load(path))
        except RecordError:
            continue
    return records
