"""Statistics over seeds and test images: intervals, paired differences, exact tests, verdicts.

Pure functions of numbers and arrays (numpy and scipy); what they are applied to is chosen in
``claims`` and ``plots``.

Two sources of noise. A run's test accuracy varies with its seed (initial weights, shuffling) and with
the 10,000 test images, which every run shares: a difference between two cells averaged over seeds
is still measured on one sample of images, and more seeds do not shrink that part. So every
comparison gets an interval over both (``two_source``, ``paired_two_source``, ``unpaired_two_source``):

- the crossed model of seeds and test images. Per image and seed a value x (100 x correct, or the
  paired difference of two cells' correctness); the mean over seeds and images has two independent
  errors: the seeds' (a t interval over the per-seed means, which also holds the seed-by-image
  interaction) and the shared images' (the variance of the image effects, estimated by the method of
  moments, normal with 10,000 images). The half-widths add in quadrature, so the interval is never
  narrower than the seeds' part. It is deterministic: a page rebuilt from the same records reads the same.
  (A paired bootstrap over seeds and images was tried first: with three seeds it resamples three
  values, understates their spread by a third and has no t correction.)
- *paired* (``paired_two_source``): the seeds of two cells matched one to one, where a shared seed
  gives two runs something in common by construction (the same initial weights at one hidden size);
  the seeds' part is the paired t interval on S - 1 degrees of freedom.
- *unpaired* (``unpaired_two_source``): the seeds of each cell independent (runs at different hidden
  sizes share nothing through a seed number), the test images still shared: the seeds' part is
  Welch's, on the Welch-Satterthwaite degrees of freedom; the images' part is that of the per-image
  difference of the two cells' means, less each cell's seed-by-image interaction. It does not depend on
  which seed number a run carries.
- A variance component estimated below zero (the method of moments can undershoot when the true
  component is near 0: the same model's per-image effects at two hidden sizes) is kept in
  ``image_component``, reported as such by the pages, and counted as 0 in the interval: the interval is
  then the seeds' part of the same design (which holds the interaction), never another design's.
- The images' part is a floor: with any number of seeds the half-width stays at least z x ``se_images``,
  so a difference smaller than that cannot be resolved on this test set (``floor``).
- ``describe`` / ``paired_difference`` / ``welch_difference``: the t interval over seeds alone, kept beside
  it, labelled;
- ``sign_flip``: an exact test pooled over seeds that respects the shared images: per image, the
  difference in correctness summed over seeds (weighted by the other cell's seed count when the counts
  differ), signs flipped image by image under the null (one seed each: exactly McNemar's test,
  ``mcnemar``, which paired comparisons keep per seed). It never uses seed numbers.

Verdicts (``part_verdict``, ``claim_verdict``), for a claim made of k parts, each "a - b > 0" or
"|a - b| within a margin" (equivalence):

- a part is *testable* with at least ``MIN_SEEDS`` seeds (in each cell) and an interval of non-zero width;
- *supported*: every one of the k parts testable and its 95 % interval on the claimed side (above 0;
  or inside ±margin: two one-sided tests (TOST), each at 2.5 %, i.e. the 95 % interval inside the
  margin). Each part alone then errs at most 2.5 %, so the whole claim does too (intersection-union);
- *contradicted*: some part's interval at confidence 1 - ``ERROR_RATE`` / k lies wholly on the wrong
  side (below 0, or outside the margin): Bonferroni over the claim's parts, so a true claim is called
  contradicted at most ``ERROR_RATE`` (5 %) of the time, not once per part at 95 %;
- *not tested here*: neither, and some part is missing or not testable;
- *within noise*: neither, every part tested.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95
ERROR_RATE = 0.05  # for a whole claim being called contradicted when it is true (Bonferroni over its parts)
MIN_SEEDS = 3  # fewer seeds give no verdict: the seed-to-seed spread is not estimated from two
SUPPORTED, CONTRADICTED, WITHIN_NOISE, UNTESTED = "supported", "contradicted", "within noise", "not tested here"
VERDICTS = (SUPPORTED, CONTRADICTED, WITHIN_NOISE, UNTESTED)
CLASSES = 10
ZERO_WIDTH = 1e-9  # relative: an interval narrower than this is rounding, not measured noise


@dataclass(frozen=True)
class Estimate:
    """A mean over ``n`` values (seeds) with its sample standard deviation and 95 % t interval (NaN when n < 2).

    A difference of two independent means (``welch_difference``) gives its standard error and Welch's
    degrees of freedom instead (``sd`` NaN, ``n`` the smaller seed count)."""

    n: int
    mean: float
    sd: float
    low: float
    high: float
    se: float | None = None  # standard error of the mean; None: sd / sqrt(n)
    df: float | None = None  # t degrees of freedom; None: n - 1

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def interval(self, confidence: float = CONFIDENCE) -> tuple[float, float]:
        """The t interval of the mean at ``confidence``; NaN with fewer than two values."""
        se = self.se if self.se is not None else self.sd / math.sqrt(self.n) if self.n else math.nan
        df = self.df if self.df is not None else self.n - 1
        if self.n < 2 or not math.isfinite(se) or not df > 0:
            return math.nan, math.nan
        half = float(scipy_stats.t.ppf((1 + confidence) / 2, df=df)) * se
        return self.mean - half, self.mean + half


@dataclass(frozen=True)
class TwoSource:
    """A mean over seeds and test images with its interval over both (``two_source``, ``unpaired_two_source``)."""

    n: int  # seeds (of the smaller cell, for an unpaired difference)
    images: int
    mean: float
    se_seeds: float  # standard error from the seeds (NaN with one seed): the seed-only t interval's
    se_images: float  # standard error from the shared test images (0 where its estimate fell below 0)
    low: float  # 95 % interval
    high: float
    df: float | None = None  # the seeds' t degrees of freedom; None: n - 1 (Welch's for an unpaired difference)
    image_component: float | None = None  # the images' variance as estimated, below 0 at times; None: se_images^2
    paired: bool = True  # False: two cells' seeds independent (``unpaired_two_source``)

    @property
    def negative_images(self) -> bool:
        """Whether the images' variance component was estimated below zero (and counted as 0)."""
        return self.image_component is not None and self.image_component < 0

    def floor(self, confidence: float = CONFIDENCE) -> float:
        """The half-width no number of seeds can go below: the shared test images' part alone."""
        return float(scipy_stats.norm.ppf((1 + confidence) / 2)) * self.se_images

    def interval(self, confidence: float = CONFIDENCE) -> tuple[float, float]:
        """mean ± sqrt((t_df se_seeds)^2 + (z se_images)^2) at ``confidence``; images only with one seed."""
        df = self.df if self.df is not None else self.n - 1
        seeds = 0.0 if self.n < 2 else float(scipy_stats.t.ppf((1 + confidence) / 2, df=df)) * self.se_seeds
        half = math.hypot(seeds, self.floor(confidence))
        return self.mean - half, self.mean + half


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test of two classifiers on the same test images."""

    only_a: int  # images a gets right and b gets wrong
    only_b: int  # images b gets right and a gets wrong
    p_value: float  # two-sided exact binomial test of only_a against only_a + only_b, p = 1/2


def describe(values: Iterable[float], confidence: float = CONFIDENCE) -> Estimate:
    """Mean, sample sd (n - 1) and the t confidence interval of the mean; NaN values are an error."""
    x = np.asarray(list(values), dtype=float)
    if x.ndim != 1 or not np.all(np.isfinite(x)):
        raise ValueError(f"describe needs a flat list of finite numbers; got {x.tolist()}")
    n = len(x)
    if n == 0:
        return Estimate(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Estimate(1, mean, math.nan, math.nan, math.nan)
    sd = float(x.std(ddof=1))
    low, high = Estimate(n, mean, sd, math.nan, math.nan).interval(confidence)
    return Estimate(n, mean, sd, low, high)


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """The mean of a[i] - b[i] (pairs matched by seed) with its t interval: the paired t test's interval."""
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths; got {len(a)} and {len(b)}")
    return describe(np.asarray(a, dtype=float) - np.asarray(b, dtype=float), confidence)


