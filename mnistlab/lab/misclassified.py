"""The misclassified test digits: which ones each model gets wrong, confusion matrices, per-digit error rates."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..config import MODELS
from ..records import PREDICTIONS, Record
from . import stats
from .cells import run_name

ALL_THREE = "all three"


@dataclass
class Misclassified:
    """The test digits each model's runs get wrong, at one kind of prediction (val_selected or final)."""

    which: str
    runs: dict[str, int] = field(default_factory=dict)  # model -> runs with predictions
    confusion: dict[str, np.ndarray] = field(default_factory=dict)  # model -> (10, 10) counts summed over its runs
    rates: pd.DataFrame = field(default_factory=pd.DataFrame)  # per digit (rows) and model: mean error (%)
    wrong: dict[str, np.ndarray] = field(default_factory=dict)  # model or ALL_THREE -> wrong in every run
    predicted: dict[str, np.ndarray] = field(default_factory=dict)  # model or ALL_THREE -> most common prediction


def find(records: Iterable[Record], labels: np.ndarray, which: str = "val_selected") -> Misclassified:
    """The misclassified test digits of the runs that kept predictions, per model; empty when none did."""
    labels = np.asarray(labels).astype(np.int64)
    by_model: dict[str, list[np.ndarray]] = {}
    for record in records:
        predicted = record.predicted(which)
        if predicted is None:
            continue
        if predicted.shape != labels.shape:
            raise ValueError(f"{run_name(record)}: {len(predicted)} predictions for {len(labels)} test labels; "
                             "pass the official test labels (misclassified.test_set)")
        by_model.setdefault(record.config["model"], []).append(predicted.astype(np.int64))
    result = Misclassified(which)
    rates = {}
    for model in sorted(by_model, key=lambda m: list(MODELS).index(m) if m in MODELS else len(MODELS)):
        runs = np.stack(by_model[model])  # (runs, test images)
        result.runs[model] = len(runs)
        result.confusion[model] = sum(stats.confusion_matrix(labels, p) for p in runs)
        rates[model] = np.mean([stats.class_error_rates(stats.confusion_matrix(labels, p)) for p in runs], axis=0)
        result.wrong[model] = np.all(runs != labels, axis=0)
        result.predicted[model] = _most_common(runs)
    if result.wrong and all(m in result.wrong for m in MODELS):
        result.wrong[ALL_THREE] = np.logical_and.reduce([result.wrong[m] for m in MODELS])
        result.predicted[ALL_THREE] = _most_common(np.concatenate([np.stack(by_model[m]) for m in MODELS]))
    result.rates = pd.DataFrame(rates, index=pd.RangeIndex(stats.CLASSES, name="digit"))
    return result


def test_set(data_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The official 10,000 test images (uint8, (N, 28, 28)) and labels, in test-set order, as numpy arrays."""
    from ..data import load_raw  # torch and torchvision: only when the digits are looked at

    images, labels = load_raw(data_dir or None, train=False)
    return np.asarray(images), np.asarray(labels)


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
