"""The sweep's index page: the pages first, the study's training time, Table 1 as a figure and a table, the runs.

Rendered from ``templates/index.html.j2`` with Jinja2 (autoescape on) from a ``SweepResult`` and the
``Record`` objects it carries. Every link is relative to the site, and no text names a path of the
machine it was built on. Numbers are written by ``formatting``, as on every other page. ``rerender``
rebuilds a whole published report from its executed notebooks and records (``mnistlab render --site``).
"""

from __future__ import annotations

import io
import json
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .. import origin, paths
from ..atomic import atomic_write_bytes, atomic_write_text
from ..models import MODELS, unregistered_hint
from ..records import Record
from . import findings, formatting as fmt, render, stats, table1
from .assets import MATHJAX_SCRIPT, STATIC, STYLESHEET, AssetError, copy_static, static_folder
from .protocol import off_protocol
from .provenance import provenance, summary_line
from .render import PAGES, REINSTALL, navigation
from .results import RunResult, SweepResult

if TYPE_CHECKING:
    import pandas as pd

TEMPLATES = Path(__file__).parent / "templates"
INDEX_TEMPLATE = "index.html.j2"
FIGURE = "table1.png"  # beside index.html
NOTES = "NOTES.md"  # a published report's notes, linked from the index when present
PAGE_ABOUT = {
    "analysis": "the evidence behind each finding: its numbers, rule, scope and processors; then, as far as these "
                "runs allow, the differences between the models with their intervals, Table 1 with intervals, the "
                "loss and accuracy curves and the digits the models get wrong",
    "data": "MNIST examples with their labels (Figure 1), the split and the normalisation constants",
    "backprop": "every gradient of the three networks derived by hand, then checked against autograd",
}


def write_site(out: str | os.PathLike, result: SweepResult, rendered: str | None = None) -> Path:
    """Write ``<out>/index.html`` (and Table 1's figure, and the stylesheet and MathJax into ``<out>/_static/``);
    return the index. ``rendered``: when the pages were last re-rendered without a sweep (``rerender``)."""
    out = Path(out)
    copy_static(out)
    records = [run.record for run in result.runs if run.record is not None]
    table = table1.compute(records)  # once for the figure and the page
    figure = _write_figure(out, table, records)
    return atomic_write_text(out / "index.html", index_html(out, result, table, figure, rendered))


def index_html(out: Path, result: SweepResult, table: pd.DataFrame, figure: str | None = None,
               rendered: str | None = None) -> str:
    """The index page's HTML for the site in ``out``, with Table 1 (``table1.compute`` of the result's records)."""
    env = environment(out)
    records = [run.record for run in result.runs if run.record is not None]
    rows = table1.rows(table)
    current = origin.code()["fingerprint"]
    runs = [run_row(run, current) for run in result.runs]
    return env.get_template(INDEX_TEMPLATE).render(
        title=f"mnistlab report: {out.absolute().name}",
        stylesheet=Path(os.path.relpath(static_folder(out) / STYLESHEET, os.path.abspath(out))).as_posix(),
        nav=navigation(out / "index.html", out, pages=[page.name for page in result.pages if page.html]),
        training=training_text(records),
        rendered=rendered,
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
        pages=[{"title": PAGES.get(p.name, p.name), "about": PAGE_ABOUT.get(p.name, ""), "html": p.html,
                "status": p.status, "error": p.error} for p in result.pages],
        notes=NOTES if (out / NOTES).is_file() else None,
        also=result.also,
        findings=findings_of(out, result),
        about=[inline_markdown(paragraph.strip()) for text in result.about for paragraph in text.split("\n\n")
               if paragraph.strip() and not paragraph.lstrip().startswith("#")],
    )


def findings_of(out: Path, result: SweepResult) -> dict[str, Any] | None:
    """The verdicts the report's analysis page reached, as its executed notebook displayed them
    (``findings.published``), for the index to lead with: the tested rows, the untested claims' names, a count
    of each verdict and the page's link. None where the report has no complete analysis page with findings (a
    page that failed after its findings cell is no evidence: the index then lists it as failed, under Pages)."""
    page = next((p for p in result.pages if p.name == "analysis" and p.html and p.status == "complete"), None)
    rows = findings.published(out / "analysis.ipynb") if page is not None else None
    if not rows:
        return None
    counts = {verdict: sum(row.get("verdict") == verdict for row in rows)
              for verdict in (stats.SUPPORTED, stats.CONTRADICTED, stats.WITHIN_NOISE, stats.UNTESTED)}
    said = ", ".join(f"{n} {verdict}" for verdict, n in counts.items() if n)
    return {"tested": [row for row in rows if row.get("verdict") != stats.UNTESTED],
            "untested": [row.get("name", "") for row in rows if row.get("verdict") == stats.UNTESTED],
            "summary": f"{fmt.count(len(rows), 'claim or question', 'claims and questions')}: {said}.",
            "html": page.html}