def welch_difference(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """mean(a) - mean(b) for independent seeds (nothing matched), with Welch's t interval; NaN unless each has
    two values or more. ``n`` is the smaller count, ``sd`` NaN (two spreads, not one)."""
    x, y = describe(a), describe(b)
    n = min(x.n, y.n)
    if n == 0:
        return Estimate(0, math.nan, math.nan, math.nan, math.nan)
    if n < 2:
        return Estimate(n, x.mean - y.mean, math.nan, math.nan, math.nan)
    se, df = _welch(x.sd**2 / x.n, x.n, y.sd**2 / y.n, y.n)
    estimate = Estimate(n, x.mean - y.mean, math.nan, math.nan, math.nan, se, df)
    return Estimate(n, estimate.mean, math.nan, *estimate.interval(confidence), se, df)


def two_source(values: np.ndarray, confidence: float = CONFIDENCE) -> TwoSource:
    """The mean of ``values`` (seeds, images), e.g. 100 x correctness, with its interval over seeds and images.

    With r_s the seed means, c_i the image means, m the grand mean, e = x - r - c + m and S seeds, N images:
    se_seeds^2 = sum (r_s - m)^2 / (S (S - 1)), the squared standard error of the mean of the per-seed
    means (it holds the seed part and the seed-by-image interaction); the images' component
    sum (c_i - m)^2 / (N (N - 1)) - sum e^2 / (S (S - 1) N (N - 1)), the image part alone (the method of
    moments for the crossed random-effects model; the interaction is subtracted, being in se_seeds already),
    kept as estimated in ``image_component`` and counted as 0 when below it.
    One seed: se_images^2 = sum (c_i - m)^2 / (N (N - 1)), and no seed part can be estimated.
    """
    x = _seeds_by_images(values, "two_source")
    seeds, images = x.shape
    m, r, c = float(x.mean()), x.mean(axis=1), x.mean(axis=0)
    component = _variance_of_mean(c)
    if seeds < 2:
        se_seeds = math.nan
    else:
        se_seeds = math.sqrt(float(np.sum((r - m) ** 2)) / (seeds * (seeds - 1)))
        component -= _interaction(x) / (seeds * images)
    return _finished(TwoSource(seeds, images, m, se_seeds, math.sqrt(max(0.0, component)), math.nan, math.nan,
                               image_component=component), confidence)


def paired_two_source(correct_a: np.ndarray, correct_b: np.ndarray, confidence: float = CONFIDENCE) -> TwoSource:
    """Accuracy a - b in points, averaged over seeds, from per-image correctness (seeds, images) of each, the
    rows matched by seed: the seed and image parts of the paired differences."""
    a, b = np.asarray(correct_a, dtype=float), np.asarray(correct_b, dtype=float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"paired correctness needs two (seeds, images) arrays of one shape; got {a.shape}, {b.shape}")
    return two_source(100.0 * (a - b), confidence)


def unpaired_two_source(correct_a: np.ndarray, correct_b: np.ndarray, confidence: float = CONFIDENCE) -> TwoSource:
    """Accuracy a - b in points from per-image correctness (seeds, images) of two cells whose seeds share nothing
    (any seed counts), scored on the same images.

    Per cell k (S_k seeds): r_k its per-seed means, c_k its per-image means, s2_k = sum e_k^2 / ((S_k - 1) (N - 1))
    its seed-by-image interaction (residual) variance. The seeds' part is Welch's: se_seeds^2 = var(r_a) / S_a
    + var(r_b) / S_b on the Welch-Satterthwaite degrees of freedom (each holds its interaction / N); the images'
    component is var(c_a - c_b) / N - s2_a / (S_a N) - s2_b / (S_b N): the variance of the image effects'
    difference, without the interaction already in the seeds' part. Relabelling either cell's seeds changes
    nothing here."""
    a = 100.0 * _seeds_by_images(correct_a, "unpaired_two_source")
    b = 100.0 * _seeds_by_images(correct_b, "unpaired_two_source")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"both cells must be scored on the same images; got {a.shape[1]} and {b.shape[1]}")
    (sa, images), sb = a.shape, b.shape[0]
    mean = float(a.mean() - b.mean())
    component = _variance_of_mean(a.mean(axis=0) - b.mean(axis=0))
    if min(sa, sb) < 2:
        se_seeds, df = math.nan, math.nan
    else:
        se_seeds, df = _welch(float(a.mean(axis=1).var(ddof=1)) / sa, sa, float(b.mean(axis=1).var(ddof=1)) / sb, sb)
        component -= _interaction(a) / (sa * images) + _interaction(b) / (sb * images)
    return _finished(TwoSource(min(sa, sb), images, mean, se_seeds, math.sqrt(max(0.0, component)), math.nan,
                               math.nan, df=df, image_component=component, paired=False), confidence)


