"""Tables and seaborn figures of records: Table 1, the HW5 report's Figure 1 and Figures 3-6, and the errors.

Runs are grouped by their training identity without the seed (a *cell*), so that a mean, a band or an
interval is always over seeds and never pools runs that differ in anything else.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from .. import paths
from ..config import MODELS, Config
from ..records import Record
from . import stats

HIDDEN_SIZES = (5000, 2000, 1000)  # the column order of the HW5 report's Table 1
PROTOCOL = "protocol"  # the settings label of a run with the paper protocol's settings
CELL_KEYS = ("model", "hidden_size", "settings")

# The HW5 report's Table 1: best test accuracy (%) over 100 epochs (``seed_paper`` in the tables: the site's name).
SEED_TABLE = {
    ("nmodel", 5000): 97.35, ("nmodel", 2000): 97.22, ("nmodel", 1000): 97.31,
    ("bmodel", 5000): 98.73, ("bmodel", 2000): 98.73, ("bmodel", 1000): 98.73,
    ("wmodel", 5000): 98.65, ("wmodel", 2000): 98.42, ("wmodel", 1000): 98.50,
}
PHASES = {"train": "train", "val": "validation", "test": "test"}
METRICS = ("best_test_acc", "val_selected_test_acc", "final_test_acc")
TWO_SOURCE_METRICS = {"val_selected_test_acc": "val_selected", "final_test_acc": "final"}  # kept predictions


def load_records(folder: str | os.PathLike, files: Iterable[str | os.PathLike] = ()) -> list[Record]:
    """The records ``files`` when given (a sweep's own runs: the index reads the same), else every ``*.json``
    in ``folder``, sorted by file name; none when the folder does not exist."""
    return [Record.load(path) for path in (list(files) or sorted(Path(folder).glob("*.json")))]


def settings(record: Record, ignore: Iterable[str] = ()) -> str:
    """The run's settings that differ from the paper protocol, besides model, hidden size, seed and
    ``ignore`` (e.g. ``("lr",)`` to group the rates of a learning-rate study), as text."""
    identity = _identity(record)
    protocol = Config().identity()
    skip = {"model", "hidden_size", "seed", *ignore}
    changed = [f"{key}={_text(value)}" for key, value in identity.items()
               if key not in skip and value != protocol.get(key)]
    return ", ".join(changed) or PROTOCOL


def run_name(record: Record) -> str:
    """``model-hsH-seedS``, with the non-protocol settings in brackets."""
    c, label = record.config, settings(record)
    return f"{c['model']}-hs{c['hidden_size']}-seed{c['seed']}" + ("" if label == PROTOCOL else f" [{label}]")


def excluded(records: Iterable[Record]) -> list[str]:
    """The runs Table 1 leaves out, each with why: diverged, or no epoch with a test accuracy."""
    notes = []
    for record in records:
        if record.status != "complete":
            reason = getattr(record, "diverged_reason", None) or f"at epoch {record.diverged_epoch}"
            notes.append(f"{run_name(record)}: {record.status} ({reason})")
        elif record.summary["best_test_acc"] is None:
            notes.append(f"{run_name(record)}: no epoch with a test accuracy")
    return notes


def included(records: Iterable[Record]) -> list[Record]:
    """The complete runs with a test accuracy: what Table 1, the comparisons and the claims use."""
    return [r for r in records if r.status == "complete" and r.summary["best_test_acc"] is not None]


def summary_frame(records: Iterable[Record]) -> pd.DataFrame:
    """One row per run: its cell (model, hidden size, settings), seed, epochs, status and summary."""
    rows = [{"model": r.config["model"], "hidden_size": r.config["hidden_size"], "settings": settings(r),
             "seed": r.config["seed"], "epochs": r.config["epochs"], **r.summary} for r in records]
    frame = pd.DataFrame(rows, columns=[*CELL_KEYS, "seed", "epochs", *METRICS, "status"] if not rows else None)
    for metric in METRICS:
        frame[metric] = pd.to_numeric(frame[metric], errors="coerce")  # None (no validation) -> NaN
    return frame


def table1(records: Iterable[Record], labels: np.ndarray | None = None) -> pd.DataFrame:
    """Table 1 of the complete runs: per cell, the seeds, each metric's mean, sd and 95 % t interval over
    seeds (NaN with one seed), and the HW5 report's number with the difference. With the test ``labels``,
    val-selected and final test accuracy also get a 95 % interval over seeds and test images
    (``{metric}_both_low``, ``_both_high``: ``stats.two_source`` on the kept predictions; NaN where a run
    kept none, and always for best test accuracy, whose epoch keeps none). Empty (with its columns) when
    there is no complete run."""
    included_runs = included(records)
    runs = summary_frame(included_runs)
    columns = ["seeds", "epochs"] + [f"{m}{s}" for m in METRICS for s in ("", "_std", "_low", "_high")] + \
              [f"{m}_both_{s}" for m in TWO_SOURCE_METRICS for s in ("low", "high")] + ["seed_paper", "difference"]
    if runs.empty:
        return pd.DataFrame(columns=columns, index=pd.MultiIndex.from_tuples([], names=CELL_KEYS))
    rows = {}
    for key, cell in runs.groupby(list(CELL_KEYS), sort=False):
        row = {"seeds": len(cell), "epochs": int(cell["epochs"].max())}
        for metric in METRICS:
            values = cell[metric].dropna()
            e = stats.describe(values) if len(values) else stats.Estimate(0, *[np.nan] * 4)
            row.update({metric: e.mean, f"{metric}_std": e.sd, f"{metric}_low": e.low, f"{metric}_high": e.high})
        cell_runs = [included_runs[i] for i in cell.index]
        for metric, which in TWO_SOURCE_METRICS.items():
            both = _two_source_accuracy(cell_runs, which, labels) if not cell[metric].isna().any() else None
            row.update({f"{metric}_both_low": both.low if both else np.nan,
                        f"{metric}_both_high": both.high if both else np.nan})
        # The HW5 report's number only beside a run of its protocol: a 3-epoch run is no reproduction of it.
        row["seed_paper"] = SEED_TABLE.get(key[:2], np.nan) if key[2] == PROTOCOL else np.nan
        row["difference"] = row["best_test_acc"] - row["seed_paper"]
        rows[key] = row
    order = sorted(rows, key=_cell_order)  # the HW5 report's row and column order, protocol before variants
    return pd.DataFrame([rows[key] for key in order], columns=columns,
                        index=pd.MultiIndex.from_tuples(order, names=CELL_KEYS))


def table1_text(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Table 1 for reading: one column per metric, "mean ± sd · seeds [low, high] · seeds+images [low, high]"
    where a cell has several seeds (the t interval over seeds only, then the interval over seeds and images)."""
    out = pd.DataFrame(index=table.index)
    out["seeds"], out["epochs"] = table["seeds"], table["epochs"]
    for metric in METRICS:
        out[metric] = [_estimate_text(row, metric, digits) for _, row in table.iterrows()]
    out["seed_paper"] = table["seed_paper"].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}f}")
    out["difference"] = table["difference"].map(lambda v: "" if pd.isna(v) else f"{v:+.{digits}f}")
    return out


