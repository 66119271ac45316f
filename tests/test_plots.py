"""Table 1 and the figures from records: cells are identities without the seed, bands are over seeds only."""

import itertools
import math
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from helpers import make_record  # noqa: E402
from mnistlab import Config, Record  # noqa: E402
from mnistlab.lab import cells, plots, protocol, table1  # noqa: E402


def record(model, hidden_size, seed, test_accs, val_accs=None, status="complete", **settings):
    return make_record(model, hidden_size, seed, test_accs=test_accs, val_accs=val_accs, status=status, **settings)


def test_table1_means_seeds_with_intervals_and_puts_the_seeds_numbers_beside():
    records = [record("nmodel", 1000, 0, [97.0, 97.5], [98.0, 97.0]),
               record("nmodel", 1000, 1, [97.2, 97.1]),
               record("bmodel", 5000, 0, [98.0, 98.9])]
    table = table1.compute(records)
    assert list(table.index) == [("nmodel", 1000, "epochs=2"), ("bmodel", 5000, "epochs=2")]  # the HW5 report's order
    n = table.loc[("nmodel", 1000, "epochs=2")]
    assert n["seeds"] == 2 and n["best_test_acc"] == pytest.approx(97.35)  # mean of 97.5 and 97.2
    assert n["val_selected_test_acc"] == pytest.approx((97.0 + 97.2) / 2)  # epoch 1 wins validation in seed 0
    assert n["best_test_acc_std"] == pytest.approx(0.2121, abs=1e-3)
    # 95 % t interval with 1 degree of freedom: 97.35 +- 12.706 * 0.2121 / sqrt(2).
    assert n["best_test_acc_low"] == pytest.approx(97.35 - 1.906, abs=1e-2)
    assert np.isnan(n["hw5_report"]) and np.isnan(n["difference"])  # 2 epochs: no reproduction of the HW5 report's runs
    protocol = table1.compute([record("nmodel", 1000, 0, [97.0] * 99 + [97.35])])  # the HW5 report's 100 epochs
    assert protocol.index[0][2] == "protocol" and protocol.iloc[0]["hw5_report"] == 97.31
    assert protocol.iloc[0]["difference"] == pytest.approx(0.04)
    assert math.isnan(table.loc[("bmodel", 5000, "epochs=2")]["best_test_acc_std"])  # one seed: no spread to show
    text = table1.text(table)
    assert text.loc[("nmodel", 1000, "epochs=2"), "best_test_acc"] == "97.35 ± 0.21 · seeds [95.44, 99.26]"
    assert text.loc[("bmodel", 5000, "epochs=2"), "best_test_acc"] == "98.90"  # one seed: the number alone


def test_table1_never_pools_runs_that_differ_in_more_than_the_seed_and_leaves_diverged_runs_out():
    records = [record("nmodel", 1000, 0, [97.0, 97.5]), record("nmodel", 1000, 1, [97.2, 97.1]),
               record("nmodel", 1000, 2, [97.3, 97.4], lr=0.001),
               record("nmodel", 1000, 3, [10.0, 9.8], lr=1e6, status="diverged")]
    table = table1.compute(records)
    assert list(table.index) == [("nmodel", 1000, "epochs=2"), ("nmodel", 1000, "epochs=2, lr=0.001")]
    assert list(table["seeds"]) == [2, 1]
    excluded = cells.excluded(records)
    assert len(excluded) == 1 and excluded[0].startswith("nmodel-hs1000-seed3 [epochs=2, lr=1e+06]: diverged")


def test_zero_records_give_an_empty_table_not_a_key_error():
    table = table1.compute([])
    assert table.empty and "best_test_acc" in table.columns and table1.text(table).empty
    assert cells.excluded([]) == [] and len(cells.missing_configs([])) == 9
    assert cells.history_frame([]).empty and cells.summary_frame([]).empty
    assert cells.load_records("/nonexistent/folder") == []


def test_the_analysis_counts_its_records_by_the_folder_they_came_from():
    """The learning-rate report reads the paper's runs beside its own (``--also``): its page once said "72 records
    in reports/lr/runs", 45 of which lay in reports/paper/runs."""
    from mnistlab import paths

    root = paths.project_root()
    files = [root / "reports" / "lr" / "runs" / f"{i}.json" for i in range(2)]
    files.insert(1, root / "reports" / "paper" / "runs" / "x.json")
    assert cells.folders_text(files) == "2 in reports/lr/runs, 1 in reports/paper/runs"
    assert cells.folders_text([]) == ""
    assert cells.folders_text([Path("/elsewhere/runs/a.json")]) == "1 in …/runs"  # no path of this machine


