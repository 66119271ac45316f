"""How a run was produced, in the words the site prints: trained in its notebook or resumed, where, with how many
threads.

Read from a ``Record`` (``segments``, ``resumed_after_epoch``; format 3 adds each process's hardware and
training code; older records arrive with their provenance reconstructed, unknown parts as None). Shared by the index
and the run pages.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import pandas as pd

from ..origin import describe
from ..records import Record
from . import cells
from .formatting import count, duration

UNKNOWN = "not recorded"


@dataclass(frozen=True)
class Provenance:
    """What the site says about how one run's epochs were trained."""

    how: str  # "trained in its notebook" or "resumed after epoch N"
    resumed_after: int | None  # epochs trained before the process that wrote the record
    resumed_from: str | None  # the checkpoint it resumed from, relative to the project root
    where: str  # "device: CPU or GPU name" per training process, "; "-joined
    threads: str  # torch's intra-op threads per training process
    median_epoch_seconds: float | None
    wall_seconds: float | None  # None unless one process trained every epoch


def provenance(record: Record) -> Provenance:
    """The provenance of ``record`` in words."""
    summary = record.summary
    resumed = getattr(record, "resumed_after_epoch", None) or None
    segments = getattr(record, "segments", None) or []
    return Provenance(
        how=f"resumed after epoch {resumed}" if resumed else "trained in its notebook",
        resumed_after=resumed,
        resumed_from=getattr(record, "resumed_from", None),
        where=_joined(_place(s) for s in segments),
        threads=_joined(count(s["threads"], "thread") if s.get("threads") else UNKNOWN for s in segments),
        median_epoch_seconds=summary.get("median_epoch_seconds"),
        wall_seconds=None if resumed else summary.get("wall_seconds"),
    )


def segments_text(record: Record) -> list[str]:
    """One line per training process: "epochs 1–100: cpu: AMD EPYC, 1 thread, started 2026-11-20T10:00Z"."""
    lines = []
    for s in getattr(record, "segments", None) or []:
        epochs = _epochs(s["first_epoch"], s["last_epoch"])
        started = f", started {s['started']}" if s.get("started") else ""
        lines.append(f"{epochs}: {_place(s)}, {_threads(s)}{started}{_code(s)}")
    return lines


def resumed_notes(records: Iterable[Record]) -> list[str]:
    """What a run page says above its training cell: one sentence per record whose training happened
    before the notebook ran (several when the notebook trained several seeds); none when all trained here."""
    records = list(records)
    notes = []
    for record in records:
        n = getattr(record, "resumed_after_epoch", None)
        if not n:
            continue
        total = len(record.history)
        source = f" from the checkpoint {record.resumed_from}" if getattr(record, "resumed_from", None) else ""
        trained_here = "no epoch" if n >= total else _epochs(n + 1, total)
        seed = f"Seed {record.config.get('seed')}: " if len(records) > 1 else ""
        earlier = "; ".join(segments_text(record)) or UNKNOWN
        median = record.summary.get("median_epoch_seconds")
        text = (f"this notebook resumed the run after epoch {n}{source}: the epochs before were trained "
                f"earlier, in another process, and this notebook trained {trained_here}; its progress bar and "
                f"timings show only that. Training: {earlier}. Median epoch {duration(median)}.")
        notes.append(seed + text if seed else text[0].upper() + text[1:])
    return notes


def summary_line(records: list[Record]) -> str:
    """A few words over every run with a record: how many were trained in its notebook or resumed, where, how fast."""
    if not records:
        return "No run has a record."
    views = [provenance(r) for r in records]
    resumed = sum(v.resumed_after is not None for v in views)
    places = sorted({p for v in views for p in v.where.split("; ") if p != f"device {UNKNOWN}"})
    threads = sorted({t for v in views for t in v.threads.split("; ") if t != UNKNOWN})
    medians = [v.median_epoch_seconds for v in views if v.median_epoch_seconds is not None]
    where = f"Trained on {', '.join(places)}" if places else f"Device {UNKNOWN}"
    where += f", with {' or '.join(threads)}." if threads else f"; threads {UNKNOWN}."
    if len(places) < len({p for v in views for p in v.where.split("; ")}):
        where += f" Some runs' training processes were {UNKNOWN} (records from before version 2 do not say)."
    speed = "" if not medians else f" Median epoch {duration(min(medians))}." if len(set(medians)) == 1 else \
        f" Median epoch {duration(min(medians))} to {duration(max(medians))}."
    return (f"{count(len(records), 'run')}: {len(records) - resumed} trained in their notebook, {resumed} resumed "
            f"from a checkpoint trained earlier. {where}{speed}")


