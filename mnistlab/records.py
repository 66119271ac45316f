"""The record of one run as JSON: config, per-epoch history, summary, test predictions and provenance.

Format ``mnistlab.record/3``. Version-2 records (no code or hardware in their provenance, no training set
measured in eval mode) and version-1 records (no predictions, provenance in ``environment``) still
load, with what they lack as None.

- ``history``: one row per epoch (``HISTORY_KEYS``). Accuracies in percent, losses mean cross-entropy
  per image. JSON ``null`` is a loss that was NaN or inf (NaN in memory) or, in a run without
  validation (``config["validation"]`` false), a validation field that was not measured (None in memory).
- ``status``: ``complete`` (exactly ``config["epochs"]`` rows) or ``diverged``: training stopped at
  ``diverged_epoch`` for ``diverged_reason`` (the rule is ``divergence``).
- ``predictions``: the predicted test labels, one digit per test image in test-set order, at the
  val-selected epoch (``val_selected``; absent without validation) and at the last epoch (``final``).
- ``train_eval``: the whole training set measured in eval mode after the last epoch (``epoch``, ``loss``,
  ``acc``); null for a run that diverged before its last epoch. The history's ``train_acc`` is the running
  count of the training pass, taken while the weights change.
- ``provenance``: ``segments``, one per process that trained epochs, in order: ``first_epoch``,
  ``last_epoch``, ``started`` (UTC), ``device``, ``device_name``, ``threads`` (torch's intra-op threads
  in that process), ``fused_adam``, ``torch``, ``python``, ``mnistlab``, ``hardware`` (``origin.hardware``:
  the CPU's model, family and kernel set, or the GPU's name and capability), ``code`` (the fingerprint of
  the training code, ``origin.code``), ``git_commit`` and ``git_dirty``; null where unknown (older
  records). ``resumed_after_epoch`` and ``resumed_from`` (the checkpoint, relative to
  the project root) are set when the process that wrote the record started from a checkpoint: it
  trained only the epochs after that one, perhaps none.
- ``environment``: the process that wrote the record (a segment's keys without epochs and time). When
  the run was resumed this is not where it trained: the segments say that.
- ``code``: the training code of the process that wrote the record: version, fingerprint, each
  fingerprinted file's SHA-256, git commit and dirty flag (``origin.code``); a resumed run's segments
  all have this fingerprint (a checkpoint of other code is refused).
- ``dataset``: what it trained and was tested on: ``name`` (``Config.dataset``) and ``test_labels``, the SHA-256
  of the test labels it was scored against (``datasets.labels_digest``); predictions are only ever scored against
  those labels. Absent in records written before it, all of which are MNIST's.
- ``summary``: derived on save, for readers without this package (see ``Record.summary``).
"""

from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write_text

FORMAT = "mnistlab.record/3"
FORMATS = ("mnistlab.record/1", "mnistlab.record/2", FORMAT)  # what ``load`` reads
HISTORY_KEYS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "seconds")
STATUSES = ("complete", "diverged")
PREDICTIONS = ("val_selected", "final")
SEGMENT_KEYS_V2 = ("first_epoch", "last_epoch", "started", "device", "device_name", "threads", "fused_adam", "torch",
                   "python", "mnistlab")
SEGMENT_KEYS = (*SEGMENT_KEYS_V2, "hardware", "code", "git_commit", "git_dirty")
# Divergence (see ``divergence``): ln 10 is the cross-entropy of a uniform guess over the ten digits.
CHANCE_LOSS = math.log(10)
MAX_TRAIN_LOSS = 1e3 * CHANCE_LOSS  # a mean training loss above this has blown up, finite or not
CHANCE_ACC = 20.0  # training and test accuracy (%) both below this after an epoch: at chance (10 %)


class RecordError(ValueError):
    """A record file is missing, not JSON, or not shaped like a record."""


