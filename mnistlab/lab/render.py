"""One executed notebook as a page: nbconvert's lab look, light, served offline, honest about its run.

A page links the site's one stylesheet and MathJax (``assets``: ``_static/`` of the site) rather than carrying
them, opens with the site's navigation, and keeps each code cell folded behind a "code" toggle: it leads with
what the cells show, and its notebook (linked on top) has the code. Every image is a file beside the page
(``<page>_files/``, re-encoded in 256 colours); a figure shown by ``plots.show`` keeps its alt text, and its PNG
and SVG are linked under it.

Called by the sweep's workers (separate processes): every call builds its own exporter, nothing is shared.
``mnistlab render NOTEBOOK`` calls it for one notebook of one's own (papermill's output, say), with
MathJax copied beside the page; ``mnistlab render --site DIR`` re-renders a whole report (``site.rerender``).
``check`` refuses, before a sweep trains anything, what a render would fail for: MathJax missing or corrupt,
or a template that cannot be loaded.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable
from pathlib import Path

from ..atomic import atomic_write_bytes, atomic_write_text
from ..records import Record
from .assets import MATHJAX_SCRIPT, STYLESHEET, AssetError, copy_static
from .provenance import resumed_notes

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "mnistlab"  # templates/nbconvert/mnistlab: extends nbconvert's lab
TRAINING_TAG = "training"  # the train notebook's training cell; a resumed run's note goes above it
# A test marker on a code cell's first line (nbval's "# NBVAL_CHECK_OUTPUT"): for the tests, not the reader.
_MARKER = re.compile(r"\A[ \t]*# NBVAL_[A-Z_]+[ \t]*(\n|\Z)")
REINSTALL = "pip install -e '.[lab]'"  # what brings back the package's templates (package data)
# The pages of a site beside its runs, in the order of its navigation (a sweep executes them after the runs).
PAGES = {"analysis": "Findings and analysis", "data": "Data (Figure 1)", "backprop": "Backpropagation"}
FIGURE = "mnistlab"  # output metadata key of a figure shown by ``plots.show``: name, alt text (and, here, files)
# Set for a notebook a sweep executes: the page's figure folder (``figure_folder``), where ``plots.show`` writes each
# figure's SVG rather than into the notebook.
FIGURES_ENV = "MNISTLAB_FIGURES"
_SUMMARIES = {"parameters": "code: the notebook's parameters (defaults)",
              "injected-parameters": "code: the parameters this run was given"}


def render(notebook: str | os.PathLike, html: str | os.PathLike, site_root: str | os.PathLike,
           records: Record | Iterable[Record] | None = None, *, index: bool = True,
           pages: Iterable[str] | None = None) -> Path:
    """Write ``notebook`` as ``html``, a page of the site at ``site_root``; return ``html``.

    The stylesheet and MathJax 3 are loaded from the site's ``assets.static_folder`` (copied there when missing)
    and, when ``index``, the page opens with the site's navigation (its index, its pages, this page's notebook),
    all by relative URLs; without ``index`` (a page of its own) it links only its notebook. ``records``: the run's
    record, or the records of every seed the notebook trained; for each one that was resumed, a note says so above
    the cell tagged ``training`` (at the top of the page when there is none). Test markers are left out; images
    are written beside the page. ``pages``: the site's pages (``PAGES`` names) the navigation links; default:
    those already in ``site_root``.
    """
    import nbformat

    html, site_root, notebook = Path(html), Path(site_root), Path(notebook)
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
            tags = cell.metadata.get("tags", [])
            summary = next((_SUMMARIES[tag] for tag in tags if tag in _SUMMARIES), None)
            if summary:
                cell.metadata["mnistlab_summary"] = summary
    _image_files(nb, html)
    static = copy_static(site_root)
    resources = {
        "metadata": {"name": html.stem},
        "mnistlab": {
            "css_url": _relative_url(static / STYLESHEET, html.parent),
            "mathjax_url": _relative_url(static / MATHJAX_SCRIPT, html.parent),
            "nav": navigation(html, site_root, notebook, pages) if index else
            [{"kind": "files", "title": "this page as a notebook (.ipynb)", "current": False,
              "url": _relative_url(notebook, html.parent)}],
            "notes": notes,
            "note_at": note_at,
        },
    }
    body, _ = _exporter().from_notebook_node(nb, resources=resources)
    return atomic_write_text(html, body)


def navigation(html: Path, site_root: Path, notebook: Path | None = None,
               pages: Iterable[str] | None = None) -> list[dict]:
    """What the top of a page of the site at ``site_root`` links, by URLs relative to ``html``: the index, the
    site's ``pages`` (``PAGES`` names; default: those in ``site_root`` now; the page itself marked current, not
    linked), and the notebook the page shows."""
    here = Path(os.path.abspath(html))
    index = Path(os.path.abspath(site_root / "index.html"))
    items = [{"kind": "site", "title": f"mnistlab report: {Path(os.path.abspath(site_root)).name}",
              "current": index == here, "url": _relative_url(index, html.parent)}]
    shown = set(pages) if pages is not None else {name for name in PAGES if (site_root / f"{name}.html").is_file()}
    for name, title in PAGES.items():
        if name not in shown:
            continue
        page = Path(os.path.abspath(site_root / f"{name}.html"))
        items.append({"kind": "page", "title": title, "current": page == here,
                      "url": _relative_url(page, html.parent)})
    if notebook is not None and Path(os.path.abspath(notebook)).parent == here.parent:
        items.append({"kind": "files", "title": "this page as a notebook (.ipynb), with its code", "current": False,
                      "url": _relative_url(notebook, html.parent)})
    return items


def figure_folder(html: Path) -> Path:
    """Where the images of a page go: ``<page>_files/`` beside it."""
    return html.with_name(f"{html.stem}_files")


def _image_files(nb, html: Path) -> None:
    """Every PNG a page shows, as a file in ``figure_folder(html)`` rather than inline, re-encoded with at most 256
    colours (``web_png``: about a third of the bytes, the same picture; a notebook a sweep publishes has its images
    so already, ``execute.web_images``, and a notebook of one's own keeps its originals). A figure
    ``plots.show`` marked (``FIGURE`` in its output's metadata) is named by it, and its SVG, where the notebook has
    it or its kernel wrote one there, is linked beside its PNG. The folder holds exactly this render's files."""
    folder = figure_folder(html)
    kept, names = set(), set()
    for index, cell in enumerate(nb.cells):
        outputs = cell.get("outputs", []) if cell.cell_type == "code" else []
        for number, output in enumerate(outputs):
            data = output.get("data", {})
            if "image/png" not in data:
                continue
            meta = output.get("metadata", {}).get(FIGURE)
            png = web_png(base64.b64decode(data["image/png"]))
            if isinstance(meta, dict):
                name = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(meta.get("name") or "")).strip(".-") or f"figure-{index}"
            else:
                name = f"cell-{index}-{number}"
            while name in names:
                name += "-again"
            names.add(name)
            atomic_write_bytes(folder / f"{name}.png", png)
            kept.add(f"{name}.png")
            output.metadata["filenames"] = {"image/png": _relative_url(folder / f"{name}.png", html.parent)}
            if not isinstance(meta, dict):
                continue
            files = [("PNG", folder / f"{name}.png")]
            svg = data.pop("image/svg+xml", None)  # the page shows the PNG file and links the SVG
            if svg is not None:
                atomic_write_bytes(folder / f"{name}.svg", ("".join(svg) if isinstance(svg, list) else svg).encode())
            if (folder / f"{name}.svg").is_file():  # the notebook's, or the one its kernel wrote (``plots.show``)
                files.append(("SVG", folder / f"{name}.svg"))
                kept.add(f"{name}.svg")
            meta["files"] = [(label, _relative_url(path, html.parent)) for label, path in files]
    if folder.is_dir():
        for stale in folder.iterdir():
            if stale.is_file() and stale.name not in kept:
                stale.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()


def web_png(png: bytes) -> bytes:
    """``png`` re-encoded with at most 256 colours (median cut, no dithering; exact for an image that has no more),
    or as it is when that is not smaller: how a page serves a figure the notebook keeps whole."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        image.load()
        opaque = image.mode in ("RGB", "L", "P") or (image.mode == "RGBA" and image.getextrema()[3][0] == 255)
        if opaque:
            fewer = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        else:
            fewer = image.convert("RGBA").quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
        out = io.BytesIO()
        fewer.save(out, format="PNG", optimize=True)
    return out.getvalue() if len(out.getvalue()) < len(png) else png


def check() -> None:
    """Everything a page's render needs, checked now (``AssetError`` naming the command that fixes it): the
    verified MathJax script, and this page template with nbconvert's lab template it extends (the index's:
    ``site.check``)."""
    import jinja2

    from .assets import check as check_mathjax

    check_mathjax()
    try:
        _exporter().template  # noqa: B018 (loads ours and nbconvert's lab template, or raises)
    except (ImportError, OSError, ValueError, jinja2.TemplateError) as error:
        raise AssetError(f"the page templates cannot be loaded ({type(error).__name__}: {error}); reinstall the "
                         f"package with its lab extra: `{REINSTALL}`") from None


def _exporter():
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    # The code colours are in the site's stylesheet (assets.stylesheet), not in each page.
    return HTMLExporter(template_name=TEMPLATE, extra_template_basedirs=[str(TEMPLATES / "nbconvert")],
                        exclude_input_prompt=True, exclude_output_prompt=True,
                        config=Config({"CSSHTMLHeaderPreprocessor": {"enabled": False}}))


def _relative_url(target: Path, start: Path) -> str:
    """``target`` as a URL relative to the folder ``start``: forward slashes on every system, percent-encoded (a
    run named by its params file may hold any character)."""
    from urllib.parse import quote

    return quote(Path(os.path.relpath(os.path.abspath(target), os.path.abspath(start))).as_posix())


def rerender(notebook: Path, html: Path, site_root: Path, records: Iterable[Record] | None = None,
             pages: Iterable[str] | None = None) -> bool:
    """Render ``notebook`` anew as ``html`` (nothing executed), and keep its manifest vouching for it where it
    vouched for everything else (``cache.restamp``): True when the work stays up to date."""
    from . import cache

    manifest = notebook.with_name(f".{notebook.stem}.done")
    vouched = cache.vouches_but(manifest, html)
    render(notebook, html, site_root, records, pages=pages)
    return vouched and cache.restamp(manifest, html)