def test_missing_configs_lists_the_seeds_cells_without_a_protocol_run():
    config = Config(model="wmodel", hidden_size=2000)
    history = [{"epoch": e, "lr": 0.01, "train_loss": 0.1, "train_acc": 99.0, "val_loss": 0.1, "val_acc": 98.0,
                "test_loss": 0.1, "test_acc": 98.0, "seconds": 1.0} for e in range(1, config.epochs + 1)]
    missing = cells.missing_configs([Record(config=config.to_dict(), history=history),
                                     record("nmodel", 5000, 0, [97.0])])  # 1 epoch: not the protocol
    assert len(missing) == 8 and "wmodel-hs2000" not in missing and missing[0] == "nmodel-hs1000"


def test_curves_read_to_a_tenth_of_a_point_with_one_legend_outside_the_data():
    """Figures 3-6 at 1280 px: accuracy on a linear axis with a gridline every 0.1 point, loss labelled without
    crowding, one legend for the figure and outside every panel, hidden sizes in increasing order, a band only over
    the seeds of one cell, and a training accuracy of exactly 100 % inside the axis (no spikes off a log axis)."""
    perfect = record("wmodel", 1000, 0, [98.0, 98.2])
    for row in perfect.history:
        row["train_acc"] = 100.0
    records = [record("nmodel", 1000, s, [97.0 + s, 97.5]) for s in (0, 1)] + \
              [perfect, record("wmodel", 2000, 0, [98.1, 98.3])]
    fig = plots.curves(cells.history_frame(records), hue="model")
    train_loss, test_loss, train_acc, test_acc = fig.axes
    assert (train_loss.get_title(), test_loss.get_title()) == ("training", "test")
    assert train_loss.get_yscale() == "log" and test_acc.get_yscale() == "linear"
    assert test_acc.get_ylabel() == "accuracy (%)"
    low, high = test_acc.get_ylim()
    assert 97.5 >= low and high >= 98.3 and high - low <= 3
    lines = np.union1d(np.round(test_acc.yaxis.get_minorticklocs(), 6), np.round(test_acc.get_yticks(), 6))
    steps = np.diff(lines[(lines >= low) & (lines <= high)])  # every gridline, major or minor
    assert steps.size and np.allclose(steps, 0.1), steps  # read off to 0.1 point
    assert max(train_acc.get_ylim()) >= 100.0  # all training images right: on the axis, not off it
    assert len(test_loss.get_yticklabels()) <= 8
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["nmodel", "wmodel (H=1000, epochs=2)",
                                                          "wmodel (H=2000, epochs=2)"]  # H increasing
    assert all(ax.get_legend() is None for ax in fig.axes)
    fig.canvas.draw()
    box = legend.get_window_extent()
    assert all(box.x0 >= ax.get_window_extent().x1 for ax in fig.axes), "the legend covers a panel"
    # A standard-deviation band only where there are two seeds (nmodel).
    bands = [sum(len(path.vertices) for path in band.get_paths()) for band in test_acc.collections]
    assert sum(vertices > 0 for vertices in bands) == 1
    assert fig.get_figwidth() * fig.dpi <= 1280  # fits the page at 1280 px without being scaled down much


def test_figures_3_to_6_come_with_honest_captions_and_alt_text_from_the_data():
    records = [record(model, h, seed, [96.0 + seed / 10, 97.0 + (model != "nmodel") + h / 10000])
               for model in ("nmodel", "bmodel", "wmodel") for h in (1000, 5000) for seed in (0, 1, 2)]
    history = cells.history_frame(records)
    shown = plots.models_figure(history, 1000)
    assert shown.name == "figures-3-4-h1000" and "**Figures 3 and 4 at H = 1000.**" in shown.caption
    assert "Top row: loss" in shown.caption and "bottom row: accuracy (%), its Figure 4" in shown.caption
    assert "mean over 3 seeds" in shown.caption and "one standard deviation over seeds only" in shown.caption
    # the alt text names what the figure shows and its last numbers, from the records
    assert shown.alt.startswith("Line charts of loss and accuracy against epoch for nmodel, bmodel, wmodel at H = 1000")
    assert "Test accuracy at the last epoch (epoch 2): nmodel 97.10 %, bmodel 98.10 %, wmodel 98.10 %" in shown.alt
    sizes = plots.sizes_figure(history)
    assert sizes.name == "figures-5-6-nmodel" and "**Figures 5 and 6: nmodel at each hidden size.**" in sizes.caption
    assert "H = 1000 97.10 %, H = 5000 97.50 %" in sizes.alt  # increasing H
    one = plots.models_figure(cells.history_frame(records[::3]), 1000)  # seed 0 only
    assert "One seed per line: no band." in one.caption


