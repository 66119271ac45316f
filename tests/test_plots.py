"""Table 1 and the figures from records: seeds aggregated, the seed's numbers beside, subsets allowed."""

import math

import matplotlib
import pytest

matplotlib.use("Agg")

from mnistlab import Config, Record, plots  # noqa: E402


def record(model, hidden_size, seed, test_accs, val_accs=None):
    val_accs = val_accs or test_accs
    history = [{"epoch": e, "lr": 0.01, "train_loss": 1.0 / e, "train_acc": 95.0, "val_loss": 0.1, "val_acc": v,
                "test_loss": 0.1, "test_acc": t, "seconds": 2.0}
               for e, (t, v) in enumerate(zip(test_accs, val_accs), start=1)]
    config = Config(model=model, hidden_size=hidden_size, seed=seed, epochs=len(history))
    return Record(config=config.to_dict(), environment={}, history=history)


def test_table1_means_seeds_and_puts_the_seeds_numbers_beside():
    records = [record("nmodel", 1000, 0, [97.0, 97.5], [98.0, 97.0]),
               record("nmodel", 1000, 1, [97.2, 97.1]),
               record("bmodel", 5000, 0, [98.0, 98.9])]
    table = plots.table1(records)
    assert list(table.index) == [("nmodel", 1000), ("bmodel", 5000)]  # the seed's row and column order
    n = table.loc[("nmodel", 1000)]
    assert n["seeds"] == 2 and n["best_test_acc"] == pytest.approx(97.35)  # mean of 97.5 and 97.2
    assert n["val_selected_test_acc"] == pytest.approx((97.0 + 97.2) / 2)  # epoch 1 wins validation in seed 0
    assert n["best_test_acc_std"] == pytest.approx(0.21, abs=0.01)
    assert n["seed_paper"] == 97.31 and n["difference"] == pytest.approx(0.04)
    assert math.isnan(table.loc[("bmodel", 5000)]["best_test_acc_std"])  # one seed: no spread to show


def test_missing_configs_lists_the_seeds_cells_without_a_record():
    missing = plots.missing_configs([record("wmodel", 2000, 0, [98.0])])
    assert len(missing) == 8 and "wmodel-hs2000" not in missing and missing[0] == "nmodel-hs5000"
    assert plots.table1([]).empty


def test_curves_draw_one_line_per_model_and_a_band_for_seeds():
    records = [record("nmodel", 1000, s, [97.0 + s, 97.5]) for s in (0, 1)] + [record("wmodel", 1000, 0, [98.0, 98.2])]
    fig = plots.curves(plots.history_frame(records), hue="model")
    test_acc = fig.axes[3]
    assert test_acc.get_title() == "test accuracy"
    assert [t.get_text() for t in test_acc.get_legend().get_texts()] == ["nmodel", "wmodel"]
    # A standard-deviation band only where there are two seeds (nmodel): wmodel's is empty.
    bands = [sum(len(path.vertices) for path in band.get_paths()) for band in test_acc.collections]
    assert sum(vertices > 0 for vertices in bands) == 1
