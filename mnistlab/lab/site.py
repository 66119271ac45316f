"""The sweep's index page: Table 1 as a figure and a table, the runs and how they were made, the notebook pages.

Rendered from ``templates/index.html.j2`` with Jinja2 (autoescape on) from a ``SweepResult`` and the
``Record`` objects it carries. Every link is relative to the site, and no text names a path of the
machine it was built on. Numbers are written by ``formatting``, as on every other page.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .. import origin, paths
from ..atomic import atomic_write_bytes, atomic_write_text
from ..records import Record
from . import formatting as fmt, table1
from .assets import copy_static
from .progress import commit_text
from .protocol import off_protocol
from .provenance import provenance, summary_line
from .results import RunResult, SweepResult

if TYPE_CHECKING:
    import pandas as pd

TEMPLATES = Path(__file__).parent / "templates"
INDEX_TEMPLATE = "index.html.j2"
FIGURE = "table1.png"  # beside index.html
NOTES = "NOTES.md"  # a published report's notes, linked from the index when present
PAGE_TITLES = {
    "analysis": "Analysis: the figures, Table 1 and the HW5 report's claims, from every record",
    "data": "Data: MNIST examples (Figure 1) and the splits",
    "backprop": "Backpropagation by hand, checked against autograd",
}


def write_site(out: str | os.PathLike, result: SweepResult) -> Path:
    """Write ``<out>/index.html`` (and Table 1's figure, and MathJax into ``<out>/_static/``); return the index."""
    out = Path(out)
    copy_static(out)
    records = [run.record for run in result.runs if run.record is not None]
    table = table1.compute(records)  # once for the figure and the page
    figure = _write_figure(out, table, records)
    return atomic_write_text(out / "index.html", index_html(out, result, table, figure))


def index_html(out: Path, result: SweepResult, table: pd.DataFrame, figure: str | None = None) -> str:
    """The index page's HTML for the site in ``out``, with Table 1 (``table1.compute`` of the result's records)."""
    env = environment(out)
    records = [run.record for run in result.runs if run.record is not None]
    rows = table1.rows(table)
    current = origin.code()["fingerprint"]
    runs = [run_row(run, current) for run in result.runs]
    return env.get_template(INDEX_TEMPLATE).render(
        title=f"mnistlab report: {out.absolute().name}",
        params=[public_text(p, out) for p in result.params],
        started=result.started,
        wall=fmt.duration(result.wall_seconds),
        runs=runs,
        older=[run["name"] for run in runs if run["older_code"]],
        complete=sum(run.status == "complete" for run in result.runs),
        failed=result.failed,
        table=rows,
        several_seeds=any(row["seeds"] > 1 for row in rows),
        hw5=any(row["hw5_report"] != fmt.MISSING for row in rows),  # any row beside the HW5 report's number
        figure=figure,
        provenance=summary_line(records),
        pages=[{"title": PAGE_TITLES.get(p.name, p.name), "html": p.html, "status": p.status, "error": p.error}
               for p in result.pages],
        notes=NOTES if (out / NOTES).is_file() else None,
        also=result.also,
        about=[inline_markdown(paragraph.strip()) for text in result.about for paragraph in text.split("\n\n")
               if paragraph.strip() and not paragraph.lstrip().startswith("#")],
    )


def inline_markdown(text: str):
    """One paragraph of a params folder's README.md as safe HTML (``code``, *emphasis*, links), for the index:
    HTML in the text is escaped, as everything else on the page is."""
    import markupsafe
    import mistune

    html = mistune.create_markdown(escape=True)(text).strip()
    return markupsafe.Markup(html.removeprefix("<p>").removesuffix("</p>"))


def environment(out: Path):
    """The Jinja2 environment of the index of the site in ``out``: autoescape, and its filters."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["href"] = lambda path: _href(path, out)
    env.filters["public"] = lambda text: public_text(text, out)
    return env


def run_row(run: RunResult, current: str | None = None) -> dict[str, Any]:
    """One run as display strings: its results, and how it was trained (from its record). ``current``: this
    checkout's training-code fingerprint; a record of other code is marked as made by older code."""
    summary = run.record.summary if run.record is not None else {}
    view = provenance(run.record) if run.record is not None else None
    return {
        "older_code": older_code_text(run.record, current) if run.record is not None and current else "",
        "name": run.name, "html": run.html, "notebook": run.notebook, "record": run.record_file,
        "status": run.status, "ok": run.status == "complete", "executed": run.executed, "error": run.error,
        "params": [f"{key}={value}" for key, value in run.params.items() if _shown(key, value)],
        "best": fmt.accuracy(summary.get("best_test_acc")),
        "val_selected": fmt.accuracy(summary.get("val_selected_test_acc")),
        "final": fmt.accuracy(summary.get("final_test_acc")),
        "epochs": summary.get("epochs_run", fmt.MISSING),
        "how": view.how if view else fmt.MISSING,
        "resumed": bool(view and view.resumed_after),
        "where": view.where if view else fmt.MISSING,
        "threads": view.threads if view else fmt.MISSING,
        "median": fmt.duration(view.median_epoch_seconds) if view else fmt.MISSING,
        "wall": fmt.duration(view.wall_seconds) if view else fmt.MISSING,
    }


def older_code_text(record: Record, current: str) -> str:
    """ "made by older code (commit 6158bf1)" for a record whose training code is not ``current``; else ''."""
    code = record.code or next((segment for segment in reversed(record.segments or []) if segment.get("code")), {})
    fingerprint = code.get("fingerprint") or code.get("code")  # a record's code, or a segment's
    if fingerprint == current or (fingerprint and origin.same_numbers(fingerprint, {"fingerprint": current})):
        return ""  # this code's, or code checked to give the same numbers
    if not fingerprint:
        return "made by older code (not recorded which)"
    return f"made by older code ({commit_text(code)})"


def _shown(key: str, value: Any) -> bool:
    """A run's parameter worth a column: what names the cell, and every setting off the paper protocol."""
    return key in ("model", "hidden_size", "seed") or off_protocol(key, value)


def public_text(text: Any, out: Path) -> str:
    """``text`` as the site publishes it: every absolute path relative to the site or the project, else cut to
    its name (``paths.public``)."""
    return paths.public(text, out, paths.project_root())


def _write_figure(out: Path, table: pd.DataFrame, records: list[Record]) -> str | None:
    """Write Table 1's figure beside the index; its file name, or None when there is nothing to draw."""
    if table.empty:
        (out / FIGURE).unlink(missing_ok=True)
        return None
    buffer = io.BytesIO()
    table1.figure(table, records).savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    atomic_write_bytes(out / FIGURE, buffer.getvalue())
    return FIGURE


def _href(path: str | None, out: Path) -> str | None:
    """A file of the site as a relative, percent-encoded URL; None when absent or outside the site."""
    if not path:
        return None
    if Path(path).is_absolute():
        relative = os.path.relpath(path, os.path.abspath(out))
        if relative.startswith(".."):
            return None
        path = relative
    return quote(Path(path).as_posix())