@dataclass
class Record:
    """What one run produced. Accuracies are in percent, losses are mean cross-entropy per image."""

    config: dict[str, Any]
    environment: dict[str, Any] = field(default_factory=dict)  # the process that wrote the record
    history: list[dict[str, Any]] = field(default_factory=list)
    status: str = "complete"  # or "diverged"
    diverged_epoch: int | None = None  # the epoch at which ``divergence`` stopped training
    diverged_reason: str | None = None
    predictions: dict[str, str] = field(default_factory=dict)  # "val_selected", "final": one digit per test image
    segments: list[dict[str, Any]] = field(default_factory=list)  # one per process that trained epochs
    resumed_after_epoch: int | None = None  # this record's process started from a checkpoint of this many epochs
    resumed_from: str | None = None  # that checkpoint, relative to the project root
    train_eval: dict[str, float] | None = None  # the training set in eval mode after the last epoch
    code: dict[str, Any] = field(default_factory=dict)  # the writing process's training code (origin.code)
    dataset: dict[str, str] = field(default_factory=dict)  # name and test_labels digest; {} in older records (MNIST)

    @property
    def summary(self) -> dict[str, Any]:
        """The HW5 report's metric (best test accuracy, first epoch among ties) and the honest ones beside it.

        Val-selected: the epoch ``val_selected`` picks, None without validation. ``seconds``: the sum of
        the epoch times; ``median_epoch_seconds``: the figure comparable across machines;
        ``wall_seconds``: the same sum, given only when one process trained every epoch.
        """
        tested = [h for h in self.history if _finite(h["test_acc"])]
        best = max(tested, key=lambda h: h["test_acc"]) if tested else None  # max keeps the first among ties
        selected = val_selected(self.history)
        seconds = [h["seconds"] for h in self.history if _finite(h["seconds"])]
        whole = len(self.segments) == 1 and self.segments[0]["first_epoch"] == 1 \
            and self.segments[0]["last_epoch"] == len(self.history)
        return {
            "best_test_acc": best and best["test_acc"],
            "best_test_epoch": best and best["epoch"],
            "val_selected_test_acc": selected and selected["test_acc"],
            "val_selected_epoch": selected and selected["epoch"],
            "final_test_acc": _json_number(self.history[-1]["test_acc"]) if self.history else None,
            "epochs_run": len(self.history),
            "seconds": float(sum(seconds)),
            "median_epoch_seconds": statistics.median(seconds) if seconds else None,
            "wall_seconds": float(sum(seconds)) if whole else None,
            "train_eval_acc": self.train_eval and self.train_eval["acc"],
            "resumed_after_epoch": self.resumed_after_epoch,
            "status": self.status,
        }

    @property
    def seconds(self) -> float:
        return float(sum(h["seconds"] for h in self.history))

    def predicted(self, which: str) -> np.ndarray | None:
        """The predicted test labels (uint8, test-set order) at ``val_selected`` or ``final``; None when not kept."""
        if which not in PREDICTIONS:
            raise ValueError(f"which must be one of {', '.join(PREDICTIONS)}; got {which!r}")
        text = self.predictions.get(which)
        return None if text is None else decode_labels(text)

    def trained(self, epoch: int, environment: dict[str, Any], started: str) -> None:
        """Note that this process trained ``epoch``: extend its segment, or open one (``started``: UTC ISO time)."""
        ours = self.segments and self.segments[-1]["first_epoch"] > (self.resumed_after_epoch or 0)
        if ours:
            self.segments[-1]["last_epoch"] = epoch
        else:
            self.segments.append({"first_epoch": epoch, "last_epoch": epoch, "started": started, **environment})

    def checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint keeps of this record to resume it (``restore`` reads it back)."""
        return {"history": self.history, "predictions": self.predictions, "segments": self.segments,
                "status": self.status, "diverged_epoch": self.diverged_epoch, "diverged_reason": self.diverged_reason,
                "train_eval": self.train_eval}

    def restore(self, state: dict[str, Any]) -> None:
        self.history[:] = state["history"]
        self.predictions.update(state["predictions"])
        self.segments[:] = state["segments"]
        self.status, self.diverged_epoch = state["status"], state["diverged_epoch"]
        self.diverged_reason, self.train_eval = state["diverged_reason"], state["train_eval"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "config": self.config,
            "status": self.status,
            "diverged_epoch": self.diverged_epoch,
            "diverged_reason": self.diverged_reason,
            "summary": self.summary,
            "provenance": {"segments": self.segments, "resumed_after_epoch": self.resumed_after_epoch,
                           "resumed_from": self.resumed_from},
            "environment": self.environment,
            "code": self.code,
            "dataset": self.dataset,
            "train_eval": self.train_eval,
            "predictions": self.predictions,
            "history": [{k: _json_number(h[k]) for k in HISTORY_KEYS} for h in self.history],
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON atomically (temporary file in the same folder, then rename)."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")

    @classmethod
    def from_dict(cls, data: Any, source: str = "record") -> Record:
        if not isinstance(data, dict):
            raise RecordError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") not in FORMATS:
            raise RecordError(f"{source}: format is {data.get('format')!r}, expected one of {', '.join(FORMATS)}")
        for key, kind in (("config", dict), ("environment", dict), ("history", list), ("status", str)):
            if not isinstance(data.get(key), kind):
                raise RecordError(f"{source}: {key!r} must be a JSON {kind.__name__}")
        if data["status"] not in STATUSES:
            raise RecordError(f"{source}: status must be one of {', '.join(STATUSES)}, got {data['status']!r}")
        measured_val = data["config"].get("validation", True) is not False
        history = [_history_row(row, i, measured_val, source) for i, row in enumerate(data["history"])]
        epochs = data["config"].get("epochs")
        if data["status"] == "complete" and len(history) != epochs:
            raise RecordError(f"{source}: status is complete but history has {len(history)} epochs, "
                              f"config epochs is {epochs!r}; a complete run trains every epoch")
        if data["format"] == "mnistlab.record/1":
            return _from_v1(data, history)
        version = 3 if data["format"] == FORMAT else 2
        train_eval = data.get("train_eval")
        measured = isinstance(train_eval, dict) and {"epoch", "loss", "acc"} <= set(train_eval)
        if train_eval is not None and not measured:
            raise RecordError(f"{source}: 'train_eval' must be null or a JSON object with epoch, loss and acc")
        dataset = data.get("dataset") or {}
        if not isinstance(dataset, dict) or not all(isinstance(v, str) for v in dataset.values()):
            raise RecordError(f"{source}: 'dataset' must be a JSON object of strings (name, test_labels)")
        return cls(config=data["config"], environment=data["environment"], history=history,
                   status=data["status"], diverged_epoch=data.get("diverged_epoch"),
                   diverged_reason=data.get("diverged_reason"),
                   predictions=_predictions(data.get("predictions"), source), train_eval=train_eval,
                   code=data.get("code") or {}, dataset=dataset,
                   **_provenance(data.get("provenance"), source, version))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Record:
        """Read a record written by ``save``; malformed files raise RecordError naming the file."""
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise RecordError(f"{path}: no such record file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RecordError(f"{path}: not valid JSON ({error})") from None
        return cls.from_dict(data, source=str(path))


def epoch_row(epoch: int, lr: float, seconds: float, train: tuple[float, float, int],
              val: tuple[float, float, int] | None, test: tuple[float, float, int]) -> dict[str, Any]:
    """One history row; each split is (summed loss, correct count, images), ``val`` None when not measured."""
    def metrics(prefix: str, sums: tuple[float, float, int] | None) -> dict[str, float | None]:
        if sums is None:
            return {f"{prefix}_loss": None, f"{prefix}_acc": None}
        loss_sum, correct, n = sums
        return {f"{prefix}_loss": loss_sum / n, f"{prefix}_acc": 100.0 * correct / n}

    return {"epoch": epoch, "lr": lr, **metrics("train", train), **metrics("val", val), **metrics("test", test),
            "seconds": seconds}


def val_selected(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The val-selected epoch's row: best validation accuracy; among ties the lowest validation loss, then
    the earliest. None when no epoch was validated. Training keeps its predictions by this same rule."""
    rows = [h for h in history if _finite(h["val_acc"])]
    if not rows:
        return None
    return min(rows, key=lambda h: (-h["val_acc"], h["val_loss"] if _finite(h["val_loss"]) else math.inf,
                                    h["epoch"]))


