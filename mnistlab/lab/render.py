"""One executed notebook as a page: nbconvert's lab look, served offline, honest about its run.

Called by the sweep's workers (separate processes): every call builds its own exporter, nothing is shared.
``mnistlab render NOTEBOOK`` calls it for one notebook of one's own (papermill's output, say), with
MathJax copied beside the page. ``check`` refuses, before a sweep trains anything, what a render would
fail for: MathJax missing or corrupt, or a template that cannot be loaded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from ..atomic import atomic_write_text
from ..records import Record
from .assets import MATHJAX_SCRIPT, STATIC, AssetError, copy_static
from .provenance import resumed_notes

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "mnistlab"  # templates/nbconvert/mnistlab: extends nbconvert's lab
TRAINING_TAG = "training"  # the train notebook's training cell; a resumed run's note goes above it
# A test marker on a code cell's first line (nbval's "# NBVAL_CHECK_OUTPUT"): for the tests, not the reader.
_MARKER = re.compile(r"\A[ \t]*# NBVAL_[A-Z_]+[ \t]*(\n|\Z)")
REINSTALL = "pip install -e '.[lab]'"  # what brings back the package's templates (package data)


def render(notebook: str | os.PathLike, html: str | os.PathLike, site_root: str | os.PathLike,
           records: Record | Iterable[Record] | None = None, *, index: bool = True) -> Path:
    """Write ``notebook`` as ``html``, a page of the site at ``site_root``; return ``html``.

    MathJax 3 is loaded from ``<site_root>/_static/`` (copied there when missing) and, when ``index``,
    the page links back to ``<site_root>/index.html``, both by relative URLs. ``records``: the run's record,
    or the records of every seed the notebook trained; for each one that was resumed, a note says so above
    the cell tagged ``training`` (at the top of the page when there is none). Test markers are left out.
    """
    import nbformat

    html, site_root = Path(html), Path(site_root)
    nb = nbformat.read(notebook, as_version=4)
    records = [records] if isinstance(records, Record) else list(records or [])
    notes = resumed_notes(records)
    note_at = "top"
    for cell in nb.cells:  # only the first tagged cell; the notebook is ours in memory, not written back
        if TRAINING_TAG in cell.metadata.get("tags", []):
            cell.metadata["mnistlab_note"], note_at = True, "cell"
            break
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = _MARKER.sub("", cell.source, count=1)
    copy_static(site_root)
    resources = {
        "metadata": {"name": html.stem},
        "mnistlab": {
            "mathjax_url": _relative_url(site_root / STATIC / MATHJAX_SCRIPT, html.parent),
            "index_url": _relative_url(site_root / "index.html", html.parent) if index else None,
            "notes": notes,
            "note_at": note_at,
        },
    }
    body, _ = _exporter().from_notebook_node(nb, resources=resources)
    return atomic_write_text(html, body)


def check() -> None:
    """Everything a render needs, checked now (``AssetError`` naming the command that fixes it): the verified
    MathJax script, this page template and nbconvert's lab template it extends, and the index template."""
    import jinja2

    from .assets import check as check_mathjax

    check_mathjax()
    try:
        _exporter().template  # noqa: B018 (loads ours and nbconvert's lab template, or raises)
        from .site import INDEX_TEMPLATE, environment

        environment(Path.cwd()).get_template(INDEX_TEMPLATE)
    except (ImportError, OSError, ValueError, jinja2.TemplateError) as error:
        raise AssetError(f"the page templates cannot be loaded ({type(error).__name__}: {error}); reinstall the "
                         f"package with its lab extra: `{REINSTALL}`") from None


def _exporter():
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name=TEMPLATE, extra_template_basedirs=[str(TEMPLATES / "nbconvert")])


def _relative_url(target: Path, start: Path) -> str:
    """``target`` as a URL relative to the folder ``start``, with forward slashes on every system."""
    return Path(os.path.relpath(os.path.abspath(target), os.path.abspath(start))).as_posix()
