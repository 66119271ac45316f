"""The statistics against values computed by hand, and the claims and errors on records built here."""

import math

import numpy as np
import pytest

from mnistlab import Config, Record
from mnistlab.lab import claims, errors, stats
from mnistlab.records import encode_labels

# t quantiles (two-sided 95 %) from a printed table: df 1, 2, 3.
T975 = {1: 12.7062, 2: 4.3027, 3: 3.1824}


def test_describe_gives_mean_sample_sd_and_t_interval():
    e = stats.describe([1.0, 2.0, 3.0, 4.0])
    sd = math.sqrt(5 / 3)  # squared deviations 2.25 + 0.25 + 0.25 + 2.25 over n - 1 = 3
    assert (e.n, e.mean, e.sd) == (4, 2.5, pytest.approx(sd))
    assert e.low == pytest.approx(2.5 - T975[3] * sd / 2, abs=1e-3)
    assert e.high == pytest.approx(2.5 + T975[3] * sd / 2, abs=1e-3)
    two = stats.describe([97.0, 97.5])  # two seeds: sd 0.3536, half-width 12.706 * 0.25
    assert (two.low, two.high) == (pytest.approx(97.25 - 3.1766, abs=1e-3), pytest.approx(97.25 + 3.1766, abs=1e-3))


def test_one_value_has_no_spread_and_no_interval():
    e = stats.describe([98.6])
    assert e.n == 1 and e.mean == 98.6 and all(math.isnan(v) for v in (e.sd, e.low, e.high))
    assert stats.verdict(e) == stats.UNTESTED
    with pytest.raises(ValueError, match="finite"):
        stats.describe([1.0, math.nan])


def test_paired_difference_and_its_verdict():
    # Differences 0.2, 0.3, 0.1: mean 0.2, sd 0.1, half-width 4.3027 * 0.1 / sqrt(3) = 0.2484: the interval holds 0.
    e = stats.paired_difference([98.7, 98.8, 98.6], [98.5, 98.5, 98.5])
    assert e.mean == pytest.approx(0.2) and e.sd == pytest.approx(0.1)
    assert e.low == pytest.approx(-0.0484, abs=1e-3) and e.high == pytest.approx(0.4484, abs=1e-3)
    assert stats.verdict(e) == stats.WITHIN_NOISE
    # Differences 0.19, 0.2, 0.21: sd 0.01, the interval [0.175, 0.225] lies above 0.
    assert stats.verdict(stats.paired_difference([98.69, 98.7, 98.71], [98.5] * 3)) == stats.SUPPORTED
    assert stats.verdict(stats.paired_difference([98.5] * 3, [98.69, 98.7, 98.71])) == stats.CONTRADICTED
    with pytest.raises(ValueError, match="equal lengths"):
        stats.paired_difference([1.0], [1.0, 2.0])


def test_mcnemar_counts_discordant_images_and_uses_the_exact_binomial():
    labels = np.arange(20) % 10
    a, b = labels.copy(), labels.copy()
    b[:8] = (labels[:8] + 1) % 10  # 8 images only a gets right
    a[8] = (labels[8] + 1) % 10  # 1 image only b gets right
    a[9] = b[9] = (labels[9] + 2) % 10  # both wrong: not discordant
    test = stats.mcnemar(labels, a, b)
    assert (test.only_a, test.only_b) == (8, 1)
    # P(X <= 1) + P(X >= 8) for X ~ Binomial(9, 1/2) = (1 + 9 + 9 + 1) / 512.
    assert test.p_value == pytest.approx(20 / 512)
    assert stats.mcnemar(labels, labels, labels) == stats.McNemar(0, 0, 1.0)


def test_combine_lets_a_contradiction_or_missing_test_decide():
    assert stats.combine([stats.SUPPORTED, stats.SUPPORTED]) == stats.SUPPORTED
    assert stats.combine([stats.SUPPORTED, stats.WITHIN_NOISE]) == stats.WITHIN_NOISE
    assert stats.combine([stats.SUPPORTED, stats.UNTESTED]) == stats.UNTESTED
    assert stats.combine([stats.UNTESTED, stats.CONTRADICTED]) == stats.CONTRADICTED
    with pytest.raises(ValueError, match="unknown verdicts"):
        stats.combine(["maybe"])


