"""The statistics against values computed by hand: t intervals, the two-source interval, exact tests, verdicts."""

import math

import numpy as np
import pytest

from mnistlab.lab import stats

# Quantiles from printed tables: two-sided 95 % t (df 1, 2, 3) and normal (95 %, and 1 - 0.05/6 = 99.1667 %).
T975 = {1: 12.7062, 2: 4.3027, 3: 3.1824}
Z975, Z_BONFERRONI_6 = 1.95996, 2.63826


def test_describe_gives_mean_sample_sd_and_t_interval():
    e = stats.describe([1.0, 2.0, 3.0, 4.0])
    sd = math.sqrt(5 / 3)  # squared deviations 2.25 + 0.25 + 0.25 + 2.25 over n - 1 = 3
    assert (e.n, e.mean, e.sd) == (4, 2.5, pytest.approx(sd))
    assert e.low == pytest.approx(2.5 - T975[3] * sd / 2, abs=1e-3)
    assert e.high == pytest.approx(2.5 + T975[3] * sd / 2, abs=1e-3)
    two = stats.describe([97.0, 97.5])  # two seeds: sd 0.3536, half-width 12.706 * 0.25
    assert (two.low, two.high) == (pytest.approx(97.25 - 3.1766, abs=1e-3), pytest.approx(97.25 + 3.1766, abs=1e-3))


def test_one_value_has_no_spread_no_interval_and_no_verdict():
    e = stats.describe([98.6])
    assert e.n == 1 and e.mean == 98.6 and all(math.isnan(v) for v in (e.sd, e.low, e.high))
    assert stats.part_verdict(e) == stats.UNTESTED
    with pytest.raises(ValueError, match="finite"):
        stats.describe([1.0, math.nan])


def test_paired_difference_is_the_t_interval_of_the_differences():
    # Differences 0.2, 0.3, 0.1: mean 0.2, sd 0.1, half-width 4.3027 * 0.1 / sqrt(3) = 0.2484: the interval holds 0.
    e = stats.paired_difference([98.7, 98.8, 98.6], [98.5, 98.5, 98.5])
    assert e.mean == pytest.approx(0.2) and e.sd == pytest.approx(0.1)
    assert e.low == pytest.approx(-0.0484, abs=1e-3) and e.high == pytest.approx(0.4484, abs=1e-3)
    assert stats.part_verdict(e) == stats.WITHIN_NOISE
    # Differences 0.19, 0.2, 0.21: sd 0.01, the interval [0.175, 0.225] lies above 0.
    assert stats.part_verdict(stats.paired_difference([98.69, 98.7, 98.71], [98.5] * 3)) == stats.SUPPORTED
    assert stats.part_verdict(stats.paired_difference([98.5] * 3, [98.69, 98.7, 98.71])) == stats.CONTRADICTED
    with pytest.raises(ValueError, match="equal lengths"):
        stats.paired_difference([1.0], [1.0, 2.0])


def test_two_source_interval_by_hand():
    # 3 seeds x 2 images. Seed means r = 2, 2, 4; grand mean m = 8/3; image means c = 2, 10/3.
    x = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 5.0]])
    e = stats.two_source(x)
    # se_seeds^2 = sum (r - m)^2 / (S (S - 1)) = (4/9 + 4/9 + 16/9) / 6 = 4/9: the seed-only t interval's.
    assert e.mean == pytest.approx(8 / 3) and e.se_seeds == pytest.approx(2 / 3)
    assert e.se_seeds == pytest.approx(stats.describe(x.mean(axis=1)).sd / math.sqrt(3))
    # Residuals x - r - c + m = -1/3, 1/3 / 2/3, -2/3 / -1/3, 1/3: sum of squares 4/3.
    # se_images^2 = sum (c - m)^2 / (N (N - 1)) - sum e^2 / (S (S - 1) N (N - 1)) = (8/9) / 2 - (4/3) / 12 = 1/3.
    assert e.se_images == pytest.approx(math.sqrt(1 / 3))
    half = math.hypot(T975[2] * 2 / 3, Z975 * math.sqrt(1 / 3))  # 3.0836
    assert (e.low, e.high) == (pytest.approx(8 / 3 - half, abs=1e-3), pytest.approx(8 / 3 + half, abs=1e-3))
    seeds_only = stats.describe(x.mean(axis=1))
    assert e.low < seeds_only.low and e.high > seeds_only.high  # never narrower than the seeds alone