def _seeds_by_images(values, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 2 or 0 in x.shape or not np.all(np.isfinite(x)):
        raise ValueError(f"{name} needs a finite (seeds, images) array; got shape {x.shape}")
    return x


def _variance_of_mean(c: np.ndarray) -> float:
    """The squared standard error of the mean of ``c`` (sample variance / N); 0 for one value."""
    return float(np.var(c, ddof=1)) / len(c) if len(c) > 1 else 0.0


def _interaction(x: np.ndarray) -> float:
    """The seed-by-image residual variance of a (seeds, images) array: sum e^2 / ((S - 1) (N - 1))."""
    seeds, images = x.shape
    if seeds < 2 or images < 2:
        return 0.0
    e = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + x.mean()
    return float(np.sum(e**2)) / ((seeds - 1) * (images - 1))


def _welch(va: float, na: int, vb: float, nb: int) -> tuple[float, float]:
    """Welch's standard error and Welch-Satterthwaite degrees of freedom from the squared standard errors."""
    se = math.sqrt(va + vb)
    denominator = va**2 / (na - 1) + vb**2 / (nb - 1)
    return se, ((va + vb) ** 2 / denominator) if denominator > 0 else float(na + nb - 2)


def _finished(estimate: TwoSource, confidence: float) -> TwoSource:
    low, high = estimate.interval(confidence)
    return replace(estimate, low=low, high=high)


def sign_flip(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact two-sided p value that a and b are equally accurate, pooled over seeds on the shared images.

    Per image i, k_i = S_b (seeds of a that get it right) - S_a (seeds of b that get it right), each cell's
    count weighted by the other's number of seeds (divided by their common factor: with equal numbers, simply
    the difference of the counts). Under the null each image's k_i is as likely to be -k_i (a and b
    exchangeable on that image), independently across images; the p value is P(|sum of +-k_i| >= |sum k_i|),
    computed exactly by convolution. One seed each: McNemar's exact test. No seed is matched to another, so
    it holds paired or not. It covers the sampling of the images given these seeds; the two-source interval
    also covers the seeds.
    """
    a, b = np.atleast_2d(np.asarray(correct_a, dtype=np.int64)), np.atleast_2d(np.asarray(correct_b, dtype=np.int64))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"correctness of both must be (seeds, images) on the same images; got {a.shape} and "
                         f"{b.shape}")
    common = math.gcd(len(a), len(b))
    signed = (len(b) // common) * a.sum(axis=0) - (len(a) // common) * b.sum(axis=0)
    observed = abs(int(signed.sum()))
    k = np.abs(signed)
    k = k[k > 0]
    if not len(k):
        return 1.0
    top = int(k.sum())
    distribution = np.zeros(2 * top + 1)  # P(T = t) at index t + top
    distribution[top] = 1.0
    for size, m in zip(*np.unique(k, return_counts=True)):
        # Of m images with |k| = size, j keep their sign: they add size * (2j - m), j ~ Binomial(m, 1/2).
        part = np.zeros(2 * size * m + 1)
        part[::2 * size] = scipy_stats.binom.pmf(np.arange(m + 1), m, 0.5)
        distribution = np.convolve(distribution, part)[size * m:size * m + 2 * top + 1]
    t = np.arange(-top, top + 1)
    return float(min(1.0, distribution[np.abs(t) >= observed].sum()))


def mcnemar(labels: np.ndarray, predicted_a: np.ndarray, predicted_b: np.ndarray) -> McNemar:
    """Exact McNemar test: are a's and b's errors on the same images as often one-sided in each direction?"""
    labels, predicted_a, predicted_b = (np.asarray(v) for v in (labels, predicted_a, predicted_b))
    if not labels.shape == predicted_a.shape == predicted_b.shape:
        raise ValueError(f"labels and predictions must have one shape; got {labels.shape}, "
                         f"{predicted_a.shape} and {predicted_b.shape}")
    right_a, right_b = predicted_a == labels, predicted_b == labels
    only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(right_b & ~right_a))
    if only_a + only_b == 0:
        return McNemar(0, 0, 1.0)  # identical correctness: no evidence of any difference
    return McNemar(only_a, only_b, float(scipy_stats.binomtest(only_a, only_a + only_b, 0.5).pvalue))


def testable(estimate: Estimate | TwoSource | None) -> bool:
    """Whether an estimate can carry a verdict: at least MIN_SEEDS seeds and a 95 % interval of non-zero width
    (wider than rounding: equal differences in floating point leave a spread of 1e-17, which is no noise)."""
    return (estimate is not None and estimate.n >= MIN_SEEDS and math.isfinite(estimate.low)
            and math.isfinite(estimate.high)
            and estimate.high - estimate.low > ZERO_WIDTH * max(1.0, abs(estimate.mean)))


def why_untestable(estimate: Estimate | TwoSource | None) -> str:
    """Why ``testable`` says no, in a few words; empty when it says yes."""
    if estimate is None:
        return "not measured"
    if estimate.n < MIN_SEEDS:
        return f"{estimate.n} seed{'' if estimate.n == 1 else 's'}, a verdict needs {MIN_SEEDS}"
    if not testable(estimate):
        return "the interval has zero width: no noise was measured, so none can be ruled out"
    return ""


def part_verdict(estimate: Estimate | TwoSource | None, parts: int = 1, margin: float | None = None) -> str:
    """One part of a claim of ``parts`` parts: "the difference is above 0" (``margin`` None) or "within
    ±margin"; the rule is in the module docstring."""
    if not testable(estimate):
        return UNTESTED
    low, high = estimate.interval(1 - ERROR_RATE / parts)  # the Bonferroni interval: evidence against
    if margin is None:
        if high < 0:
            return CONTRADICTED
        return SUPPORTED if estimate.low > 0 else WITHIN_NOISE
    if low > margin or high < -margin:
        return CONTRADICTED
    return SUPPORTED if -margin <= estimate.low and estimate.high <= margin else WITHIN_NOISE


