"""Tables and seaborn figures of records: the seed's Figure 1, Figures 3-6 and Table 1."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import seaborn as sns
import torch
from matplotlib import pyplot as plt
from matplotlib.ticker import MaxNLocator

from .models import MODELS
from .records import Record

HIDDEN_SIZES = (5000, 2000, 1000)  # the column order of the seed's Table 1

# The seed's Table 1: best test accuracy (%) over 100 epochs.
SEED_TABLE = {
    ("nmodel", 5000): 97.35, ("nmodel", 2000): 97.22, ("nmodel", 1000): 97.31,
    ("bmodel", 5000): 98.73, ("bmodel", 2000): 98.73, ("bmodel", 1000): 98.73,
    ("wmodel", 5000): 98.65, ("wmodel", 2000): 98.42, ("wmodel", 1000): 98.50,
}
PHASES = {"train": "train", "val": "validation", "test": "test"}


def load_records(folder: str | os.PathLike) -> list[Record]:
    """Every ``*.json`` record in ``folder``, sorted by file name."""
    return [Record.load(path) for path in sorted(Path(folder).glob("*.json"))]


def history_frame(records: Iterable[Record]) -> pd.DataFrame:
    """Long table: one row per run, epoch and phase, with loss and accuracy."""
    rows = []
    for record in records:
        c = record.config
        for h in record.history:
            for phase, label in PHASES.items():
                rows.append({"model": c["model"], "hidden_size": c["hidden_size"], "seed": c["seed"],
                             "epoch": h["epoch"], "phase": label,
                             "loss": h[f"{phase}_loss"], "accuracy": h[f"{phase}_acc"]})
    return pd.DataFrame(rows)


def summary_frame(records: Iterable[Record]) -> pd.DataFrame:
    """One row per run: its config and summary."""
    return pd.DataFrame([{"model": r.config["model"], "hidden_size": r.config["hidden_size"],
                          "seed": r.config["seed"], "epochs": r.config["epochs"], **r.summary}
                         for r in records])


def table1(records: Iterable[Record]) -> pd.DataFrame:
    """Table 1: per model and hidden size, measured accuracies (mean, and std over seeds) beside the seed's."""
    runs = summary_frame(records)
    if runs.empty:
        return pd.DataFrame()
    metrics = ["best_test_acc", "val_selected_test_acc", "final_test_acc"]
    grouped = runs.groupby(["model", "hidden_size"])
    table = grouped[metrics].mean()
    table.insert(0, "seeds", grouped.size())
    table.insert(1, "epochs", grouped["epochs"].max())
    for metric in metrics:
        table[f"{metric}_std"] = grouped[metric].std()  # NaN with one seed
    table["seed_paper"] = [SEED_TABLE.get(key) for key in table.index]
    table["difference"] = table["best_test_acc"] - table["seed_paper"]
    order = [(m, h) for m in MODELS for h in HIDDEN_SIZES if (m, h) in table.index]
    rest = [key for key in table.index if key not in order]
    return table.loc[order + rest].round(2)


def missing_configs(records: Iterable[Record]) -> list[str]:
    """The seed's 9 configs that have no record, as ``model-hsH`` names."""
    present = {(r.config["model"], r.config["hidden_size"]) for r in records}
    return [f"{m}-hs{h}" for m in MODELS for h in HIDDEN_SIZES if (m, h) not in present]


def curves(history: pd.DataFrame, hue: str, title: str = "", phases=("train", "test")) -> plt.Figure:
    """Loss (top) and accuracy (bottom) per epoch, one column per phase, one line per ``hue`` value.

    With several seeds per line, seaborn draws the mean and a band of one standard deviation.
    """
    data = history[history["phase"].isin(phases)]
    data = data.assign(**{hue: data[hue].astype(str)})  # categorical colours, also for hidden sizes
    order = [m for m in MODELS if m in set(data[hue])] if hue == "model" else sorted(set(data[hue]), key=_natural)
    fig, axes = plt.subplots(2, len(phases), figsize=(5 * len(phases), 7), sharex=True, squeeze=False)
    for column, phase in enumerate(phases):
        part = data[data["phase"] == phase]
        for row, metric in enumerate(("loss", "accuracy")):
            ax = axes[row, column]
            sns.lineplot(part, x="epoch", y=metric, hue=hue, hue_order=order, errorbar="sd", ax=ax, palette="deep")
            ax.set_title(f"{phase} {metric}")
            if metric == "loss":
                ax.set_yscale("log")
            else:
                ax.set_ylim(max(part[metric].min() - 0.5, 0) if len(part) else 0, 100.2)
                ax.set_ylabel("accuracy (%)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def run_curves(record: Record) -> plt.Figure:
    """Loss and accuracy of one run: train, validation and test on the same axes."""
    frame = history_frame([record])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    sns.lineplot(frame, x="epoch", y="loss", hue="phase", ax=axes[0])
    axes[0].set_yscale("log")
    sns.lineplot(frame, x="epoch", y="accuracy", hue="phase", ax=axes[1])
    axes[1].set_ylabel("accuracy (%)")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"{record.config['model']}, H = {record.config['hidden_size']}")
    fig.tight_layout()
    return fig


def digits(images: torch.Tensor, labels: torch.Tensor, title: str, rows: int = 4, columns: int = 8) -> plt.Figure:
    """A grid of uint8 images (N, 28, 28) with their true labels, as in the seed's Figure 1."""
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.9, rows * 1.05))
    for ax, image, label in zip(axes.flat, images, labels):
        ax.imshow(image.numpy(), cmap="gray_r")
        ax.set_title(str(int(label)), fontsize=9)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _natural(value: str):
    return (0, int(value)) if value.isdigit() else (1, value)