def _two_source_accuracy(runs: list[Record], which: str, labels: np.ndarray | None) -> stats.TwoSource | None:
    """A cell's mean test accuracy with its interval over seeds and test images; None without predictions."""
    if labels is None:
        return None
    predicted = [r.predicted(which) for r in runs]
    if any(p is None or p.shape != np.shape(labels) for p in predicted):
        return None
    return stats.two_source(100.0 * np.stack([p == labels for p in predicted]))


def missing_configs(records: Iterable[Record]) -> list[str]:
    """The HW5 report's 9 configs without a complete protocol run, as ``model-hsH`` names."""
    present = {(r.config["model"], r.config["hidden_size"]) for r in included(records) if settings(r) == PROTOCOL}
    return [f"{m}-hs{h}" for m in MODELS for h in HIDDEN_SIZES if (m, h) not in present]


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


def curves(history: pd.DataFrame, hue: str, title: str = "", phases=("train", "test")) -> plt.Figure:
    """Loss (top) and error (%, bottom) per epoch on log axes, one column per phase.

    One line per cell (the hue value, plus the settings where one hue value holds several cells):
    with several seeds a line is their mean and its band one standard deviation over seeds only.
    An error of exactly 0 (all training images right) cannot sit on a log axis and is not drawn.
    """
    data = history[history["phase"].isin(phases)].copy()
    data["line"] = _line_labels(data, hue)
    order = _line_order(data, hue)
    fig, axes = plt.subplots(2, len(phases), figsize=(5 * len(phases), 7), sharex=True, squeeze=False)
    for column, phase in enumerate(phases):
        part = data[data["phase"] == phase]
        for row, metric in enumerate(("loss", "error")):
            ax = axes[row, column]
            if not part.empty:
                sns.lineplot(part, x="epoch", y=metric, hue="line", hue_order=order, errorbar="sd", ax=ax,
                             palette="deep")
                _log_axis(ax)
            ax.set_title(f"{phase} {metric}")
            ax.set_ylabel("error (%, log scale)" if metric == "error" else "loss (log scale)")
            ax.grid(True, which="both", alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if ax.get_legend() is not None:
                ax.get_legend().set_title(hue)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def run_curves(record: Record) -> plt.Figure:
    """Loss and error of one run: train, validation and test on the same log axes."""
    frame = history_frame([record])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("loss", "error")):
        sns.lineplot(frame, x="epoch", y=metric, hue="phase", ax=ax)
        _log_axis(ax)
        ax.set_ylabel("error (%, log scale)" if metric == "error" else "loss (log scale)")
        ax.grid(True, which="both", alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"{record.config['model']}, H = {record.config['hidden_size']}, seed {record.config['seed']}")
    fig.tight_layout()
    return fig


