"""Seaborn figures of records: the HW5 report's Figure 1 and Figures 3-6, the differences between the models
(``forest``), and the misclassified digits.

One line per cell (``cells``): a band is always over the seeds of one cell. Hidden sizes in increasing order.
Figures 3-6 read at 1280 px: accuracy on linear axes with 0.1-point gridlines, loss labelled once a decade, one
legend outside the data. ``models_figure``, ``sizes_figure`` and ``forest`` give a figure with its caption and
alt text computed from the data (``Shown``); ``show`` puts one in a notebook as a published page needs it (the
page writes its PNG and SVG beside itself: ``render``). Table 1's figure is beside Table 1, in ``table1``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, MultipleLocator, NullFormatter

from ..records import Record
from . import cells


def curves(history: pd.DataFrame, hue: str, title: str = "", phases=("train", "test")) -> plt.Figure:
    """Loss (top row, log scale) and accuracy (bottom row, %) per epoch, one column per phase; readable at 1280 px.

    One line per cell (the hue value, plus the settings where one hue value holds several cells), in increasing
    order of hidden size: with several seeds a line is their mean and its band one standard deviation over
    seeds only. The accuracy axes are linear, with a gridline every 0.1 point where their range allows it
    (``accuracy_range``): epochs below an axis's lower end are cut off there, which the caption says
    (``curves_words``). One legend for the figure, outside the data.
    """
    data = _with_lines(history[history["phase"].isin(phases)], hue)
    order = _line_order(data, hue)
    palette = dict(zip(order, sns.color_palette("deep", max(len(order), 1))))
    fig, axes = plt.subplots(2, len(phases), figsize=(3.7 * len(phases) + 1.4, 6.6), sharex=True, squeeze=False,
                             layout="constrained")
    for column, phase in enumerate(phases):
        part = data[data["phase"] == phase]
        for row, metric in enumerate(("loss", "accuracy")):
            ax = axes[row, column]
            if not part.empty:
                sns.lineplot(part, x="epoch", y=metric, hue="line", hue_order=order, errorbar="sd", ax=ax,
                             palette=palette, legend=False, linewidth=1.4)
            if metric == "loss":
                _loss_axis(ax)
                ax.set_title(PHASE_TITLES.get(phase, phase), fontsize=11)
            elif not part.empty:
                _accuracy_axis(ax, *accuracy_range(part))
            ax.set_ylabel("loss (log scale)" if metric == "loss" else "accuracy (%)")
            ax.set_xlabel("epoch" if row == 1 else "")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
    handles = [Line2D([], [], color=palette[line], linewidth=2, label=line) for line in order]
    fig.legend(handles=handles, title=HUE_TITLES.get(hue, hue), loc="outside right upper", frameon=False)
    if title:
        fig.suptitle(title)
    return fig


PHASE_TITLES = {"train": "training", "validation": "validation", "test": "test"}
HUE_TITLES = {"model": "model", "hidden_size": "hidden size"}
EARLY = 0.2  # the first 20 % of the epochs (at least one) do not set an accuracy axis's range: early epochs
# scatter over points, later ones differ by tenths, which the axis must show


def accuracy_range(part: pd.DataFrame) -> tuple[float, float]:
    """The accuracy (%) an axis shows for ``part`` (one phase's rows): from just below the lowest line mean after
    the early epochs to just above the highest mean (100 at most), on 0.5-point steps."""
    last = int(part["epoch"].max())
    settled = part[part["epoch"] > max(1, round(EARLY * last))]
    means = (settled if not settled.empty else part).groupby(["line", "epoch"])["accuracy"].mean()
    low = np.floor((means.min() - 0.1) * 2) / 2
    high = min(100.0, np.ceil((means.max() + 0.1) * 2) / 2)
    return float(low), float(max(high, low + 0.5))


def _accuracy_axis(ax, low: float, high: float) -> None:
    """A linear accuracy axis from ``low`` to ``high`` (%), labelled with one decimal, with gridlines fine enough to
    read a value off to 0.1 point where the range is up to 3 points (coarser beyond)."""
    span = high - low
    major, minor = (0.5, 0.1) if span <= 3 else (1.0, 0.2) if span <= 6 else (2.0, 0.5) if span <= 15 else (10.0, 2.0)
    ax.set_ylim(low, high + (0.02 if high >= 100 else 0))  # a line at exactly 100 % stays in sight
    ax.yaxis.set_major_locator(MultipleLocator(major))
    ax.yaxis.set_minor_locator(MultipleLocator(minor))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.1f}"))
    ax.grid(True, which="major", alpha=0.45)
    ax.grid(True, which="minor", alpha=0.15)


def _loss_axis(ax) -> None:
    """A log loss axis labelled in plain numbers, never crowded: at each power of ten, or at 1, 2 and 5 of each
    power where the axis spans less than a decade and a half (the validation and test losses)."""
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    subs = (1.0,) if high / low >= 10 ** 1.5 else (1.0, 2.0, 5.0)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10) * 0.1, numticks=12))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", alpha=0.45)


def run_curves(record: Record) -> plt.Figure:
    """Loss (log scale) and accuracy (%) of one run: train, validation and test on the same axes."""
    frame = _with_lines(cells.history_frame([record]), "phase")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for ax, metric in zip(axes, ("loss", "accuracy")):
        sns.lineplot(frame, x="epoch", y=metric, hue="phase", ax=ax)
        if metric == "loss":
            _loss_axis(ax)
        else:
            _accuracy_axis(ax, *accuracy_range(frame))
        ax.set_ylabel("loss (log scale)" if metric == "loss" else "accuracy (%)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"{record.config['model']}, H = {record.config['hidden_size']}, seed {record.config['seed']}")
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


def _with_lines(data: pd.DataFrame, hue: str) -> pd.DataFrame:
    """``data`` (a ``cells.history_frame``) with its ``line`` column: what each drawn line is called."""
    data = data.copy()
    data["line"] = _line_labels(data, hue)
    return data


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


# --- Figures with their words: what a published page shows, captions and alt text computed from the data ---------

@dataclass
class Shown:
    """A figure as a page shows it: the figure, the stem of its files, its caption and its alt text."""

    figure: plt.Figure
    name: str  # file stem beside the page: <page>_files/<name>.png and .svg
    caption: str  # Markdown, under the figure
    alt: str  # plain text for a reader who cannot see it: what it shows and its main numbers


def models_figure(history: pd.DataFrame, hidden_size: int, phases=("train", "validation", "test")) -> Shown:
    """The HW5 report's Figures 3 and 4 at one hidden size: the three models' loss and accuracy per epoch."""
    part = history[history["hidden_size"] == hidden_size]
    phases = [p for p in phases if p in set(part["phase"])]
    figure = curves(part, hue="model", phases=phases, title=f"H = {hidden_size}")
    words = curves_words(part, "model", phases)
    caption = (f"**Figures 3 and 4 at H = {hidden_size}.** Top row: loss per epoch (log scale), the HW5 report's "
               f"Figure 3; bottom row: accuracy (%), its Figure 4; columns: the {_phase_list(phases)} images. "
               f"{words['lines']} {words['axes']}")
    alt = (f"Line charts of loss and accuracy against epoch for {words['names']} at H = {hidden_size}, "
           f"{_phase_list(phases)}. {words['last']}")
    return Shown(figure, f"figures-3-4-h{hidden_size}", caption, alt)


def sizes_figure(history: pd.DataFrame, model: str = "nmodel", phases=("train", "validation", "test")) -> Shown:
    """The HW5 report's Figures 5 and 6: one model's loss and accuracy per epoch at each hidden size."""
    part = history[history["model"] == model]
    phases = [p for p in phases if p in set(part["phase"])]
    figure = curves(part, hue="hidden_size", phases=phases, title=model)
    words = curves_words(part, "hidden_size", phases)
    caption = (f"**Figures 5 and 6: {model} at each hidden size.** Top row: loss per epoch (log scale), the HW5 "
               f"report's Figure 5; bottom row: accuracy (%), its Figure 6; columns: the {_phase_list(phases)} "
               f"images. {words['lines']} {words['axes']}")
    alt = (f"Line charts of loss and accuracy against epoch for {model} at hidden sizes {words['names']}, "
           f"{_phase_list(phases)}. {words['last']}")
    return Shown(figure, f"figures-5-6-{model}", caption, alt)


def curves_words(part: pd.DataFrame, hue: str, phases) -> dict[str, str]:
    """What a ``curves`` figure of ``part`` shows, in words: its lines (names, seeds, bands), its accuracy axes'
    ranges (with the epochs they cut off), and each line's accuracy at the last epoch."""
    data = _with_lines(part[part["phase"].isin(phases)], hue)
    order = _line_order(data, hue)
    seeds = data.groupby("line")["seed"].nunique()
    if seeds.max() > 1:
        counts = sorted(set(seeds))
        n = " to ".join(str(c) for c in (counts[0], counts[-1])) if len(counts) > 1 else str(counts[0])
        lines = (f"Each line is the mean over {n} seeds of its cell, and its band one standard deviation over "
                 "seeds only (not over test images).")
    else:
        lines = "One seed per line: no band."
    ranges, cut = [], []
    for phase in phases:
        rows = data[data["phase"] == phase]
        if rows.empty:
            continue
        low, high = accuracy_range(rows)
        ranges.append(f"{PHASE_TITLES.get(phase, phase)} {low:.1f}-{high:.1f} %")
        below = rows.groupby(["line", "epoch"])["accuracy"].mean()
        below = below[below < low]
        if not below.empty:
            last_cut = int(below.index.get_level_values("epoch").max())
            cut.append(f"{PHASE_TITLES.get(phase, phase)} up to epoch {last_cut}")
    axes = f"The accuracy axes show {', '.join(ranges)}, with a gridline every 0.1 point where the range is 3 points " \
           "or less"
    axes += f"; values below an axis are cut off ({'; '.join(cut)})." if cut else "."
    last = []
    show = (lambda line: f"H = {line}") if hue == "hidden_size" else str
    for phase in ("test", "train"):
        rows = data[data["phase"] == phase]
        if rows.empty:
            continue
        final = rows[rows["epoch"] == rows["epoch"].max()].groupby("line")["accuracy"].mean()
        values = ", ".join(f"{show(line)} {final[line]:.2f} %" for line in order if line in final)
        last.append(f"{PHASE_TITLES.get(phase, phase).capitalize()} accuracy at the last epoch (epoch "
                    f"{int(rows['epoch'].max())}): {values}")
    names = ", ".join(order)
    return {"lines": lines, "axes": axes, "last": (". ".join(last) + ".") if last else "", "names": names}


def forest(table: pd.DataFrame) -> Shown:
    """The differences between the models with their intervals (``claims.comparisons``' frame): one row per pair,
    hidden size and settings, in increasing hidden size; a dot at the mean difference, a thick bar its 95 %
    interval over seeds and test images (what verdicts use), a thin bar the seeds-only interval."""
    rows = table.assign(_pair=[f"{a} − {b}" for a, b in zip(table["a"], table["b"])])
    pairs = list(dict.fromkeys(rows["_pair"]))
    rows = rows.assign(_order=[pairs.index(p) for p in rows["_pair"]]).sort_values(
        ["settings", "_order", "hidden_size"], key=lambda column: column.map(_settings_key)
        if column.name == "settings" else column).reset_index(drop=True)
    labels = [f"{pair}, H = {h}" + ("" if s == "protocol" else f" [{s}]")
              for pair, h, s in zip(rows["_pair"], rows["hidden_size"], rows["settings"])]
    colours = {"supported": "#1b7837", "contradicted": "#b2182b"}  # any other verdict: grey
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(rows) + 1.4), layout="constrained")
    y = np.arange(len(rows))[::-1]
    for yi, (_, row) in zip(y, rows.iterrows()):
        colour = colours.get(row["verdict"], "#4d4d4d")
        if not (pd.isna(row["seed_low"]) or pd.isna(row["seed_high"])):
            ax.plot([row["seed_low"], row["seed_high"]], [yi - 0.18] * 2, color=colour, linewidth=1, alpha=0.7)
        if not (pd.isna(row["low"]) or pd.isna(row["high"])):
            ax.plot([row["low"], row["high"]], [yi, yi], color=colour, linewidth=4, solid_capstyle="butt")
        ax.plot([row["difference"]], [yi], "o", color="white", markeredgecolor=colour, markersize=7, zorder=3)
    ax.axvline(0, color="black", linewidth=0.8, linestyle="--")
    ax.set_yticks(y, labels)
    metric = _metric_words(rows)
    ax.set_xlabel(f"difference in {metric} (points): a − b")
    ax.xaxis.set_major_locator(MultipleLocator(0.5 if _span(rows) <= 3 else 1.0))
    ax.xaxis.set_minor_locator(MultipleLocator(0.1))
    ax.grid(True, axis="x", which="major", alpha=0.45)
    ax.grid(True, axis="x", which="minor", alpha=0.15)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    verdicts = list(dict.fromkeys(rows["verdict"]))
    keys = [Line2D([], [], color="#4d4d4d", linewidth=4, label="95 % interval over seeds and test images"),
            Line2D([], [], color="#4d4d4d", linewidth=1, label="95 % interval over seeds only"),
            *(Line2D([], [], color=colours.get(v, "#4d4d4d"), linewidth=4, label=f"{v} on its own")
              for v in verdicts)]
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:+.1f}" if value else "0"))
    fig.legend(handles=keys, loc="outside lower center", ncols=2, frameon=False, fontsize=9)
    seeds = sorted(set(rows["seeds"]))
    caption = ("**The differences between the models.** Each row: model a minus model b at one hidden size, in "
               f"points of {metric}; the dot is the mean over {_seed_words(seeds)}, the thick bar its 95 % interval "
               "over seeds and the 10,000 test images (what the verdicts use), the thin bar the interval over "
               "seeds only, which leaves the test images out. A thick bar wholly right of the dashed line: a is "
               "ahead. Colour: the verdict on a > b for that row alone (green supported, red contradicted, grey "
               "within noise or not tested); the claims above combine rows with their own rules.")
    described = "; ".join(f"{label}: {d:+.2f} [{lo:+.2f}, {hi:+.2f}]" for label, d, lo, hi in
                          zip(labels, rows["difference"], rows["low"], rows["high"]))
    alt = f"Forest plot of the differences between the models in {metric}, with 95 % intervals: {described}."
    return Shown(fig, "model-differences", caption, alt)