def test_an_accuracy_axis_says_which_epochs_it_cuts_off():
    """An axis that starts above the first epochs' accuracy cuts them off: the caption says up to which epoch."""
    accs = [90.0, 97.0, 97.2, 97.3, 97.3, 97.4, 97.4, 97.4, 97.5, 97.5]
    history = cells.history_frame([record("nmodel", 1000, 0, accs)])
    words = plots.curves_words(history, "model", ["test"])
    low, _ = plots.accuracy_range(plots._with_lines(history[history["phase"] == "test"], "model"))
    assert low > 90.0 and "values below an axis are cut off (test up to epoch 1)" in words["axes"]


def test_the_forest_plot_shows_each_difference_with_both_intervals_in_increasing_h():
    import pandas as pd

    frame = pd.DataFrame([
        {"a": "bmodel", "b": "wmodel", "hidden_size": 5000, "settings": "protocol", "metric": "val_selected_test_acc",
         "seeds": 5, "difference": -0.02, "low": -0.12, "high": 0.07, "seed_low": -0.10, "seed_high": 0.06,
         "verdict": "within noise"},
        {"a": "bmodel", "b": "wmodel", "hidden_size": 1000, "settings": "protocol", "metric": "val_selected_test_acc",
         "seeds": 5, "difference": 0.07, "low": -0.01, "high": 0.15, "seed_low": 0.01, "seed_high": 0.13,
         "verdict": "within noise"},
        {"a": "wmodel", "b": "nmodel", "hidden_size": 1000, "settings": "protocol", "metric": "val_selected_test_acc",
         "seeds": 5, "difference": 1.33, "low": 1.08, "high": 1.58, "seed_low": 1.12, "seed_high": 1.54,
         "verdict": "supported"}])
    shown = plots.forest(frame)
    ax = shown.figure.axes[0]
    rows = sorted(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels())), reverse=True)
    assert [label for _, label in rows] == ["bmodel − wmodel, H = 1000", "bmodel − wmodel, H = 5000",
                                            "wmodel − nmodel, H = 1000"]  # top to bottom, H increasing in each pair
    thick = [line for line in ax.get_lines() if line.get_linewidth() == 4]
    assert sorted(tuple(line.get_xdata()) for line in thick) == [(-0.12, 0.07), (-0.01, 0.15), (1.08, 1.58)]
    assert "bmodel − wmodel, H = 1000: +0.07 [-0.01, +0.15]" in shown.alt
    assert "over seeds and the 10,000 test images" in shown.caption and "mean over 5 seeds" in shown.caption


def test_show_gives_a_page_the_png_its_alt_text_and_the_svg(monkeypatch, tmp_path):
    """What a sweep's page needs of a figure: its PNG and alt text in the notebook; the SVG in the page's figure
    folder when the sweep says where (render.FIGURES_ENV), else in the notebook."""
    from IPython.core.interactiveshell import InteractiveShell

    from mnistlab.lab import render

    shell = InteractiveShell.instance()
    shown_outputs = []
    monkeypatch.setattr(shell.display_pub, "publish", lambda data, metadata=None, **kw: shown_outputs.append(
        (data, metadata)))
    history = cells.history_frame([record("nmodel", 1000, 0, [97.0, 97.5])])
    monkeypatch.delenv(render.FIGURES_ENV, raising=False)
    plots.show(plots.models_figure(history, 1000))
    (figure, meta), (caption, _) = shown_outputs
    assert figure["image/png"] and figure["image/svg+xml"].lstrip().startswith("<?xml")
    assert meta == {"mnistlab": {"name": "figures-3-4-h1000", "alt": figure["text/plain"]}}
    assert caption["text/markdown"].startswith("**Figures 3 and 4 at H = 1000.**")
    monkeypatch.setenv(render.FIGURES_ENV, str(tmp_path / "page_files"))
    shown_outputs.clear()
    plots.show(plots.models_figure(history, 1000))
    assert "image/svg+xml" not in shown_outputs[0][0]
    assert (tmp_path / "page_files" / "figures-3-4-h1000.svg").read_text().lstrip().startswith("<?xml")


def test_wrong_digits_caption_true_and_predicted_labels():
    images = np.zeros((5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5])
    figures = plots.wrong_digits(images, labels, {"nmodel": np.array([1, 0, 1, 0, 0], bool)},
                                 {"nmodel": np.array([8, 1, 9, 1, 5])})
    titles = [ax.get_title() for ax in figures["nmodel"].axes if ax.get_title()]
    assert titles == ["3→8", "4→9"] and "2 test digits wrong" in figures["nmodel"].texts[0].get_text()


@pytest.mark.slow
def test_analysis_notebook_with_no_records_says_so_instead_of_failing(tmp_path):
    import papermill

    from mnistlab import paths

    out = papermill.execute_notebook(paths.resolve("notebooks/analysis.ipynb"), tmp_path / "out.ipynb",
                                     parameters={"records_dir": str(tmp_path / "none")}, kernel_name="python3",
                                     progress_bar=False)
    text = "".join(o.get("text", "") for c in out.cells for o in c.get("outputs", []))
    assert "0 records (…/none), 0 complete" in text and "No records: nothing to analyse" in text
    assert "No complete run: Table 1 is empty." in text


