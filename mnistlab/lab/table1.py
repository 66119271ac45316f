"""Table 1: the HW5 report's table of test accuracies, per cell over its seeds, as numbers, text and a figure.

``compute`` gives the numbers (a frame indexed by cell, ``cells.CELL_KEYS``); ``text`` the analysis page's
table, ``rows`` the index's, and ``figure`` the index's picture of it, all from one computed frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from ..records import Record
from . import formatting as fmt, hw5, stats
from .cells import CELL_KEYS, METRICS, group, included, order, summary_frame
from .misclassified import correct
from .protocol import PROTOCOL

TWO_SOURCE_METRICS = {"val_selected_test_acc": "val_selected", "final_test_acc": "final"}  # kept predictions


def compute(records: Iterable[Record], labels: np.ndarray | None = None) -> pd.DataFrame:
    """Table 1 of the complete runs, whatever cells they make: per cell, the seeds, each metric's mean, sd and 95 %
    t interval over seeds (NaN with one seed), and the HW5 report's number with the difference. With the test
    ``labels``, val-selected and final test accuracy also get a 95 % interval over seeds and test images
    (``{metric}_both_low``, ``_both_high``: ``stats.two_source`` on the kept predictions; NaN where a run
    kept none, and always for best test accuracy, whose epoch keeps none). Empty (with its columns) when
    there is no complete run."""
    included_runs = included(records)
    runs = summary_frame(included_runs)
    columns = ["seeds", "epochs"] + [f"{m}{s}" for m in METRICS for s in ("", "_std", "_low", "_high")] + \
              [f"{m}_both_{s}" for m in TWO_SOURCE_METRICS for s in ("low", "high")] + ["hw5_report", "difference"]
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
        row["hw5_report"] = hw5.TABLE1.get(key[:2], np.nan) if key[2] == PROTOCOL else np.nan
        row["difference"] = row["best_test_acc"] - row["hw5_report"]
        rows[key] = row
    keys = sorted(rows, key=order)  # the HW5 report's row and column order, protocol before variants
    return pd.DataFrame([rows[key] for key in keys], columns=columns,
                        index=pd.MultiIndex.from_tuples(keys, names=CELL_KEYS))


def text(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Table 1 for reading: one column per metric, "mean ± sd · seeds [low, high] · seeds+images [low, high]"
    where a cell has several seeds (the t interval over seeds only, then the interval over seeds and images)."""
    out = pd.DataFrame(index=table.index)
    out["seeds"], out["epochs"] = table["seeds"], table["epochs"]
    for metric in METRICS:
        out[metric] = [_estimate_text(row, metric, digits) for _, row in table.iterrows()]
    out["hw5_report"] = table["hw5_report"].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}f}")
    out["difference"] = table["difference"].map(lambda v: "" if pd.isna(v) else f"{v:+.{digits}f}")
    return out


def rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Table 1 as the index shows it: rows of display strings (``formatting``), plus ``seeds``."""
    out = []
    for (model, hidden_size, settings), row in table.iterrows():
        out.append({
            "model": model, "hidden_size": hidden_size, "settings": settings,
            "seeds": int(row["seeds"]), "epochs": int(row["epochs"]),
            "best": fmt.mean_sd(row["best_test_acc"], row.get("best_test_acc_std")),
            "best_interval": fmt.interval(row.get("best_test_acc_low"), row.get("best_test_acc_high")),
            "hw5_report": fmt.accuracy(row["hw5_report"]),
            "difference": fmt.difference(row["difference"]),
            "val_selected": fmt.mean_sd(row["val_selected_test_acc"], row.get("val_selected_test_acc_std")),
            "final": fmt.mean_sd(row["final_test_acc"], row.get("final_test_acc_std")),
        })
    return out


def figure(table: pd.DataFrame, records: list[Record]):
    """Best test accuracy per cell: each seed (dots), the mean with its 95 % interval over seeds, the HW5 report's
    number (x)."""
    from matplotlib.figure import Figure

    keys = list(table.index)
    by_cell = group(records)
    sizes = list(dict.fromkeys(key[1] for key in keys))
    lines = list(dict.fromkeys(_line(key) for key in keys))
    colours, markers = styles(keys)
    width = 0.8 / max(len(lines), 1)
    below = max(map(len, lines), default=0) > LEGEND_BESIDE  # long labels (a recipe's settings): the legend below
    inches = max(4.5, 1.6 * len(sizes) * max(len(lines), 1) ** 0.5 + 2.5)
    fig = Figure(figsize=(max(inches, 7.5) if below else inches, 3.8 + (0.19 * len(lines) + 0.3 if below else 0)),
                 layout="constrained")
    ax = fig.add_subplot()
    labelled = set()
    for key, row in table.iterrows():
        line = _line(key)
        x = sizes.index(key[1]) + (lines.index(line) - (len(lines) - 1) / 2) * width
        seeds = [r.summary["best_test_acc"] for r in by_cell.get(tuple(key), [])]
        if len(seeds) > 1:
            ax.plot([x] * len(seeds), seeds, markers[line], ms=3, color=colours[line], alpha=0.45)
        low, high = row.get("best_test_acc_low"), row.get("best_test_acc_high")
        error = None if _nan(low) or _nan(high) else [[row["best_test_acc"] - low], [high - row["best_test_acc"]]]
        ax.errorbar([x], [row["best_test_acc"]], yerr=error, fmt=markers[line], ms=7, capsize=4, color=colours[line],
                    label=line if line not in labelled else None)
        labelled.add(line)
        paper = row.get("hw5_report")  # only beside runs of the HW5 report's protocol (``compute``)
        if not _nan(paper):
            ax.plot([x], [paper], "x", ms=8, mew=2, color="black",
                    label="the HW5 report's number" if "hw5" not in labelled else None)
            labelled.add("hw5")
    ax.set_xticks(range(len(sizes)), [f"H = {h}" for h in sizes])
    ax.set_ylabel("best test accuracy (%)")
    several = any(row["seeds"] > 1 for _, row in table.iterrows())
    ax.set_title("Table 1: mean and 95 % interval over seeds" if several else "Table 1: one seed per cell",
                 fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    if below:
        fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="outside lower left", frameon=False)
    else:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # never over a point
    return fig


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
LEGEND_BESIDE = 28  # characters: a figure's legend sits beside the axes up to this label length, else below them


def styles(keys: list[tuple]) -> tuple[dict[str, str], dict[str, str]]:
    """Each figure line's colour and marker: the colour says the model (seaborn's "deep" palette, models in the
    pages' order), the marker the settings (the protocol's a circle), so that nine cells of three models at three
    rates read as three colours times three markers, and no two lines look alike (up to ten models, ten settings)."""
    import seaborn as sns

    models = list(dict.fromkeys(key[0] for key in keys))
    settings = list(dict.fromkeys(key[2] if len(key) > 2 else PROTOCOL for key in keys))
    if PROTOCOL in settings:
        settings.insert(0, settings.pop(settings.index(PROTOCOL)))
    palette = sns.color_palette("deep", max(len(models), 1)).as_hex()
    colours, markers = {}, {}
    for key in keys:
        line = _line(key)
        colours[line] = palette[models.index(key[0]) % len(palette)]
        markers[line] = MARKERS[settings.index(key[2] if len(key) > 2 else PROTOCOL) % len(MARKERS)]
    return colours, markers


def _two_source_accuracy(runs: list[Record], which: str, labels: np.ndarray | None) -> stats.TwoSource | None:
    """A cell's mean test accuracy with its interval over seeds and test images; None without predictions."""
    if labels is None:
        return None
    rows = [correct(r, which, labels) for r in runs]
    if any(row is None for row in rows):
        return None
    return stats.two_source(100.0 * np.stack(rows))


def _estimate_text(row: pd.Series, metric: str, digits: int) -> str:
    mean = row[metric]
    if pd.isna(mean):
        return ""
    if row["seeds"] < 2 or pd.isna(row[f"{metric}_std"]):
        return f"{mean:.{digits}f}"
    shown = (f"{mean:.{digits}f} ± {row[f'{metric}_std']:.{digits}f} · seeds "
             f"[{row[f'{metric}_low']:.{digits}f}, {row[f'{metric}_high']:.{digits}f}]")
    low, high = row.get(f"{metric}_both_low", np.nan), row.get(f"{metric}_both_high", np.nan)
    if not (pd.isna(low) or pd.isna(high)):
        shown += f" · seeds+images [{low:.{digits}f}, {high:.{digits}f}]"
    return shown


def _line(key: tuple) -> str:
    """A cell's label in the figure: the model, with its settings when they are not the protocol's."""
    return key[0] if len(key) < 3 or key[2] == PROTOCOL else f"{key[0]} [{key[2]}]"


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def run_summary(records: list[Record], seeds: list[int]) -> pd.DataFrame:
    """A run's summary as its page shows it: one row per field of ``Record.summary`` (the record's own names), one
    column per seed, every value written as the pages write it (accuracies with two decimals, times in s / min / h,
    an en dash where there is none), so that a run of several seeds stays narrower than a page."""
    from . import formatting as fmt

    def shown(key: str, value: Any) -> str:
        if key.endswith("seconds"):
            return fmt.duration(value)
        if key.endswith("_acc"):
            return fmt.number(value)
        return fmt.MISSING if value is None else str(value)

    columns = {f"seed {seed}": {key: shown(key, value) for key, value in record.summary.items()}
               for seed, record in zip(seeds, records)}
    return pd.DataFrame(columns)
