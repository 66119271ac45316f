"""One executed notebook as a page of the site: nbconvert's lab look, served offline, honest about its run.

Called by the sweep's workers (separate processes): every call builds its own exporter, nothing is shared.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..records import Record, atomic_write_text
from .assets import MATHJAX_SCRIPT, STATIC, copy_static
from .provenance import resumed_notes

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "mnistlab"  # templates/nbconvert/mnistlab: extends nbconvert's lab
TRAINING_TAG = "training"  # the train notebook's training cell; a resumed run's note goes above it


def render(notebook: str | os.PathLike, html: str | os.PathLike, site_root: str | os.PathLike,
           records: Record | Iterable[Record] | None = None) -> Path:
    """Write ``notebook`` as ``html``, a page of the site at ``site_root``; return ``html``.

    MathJax 3 is loaded from ``<site_root>/_static/`` (copied there when missing) and the page links
    back to ``<site_root>/index.html``, both by relative URLs. ``records``: the run's record, or the
    records of every seed the notebook trained; for each one that was resumed, a note says so above the
    cell tagged ``training`` (at the top of the page when there is none).
    """
    import nbformat
    from nbconvert import HTMLExporter

    html, site_root = Path(html), Path(site_root)
    nb = nbformat.read(notebook, as_version=4)
    records = [records] if isinstance(records, Record) else list(records or [])
    notes = resumed_notes(records)
    note_at = "top"
    for cell in nb.cells:  # only the first tagged cell; the notebook is ours in memory, not written back
        if TRAINING_TAG in cell.metadata.get("tags", []):
            cell.metadata["mnistlab_note"], note_at = True, "cell"
            break
    copy_static(site_root)
    resources = {
        "metadata": {"name": html.stem},
        "mnistlab": {
            "mathjax_url": _relative_url(site_root / STATIC / MATHJAX_SCRIPT, html.parent),
            "index_url": _relative_url(site_root / "index.html", html.parent),
            "notes": notes,
            "note_at": note_at,
        },
    }
    exporter = HTMLExporter(template_name=TEMPLATE, extra_template_basedirs=[str(TEMPLATES / "nbconvert")])
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return atomic_write_text(html, body)


def _relative_url(target: Path, start: Path) -> str:
    """``target`` as a URL relative to the folder ``start``, with forward slashes on every system."""
    return Path(os.path.relpath(os.path.abspath(target), os.path.abspath(start))).as_posix()
