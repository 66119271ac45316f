"""Runs grouped into cells: which records count, which cell each is in, and the frames the tables and figures read.

A *cell* is a run's training identity without the seed: its model, hidden size and settings (what it
has off the protocol, ``protocol.settings``). A mean, a band or an interval is always over the seeds of
one cell, and never pools runs that differ in anything else.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from ..config import MODELS, cell_name, seed_name
from ..records import Record
from . import hw5
from .protocol import PROTOCOL, settings

CELL_KEYS = ("model", "hidden_size", "settings")
METRICS = ("best_test_acc", "val_selected_test_acc", "final_test_acc")
PHASES = {"train": "train", "val": "validation", "test": "test"}


def load_records(folder: str | os.PathLike, files: Iterable[str | os.PathLike] = ()) -> list[Record]:
    """The records ``files`` when given (a sweep's own runs: the index reads the same), else every ``*.json``
    in ``folder``, sorted by file name; none when the folder does not exist."""
    return [Record.load(path) for path in (list(files) or record_files(folder))]


def record_files(folder: str | os.PathLike) -> list[Path]:
    """Every ``*.json`` in ``folder``, sorted by file name; none when the folder does not exist."""
    return sorted(Path(folder).glob("*.json"))


def folders_text(files: Iterable[str | os.PathLike]) -> str:
    """How many of ``files`` lie in each folder, in the order met: "27 in reports/lr/runs, 45 in
    reports/paper/runs" (a report that reads another's records beside its own says so); "" for none."""
    from collections import Counter

    from .. import paths

    counts = Counter(paths.shown(Path(f).parent) for f in files)
    return ", ".join(f"{n} in {folder}" for folder, n in counts.items())


def included(records: Iterable[Record]) -> list[Record]:
    """The complete runs with a test accuracy: what Table 1, the comparisons and the claims use. A run is counted
    once: a second record of the same settings and seed (two params files, or another sweep's folder read beside
    this one's) would count as a second seed and narrow every interval (``duplicates``)."""
    records = list(records)
    twice = duplicates(records)
    return [r for i, r in enumerate(records)
            if i not in twice and r.status == "complete" and r.summary["best_test_acc"] is not None]


def duplicates(records: Sequence[Record]) -> dict[int, int]:
    """The records that repeat an earlier complete run's settings and seed: index -> the earlier one's index."""
    first: dict[tuple, int] = {}
    twice = {}
    for i, record in enumerate(records):
        if record.status != "complete" or record.summary["best_test_acc"] is None:
            continue
        key = (cell(record), record.config["seed"])
        if key in first:
            twice[i] = first[key]
        else:
            first[key] = i
    return twice


def excluded(records: Iterable[Record]) -> list[str]:
    """The runs Table 1 leaves out, each with why: diverged, no epoch with a test accuracy, or a second record of
    a run already counted."""
    records = list(records)
    twice = duplicates(records)
    notes = [f"{run_name(records[i])}: a second record of the same settings and seed, counted once"
             for i in sorted(twice)]
    for record in records:
        if record.status != "complete":
            reason = getattr(record, "diverged_reason", None) or f"at epoch {record.diverged_epoch}"
            notes.append(f"{run_name(record)}: {record.status} ({reason})")
        elif record.summary["best_test_acc"] is None:
            notes.append(f"{run_name(record)}: no epoch with a test accuracy")
    return notes


def cell(record: Record, ignore: Sequence[str] = ()) -> tuple:
    """The run's cell: (model, hidden size, settings without ``ignore``[, and each ignored setting's value])."""
    c = record.config
    return (c["model"], c["hidden_size"], settings(record, ignore)) + tuple(c[k] for k in ignore)


def group(records: Iterable[Record], ignore: Sequence[str] = ()) -> dict[tuple, list[Record]]:
    """The complete runs by ``cell``, in the order of the records."""
    out: dict[tuple, list[Record]] = {}
    for record in included(records):
        out.setdefault(cell(record, ignore), []).append(record)
    return out


def run_name(record: Record) -> str:
    """``model-hsH-seedS``, with the settings off the protocol in brackets."""
    c, label = record.config, settings(record)
    return seed_name(cell_name(c["model"], c["hidden_size"]), c["seed"]) + ("" if label == PROTOCOL else f" [{label}]")


def cell_text(key: tuple) -> str:
    """A cell as text: ``bmodel-hs1000``, with its settings off the protocol in brackets."""
    model, hidden_size, label = key[:3]
    return cell_name(model, hidden_size) + ("" if label == PROTOCOL else f" [{label}]")


def order(key: tuple) -> tuple:
    """A cell's place in the tables: models in the registry's order (then any other, by name), hidden sizes in
    ``size_order``, the protocol before variants."""
    model, hidden_size, label = key[:3]
    return (model_order(model), size_order(hidden_size), label != PROTOCOL, label)


def model_order(model: str) -> tuple:
    """A model's place: the registry's order (``config.MODELS``), then models no longer registered, by name."""
    return (list(MODELS).index(model), "") if model in MODELS else (len(MODELS), model)


def size_order(hidden_size: int) -> tuple:
    """A hidden size's place on every page: increasing (the HW5 report's Table 1 has them the other way round)."""
    return (hidden_size,)


def missing_configs(records: Iterable[Record]) -> list[str]:
    """The HW5 report's cells (``hw5.MODELS`` x ``hw5.HIDDEN_SIZES``) without a complete protocol run, as
    ``model-hsH`` names: other models a sweep has are no cells of the report."""
    present = {(r.config["model"], r.config["hidden_size"]) for r in included(records) if settings(r) == PROTOCOL}
    sizes = sorted(hw5.HIDDEN_SIZES, key=size_order)  # the pages' order
    return [cell_name(m, h) for m in hw5.MODELS for h in sizes if (m, h) not in present]


def summary_frame(records: Iterable[Record]) -> pd.DataFrame:
    """One row per run: its cell (model, hidden size, settings), seed, epochs, status and summary."""
    rows = [{"model": r.config["model"], "hidden_size": r.config["hidden_size"], "settings": settings(r),
             "seed": r.config["seed"], "epochs": r.config["epochs"], **r.summary} for r in records]
    frame = pd.DataFrame(rows, columns=[*CELL_KEYS, "seed", "epochs", *METRICS, "status"] if not rows else None)
    for metric in METRICS:
        frame[metric] = pd.to_numeric(frame[metric], errors="coerce")  # None (no validation) -> NaN
    return frame


def history_frame(records: Iterable[Record]) -> pd.DataFrame:
    """Long table: one row per run, epoch and measured phase, with loss, accuracy and error (%)."""
    rows = []
    for record in records:
        c, label = record.config, settings(record)
        for h in record.history:
            for phase, name in PHASES.items():
                if h[f"{phase}_acc"] is None:
                    continue  # a run without validation measured none
                rows.append({"model": c["model"], "hidden_size": c["hidden_size"], "settings": label,
                             "seed": c["seed"], "epoch": h["epoch"], "phase": name, "loss": h[f"{phase}_loss"],
                             "accuracy": h[f"{phase}_acc"], "error": 100.0 - h[f"{phase}_acc"]})
    columns = [*CELL_KEYS, "seed", "epoch", "phase", "loss", "accuracy", "error"]
    return pd.DataFrame(rows, columns=columns)
