"""How every published page writes a number: one function per kind, so the index and the notebooks agree.

Accuracies and their differences in percent with two decimals, differences always signed ("+0.13",
"-0.05"), a spread as "98.41 ± 0.07" only when there is one, durations in s / min / h, and an en dash
for a value that does not exist. Plain ``str`` in, plain ``str`` out: no HTML, no pandas.
"""

from __future__ import annotations

import math
from typing import Any

MISSING = "–"  # en dash: no value (a run without validation, a failed run)


def number(value: Any, digits: int = 2, *, signed: bool = False) -> str:
    """``value`` with ``digits`` decimals (sign always shown when ``signed``); an en dash when missing."""
    if _missing(value):
        return MISSING
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def accuracy(value: Any) -> str:
    """An accuracy in percent: "98.73"."""
    return number(value, 2)


def difference(value: Any) -> str:
    """A difference of accuracies in points, always signed: "+0.13", "-0.05"."""
    return number(value, 2, signed=True)


def mean_sd(mean: Any, sd: Any = None, digits: int = 2) -> str:
    """ "98.41 ± 0.07" when there is a spread (several seeds), else just the mean."""
    text = number(mean, digits)
    return text if _missing(sd) or text == MISSING else f"{text} ± {number(sd, digits)}"


def interval(low: Any, high: Any, digits: int = 2) -> str:
    """A confidence interval: "[98.30, 98.52]"; empty when there is none (one seed)."""
    return "" if _missing(low) or _missing(high) else f"[{number(low, digits)}, {number(high, digits)}]"


def duration(seconds: Any) -> str:
    """ "4.3 s", "48 s", "8 min 2 s", "2 h 5 min"; an en dash when missing."""
    if _missing(seconds):
        return MISSING
    if seconds < 10:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """ "1 thread", "2 threads"."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def commit_text(code: dict) -> str:
    """ "commit 6158bf1", "commit 6158bf1, modified", or what is not known, for a record's ``code``."""
    commit = code.get("git_commit")
    if not commit:
        return "commit not recorded"
    return f"commit {commit[:7]}" + (", modified" if code.get("git_dirty") else "")