def claim_verdict(verdicts: Iterable[str], parts: int) -> str:
    """One verdict for a claim of ``parts`` parts from the verdicts of those measured (``part_verdict``,
    each given the same ``parts``); parts not measured count as not tested."""
    verdicts = list(verdicts)
    unknown = set(verdicts) - set(VERDICTS)
    if unknown:
        raise ValueError(f"unknown verdicts {sorted(unknown)}; valid: {', '.join(VERDICTS)}")
    if len(verdicts) > parts:
        raise ValueError(f"{len(verdicts)} verdicts for a claim of {parts} parts")
    if CONTRADICTED in verdicts:
        return CONTRADICTED
    if len(verdicts) < parts or UNTESTED in verdicts:
        return UNTESTED
    return SUPPORTED if all(v == SUPPORTED for v in verdicts) else WITHIN_NOISE


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int = CLASSES) -> np.ndarray:
    """Counts (classes, classes): row = true label, column = predicted label."""
    labels, predicted = np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    if labels.shape != predicted.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predicted.shape} must have one shape")
    return np.bincount(labels * classes + predicted, minlength=classes * classes).reshape(classes, classes)


def class_error_rates(confusion: np.ndarray) -> np.ndarray:
    """Per true class, the percentage of its images predicted as another class (NaN for an empty class)."""
    confusion = np.asarray(confusion, dtype=float)
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * (totals - np.diag(confusion)) / totals
