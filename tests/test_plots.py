"""Table 1 and the figures from records: cells are identities without the seed, bands are over seeds only."""

import math

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


def test_missing_configs_lists_the_seeds_cells_without_a_protocol_run():
    config = Config(model="wmodel", hidden_size=2000)
    history = [{"epoch": e, "lr": 0.01, "train_loss": 0.1, "train_acc": 99.0, "val_loss": 0.1, "val_acc": 98.0,
                "test_loss": 0.1, "test_acc": 98.0, "seconds": 1.0} for e in range(1, config.epochs + 1)]
    missing = cells.missing_configs([Record(config=config.to_dict(), history=history),
                                     record("nmodel", 5000, 0, [97.0])])  # 1 epoch: not the protocol
    assert len(missing) == 8 and "wmodel-hs2000" not in missing and missing[0] == "nmodel-hs5000"


def test_curves_draw_error_on_a_log_axis_with_bands_over_seeds_only():
    records = [record("nmodel", 1000, s, [97.0 + s, 97.5]) for s in (0, 1)] + \
              [record("wmodel", 1000, 0, [98.0, 98.2]), record("wmodel", 2000, 0, [98.1, 98.3])]
    fig = plots.curves(cells.history_frame(records), hue="model")
    test_error = fig.axes[3]
    assert test_error.get_title() == "test error" and test_error.get_yscale() == "log"
    # wmodel spans two hidden sizes: two lines, never one band over H.
    labels = [t.get_text() for t in test_error.get_legend().get_texts()]
    assert labels == ["nmodel", "wmodel (H=2000, epochs=2)", "wmodel (H=1000, epochs=2)"]
    # A standard-deviation band only where there are two seeds (nmodel).
    bands = [sum(len(path.vertices) for path in band.get_paths()) for band in test_error.collections]
    assert sum(vertices > 0 for vertices in bands) == 1
    # A 0.1-point difference in error is a visible distance on the axis: 2.0 vs 1.9 % is not squashed.
    lo, hi = test_error.get_ylim()
    assert math.log10(hi / lo) < 1.5


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
    assert "0 records in …/none" in text and "No records: nothing to analyse" in text
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