def test_two_source_keeps_the_shared_images_when_every_seed_agrees():
    # Seed means all 1: the seed-only interval has zero width, yet the images differ.
    x = np.array([[2.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 3.0], [1.0, 0.0, 1.0, 2.0]])
    assert stats.describe(x.mean(axis=1)).sd == 0.0
    e = stats.two_source(x)
    # c = 1, 0, 1, 2: sum (c - m)^2 = 2; residuals x - c: sum of squares 4. 2 / 12 - 4 / (6 * 12) = 1/9.
    assert e.se_seeds == 0.0 and e.se_images == pytest.approx(1 / 3)
    assert (e.low, e.high) == (pytest.approx(1 - Z975 / 3, abs=1e-4), pytest.approx(1 + Z975 / 3, abs=1e-4))
    # One seed: the images alone. x = 100, 0, 100, 100: mean 75, sum (x - m)^2 = 7500, 7500 / 12 = 625.
    one = stats.two_source(np.array([[100.0, 0.0, 100.0, 100.0]]))
    assert math.isnan(one.se_seeds) and one.se_images == pytest.approx(25.0)
    assert one.low == pytest.approx(75 - Z975 * 25, abs=1e-3) and stats.part_verdict(one) == stats.UNTESTED
    # Nothing varies: zero width, which is no evidence.
    flat = stats.two_source(np.ones((3, 5)))
    assert flat.low == flat.high == 1.0 and not stats.testable(flat)
    assert "zero width" in stats.why_untestable(flat)


def test_two_source_covers_the_truth_where_the_seed_only_interval_does_not():
    # Crossed model x = mu + seed effect + image effect + noise, every seed scored on the same images.
    rng = np.random.default_rng(0)
    seeds, images, mu, repeats = 3, 400, 1.0, 400
    covered = {"two": 0, "seeds": 0}
    for _ in range(repeats):
        x = (mu + rng.normal(0, 0.3, (seeds, 1)) + rng.normal(0, 12.0, (1, images))
             + rng.normal(0, 3.0, (seeds, images)))
        e = stats.two_source(x)
        covered["two"] += e.low <= mu <= e.high
        t = stats.describe(x.mean(axis=1))
        covered["seeds"] += t.low <= mu <= t.high
    assert 0.93 <= covered["two"] / repeats <= 0.99  # about 95 %, a little conservative
    assert covered["seeds"] / repeats < 0.75  # the shared images' part left out: 67 % here


def test_paired_two_source_is_the_two_source_interval_of_the_differences_in_points():
    a = np.array([[1, 1, 0, 1], [1, 1, 1, 1], [1, 0, 1, 1]], dtype=bool)
    b = np.array([[1, 0, 0, 1], [0, 1, 1, 1], [1, 0, 0, 1]], dtype=bool)
    e = stats.paired_two_source(a, b)
    assert e.mean == pytest.approx(100 * 3 / 12) and e == stats.two_source(100.0 * (a.astype(float) - b))
    with pytest.raises(ValueError, match="one shape"):
        stats.paired_two_source(a, b[:2])


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
    # Pooled over one seed, the sign-flip test is McNemar's test.
    assert stats.sign_flip((a == labels)[None], (b == labels)[None]) == pytest.approx(20 / 512)


def test_sign_flip_pools_seeds_on_the_shared_images_exactly():
    # Per image, (right in a) - (right in b) summed over 2 seeds: k = 2, 1, -1 (and 0). Observed sum 2.
    a = np.array([[1, 1, 0, 1], [1, 0, 0, 0]])
    b = np.array([[0, 0, 1, 1], [0, 0, 0, 0]])
    # Under the null the 8 sign patterns of (2, 1, 1) give 4, 2, 2, 0, 0, -2, -2, -4: |sum| >= 2 in 6 of 8.
    assert stats.sign_flip(a, b) == pytest.approx(6 / 8)
    # k = 2, 1 only: sums 3, 1, -1, -3; |sum| >= 3 in 2 of 4.
    assert stats.sign_flip(np.array([[1, 1, 0], [1, 0, 1]]), np.array([[0, 0, 1], [0, 0, 0]])) == pytest.approx(0.5)
    assert stats.sign_flip(a, a) == 1.0