def predictions_to_keep(history: list[dict[str, Any]], last: bool) -> list[str]:
    """Which predictions the newest epoch of ``history`` provides: val_selected when it is now the
    val-selected epoch, final when it is the last epoch trained (``last``)."""
    keep = ["val_selected"] if history and val_selected(history) is history[-1] else []
    return keep + (["final"] if last else [])


def divergence(row: dict[str, Any]) -> str | None:
    """Why training has diverged at this history row, or None.

    A loss that is NaN or inf; a mean training loss above ``MAX_TRAIN_LOSS`` (1000 times that of a
    uniform guess: lr 1e6 gives 1e14 and stays finite); or, from the first epoch on, both the training
    pass's accuracy and the test accuracy below ``CHANCE_ACC`` % (chance is 10 %; either alone can be low
    early in a tiny run: the pass counts its first, untrained batches, and eval mode uses batch norm's
    young running statistics). Unmeasured (None) validation is not a divergence.
    """
    for key in ("train_loss", "val_loss", "test_loss"):
        if row[key] is not None and not math.isfinite(row[key]):
            return f"{key} is {row[key]} at epoch {row['epoch']}"
    if row["train_loss"] > MAX_TRAIN_LOSS:
        return (f"train_loss {row['train_loss']:.4g} at epoch {row['epoch']} is above {MAX_TRAIN_LOSS:.4g} "
                "(1000 x ln 10, the loss of a uniform guess)")
    if row["train_acc"] < CHANCE_ACC and row["test_acc"] < CHANCE_ACC:
        return (f"train_acc {row['train_acc']:.2f} % and test_acc {row['test_acc']:.2f} % at epoch {row['epoch']} "
                f"are below {CHANCE_ACC:g} % (chance is 10 %)")
    return None