def training_text(records: list[Record]) -> str:
    """When the study's runs were trained and how much training they took, from their records (not from the sweep
    that last rendered them): "Trained between 2026-11-29 08:12 and 2026-12-03 17:40 UTC: 21 h 54 min of training
    in all, the sum of the epoch times of 45 runs"."""
    if not records:
        return "No run has a record: nothing was trained."
    seconds = sum(record.summary["seconds"] for record in records)
    starts, ends = [], []
    for record in records:
        times = {row["epoch"]: row["seconds"] for row in record.history}
        for segment in record.segments or []:
            try:
                started = datetime.fromisoformat(segment["started"])
            except (KeyError, TypeError, ValueError):
                continue
            started = started.astimezone(timezone.utc) if started.tzinfo else started.replace(tzinfo=timezone.utc)
            epochs = range(segment["first_epoch"], segment["last_epoch"] + 1)
            took = sum(times.get(epoch, 0.0) or 0.0 for epoch in epochs)
            starts.append(started)
            ends.append(started + timedelta(seconds=took))
    runs = fmt.count(len(records), "run")
    total = f"{fmt.duration(seconds)} of training in all, the sum of the epoch times of {runs}"
    if not starts:
        return f"{total[0].upper()}{total[1:]} (when they were trained is not recorded)."
    unknown = sum(1 for record in records if not any(s.get("started") for s in record.segments or []))
    when = f"Trained between {min(starts):%Y-%m-%d %H:%M} and {max(ends):%Y-%m-%d %H:%M} UTC: {total}"
    return when + (f" ({unknown} of them without a recorded date)." if unknown else ".")


def inline_markdown(text: str):
    """One paragraph of a params folder's README.md as safe HTML (``code``, *emphasis*, links), for the index:
    HTML in the text is escaped, as everything else on the page is."""
    import markupsafe
    import mistune

    html = mistune.create_markdown(escape=True)(text).strip()
    return markupsafe.Markup(html.removeprefix("<p>").removesuffix("</p>"))


def check() -> None:
    """Everything the site's render needs, checked now: the pages' (``render.check``) and the index template."""
    import jinja2

    render.check()
    try:
        environment(Path.cwd()).get_template(INDEX_TEMPLATE)
    except (ImportError, OSError, ValueError, jinja2.TemplateError) as error:
        raise AssetError(f"the index template cannot be loaded ({type(error).__name__}: {error}); reinstall the "
                         f"package with its lab extra: `{REINSTALL}`") from None


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
    return f"made by older code ({fmt.commit_text(code)})"


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


