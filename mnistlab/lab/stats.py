"""Statistics over seeds and test images: intervals, paired differences, exact tests, verdicts.

Pure functions of numbers and arrays (numpy and scipy); what they are applied to is chosen in
``claims`` and ``plots``.

Two sources of noise. A run's test accuracy varies with its seed (initial weights, shuffling) and with
the 10,000 test images, which every run shares: a difference between two models averaged over seeds
is still measured on one sample of images, and more seeds do not shrink that part. So every
comparison gets

- ``two_source``: an interval from the crossed model of seeds and test images. Per image and seed a
  value x (100 x correct, or the paired difference of two models' correctness); the mean over seeds
  and images has two independent errors: the seeds' (the t interval over the per-seed means, S - 1
  degrees of freedom, which also holds the seed-by-image interaction) and the shared images' (the
  variance of the image effects averaged over seeds, estimated by the method of moments and normal
  with 10,000 images). The half-widths add in quadrature, so the interval is never narrower than
  either part alone. It is deterministic: a page rebuilt from the same records reads the same.
  (A paired bootstrap over seeds and images was tried first: with three seeds it resamples three
  values, understates their spread by a third and has no t correction, and on small real runs its
  "two-source" interval came out narrower than the seed-only t interval.)
- ``describe`` / ``paired_difference``: the t interval over seeds alone, kept beside it, labelled;
- ``sign_flip``: an exact test pooled over seeds that respects the shared images: per image, the
  difference in correctness summed over seeds, signs flipped image by image under the null (one
  seed: exactly McNemar's test, ``mcnemar``, which is kept per seed).

Verdicts (``part_verdict``, ``claim_verdict``), for a claim made of k parts, each "a - b > 0" or
"|a - b| within a margin":

- a part is *testable* with at least ``MIN_SEEDS`` seeds and an interval of non-zero width;
- *supported*: every one of the k parts testable and its 95 % interval on the claimed side (above 0,
  or inside the margin). Each part alone then errs at most 2.5 %, so the whole claim does too;
- *contradicted*: some part's interval at confidence 1 - ``ERROR_RATE`` / k lies wholly on the wrong
  side (below 0, or outside the margin): Bonferroni over the claim's parts, so a true claim is called
  contradicted at most ``ERROR_RATE`` (5 %) of the time, not once per part at 95 %;
- *not tested here*: neither, and some part is missing or not testable;
- *within noise*: neither, every part tested.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
    """A mean over ``n`` values (seeds) with its sample standard deviation and 95 % t interval (NaN when n < 2)."""

    n: int
    mean: float
    sd: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def interval(self, confidence: float = CONFIDENCE) -> tuple[float, float]:
        """The t interval of the mean at ``confidence``; NaN with fewer than two values."""
        if self.n < 2 or not math.isfinite(self.sd):
            return math.nan, math.nan
        half = float(scipy_stats.t.ppf((1 + confidence) / 2, df=self.n - 1)) * self.sd / math.sqrt(self.n)
        return self.mean - half, self.mean + half


@dataclass(frozen=True)
class TwoSource:
    """A mean over seeds and test images with its interval over both (``two_source``)."""

    n: int  # seeds
    images: int
    mean: float
    se_seeds: float  # standard error from the seeds (NaN with one seed): the seed-only t interval's
    se_images: float  # standard error from the shared test images
    low: float  # 95 % interval
    high: float

    def interval(self, confidence: float = CONFIDENCE) -> tuple[float, float]:
        """mean ± sqrt((t_{n-1} se_seeds)^2 + (z se_images)^2) at ``confidence``; images only with one seed."""
        z = float(scipy_stats.norm.ppf((1 + confidence) / 2))
        seeds = 0.0 if self.n < 2 else float(scipy_stats.t.ppf((1 + confidence) / 2, df=self.n - 1)) * self.se_seeds
        half = math.hypot(seeds, z * self.se_images)
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


def two_source(values: np.ndarray, confidence: float = CONFIDENCE) -> TwoSource:
    """The mean of ``values`` (seeds, images), e.g. 100 x correctness, with its interval over seeds and images.

    With r_s the seed means, c_i the image means, m the grand mean, e = x - r - c + m and S seeds, N images:
    se_seeds^2 = sum (r_s - m)^2 / (S (S - 1)), the squared standard error of the mean of the per-seed
    means (it holds the seed part and the seed-by-image interaction); se_images^2 = sum (c_i - m)^2 /
    (N (N - 1)) - sum e^2 / (S (S - 1) N (N - 1)), the image part alone (the method of moments for the
    crossed random-effects model; the interaction is subtracted, being in se_seeds already), at least 0.
    One seed: se_images^2 = sum (c_i - m)^2 / (N (N - 1)), and no seed part can be estimated.
    """
    x = np.asarray(values, dtype=float)
    if x.ndim != 2 or 0 in x.shape or not np.all(np.isfinite(x)):
        raise ValueError(f"two_source needs a finite (seeds, images) array; got shape {x.shape}")
    seeds, images = x.shape
    m, r, c = float(x.mean()), x.mean(axis=1), x.mean(axis=0)
    image_var = float(np.sum((c - m) ** 2)) / (images * (images - 1)) if images > 1 else 0.0
    if seeds < 2:
        se_seeds = math.nan
    else:
        se_seeds = math.sqrt(float(np.sum((r - m) ** 2)) / (seeds * (seeds - 1)))
        e = x - r[:, None] - c[None, :] + m
        interaction = float(np.sum(e**2)) / (seeds * (seeds - 1) * images * (images - 1)) if images > 1 else 0.0
        image_var = max(0.0, image_var - interaction)
    estimate = TwoSource(seeds, images, m, se_seeds, math.sqrt(image_var), math.nan, math.nan)
    low, high = estimate.interval(confidence)
    return TwoSource(seeds, images, m, se_seeds, estimate.se_images, low, high)


def paired_two_source(correct_a: np.ndarray, correct_b: np.ndarray, confidence: float = CONFIDENCE) -> TwoSource:
    """Accuracy a - b in points, averaged over seeds, from per-image correctness (seeds, images) of each, the
    rows matched by seed: the seed and image parts of the paired differences."""
    a, b = np.asarray(correct_a, dtype=float), np.asarray(correct_b, dtype=float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"paired correctness needs two (seeds, images) arrays of one shape; got {a.shape}, {b.shape}")
    return two_source(100.0 * (a - b), confidence)


def sign_flip(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact two-sided p value that a and b are equally accurate, pooled over seeds on the shared images.

    Per image i, k_i = (seeds a gets it right) - (seeds b gets it right). Under the null each image's
    k_i is as likely to be -k_i (a and b exchangeable on that image), independently across images; the
    p value is P(|sum of +-k_i| >= |sum k_i|), computed exactly by convolution. One seed: McNemar's
    exact test. It covers the sampling of the images given these seeds; the two-source interval also
    covers the seeds.
    """
    a, b = np.asarray(correct_a, dtype=np.int64), np.asarray(correct_b, dtype=np.int64)
    if a.shape != b.shape:
        raise ValueError(f"paired correctness needs one shape; got {a.shape} and {b.shape}")
    k = np.abs(np.atleast_2d(a - b).sum(axis=0))
    observed = abs(int(np.atleast_2d(a - b).sum()))
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