def test_a_part_needs_three_seeds_and_a_bonferroni_interval_to_contradict():
    # se 0.13 from the images alone: 95 % half-width 1.96 * 0.13 = 0.255, 99.17 % half-width 2.638 * 0.13 = 0.343.
    e = stats.TwoSource(3, 10_000, -0.3, 0.0, 0.13, -0.3 - Z975 * 0.13, -0.3 + Z975 * 0.13)
    assert e.interval(1 - 0.05 / 6)[1] == pytest.approx(-0.3 + Z_BONFERRONI_6 * 0.13, abs=1e-4)
    assert stats.part_verdict(e, parts=1) == stats.CONTRADICTED  # alone: its 95 % interval is below 0
    assert stats.part_verdict(e, parts=6) == stats.WITHIN_NOISE  # one of six parts: 99.17 % reaches above 0
    assert stats.part_verdict(stats.TwoSource(2, 10_000, -0.3, 0.0, 0.13, e.low, e.high)) == stats.UNTESTED
    assert "2 seeds, a verdict needs 3" in stats.why_untestable(stats.TwoSource(2, 10, 0.0, 0.0, 0.1, -0.2, 0.2))
    # "Within ±0.2": inside (supported), straddling (within noise), wholly outside (contradicted).
    inside = stats.TwoSource(3, 10_000, 0.02, 0.0, 0.05, 0.02 - Z975 * 0.05, 0.02 + Z975 * 0.05)
    assert stats.part_verdict(inside, parts=3, margin=0.2) == stats.SUPPORTED
    straddle = stats.TwoSource(3, 10_000, 0.2, 0.0, 0.05, 0.2 - Z975 * 0.05, 0.2 + Z975 * 0.05)
    assert stats.part_verdict(straddle, parts=3, margin=0.2) == stats.WITHIN_NOISE
    outside = stats.TwoSource(3, 10_000, 0.6, 0.0, 0.05, 0.6 - Z975 * 0.05, 0.6 + Z975 * 0.05)
    assert stats.part_verdict(outside, parts=3, margin=0.2) == stats.CONTRADICTED


def test_claim_verdict_needs_every_part_for_support_and_one_for_contradiction():
    S, C, W, U = stats.SUPPORTED, stats.CONTRADICTED, stats.WITHIN_NOISE, stats.UNTESTED
    assert stats.claim_verdict([S] * 6, parts=6) == S
    assert stats.claim_verdict([S] * 2, parts=6) == U  # four parts (two hidden sizes) not measured
    assert stats.claim_verdict([S, W], parts=2) == W
    assert stats.claim_verdict([S, U], parts=2) == U
    assert stats.claim_verdict([U, C], parts=6) == C  # evidence against needs no other part
    with pytest.raises(ValueError, match="unknown verdicts"):
        stats.claim_verdict(["maybe"], parts=1)
    with pytest.raises(ValueError, match="3 verdicts for a claim of 2 parts"):
        stats.claim_verdict([S, S, S], parts=2)


def test_confusion_matrix_and_per_class_error_rates():
    matrix = stats.confusion_matrix([0, 0, 1, 2], [0, 1, 1, 1], classes=3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert stats.class_error_rates(matrix).tolist() == [50.0, 0.0, 100.0]


def test_welch_difference_by_hand():
    # a = 1, 3: mean 2, variance 2; b = 1, 2, 1.5: mean 1.5, variance 0.25. se^2 = 2/2 + 0.25/3 = 13/12;
    # Welch-Satterthwaite df = (13/12)^2 / (1^2 / 1 + (1/12)^2 / 2) = 338/289.
    e = stats.welch_difference([1.0, 3.0], [1.0, 2.0, 1.5])
    assert (e.n, e.mean, e.se, e.df) == (2, 0.5, pytest.approx(math.sqrt(13 / 12)), pytest.approx(338 / 289))
    half = scipy_t(338 / 289) * math.sqrt(13 / 12)
    assert (e.low, e.high) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))
    assert math.isnan(stats.welch_difference([1.0], [1.0, 2.0]).low)  # one seed: no spread to measure