def show(shown: Shown, *, svg: bool = True, dpi: int = 100) -> None:
    """Show ``shown`` in a notebook as a published page needs it: the PNG with its alt text and name, then its
    caption. Its SVG goes to the page's figure folder when a sweep executes the notebook (``render.FIGURES_ENV``),
    else into the notebook, from which the page takes it (``render``). Closes the figure."""
    import base64
    import io
    import os

    from IPython.display import Markdown, display

    from ..atomic import atomic_write_text
    from .render import FIGURE, FIGURES_ENV

    png = io.BytesIO()
    shown.figure.savefig(png, format="png", dpi=dpi, metadata={"Software": None})
    data = {"image/png": base64.b64encode(png.getvalue()).decode(), "text/plain": shown.alt}
    if svg:
        text = svg_text(shown.figure, shown.name)
        folder = os.environ.get(FIGURES_ENV)
        if folder:
            atomic_write_text(Path(folder) / f"{shown.name}.svg", text)
        else:
            data["image/svg+xml"] = text
    plt.close(shown.figure)
    display(data, raw=True, metadata={FIGURE: {"name": shown.name, "alt": shown.alt}})
    display(Markdown(shown.caption))


def svg_text(figure: plt.Figure, name: str = "figure") -> str:
    """``figure`` as SVG text: text kept as text (not paths), the same bytes for the same figure, coordinates to a
    tenth of a point, each path on one line (a figure's SVG is about half as large, and no line moves by a visible
    amount)."""
    import io
    import re

    vector = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": name}):
        figure.savefig(vector, format="svg", metadata={"Date": None, "Creator": None})
    text = re.sub(r"(\d+\.\d)\d+", r"\1", vector.getvalue())
    return re.sub(r"\s*\n(?=[LMCQZz] |z\b)", " ", text)


def _phase_list(phases) -> str:
    names = [PHASE_TITLES.get(p, p) for p in phases]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _settings_key(label: str):
    return (label != "protocol", label)


def _span(rows: pd.DataFrame) -> float:
    values = pd.concat([rows["low"], rows["high"], rows["difference"]]).dropna()
    return float(values.max() - values.min()) if len(values) else 0.0


def _metric_words(rows: pd.DataFrame) -> str:
    metrics = set(rows["metric"]) if "metric" in rows else set()
    names = {"val_selected_test_acc": "val-selected test accuracy", "final_test_acc": "final test accuracy",
             "best_test_acc": "best test accuracy"}
    return " / ".join(sorted(names.get(m, m) for m in metrics)) or "test accuracy"


def _seed_words(seeds: list[int]) -> str:
    if not seeds:
        return "its seeds"
    text = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]} to {seeds[-1]}"
    return f"{text} seed{'s' if seeds[-1] != 1 else ''} (paired by seed)"