def test_confusion_matrix_and_per_class_error_rates():
    matrix = stats.confusion_matrix([0, 0, 1, 2], [0, 1, 1, 1], classes=3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert stats.class_error_rates(matrix).tolist() == [50.0, 0.0, 100.0]


# Records built by hand: 3 models x H=1000 x seeds, with per-example predictions on 100 "test images".
LABELS = np.arange(100) % 10


def predictions(wrong: list[int]) -> str:
    predicted = LABELS.copy()
    predicted[wrong] = (LABELS[wrong] + 1) % 10
    return encode_labels(predicted)


def record(model, seed, test_acc, wrong, hidden_size=1000, train_accs=(95.0, 100.0), lr=0.01):
    history = [{"epoch": e, "lr": lr, "train_loss": 0.1, "train_acc": t, "val_loss": 0.1, "val_acc": 98.0,
                "test_loss": 0.1, "test_acc": test_acc, "seconds": 1.0} for e, t in enumerate(train_accs, start=1)]
    config = Config(model=model, hidden_size=hidden_size, seed=seed, epochs=len(history), lr=lr)
    return Record(config=config.to_dict(), history=history,
                  predictions={"val_selected": predictions(wrong), "final": predictions(wrong)})


def three_seeds():
    runs = []
    for seed, noise in enumerate((0.0, 0.02, -0.02)):
        runs.append(record("bmodel", seed, 98.7 + noise, [0, 1]))
        runs.append(record("wmodel", seed, 98.5 + noise, [0, 1, 2], train_accs=(99.5, 100.0)))
        runs.append(record("nmodel", seed, 97.3 + noise + 0.01 * seed, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11],
                           train_accs=(90.0, 98.5)))
    return runs


def test_comparisons_pair_by_seed_with_mcnemar_per_seed():
    table = claims.comparisons(three_seeds(), labels=LABELS)
    bw = table[(table["a"] == "bmodel") & (table["b"] == "wmodel")].iloc[0]
    assert bw["seeds"] == 3 and bw["difference"] == pytest.approx(0.2) and bw["sd"] == pytest.approx(0.0, abs=1e-9)
    assert bw["verdict"] == stats.SUPPORTED and bw["settings"] == "epochs=2" and bw["hidden_size"] == 1000
    # Each seed: image 2 only bmodel gets right: one discordant pair, p = 1.
    assert bw["mcnemar_p"] == [1.0, 1.0, 1.0]
    wn = table[(table["a"] == "wmodel") & (table["b"] == "nmodel")].iloc[0]
    # 8 images only wmodel gets right (3-9 and 11), none only nmodel: p = 2 / 2^8.
    assert wn["mcnemar_p"] == [pytest.approx(2 / 256)] * 3


def test_claims_in_words_follow_the_numbers():
    found = {c.name: c for c in claims.check(three_seeds(), labels=LABELS)}
    order = found["Table 1 ordering"]
    assert order.verdict == stats.SUPPORTED and "bmodel − wmodel = +0.20 points" in order.text
    accuracy = found["100 % training accuracy"]
    assert accuracy.verdict == stats.CONTRADICTED and "nmodel: 0 of 3 runs reach 100 %" in accuracy.text
    # nmodel never reaches 99 % (counted as epoch 3, one after its last), bmodel at epoch 2, wmodel at epoch 1.
    converge = found["Normalised models converge faster"]
    assert "nmodel − bmodel = +1.00 epochs" in converge.text and "nmodel − wmodel = +2.00 epochs" in converge.text
    assert converge.verdict == stats.SUPPORTED
    assert found["Hidden size for nmodel"].verdict == stats.UNTESTED  # one hidden size only
    assert "3 seeds" in claims.scope(three_seeds())


def test_with_one_seed_the_claims_say_they_cannot_be_tested():
    runs = [r for r in three_seeds() if r.config["seed"] == 0]
    order = claims.check(runs)[0]
    assert order.verdict == stats.UNTESTED and "one seed: cannot be tested for noise" in order.text
    assert "no comparison can be tested for noise" in claims.scope(runs)
    assert claims.check([]) == [] and "No complete run" in claims.scope([])


def test_without_wmodel_the_ordering_compares_bmodel_with_nmodel():
    runs = [r for r in three_seeds() if r.config["model"] != "wmodel"]
    order = claims.check(runs)[0]
    assert "bmodel − nmodel = +1.39 points" in order.text and order.verdict == stats.SUPPORTED


def test_claims_are_checked_on_one_setting_and_never_pair_across_settings():
    odd = record("nmodel", 0, 10.0, list(range(90)), lr=1e6)  # same model, H and seed; another lr
    table = claims.comparisons(three_seeds() + [odd])
    assert set(table["settings"]) == {"epochs=2"}  # the lr=1e+06 nmodel has no partner
    assert claims.main_settings(three_seeds() + [odd]) == "epochs=2"


def test_errors_per_model_and_the_digits_all_three_get_wrong():
    found = errors.errors(three_seeds(), LABELS)
    assert found.runs == {"nmodel": 3, "bmodel": 3, "wmodel": 3}
    assert found.confusion["bmodel"][0, 1] == 3  # image 0 (a zero) read as 1 in each of 3 runs
    assert found.rates.loc[0, "bmodel"] == pytest.approx(10.0)  # 1 of the 10 zeros wrong
    assert np.flatnonzero(found.wrong[errors.ALL_THREE]).tolist() == [0, 1]
    assert found.predicted[errors.ALL_THREE][:2].tolist() == [1, 2]
    old = Record(config=Config().to_dict(), history=[])  # a version-1 record: no predictions
    assert errors.errors([old], LABELS).runs == {}
