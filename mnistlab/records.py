"""The record of one run: its config, environment, per-epoch history and summary, as JSON."""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "mnistlab.record/1"
HISTORY_KEYS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "seconds")
STATUSES = ("complete", "diverged")
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # reading the umask means setting it; put it straight back


class RecordError(ValueError):
    """A record file is missing, not JSON, or not shaped like a record."""


@dataclass
class Record:
    """What one run produced. Accuracies are in percent, losses are mean cross-entropy per image."""

    config: dict[str, Any]
    environment: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    status: str = "complete"  # or "diverged"
    diverged_epoch: int | None = None  # first epoch whose loss was NaN or inf

    @property
    def summary(self) -> dict[str, Any]:
        """The seed's metric (best test accuracy) and the honest ones beside it."""
        finite = [h for h in self.history if _finite(h["test_acc"]) and _finite(h["val_acc"])]
        if not finite:
            return {"best_test_acc": None, "best_test_epoch": None, "val_selected_test_acc": None,
                    "val_selected_epoch": None, "final_test_acc": None, "epochs_run": len(self.history),
                    "seconds": self.seconds, "status": self.status}
        best = max(finite, key=lambda h: h["test_acc"])  # first epoch among ties
        selected = max(finite, key=lambda h: h["val_acc"])
        return {
            "best_test_acc": best["test_acc"],
            "best_test_epoch": best["epoch"],
            "val_selected_test_acc": selected["test_acc"],
            "val_selected_epoch": selected["epoch"],
            "final_test_acc": self.history[-1]["test_acc"],
            "epochs_run": len(self.history),
            "seconds": self.seconds,
            "status": self.status,
        }

    @property
    def seconds(self) -> float:
        return float(sum(h["seconds"] for h in self.history))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "config": self.config,
            "environment": self.environment,
            "status": self.status,
            "diverged_epoch": self.diverged_epoch,
            "summary": self.summary,
            "history": [{k: _json_number(h[k]) for k in HISTORY_KEYS} for h in self.history],
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON atomically (temporary file in the same folder, then rename)."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")

    @classmethod
    def from_dict(cls, data: Any, source: str = "record") -> Record:
        if not isinstance(data, dict):
            raise RecordError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise RecordError(f"{source}: format is {data.get('format')!r}, expected {FORMAT!r}")
        for key, kind in (("config", dict), ("environment", dict), ("history", list), ("status", str)):
            if not isinstance(data.get(key), kind):
                raise RecordError(f"{source}: {key!r} must be a JSON {kind.__name__}")
        if data["status"] not in STATUSES:
            raise RecordError(f"{source}: status must be one of {', '.join(STATUSES)}, got {data['status']!r}")
        history = []
        for i, row in enumerate(data["history"]):
            if not isinstance(row, dict) or set(row) != set(HISTORY_KEYS):
                raise RecordError(f"{source}: history[{i}] must have exactly the keys {', '.join(HISTORY_KEYS)}")
            if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in row.values()):
                raise RecordError(f"{source}: history[{i}] values must be numbers (or null for NaN/inf)")
            history.append({k: math.nan if v is None else v for k, v in row.items()})
        return cls(config=data["config"], environment=data["environment"], history=history,
                   status=data["status"], diverged_epoch=data.get("diverged_epoch"))

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


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` so that readers see either the old file or the whole new one."""
    return atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; published files must be readable by a web server
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _json_number(value: float) -> float | None:
    """JSON has no NaN or inf: a diverged loss is written as null."""
    return value if _finite(value) else None