def test_runs_without_validation_have_their_own_row_and_no_val_selected_figure():
    full = record("nmodel", 1000, 0, [97.0, 97.6], validation=False, train_size=60_000)
    for row in full.history:
        row["val_loss"] = row["val_acc"] = None  # not measured: what training writes without validation
    table = table1.compute([full, record("nmodel", 1000, 0, [97.0, 97.5])])
    key = ("nmodel", 1000, "epochs=2, train_size=60000, validation=False")
    assert key in table.index and table.loc[key, "best_test_acc"] == pytest.approx(97.6)
    assert math.isnan(table.loc[key, "val_selected_test_acc"])
    assert table1.text(table).loc[key, "val_selected_test_acc"] == ""
    assert set(cells.history_frame([full])["phase"]) == {"train", "test"}


def test_a_runs_curves_name_its_seed():
    """Per-seed figures on a page of several seeds must say which seed each is."""
    figure = plots.run_curves(record("wmodel", 1000, 3, [97.0, 97.5]))
    assert figure._suptitle.get_text() == "wmodel, H = 1000, seed 3"


def test_the_analysis_shows_the_deviations_written_once_in_the_docs():
    text = protocol.deviations()
    assert text.startswith("What mnistlab does differently") and text in protocol.DEVIATIONS.read_text()
    notebook = (protocol.DEVIATIONS.parent.parent / "notebooks" / "analysis.ipynb").read_text()
    assert "protocol.deviations()" in notebook and "PyTorch's fused implementation" not in notebook  # no copy


def test_table_1s_figure_tells_every_cell_apart_colour_by_model_marker_by_settings():
    """The learning-rate study's nine cells (three models at three rates) once repeated two colours of a seven-colour
    cycle: now no two lines share colour and marker, the colour says the model and the marker the settings."""
    from mnistlab.lab import table1

    keys = [(model, 1000, f"lr={lr}") for model in ("nmodel", "bmodel", "wmodel") for lr in (0.0003, 0.001, 0.003)]
    keys.append(("nmodel", 1000, table1.PROTOCOL))
    colours, markers = table1.styles(keys)
    lines = [table1._line(key) for key in keys]
    assert len({(colours[line], markers[line]) for line in lines}) == len(keys) == 10
    for a, b in itertools.combinations(keys, 2):
        assert (colours[table1._line(a)] == colours[table1._line(b)]) == (a[0] == b[0])
        assert (markers[table1._line(a)] == markers[table1._line(b)]) == (a[2] == b[2])
    assert markers["nmodel"] == "o"  # the protocol's cell: a circle, as before


def test_a_runs_summary_is_one_column_per_seed_with_times_and_accuracies_as_pages_write_them():
    """Once a row per seed with every field a column, raw floats of seconds included: wider than a 1280 px page."""
    from mnistlab.lab import formatting, table1

    records = [make_record(seed=seed) for seed in (0, 1)]
    table = table1.run_summary(records, [0, 1])
    assert list(table.columns) == ["seed 0", "seed 1"] and list(table.index) == list(records[0].summary)
    assert table.loc["seconds", "seed 1"] == formatting.duration(records[1].summary["seconds"])
    assert formatting.duration(1381.0745340470062) == "23 min 1 s"
    assert table.loc["best_test_acc", "seed 0"] == f"{records[0].summary['best_test_acc']:.2f}"
    assert all(len(value) <= 12 for value in table.to_numpy().ravel())  # nothing of 16 digits


def test_table_1s_legend_sits_beside_short_labels_and_below_a_recipes_long_ones():
    """The beyond study's labels name five settings each: beside the axes they squeezed the plot to a sliver."""
    from mnistlab.lab import table1

    short = [make_record("nmodel", seed=s, lr=lr) for s in (0, 1) for lr in (0.001, 0.003)]
    recipe = {"epochs": 3, "lr": 0.001, "dropout": 0.2, "shift": 2, "elastic": 34.0, "schedule": "cosine"}
    long = [make_record("nmodel", seed=s, **recipe) for s in (0, 1)] + [make_record("bmodel", seed=s, **recipe)
                                                                         for s in (0, 1)]
    for records, below in ((short, False), (long, True)):
        figure = table1.figure(table1.compute(records), records)
        axes = figure.axes[0]
        assert (axes.get_legend() is None) == below and bool(figure.legends) == below
        labels = [t.get_text() for t in (figure.legends[0] if below else axes.get_legend()).get_texts()]
        assert len(labels) == 2 and (max(map(len, labels)) > table1.LEGEND_BESIDE) == below