def test_unpaired_two_source_by_hand_and_blind_to_seed_numbers():
    # Points per (seed, image). a: 2 seeds, seed means 1, 3 (variance 2), image means 3, 1, no interaction.
    # b: 3 seeds, seed means 1, 2, 1.5 (variance 0.25), image means 1, 2, residuals ±0.5 in two seeds:
    # interaction sum e^2 / ((S - 1) (N - 1)) = 1 / 2.
    a = np.array([[2.0, 0.0], [4.0, 2.0]])
    b = np.array([[1.0, 1.0], [1.0, 3.0], [1.0, 2.0]])
    e = stats.unpaired_two_source(a / 100, b / 100)  # it takes correctness and counts points
    assert (e.paired, e.n, e.images) == (False, 2, 2) and e.mean == pytest.approx(0.5)
    # The seeds' part is Welch's on the seed means (test above); the images': var(c_a - c_b) / N less each cell's
    # interaction / (S N): d = 2, -1, variance 4.5, / 2 = 2.25, less 0 and 0.5 / 6: 13/6.
    assert e.se_seeds == pytest.approx(math.sqrt(13 / 12)) and e.df == pytest.approx(338 / 289)
    assert e.image_component == pytest.approx(13 / 6) and e.se_images == pytest.approx(math.sqrt(13 / 6))
    half = math.hypot(scipy_t(338 / 289) * math.sqrt(13 / 12), Z975 * math.sqrt(13 / 6))
    assert (e.low, e.high) == (pytest.approx(0.5 - half, abs=1e-4), pytest.approx(0.5 + half, abs=1e-4))
    # Which seed number a run carries changes nothing: relabel b's seeds (reorder its rows).
    assert stats.unpaired_two_source(a / 100, b[[2, 0, 1]] / 100) == e
    with pytest.raises(ValueError, match="same images"):
        stats.unpaired_two_source(a, b[:, :1])


def test_an_images_variance_below_zero_is_kept_and_counted_as_zero():
    # a: seed means 2, 1; image means 1.5, 1.5; residuals ±1: interaction 4. b: seed means 1, 1, interaction 4.
    # Image means' difference 0.5, 0.5: variance 0. Component 0 - 4 / 4 - 4 / 4 = -2: estimated below zero.
    a, b = np.array([[3.0, 1.0], [0.0, 2.0]]), np.array([[2.0, 0.0], [0.0, 2.0]])
    e = stats.unpaired_two_source(a / 100, b / 100)
    assert e.image_component == pytest.approx(-2.0) and e.negative_images and e.se_images == 0.0
    assert e.floor() == 0.0
    # Counted as 0, the interval is the seeds' part of this design: Welch on the seed means 2, 1 and 1, 1.
    welch = stats.welch_difference([2.0, 1.0], [1.0, 1.0])
    assert (e.low, e.high) == (pytest.approx(welch.low), pytest.approx(welch.high))
    # Paired differences too: image means 0.5, 0.5 (variance 0), residuals ±0.5: 0 - 1 / (2 x 2) = -0.25.
    paired = stats.two_source(np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert paired.image_component == pytest.approx(-0.25) and paired.negative_images and paired.se_images == 0.0


def test_sign_flip_weights_cells_of_unequal_seed_counts_and_ignores_seed_numbers():
    # a: 2 seeds, b: 1 seed. Per image k = 1 x (a's correct runs) - 2 x (b's): 2, 2, 1, -2; observed sum 3.
    # |k| = 2, 2, 2, 1: three ±2 sum to 6, 2, -2, -6 (1, 3, 3, 1 of 8 ways), then ±1: |sum| >= 3 for 6 ± 1 (2),
    # 2 + 1 (3), -2 - 1 (3) and -6 ± 1 (2): 10 of 16. (Unweighted, k = 2, 2, 1, -1 would give 6 of 16.)
    a, b = np.array([[1, 1, 1, 0], [1, 1, 0, 0]]), np.array([[0, 0, 0, 1]])
    assert stats.sign_flip(a, b) == pytest.approx(10 / 16)
    assert stats.sign_flip(a[::-1], b) == stats.sign_flip(a, b)


def scipy_t(df: float) -> float:
    from scipy import stats as scipy_stats

    return float(scipy_stats.t.ppf(0.975, df))


def test_unpaired_two_source_covers_the_truth_with_shared_images_and_independent_seeds():
    # Two cells scored on the same images: image effects shared (plus a little of each cell's own), seeds drawn
    # independently per cell, true difference 0.5.
    rng = np.random.default_rng(1)
    seeds, images, repeats = 4, 300, 400
    covered = 0
    for _ in range(repeats):
        shared = rng.normal(0, 10.0, (1, images))
        a = 0.5 + shared + rng.normal(0, 3.0, (1, images)) + rng.normal(0, 0.4, (seeds, 1)) \
            + rng.normal(0, 2.0, (seeds, images))
        b = shared + rng.normal(0, 3.0, (1, images)) + rng.normal(0, 0.4, (seeds + 1, 1)) \
            + rng.normal(0, 2.0, (seeds + 1, images))
        e = stats.unpaired_two_source(a / 100, b / 100)
        covered += e.low <= 0.5 <= e.high
    assert 0.93 <= covered / repeats <= 0.99