def digits(images, labels, title: str, rows: int = 4, columns: int = 8, captions=None) -> plt.Figure:
    """A grid of uint8 images (N, 28, 28) titled by true labels (or ``captions``), as in the HW5 report's Figure 1."""
    images, labels = np.asarray(images), np.asarray(labels)
    captions = captions if captions is not None else [str(int(label)) for label in labels]
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * 1.05), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions):
        ax.imshow(image, cmap="gray_r")
        ax.set_title(caption, fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_figure(matrices: Mapping[str, np.ndarray]) -> plt.Figure:
    """One heat map per model of its misclassifications (true label by predicted label, diagonal left blank)."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.6 * len(matrices), 4.2), squeeze=False)
    for ax, (name, matrix) in zip(axes.flat, matrices.items()):
        errors = np.asarray(matrix, dtype=float).copy()
        np.fill_diagonal(errors, np.nan)
        sns.heatmap(errors, annot=True, fmt=".0f", cmap="Reds", cbar=False, ax=ax, annot_kws={"fontsize": 7})
        ax.set(title=name, xlabel="predicted", ylabel="true")
    fig.tight_layout()
    return fig


def class_error_figure(rates: pd.DataFrame) -> plt.Figure:
    """Test error (%) per true digit, one bar per model (``rates``: a row per digit, a column per model)."""
    long = rates.reset_index(names="digit").melt(id_vars="digit", var_name="model", value_name="error")
    fig, ax = plt.subplots(figsize=(9, 3.6))
    sns.barplot(long, x="digit", y="error", hue="model", ax=ax, palette="deep")
    ax.set_ylabel("test error (%)")
    fig.tight_layout()
    return fig


def wrong_digits(images, labels, wrong: Mapping[str, np.ndarray], predicted: Mapping[str, np.ndarray],
                 limit: int = 16) -> dict[str, plt.Figure]:
    """Per group (a model, or all three), a grid of the first ``limit`` test digits in ``wrong[group]``,
    captioned ``true→predicted`` (``predicted[group]``; the true label alone where it is absent)."""
    images, labels = np.asarray(images), np.asarray(labels)
    figures = {}
    for group, mask in wrong.items():
        index = np.flatnonzero(mask)[:limit]
        guesses = predicted.get(group)
        captions = [f"{labels[i]}→{guesses[i]}" if guesses is not None else f"{labels[i]}" for i in index]
        columns = 8
        rows = max(1, -(-len(index) // columns))
        shown = f" (first {len(index)})" if len(index) < np.sum(mask) else ""
        title = f"{group}: {int(np.sum(mask))} test digits wrong{shown}"
        figures[group] = digits(images[index], labels[index], title, rows=rows, columns=columns, captions=captions)
    return figures


def _log_axis(ax) -> None:
    """A log y axis labelled in plain numbers at 1, 2 and 5 of each decade (0.1-point steps stay readable)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _identity(record: Record) -> dict:
    known = {k: v for k, v in record.config.items() if k in Config.field_names()}
    return Config(**known).identity()


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _cell_order(key: tuple) -> tuple:
    model, hidden_size, label = key
    return (list(MODELS).index(model) if model in MODELS else len(MODELS),
            HIDDEN_SIZES.index(hidden_size) if hidden_size in HIDDEN_SIZES else len(HIDDEN_SIZES), -hidden_size,
            label != PROTOCOL, label)


def _estimate_text(row: pd.Series, metric: str, digits: int) -> str:
    mean = row[metric]
    if pd.isna(mean):
        return ""
    if row["seeds"] < 2 or pd.isna(row[f"{metric}_std"]):
        return f"{mean:.{digits}f}"
    text = (f"{mean:.{digits}f} ± {row[f'{metric}_std']:.{digits}f} · seeds "
            f"[{row[f'{metric}_low']:.{digits}f}, {row[f'{metric}_high']:.{digits}f}]")
    low, high = row.get(f"{metric}_both_low", np.nan), row.get(f"{metric}_both_high", np.nan)
    if not (pd.isna(low) or pd.isna(high)):
        text += f" · seeds+images [{low:.{digits}f}, {high:.{digits}f}]"
    return text


def _line_labels(data: pd.DataFrame, hue: str) -> pd.Series:
    """The hue value as text, with the settings added where that hue value spans several cells."""
    cells = data.groupby(hue)[list(CELL_KEYS)].apply(lambda part: len(part.drop_duplicates()))
    shared = {value for value, count in cells.items() if count > 1}

    def label(row) -> str:
        text = str(row[hue])
        if row[hue] in shared:
            extra = [f"H={row['hidden_size']}" if k == "hidden_size" else (row[k] if k == "settings" else str(row[k]))
                     for k in CELL_KEYS if k != hue]
            text += " (" + ", ".join(extra) + ")"
        return text

    return data.apply(label, axis=1) if len(data) else pd.Series([], dtype=str)


def _line_order(data: pd.DataFrame, hue: str) -> list[str]:
    labels = data.drop_duplicates("line")
    ordered = labels.assign(_key=[_cell_order((m, h, s)) for m, h, s in zip(labels["model"], labels["hidden_size"],
                                                                             labels["settings"])])
    return list(ordered.sort_values(["_key", "line"])["line"])
