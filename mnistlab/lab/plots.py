"""Seaborn figures of records: the HW5 report's Figure 1 and Figures 3-6, and the misclassified digits.

One line per cell (``cells``): a band is always over the seeds of one cell. Table 1's figure is beside
Table 1, in ``table1``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from ..records import Record
from . import cells


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
    frame = cells.history_frame([record])
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


def _line_labels(data: pd.DataFrame, hue: str) -> pd.Series:
    """The hue value as text, with the settings added where that hue value spans several cells."""
    spans = data.groupby(hue)[list(cells.CELL_KEYS)].apply(lambda part: len(part.drop_duplicates()))
    shared = {value for value, count in spans.items() if count > 1}

    def label(row) -> str:
        text = str(row[hue])
        if row[hue] in shared:
            extra = [f"H={row['hidden_size']}" if k == "hidden_size" else (row[k] if k == "settings" else str(row[k]))
                     for k in cells.CELL_KEYS if k != hue]
            text += " (" + ", ".join(extra) + ")"
        return text

    return data.apply(label, axis=1) if len(data) else pd.Series([], dtype=str)


def _line_order(data: pd.DataFrame, hue: str) -> list[str]:
    labels = data.drop_duplicates("line")
    ordered = labels.assign(_key=[cells.order((m, h, s)) for m, h, s in zip(labels["model"], labels["hidden_size"],
                                                                             labels["settings"])])
    return list(ordered.sort_values(["_key", "line"])["line"])
