"""The misclassified test digits: which ones each model gets wrong, confusion matrices, per-digit error rates; and
the one check before any prediction is scored: that it was made on the test set whose labels it is scored against.

A record names its test set by a digest of the test labels (``dataset.test_labels``: SHA-256 of the labels as
uint8 bytes in test-set order); records written before it had one are MNIST's (``MNIST_TEST_LABELS``). Every
scorer in the lab (``correct``, so Table 1, the comparisons and the figures here) refuses labels with another
digest: a second dataset cannot be scored against MNIST's labels by mistake.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..datasets import MNIST_TEST_LABELS, labels_digest
from ..records import PREDICTIONS, Record
from . import stats
from .cells import model_order, run_name

_COUNTS = {2: "both models", 3: "all three", 4: "all four", 5: "all five", 6: "all six"}


class WrongTestSet(ValueError):
    """Predictions were made on another test set than the labels they would be scored against."""


@dataclass
class Misclassified:
    """The test digits each model's runs get wrong, at one kind of prediction (val_selected or final)."""

    which: str
    runs: dict[str, int] = field(default_factory=dict)  # model -> runs with predictions
    confusion: dict[str, np.ndarray] = field(default_factory=dict)  # model -> (10, 10) counts summed over its runs
    rates: pd.DataFrame = field(default_factory=pd.DataFrame)  # per digit (rows) and model: mean error (%)
    wrong: dict[str, np.ndarray] = field(default_factory=dict)  # model or ``every`` -> wrong in every run
    predicted: dict[str, np.ndarray] = field(default_factory=dict)  # model or ``every`` -> most common prediction
    every: str | None = None  # the key of the digits every model's every run gets wrong ("all three"); None: < 2


def find(records: Iterable[Record], labels: np.ndarray, which: str = "val_selected") -> Misclassified:
    """The misclassified test digits of the runs that kept predictions, per model (whichever models they are), and
    those that every run of every model gets wrong; empty when none kept predictions."""
    labels = np.asarray(labels).astype(np.int64)
    by_model: dict[str, list[np.ndarray]] = {}
    for record in records:
        if correct(record, which, labels) is None:
            continue
        by_model.setdefault(record.config["model"], []).append(record.predicted(which).astype(np.int64))
    result = Misclassified(which)
    rates = {}
    for model in sorted(by_model, key=model_order):
        runs = np.stack(by_model[model])  # (runs, test images)
        result.runs[model] = len(runs)
        result.confusion[model] = sum(stats.confusion_matrix(labels, p) for p in runs)
        rates[model] = np.mean([stats.class_error_rates(stats.confusion_matrix(labels, p)) for p in runs], axis=0)
        result.wrong[model] = np.all(runs != labels, axis=0)
        result.predicted[model] = _most_common(runs)
    models = list(result.runs)
    if len(models) >= 2:
        result.every = _COUNTS.get(len(models), f"all {len(models)} models")
        result.wrong[result.every] = np.logical_and.reduce([result.wrong[m] for m in models])
        result.predicted[result.every] = _most_common(np.concatenate([np.stack(by_model[m]) for m in models]))
    result.rates = pd.DataFrame(rates, index=pd.RangeIndex(stats.CLASSES, name="digit"))
    return result


def test_set(data_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The official 10,000 test images (uint8, (N, 28, 28)) and labels, in test-set order, as numpy arrays."""
    from ..data import load_raw  # torch and torchvision: only when the digits are looked at

    images, labels = load_raw(data_dir or None, train=False)
    return np.asarray(images), np.asarray(labels)


def test_set_of(record: Record) -> str:
    """The digest of the test labels ``record``'s predictions were made on: its ``dataset.test_labels``, or MNIST's
    for a record that names no dataset (every record written before records named one)."""
    dataset = getattr(record, "dataset", None) or {}
    return dataset.get("test_labels") or MNIST_TEST_LABELS


def check_test_set(records: Iterable[Record], labels: np.ndarray) -> None:
    """Refuse (``WrongTestSet``) when some record's predictions were made on another test set than ``labels``."""
    given = labels_digest(labels)
    other = [r for r in records if test_set_of(r) != given]
    if other:
        names = ", ".join(run_name(r) for r in other[:3]) + (f" and {len(other) - 3} more" if len(other) > 3 else "")
        dataset = (getattr(other[0], "dataset", None) or {}).get("name") or "MNIST"
        shown = "MNIST's" if given == MNIST_TEST_LABELS else "other"
        raise WrongTestSet(
            f"{names}: predictions made on the test set of {dataset} (labels {test_set_of(other[0])[:12]}…), not on "
            f"the labels given ({shown}, {given[:12]}…); scoring them would count wrong answers as right and right "
            "ones as wrong. Pass the test labels of the dataset these runs were trained on.")


def correct(record: Record, which: str, labels: np.ndarray) -> np.ndarray | None:
    """Whether ``record`` got each test image right at ``which`` (bool, test-set order); None when it kept no
    predictions there. Refuses labels of another test set than the record's (``check_test_set``)."""
    predicted = record.predicted(which)
    if predicted is None:
        return None
    check_test_set([record], labels)
    if predicted.shape != np.shape(labels):
        raise ValueError(f"{run_name(record)}: {len(predicted)} predictions for {len(labels)} test labels; "
                         "pass the official test labels (misclassified.test_set)")
    return predicted == np.asarray(labels)


def kept_predictions(records: Iterable[Record], which: str | None = None) -> bool:
    """Whether any record kept its per-example test predictions at ``which`` (val_selected or final; None:
    at either). Version-1 records kept none; runs without validation keep only final ones."""
    kinds = PREDICTIONS if which is None else (which,)
    return any(r.predicted(kind) is not None for r in records for kind in kinds)


def _most_common(runs: np.ndarray) -> np.ndarray:
    """Per test image, the label most runs predict (the smallest among ties)."""
    counts = np.zeros((runs.shape[1], stats.CLASSES), dtype=np.int64)
    for predicted in runs:
        counts[np.arange(runs.shape[1]), predicted] += 1
    return counts.argmax(axis=1)