def machines(records: Iterable[Record]) -> pd.DataFrame:
    """One row per cell of complete runs (model, hidden size, settings) and where its seeds trained:
    "cpu: Intel Xeon (family 6 model 167, AVX512), 1 thread: seeds 1, 2; cpu: AMD EPYC (…), 1 thread: seed 0"."""
    rows = []
    for key, runs in sorted(cells.group(records).items(), key=lambda item: cells.order(item[0])):
        seeds: dict[str, list[int]] = {}
        for record in runs:
            seeds.setdefault(_where(record), []).append(record.config["seed"])
        trained_on = "; ".join(f"{place}: {'seed' if len(s) == 1 else 'seeds'} {', '.join(map(str, sorted(s)))}"
                               for place, s in seeds.items())
        rows.append(dict(zip(cells.CELL_KEYS, key[:3]), runs=len(runs), processors=len(seeds), trained_on=trained_on))
    return pd.DataFrame(rows, columns=[*cells.CELL_KEYS, "runs", "processors", "trained_on"])


def machines_note(records: Iterable[Record]) -> str:
    """Whether the complete runs trained on one processor, and if not, how many cells and same-seed pairs of
    models (what the paired comparisons compare) mix processors, and what that means for the intervals."""
    runs = cells.included(records)
    if not runs:
        return "No complete run."
    places = {_where(r) for r in runs}
    if len(places) == 1:
        return f"All {count(len(runs), 'complete run')} trained on {markdown_text(next(iter(places)))}."
    table = machines(runs)
    mixed = int((table["processors"] > 1).sum())
    by_seed: dict[tuple, list[Record]] = {}  # the runs a paired comparison pairs: one hidden size, settings, seed
    for record in runs:
        _, hidden_size, label = cells.cell(record)
        by_seed.setdefault((hidden_size, label, record.config["seed"]), []).append(record)
    pairs = [(a, b) for group in by_seed.values() for a, b in combinations(group, 2)
             if a.config["model"] != b.config["model"]]
    across = sum(_where(a) != _where(b) for a, b in pairs)
    return (f"The {count(len(runs), 'complete run')} trained on {len(places)} kinds of processor: {mixed} of "
            f"{count(len(table), 'cell')} mix them, and {across} of the {count(len(pairs), 'same-seed pair')} of "
            "models that the paired comparisons use trained on different processors. A run's numbers move in the "
            "last bits from one CPU generation to the next (about 0.1 point of accuracy between two EPYC "
            "generations, on the quick profile), and no interval on this page covers that: it is part of any "
            "difference between runs made on different processors.")


# What makes Markdown of plain text something else: code, emphasis, links and images, a backslash escape.
_MARKDOWN = frozenset("\\`*_[]")


def markdown_text(value: Any) -> str:
    """``value`` (text from a record, a params file or a path) as Markdown that shows it as written and runs
    nothing: HTML's characters as entities (nbconvert passes raw HTML in Markdown into the page, where an
    ``<img onerror=...>`` from a record ran), Markdown's code, emphasis and link characters backslash-escaped, its
    lines joined (no heading or list can start), and, where it holds TeX's delimiters (``$``, ``\\``), inside a
    span that MathJax leaves alone. Plain text such as a processor's name comes back as it was."""
    value = " ".join(str(value).splitlines())
    text = "".join("\\" + ch if ch in _MARKDOWN else html.escape(ch) for ch in value)
    return f'<span class="tex2jax_ignore">{text}</span>' if "$" in value or "\\" in value else text


def _where(record: Record) -> str:
    """What computed ``record``'s numbers, per training process, "; "-joined (a resumed run may have moved): the
    processor and its kernel set, and torch's threads. Not the cores the process could use: they change no number."""
    return _joined(_processor(s) for s in getattr(record, "segments", None) or [])


def _processor(segment: dict[str, Any]) -> str:
    return f"{_place(segment, cores=False)}, {_threads(segment)}"


def _threads(segment: dict[str, Any]) -> str:
    return count(segment["threads"], "thread") if segment.get("threads") else f"threads {UNKNOWN}"


def _epochs(first: int, last: int) -> str:
    return f"epoch {first}" if first == last else f"epochs {first}–{last}"


def _place(segment: dict[str, Any], cores: bool = True) -> str:
    device, name = segment.get("device"), segment.get("device_name")
    if not device:
        return f"device {UNKNOWN}"
    if segment.get("hardware"):
        return f"{device}: {describe(segment['hardware'], cores=cores)}"
    return f"{device}: {name}" if name else str(device)


def code_text(segment: dict[str, Any]) -> str:
    """The training code of a process: "code 1a2b3c4d5e6f (commit 6158bf1)", "(commit 6158bf1, modified)"."""
    if not segment.get("code"):
        return f"code {UNKNOWN}"
    commit = segment.get("git_commit")
    where = f" (commit {commit[:7]}{', modified' if segment.get('git_dirty') else ''})" if commit else ""
    return f"code {segment['code'][:12]}{where}"


def _code(segment: dict[str, Any]) -> str:
    return f", {code_text(segment)}" if segment.get("code") else ""


def _joined(parts) -> str:
    unique = list(dict.fromkeys(parts))  # in order, once each
    return "; ".join(unique) if unique else UNKNOWN