def rerender(out: str | os.PathLike) -> list[str]:
    """Re-render a report from what is committed there, training nothing: every run's page and the pages from
    their executed notebooks, then the index from ``sweep.json`` and the records; one line per page, said.

    Holds the sweep's lock on ``out`` (no sweep writes there meanwhile). A page's manifest that vouched for its
    notebook, records and page keeps vouching, for the new page (``cache.restamp``): a sweep afterwards finds
    every run and page up to date and retrains nothing. A manifest that did not vouch (a run that was never
    finished, a record changed since) is left as it is, and the line says so. A notebook a sweep published with
    older code is published as a sweep publishes it now (``execute.republish``), where its manifest vouches
    for it.
    """
    from . import lock
    from .execute import republish
    from .params import ParamsError
    from .render import rerender as rerender_page

    out = paths.resolve(out)
    try:
        swept = json.loads((out / "sweep.json").read_text())
    except FileNotFoundError:
        raise ParamsError(f"{paths.relative(out)} holds no sweep.json: not a report a sweep made (give the folder "
                          "of index.html, e.g. reports/paper)") from None
    except ValueError as error:
        raise ParamsError(f"{paths.relative(out)}/sweep.json is not JSON ({error})") from None
    result = sweep_result(out, swept)
    unregistered = sorted({str(run.record.config.get("model")) for run in result.runs if run.record is not None}
                          - set(MODELS))
    if unregistered:  # their code could not be fingerprinted as it trained them: every run would read as older code
        raise ParamsError(f"{paths.relative(out)} holds runs of {', '.join(map(repr, unregistered))}, which no module "
                          f"registers here, so their pages cannot be re-rendered as they were made. "
                          f"{unregistered_hint()}")
    lines = []
    with lock.hold(out):
        notebooks: dict[str, list[RunResult]] = {}
        for run in result.runs:
            if run.notebook and run.html:
                notebooks.setdefault(run.notebook, []).append(run)
        work = [(out / notebook, out / runs[0].html, [run.record for run in runs if run.record is not None])
                for notebook, runs in notebooks.items()]
        work += [(out / f"{page.name}.ipynb", out / page.html, None) for page in result.pages if page.html]
        pages = [page.name for page in result.pages if page.html]
        before = {path: path.read_bytes() for notebook, html, _ in work for path in (notebook, html) if path.is_file()}
        for notebook, html, records in work:
            if not notebook.is_file():
                lines.append(f"{paths.relative(html, out)}: kept as it is (its notebook {notebook.name} is missing)")
                continue
            saved = republish(notebook)  # a notebook published before its images were re-encoded
            state = "up to date" if rerender_page(notebook, html, out, records, pages) else \
                "not up to date before, left so (a sweep redoes it)"
            slimmer = "" if not saved else "; its notebook published as a sweep publishes it now" + (
                f", {saved / 1e3:.0f} kB fewer" if saved >= 500 else "")  # a correction of its prose may add bytes
            lines.append(f"{paths.relative(html, out)}: re-rendered; {state}{slimmer}")
        changed = any(not path.is_file() or path.read_bytes() != data for path, data in before.items()) or \
            any(html.is_file() and html not in before for _, html, _ in work)
        lines.append(f"{paths.relative(out / 'index.html')}: {_rerender_index(out, result, changed)}")
        own = out / STATIC
        if static_folder(out) != own and own.is_dir():  # an older render's copy: the pages now load the shared one
            for name in (MATHJAX_SCRIPT, STYLESHEET):
                (own / name).unlink(missing_ok=True)
            if not any(own.iterdir()):
                own.rmdir()
            lines.append(f"{paths.relative(own)}: removed; the pages load {paths.relative(static_folder(out))}")
    return lines


# How the index says when its pages were last re-rendered (templates/index.html.j2)
_RENDERED = re.compile(r"the pages were last re-rendered (\d{4}-\d\d-\d\d \d\d:\d\d UTC)")


def _rerender_index(out: Path, result: SweepResult, pages_changed: bool) -> str:
    """Write the index again; it says when its pages were re-rendered only if a page or notebook changed (or the
    index itself would), so that re-rendering an up-to-date report changes no byte. Returns what happened."""
    index = out / "index.html"
    old = index.read_text() if index.is_file() else None
    if not pages_changed and old is not None:
        said = _RENDERED.search(old)
        write_site(out, result, rendered=said.group(1) if said else None)
        if index.read_text() == old:
            return "up to date"
    write_site(out, result, rendered=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    return "re-rendered"


def sweep_result(out: Path, swept: dict) -> SweepResult:
    """The ``SweepResult`` a sweep wrote as ``sweep.json`` into ``out`` (``sweep.report``), its records loaded."""
    from dataclasses import fields

    from ..records import RecordError
    from .results import PageResult

    def known(cls, entry: dict) -> dict:
        names = {f.name for f in fields(cls)}
        return {key: value for key, value in entry.items() if key in names}

    runs = []
    for entry in swept.get("runs", []):
        run = RunResult(**known(RunResult, {**entry, "record": None}))
        if run.record_file:
            try:
                run.record = Record.load(out / run.record_file)
            except RecordError:
                run.record = None
        runs.append(run)
    return SweepResult(params=swept.get("params", []), started=swept.get("started", ""),
                       wall_seconds=swept.get("wall_seconds", 0.0), runs=runs,
                       pages=[PageResult(**known(PageResult, page)) for page in swept.get("pages", [])],
                       about=swept.get("about", []), also=swept.get("also", []))
