"""What several test files build: tiny configs, throwaway projects, params files, records, and the waiting for and
killing of the processes a test starts. Fixtures live in conftest.py; everything else shared lives here."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

# A run of seconds: 500 images, 16 hidden units, two epochs with a decay after each.
TINY = {"hidden_size": 16, "epochs": 2, "step_size": 1, "train_size": 500}


def make_project(root: Path, analysis: bool = True, every_page: bool = False) -> Path:
    """A project root of its own for a sweep: the real train notebook, the real analysis notebook (with
    ``analysis``) and one-cell stand-ins for the other pages, which keeps a sweep to seconds; ``every_page``: the
    real data and backprop notebooks too (the shared sweep's, whose tests check every page). Tests about runs rather
    than pages take the analysis as a stand-in too: it is the slowest page."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    notebooks = root / "notebooks"
    notebooks.mkdir(parents=True)
    real = ["train", *(["analysis"] if analysis or every_page else []), *(["data", "backprop"] if every_page else [])]
    for name in real:
        (notebooks / f"{name}.ipynb").symlink_to(ROOT / "notebooks" / f"{name}.ipynb")
    for name in {"analysis", "data", "backprop"} - set(real):
        cells = [new_markdown_cell(f"# {name} (stand-in)"), new_code_cell("print(1 + 1)")]
        nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                          "language": "python"}}),
                       notebooks / f"{name}.ipynb")
    return root


@contextlib.contextmanager
def project_env(root: Path, data_dir: Path, **extra: str):
    """This process, and the Dask workers and kernels it starts, take ``root`` as the project root."""
    saved = {key: os.environ.get(key) for key in ("MNISTLAB_ROOT", "MNISTLAB_DATA", *extra)}
    os.environ.update({"MNISTLAB_ROOT": str(root), "MNISTLAB_DATA": str(data_dir), **extra})
    try:
        yield root
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def copy_project(source: Path, target: Path) -> Path:
    """A project of its own for a test, copied from a shared one (``finished_sweep``): the same files and times,
    the links to the real notebooks kept as links. The shared project must not change."""
    shutil.copytree(source, target, symlinks=True)
    return target


def write_params(folder: Path, name: str, content) -> Path:
    """``folder/name.yaml`` holding ``content``: YAML text as given, anything else dumped as YAML."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def snapshot(folder: Path) -> dict:
    """Every path under ``folder`` with its size and modification time: equal snapshots, nothing written."""
    return {path: (path.stat().st_size, path.stat().st_mtime_ns) for path in folder.rglob("*")}


def make_record(model="nmodel", hidden_size=16, seed=0, *, epochs=2, acc=90.0, test_accs=None, val_accs=None,
                status="complete", resumed_after=None, threads=1, seconds=1.5, code=None, predictions=None,
                train_eval=None, **settings):
    """A record as training writes it, checked by loading it back.

    Its config is the protocol's with ``settings``. Its history: test accuracy ``acc - 2 + e`` at epoch e of
    ``epochs``, or ``test_accs`` epoch by epoch (validation ``val_accs``, by default the same). ``resumed_after``:
    the writing process started from a checkpoint of that many epochs, which another process trained. ``code``:
    the record's training code (``origin.code()``'s shape); ``predictions``, ``train_eval``: as records keep them.
    """
    from mnistlab import Config, Record
    from mnistlab.records import HISTORY_KEYS

    if test_accs is not None:
        epochs = len(test_accs)
        history = [dict(zip(HISTORY_KEYS, (e, 0.01, 1.0 / e, 95.0, 0.1, v, 0.1, t, 2.0)))
                   for e, (t, v) in enumerate(zip(test_accs, val_accs or test_accs), start=1)]
    else:
        history = [dict(zip(HISTORY_KEYS, (e, 0.01, 1.0 / e, acc - 2 + e, 0.5, acc - 1 + e, 0.4, acc - 2 + e,
                                           seconds * e))) for e in range(1, epochs + 1)]
    config = Config(model=model, hidden_size=hidden_size, seed=seed, epochs=epochs, **settings).to_dict()
    if not config["validation"]:  # trained on all 60,000 images: nothing to validate on
        history = [{**row, "val_loss": None, "val_acc": None} for row in history]
    place = {"started": "2026-11-20T10:00:00Z", "device": "cpu", "device_name": "AMD EPYC (2 cores)",
             "threads": threads, "fused_adam": True, "torch": "2.14.1", "python": "3.11.7", "mnistlab": "0.1.0",
             "hardware": {"kind": "cpu", "name": "AMD EPYC", "vendor": "AuthenticAMD", "family": 25, "model": 1,
                          "capability": "AVX2", "cores": 2},
             "code": "c0de" * 16, "git_commit": "6158bf1" + "0" * 33, "git_dirty": False}
    segments = [{"first_epoch": 1, "last_epoch": resumed_after or epochs, **place}]
    here = {**place, "started": "2026-11-27T06:00:00Z", "threads": 2}
    if resumed_after and resumed_after < epochs:
        segments.append({"first_epoch": resumed_after + 1, "last_epoch": epochs, **here})
    if code:
        for segment in segments:
            segment.update(code=code["fingerprint"], git_commit=code["git_commit"], git_dirty=code["git_dirty"])
    record = Record(config=config, environment={k: here[k] for k in list(here)[1:]}, history=history,
                    segments=segments, resumed_after_epoch=resumed_after, code=code or {}, status=status,
                    resumed_from="runs/checkpoints/x.pt" if resumed_after else None, predictions=predictions or {},
                    train_eval=train_eval)
    return Record.from_dict(record.to_dict())


class Links(HTMLParser):
    """Every href and src of a page."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("href", "src") and value is not None]


def urls(html: str) -> list[str]:
    """Every href and src of ``html``, in order."""
    parser = Links()
    parser.feed(html)
    return parser.urls


def wait_for(condition, process: subprocess.Popen, timeout: float = 300) -> None:
    """Until ``condition()`` holds; an AssertionError with the process's output when it exits or time runs out first."""
    deadline = time.monotonic() + timeout
    while not condition() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not condition():
        output = process.communicate(timeout=30) if process.poll() is not None else ("", "")
        raise AssertionError(f"gave up waiting (exit status {process.poll()}):\n{output[0]}\n{output[1]}")


def interruptible() -> None:
    """``preexec_fn`` for a process a test interrupts: Ctrl-C (SIGINT) acts on it as on one started from a
    terminal, even when the tests run in a background job, which ignores SIGINT for every process it starts."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def kill_tree(*processes: subprocess.Popen) -> None:
    """SIGKILL what a test started that still runs: each process, its group and every descendant (Dask workers
    and kernels included), then reap it."""
    import psutil

    for process in processes:
        if process.poll() is None:
            try:
                doomed = psutil.Process(process.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                doomed = []
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            for child in doomed:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
        process.wait()


def kernels_of(root: Path) -> list[int]:
    """Kernel processes started for the project at ``root`` (their environment names it)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            variables = environ.read_bytes().split(b"\0")
            command = (environ.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if b"ipykernel" in command and f"MNISTLAB_ROOT={root}".encode() in variables:
            found.append(int(environ.parent.name))
    return found