def encode_labels(labels: Any) -> str:
    """Digit labels 0-9 as a string of digits (compact JSON: one byte per test image)."""
    labels = np.asarray(labels, dtype=np.uint8)
    if labels.size and labels.max() > 9:
        raise ValueError(f"labels must be digits 0-9; got {int(labels.max())}")
    return (labels + ord("0")).tobytes().decode("ascii")


def decode_labels(text: str) -> np.ndarray:
    """The inverse of ``encode_labels``: a uint8 array."""
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8) - ord("0")


def unknown_segment(first_epoch: int, last_epoch: int) -> dict[str, Any]:
    """Epochs trained by a process that left no trace of itself (older records and checkpoints)."""
    return {key: None for key in SEGMENT_KEYS} | {"first_epoch": first_epoch, "last_epoch": last_epoch}


def _history_row(row: Any, i: int, measured_val: bool, source: str) -> dict[str, Any]:
    if not isinstance(row, dict) or set(row) != set(HISTORY_KEYS):
        raise RecordError(f"{source}: history[{i}] must have exactly the keys {', '.join(HISTORY_KEYS)}")
    if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in row.values()):
        raise RecordError(f"{source}: history[{i}] values must be numbers (or null for NaN/inf)")
    if not measured_val and (row["val_loss"] is not None or row["val_acc"] is not None):
        raise RecordError(f"{source}: history[{i}] has validation values but config validation is false")
    unmeasured = () if measured_val else ("val_loss", "val_acc")
    return {k: (None if k in unmeasured else math.nan) if v is None else v for k, v in row.items()}


def _predictions(value: Any, source: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not set(value) <= set(PREDICTIONS):
        raise RecordError(f"{source}: 'predictions' must be a JSON object with keys among {', '.join(PREDICTIONS)}")
    for key, text in value.items():
        if not isinstance(text, str) or not text.isascii() or not text.isdigit():
            raise RecordError(f"{source}: predictions[{key!r}] must be a string of digits, one per test image")
    if len({len(text) for text in value.values()}) > 1:
        raise RecordError(f"{source}: predictions have different lengths; each holds one digit per test image")
    return dict(value)


def _provenance(value: Any, source: str, version: int) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("segments"), list):
        raise RecordError(f"{source}: 'provenance' must be a JSON object with a 'segments' list")
    required = SEGMENT_KEYS if version == 3 else SEGMENT_KEYS_V2
    for i, segment in enumerate(value["segments"]):
        if not isinstance(segment, dict) or not set(required) <= set(segment):
            raise RecordError(f"{source}: provenance segments[{i}] must have the keys {', '.join(required)}")
    segments = [dict.fromkeys(SEGMENT_KEYS) | segment for segment in value["segments"]]  # version 2: new keys None
    return {"segments": segments, "resumed_after_epoch": value.get("resumed_after_epoch"),
            "resumed_from": value.get("resumed_from")}


def _from_v1(data: dict[str, Any], history: list[dict[str, Any]]) -> Record:
    """A version-1 record: its environment is the writing process's, and it trained only the epochs after
    ``resumed_after_epoch`` (when set); who trained the earlier ones, and from which file, is unknown."""
    environment = {k: v for k, v in data["environment"].items() if k not in ("resumed_after_epoch", "cpu_threads")}
    if "cpu_threads" in data["environment"]:
        environment["threads"] = data["environment"]["cpu_threads"]
    resumed = data["environment"].get("resumed_after_epoch")
    here = {key: environment.get(key) for key in SEGMENT_KEYS[3:]}
    segments = [unknown_segment(1, resumed)] if resumed else []
    if len(history) > (resumed or 0):
        segments.append({**unknown_segment(0, 0), **here, "first_epoch": (resumed or 0) + 1,
                         "last_epoch": len(history)})
    return Record(config=data["config"], environment=environment, history=history, status=data["status"],
                  diverged_epoch=data.get("diverged_epoch"), segments=segments, resumed_after_epoch=resumed,
                  diverged_reason="a loss was NaN or inf" if data["status"] == "diverged" else None)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _json_number(value: float | None) -> float | None:
    """JSON has no NaN or inf: a diverged loss is written as null (as is an unmeasured one)."""
    return value if _finite(value) else None
