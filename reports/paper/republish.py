"""Republish reports/paper/ in the sweep's new layout from its existing records, without retraining (issue 10.5).

Run once from the project root: ``.venv/bin/python reports/paper/republish.py``, then
``.venv/bin/mnistlab sweep params/paper --out reports/paper`` (every run must say "up to date").

For each params file of ``params/paper``: the version-1 record is saved as format 2 under the same name;
the old notebook ``runs/<cell>-seed0.ipynb`` becomes ``runs/<cell>.ipynb`` with the absolute paths of the
checkout that executed it made project-relative; it is rendered with the new template; the old page goes;
and the manifest is stamped with the key the sweep computes itself (its own ``jobs`` and ``_run_task``),
so the sweep finds the run up to date. The checkpoints are gone: a key that drifted would retrain
100 epochs per cell, hence the check at the end. Safe to run again: each step also accepts its own output.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

from mnistlab import paths
from mnistlab.lab import cache, render
from mnistlab.lab.execute import up_to_date
from mnistlab.lab.params import jobs
from mnistlab.lab.sweep import _run_task
from mnistlab.records import Record

OUT = paths.project_root() / "reports" / "paper"
PARAMS = paths.project_root() / "params" / "paper"
SOURCE = "notebooks/train.ipynb"  # papermill's input_path ends with it; what comes before is the old checkout
TRAINING_CALL = "mnistlab.run("  # the old notebook's training cell, untagged then; the resumed note goes above it
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|tmp|home|root|usr|opt|var|mnt|srv|private|Users)/[^\s\"'\\<>]*")


def main() -> int:
    tasks = [_run_task(job, paths.project_root() / "notebooks", OUT, None) for job in jobs([PARAMS], OUT)]
    for task in tasks:
        (seed,) = [int(p.stem.rpartition("-seed")[2]) for p in task.records]  # the paper: one seed per cell
        old = task.output.with_name(f"{task.name}-seed{seed}")
        notebook = _notebook(old.with_suffix(".ipynb"), task.output)
        record = Record.load(task.records[0])
        if record.resumed_from is None and record.resumed_after_epoch:
            # The v1 record does not say where it resumed from; the notebook's injected parameters do.
            record.resumed_from = notebook.metadata.papermill["parameters"]["checkpoint"]
        record.save(task.records[0])
        render.render(task.output, task.html, OUT, records=[record])
        for stale in (old.with_suffix(".ipynb"), old.with_suffix(".html")):
            stale.unlink(missing_ok=True)
        cache.stamp(task.manifest, task.key, [task.output, task.html, *task.records])
        print(f"{task.name}: record format 2, {paths.relative(task.output)}, {paths.relative(task.html)}, "
              f"manifest key {task.key}", flush=True)
    stale = [task.name for task in tasks if not up_to_date(task)]
    if stale:
        print(f"NOT up to date for the sweep (it would retrain them): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


def _notebook(old: Path, new: Path) -> nbformat.NotebookNode:
    """The old notebook (or, on a second run, the one already moved) at ``new``, machine paths made relative."""
    nb = nbformat.read(old if old.exists() else new, as_version=4)
    checkout = nb.metadata.papermill["input_path"]
    prefixes = sorted({checkout[: -len(SOURCE)] if checkout.endswith(SOURCE) else "",
                       f"{paths.project_root()}/"} - {""}, key=len, reverse=True)
    nb = nbformat.from_dict(_relative(nb, prefixes))
    for cell in nb.cells:
        if cell.cell_type == "code" and TRAINING_CALL in cell.source:
            tags = cell.metadata.setdefault("tags", [])
            if render.TRAINING_TAG not in tags:
                tags.append(render.TRAINING_TAG)
            break
    left = sorted(set(MACHINE_PATH.findall(nbformat.writes(nb))))
    if left:
        raise SystemExit(f"{paths.relative(old)}: machine paths left after removing {prefixes}: {left[:5]}; "
                         "add their prefix to the list")
    nbformat.write(nb, new)
    if old.exists() and old != new:
        old.unlink()
    return nb


def _relative(value, prefixes: list[str]):
    """``value`` (cell sources, outputs, metadata) with each absolute checkout prefix removed from its strings."""
    if isinstance(value, str):
        for prefix in prefixes:
            value = value.replace(prefix, "")
        return value
    if isinstance(value, list):
        return [_relative(item, prefixes) for item in value]
    if isinstance(value, dict):
        return {key: _relative(item, prefixes) for key, item in value.items()}
    return value


if __name__ == "__main__":
    sys.exit(main())
