"""What a sweep tells its report: each run and page, how it went, and where its files are."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..records import Record


@dataclass
class RunResult:
    """One run of a sweep (a params file with one seed) once the sweep is over."""

    name: str  # <params file stem>-seed<seed>, unique in the sweep
    params: dict[str, Any]  # the params file's values, seed included, as given
    status: str  # complete, diverged or failed
    executed: bool  # False: up to date from an earlier sweep, not rerun
    error: str = ""  # why it failed, one line
    record: Record | None = None  # None when the run wrote none
    notebook: str | None = None  # files relative to the sweep's out folder, None when absent
    html: str | None = None
    record_file: str | None = None


@dataclass
class PageResult:
    """A notebook executed once per sweep (analysis, data, backprop)."""

    name: str
    status: str = "pending"  # complete, failed or missing
    executed: bool = False
    error: str = ""
    html: str | None = None  # relative to the out folder


@dataclass
class SweepResult:
    """Everything ``sweep.json`` and ``index.html`` say."""

    params: list[str]  # the params paths as given, relative to the project root where inside it
    started: str  # ISO time, UTC
    wall_seconds: float
    runs: list[RunResult] = field(default_factory=list)
    pages: list[PageResult] = field(default_factory=list)
    about: list[str] = field(default_factory=list)  # what the params folders say they are (their README.md)
    also: list[str] = field(default_factory=list)  # other sweeps' record folders the pages read (--also), paths.shown

    @property
    def failed(self) -> list[str]:
        return [r.name for r in self.runs if r.status != "complete"] + \
               [p.name for p in self.pages if p.status != "complete"]

    @property
    def ok(self) -> bool:
        return not self.failed
