"""The sweep's static index page: Table 1, the runs, the notebook pages, and where and how long it all ran."""

from __future__ import annotations

import math
import os
from html import escape
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import quote

from .plots import table1
from .records import Record, atomic_write_text

PAGE_TITLES = {
    "analysis": "Analysis: the figures and Table 1 from every record",
    "data": "Data: MNIST examples (Figure 1) and the splits",
    "backprop": "Backpropagation by hand, checked against autograd",
}

CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { padding: 0.3em 0.7em; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } tbody tr:nth-child(even) { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.params { font: 12px/1.4 ui-monospace, monospace; color: #555; }
.ok { color: #176317; } .failed { color: #b00020; font-weight: bold; }
.error { color: #b00020; font: 12px/1.4 ui-monospace, monospace; white-space: pre-wrap; }
td.run { white-space: nowrap; }
.note { color: #555; }
"""

PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>$css</style>
</head>
<body>
<h1>$title</h1>
<p class="note">$lead</p>
$alert
<h2>Table 1: test accuracy (%) beside the seed's</h2>
$table1
<h2>Runs</h2>
$runs
<h2>Notebooks</h2>
$pages
<p class="note" id="hardware">$hardware</p>
</body>
</html>
""")


def write_index(out: str | os.PathLike, report: dict) -> Path:
    """Write ``<out>/index.html`` for a sweep report (the content of sweep.json); return its path."""
    out = Path(out)
    records = [Record.load(out / run["record"]) for run in report["runs"]
               if run["status"] == "complete" and run["record"]]
    return atomic_write_text(out / "index.html", index_html(report, records, out.absolute().name))


def index_html(report: dict, records: list[Record], out_name: str = "") -> str:
    """The index page; every value from the report is HTML-escaped, every link relative."""
    runs = report["runs"]
    complete = sum(run["status"] == "complete" for run in runs)
    lead = (f"{len(runs)} runs of the parameter sets in {report['params']}, {complete} complete. "
            f"Sweep started {report['started']}.")
    alert = (f'<p class="failed">Failed: {escape(", ".join(report["failed"]))}. '
             "Their notebooks are linked below with the error.</p>") if report["failed"] else ""
    return PAGE.substitute(
        title=escape(f"mnistlab report: {out_name}"), css=CSS, lead=escape(lead), alert=alert,
        table1=table1_html(records), runs=runs_html(runs), pages=pages_html(report["pages"]),
        hardware=escape(hardware_line(report)))


def table1_html(records: list[Record]) -> str:
    """Table 1 of the complete runs: measured best test accuracy beside the seed's, then the honest figures."""
    table = table1(records)
    if table.empty:
        return '<p class="failed">No complete run: nothing to tabulate.</p>'
    head = ["model", "H", "seeds", "epochs", "best test (measured)", "best test (seed)", "difference",
            "val-selected test", "final test"]
    rows = []
    for (model, hidden_size), row in table.iterrows():
        rows.append([_cell(model), _cell(hidden_size), _num(row["seeds"], 0), _num(row["epochs"], 0),
                     _num(row["best_test_acc"], std=row.get("best_test_acc_std")), _num(row["seed_paper"]),
                     _num(row["difference"], signed=True),
                     _num(row["val_selected_test_acc"], std=row.get("val_selected_test_acc_std")),
                     _num(row["final_test_acc"], std=row.get("final_test_acc_std"))])
    note = ('<p class="note">Best test accuracy over epochs is the seed\'s metric and selects on the test set; '
            "val-selected is the test accuracy at the epoch of best validation accuracy. "
            "Mean &plusmn; standard deviation over seeds.</p>")
    return _table(head, rows) + note


def runs_html(runs: list[dict]) -> str:
    """One row per run, linking its rendered notebook; failed runs show their error."""
    head = ["run", "status", "parameters", "best test", "val-selected test", "final test", "epochs", "time"]
    rows = []
    for run in runs:
        s = run["summary"] or {}
        status = f'<td class="{"ok" if run["status"] == "complete" else "failed"}">{escape(run["status"])}'
        if run["error"]:
            status += f'<div class="error">{escape(run["error"])}</div>'
        rows.append([f'<td class="run">{_link(run["html"], run["name"])}</td>', status + "</td>",
                     f'<td class="params">{escape(_params_text(run["params"]))}</td>',
                     _num(s.get("best_test_acc")), _num(s.get("val_selected_test_acc")), _num(s.get("final_test_acc")),
                     _num(s.get("epochs_run"), 0), f'<td class="num">{escape(_duration(s.get("seconds")))}</td>'])
    return _table(head, rows, table_id="runs")


def pages_html(pages: list[dict]) -> str:
    """Links to the analysis, data and backprop pages, marking those that failed or are missing."""
    items = []
    for page in pages:
        title = PAGE_TITLES.get(page["name"], page["name"])
        item = _link(page["html"], title)
        if page["status"] != "complete":
            item += f' <span class="failed">{escape(page["status"])}</span> <span class="error">{escape(page["error"])}</span>'
        items.append(f"<li>{item}</li>")
    return "<ul>" + "".join(items) + "</ul>"


def hardware_line(report: dict) -> str:
    """Where the runs trained (from their records) and how long they took."""
    places = sorted({_place(env) for env in (run["environment"] for run in report["runs"]) if env})
    seconds = sum((run["summary"] or {}).get("seconds") or 0 for run in report["runs"])
    where = "; ".join(places) if places else "no run recorded its hardware"
    return (f"Trained on {where}: {_duration(seconds)} of training in all (sum of the runs' epoch times). "
            f"This sweep took {_duration(report['wall_seconds'])}; runs already up to date were not rerun.")


def _place(env: dict[str, Any]) -> str:
    """'x86_64 (cpu, 2 threads) with torch 2.4.1', from a record's environment."""
    count = env.get("cpu_threads")
    threads = f", {count} thread{'s' if count != 1 else ''}" if env.get("device") == "cpu" and count else ""
    return f"{env.get('device_name', '?')} ({env.get('device', '?')}{threads}) with torch {env.get('torch', '?')}"


def _table(head: list[str], rows: list[list[str]], table_id: str = "") -> str:
    """Rows are lists of ready ``<td>`` cells; the header is escaped here."""
    ident = f' id="{table_id}"' if table_id else ""
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "\n".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f"<table{ident}>\n<thead><tr>{header}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _cell(text: Any) -> str:
    return f"<td>{escape(str(text))}</td>"


def _link(href: str | None, text: str) -> str:
    """A relative link (escaped, and its path percent-encoded), or the bare text when there is no file."""
    if not href:
        return escape(text)
    return f'<a href="{escape(quote(href))}">{escape(text)}</a>'


def _num(value: Any, digits: int = 2, std: Any = None, signed: bool = False) -> str:
    """A right-aligned number cell; an en dash when there is no value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '<td class="num">&ndash;</td>'
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    if std is not None and not math.isnan(std):
        text += f" &plusmn; {std:.{digits}f}"
    return f'<td class="num">{text}</td>'


def _params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in params.items())


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 10:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
