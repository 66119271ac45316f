"""Statistics over seeds and test images: t intervals, paired differences, exact McNemar tests, verdicts.

Pure functions of numbers and arrays (numpy and scipy); what they are applied to is chosen in
``claims`` and ``plots``.

The verdict rule, for a claim "a is larger than b" measured as paired differences a - b over seeds:

- two seeds or more: ``supported`` when the 95 % t interval of the mean difference lies above
  0, ``contradicted`` when it lies below 0, ``within noise`` when it contains 0;
- one seed: ``untested``: a difference between two single runs cannot be told from seed noise.

A claim made of several comparisons is ``contradicted`` when any part is, else ``untested`` when
any part is, else ``supported`` when every part is, else ``within noise``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95
SUPPORTED, CONTRADICTED, WITHIN_NOISE, UNTESTED = "supported", "contradicted", "within noise", "untested"
VERDICTS = (SUPPORTED, CONTRADICTED, WITHIN_NOISE, UNTESTED)
CLASSES = 10


@dataclass(frozen=True)
class Estimate:
    """A mean over ``n`` values with its sample standard deviation and 95 % t interval (NaN when n < 2)."""

    n: int
    mean: float
    sd: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


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
    half = float(scipy_stats.t.ppf((1 + confidence) / 2, df=n - 1)) * sd / math.sqrt(n)
    return Estimate(n, mean, sd, mean - half, mean + half)


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """The mean of a[i] - b[i] (pairs matched by seed) with its t interval: the paired t test's interval."""
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths; got {len(a)} and {len(b)}")
    return describe(np.asarray(a, dtype=float) - np.asarray(b, dtype=float), confidence)


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


def verdict(difference: Estimate) -> str:
    """The module's rule for "a > b" from the paired differences a - b over seeds."""
    if difference.n < 2:
        return UNTESTED
    if difference.low > 0:
        return SUPPORTED
    if difference.high < 0:
        return CONTRADICTED
    return WITHIN_NOISE


def combine(verdicts: Iterable[str]) -> str:
    """One verdict for a claim made of several comparisons (rule in the module docstring)."""
    verdicts = list(verdicts)
    unknown = set(verdicts) - set(VERDICTS)
    if unknown:
        raise ValueError(f"unknown verdicts {sorted(unknown)}; valid: {', '.join(VERDICTS)}")
    if not verdicts:
        return UNTESTED
    for first in (CONTRADICTED, UNTESTED):
        if first in verdicts:
            return first
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
