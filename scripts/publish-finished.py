#!/usr/bin/env python
"""Copy the finished runs of a study running in one checkout into another, and commit them there.

    python scripts/publish-finished.py SOURCE_CHECKOUT [--reports paper,lr] [--every 120] [--once]

A long study (scripts/study.sh) runs in a clean checkout of its own, so that its records name a commit
and unmodified training code, while work goes on in another. This copies, every ``--every`` seconds,
each run the study has finished into this checkout and commits it, so that the end of a session or a
new machine loses at most the runs in flight. A run is finished when its manifest (``runs/.NAME.done``,
written last by the sweep) lists files that all still have the SHA-256 it gives: the notebook, the page
and the records are copied with the manifest, nothing half-written. A sweep's own pages (index,
analysis, data, backprop with their figure folders, sweep.json, table1.png, _static/, and the reports' shared
reports/_static) are copied once that sweep has ended (its sweep.json is newer than what is here); a run's
page images (runs/<name>_files/) with the run. Only ``reports/<name>/`` and ``reports/_static`` are touched, and only
the files copied are committed (other changes under them, a NOTES.md being edited, stay uncommitted). A copied
run's notebook is published as this checkout's sweep would
publish it (its images re-encoded, the terminal's lines out of its streams:
``mnistlab.lab.execute.republish``) and its page rendered anew, so a run is copied again only when its
key or records changed, not its bytes. Run it with this checkout's ``.venv/bin/python``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))  # this checkout's mnistlab (run with its .venv's python: it needs the lab extra)
PAGES = ("analysis", "data", "backprop")
SITE_FILES = ("index.html", "sweep.json", "table1.png",
              *(f"{page}.{kind}" for page in PAGES for kind in ("ipynb", "html")), *(f".{page}.done" for page in PAGES))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def finished(manifest: Path) -> list[Path] | None:
    """The files a manifest vouches for, itself last; None when any is missing or changed since."""
    try:
        entry = json.loads(manifest.read_text())
        files = [manifest.parent / name for name in entry["files"]]
        if all(sha256(path) == entry["files"][path.name] for path in files):
            return [*files, manifest]
    except (OSError, ValueError, KeyError):
        pass
    return None


def copy(source: Path, target: Path) -> bool:
    if target.exists() and target.read_bytes() == source.read_bytes():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target.with_name(f".{target.name}.publishing"))
    target.with_name(f".{target.name}.publishing").replace(target)
    return True


def published(source: Path, target: Path) -> bool:
    """The run of manifest ``source`` is already here: ``target``'s manifest vouches for its files and names the
    same key and the same records (its notebook and page may differ: ``republish`` republishes what a
    study's older code published)."""
    if finished(target) is None:
        return False
    try:
        ours, theirs = json.loads(source.read_text()), json.loads(target.read_text())
        records = {name: digest for name, digest in ours["files"].items() if name.endswith(".json")}
        return ours["key"] == theirs["key"] and bool(records) and all(theirs["files"].get(name) == digest
                                                                for name, digest in records.items())
    except (OSError, ValueError, KeyError, AttributeError):
        return False


def publish(source_root: Path, report: str) -> tuple[list[str], list[Path]]:
    """Copy what is finished under source_root/reports/<report>; the names of the runs copied and the files they
    are here (what ``commit`` commits: nothing else of this checkout's)."""
    from mnistlab.lab.assets import static_folder
    from mnistlab.lab.execute import republish
    from mnistlab.lab.render import rerender
    from mnistlab.records import Record

    source, target = source_root / "reports" / report, HERE / "reports" / report
    copied, written = [], []
    for manifest in sorted((source / "runs").glob(".*.done")):
        if published(manifest, target / "runs" / manifest.name):
            continue
        files = finished(manifest)
        if files:  # the page's images are files beside it (<name>_files/), which the manifest does not list
            name = manifest.name[1:-len(".done")]
            files += [path for path in (source / "runs" / f"{name}_files").rglob("*") if path.is_file()]
        if files and any([copy(path, target / path.relative_to(source)) for path in files]):
            name = manifest.name[1:-len(".done")]
            notebook = target / "runs" / f"{name}.ipynb"
            if republish(notebook) is not None:  # as this checkout's sweep publishes it; then its page anew
                rerender(notebook, notebook.with_suffix(".html"), target,
                         [Record.load(path) for path in files if path.suffix == ".json"])
            copied.append(name)
            written += [target / path.relative_to(source) for path in files]
            # and what rendering its page wrote here: its images beside it, the site's stylesheet and MathJax
            written += [path for folder in (target / "runs" / f"{name}_files", static_folder(target))
                        for path in folder.rglob("*") if path.is_file()]
    sweep_json = source / "sweep.json"
    if sweep_json.exists() and (not (target / "sweep.json").exists()
                                or sweep_json.stat().st_mtime > (target / "sweep.json").stat().st_mtime):
        site = [source / name for name in SITE_FILES if (source / name).exists()]
        site += [path for folder in ["_static", *(f"{page}_files" for page in PAGES)]
                 for path in (source / folder).rglob("*") if path.is_file()]
        if any([copy(path, target / path.relative_to(source)) for path in site]):
            copied.append(f"the {report} index and pages")
            written += [target / path.relative_to(source) for path in site]
        # Reports under reports/ share one stylesheet and MathJax (lab.assets.static_folder).
        shared = [path for path in (source.parent / "_static").rglob("*") if path.is_file()]
        if any([copy(path, HERE / "reports" / path.relative_to(source.parent)) for path in shared]):
            copied.append("reports/_static")
            written += [HERE / "reports" / path.relative_to(source.parent) for path in shared]
    return copied, written


def commit(written: list[Path], message: str) -> None:
    """Commit ``written`` alone: the files this script copied, never other work in progress in this checkout (an
    edit of a report's NOTES.md, pages a sweep here is rendering)."""
    paths = [path.relative_to(HERE).as_posix() for path in written if path.exists()]
    for _ in range(10):  # another git command may hold the index for a moment
        added = subprocess.run(["git", "-C", str(HERE), "add", "--", *paths], capture_output=True, text=True)
        if added.returncode == 0:
            done = subprocess.run(["git", "-C", str(HERE), "commit", "-q", "-m", message, "--", *paths],
                                  capture_output=True, text=True)
            if done.returncode == 0:
                return
            print(f"publish-finished: git commit: {done.stderr.strip() or done.stdout.strip()}", file=sys.stderr)
        time.sleep(3)
    print("publish-finished: could not commit; will try again next round", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the checkout the study runs in")
    parser.add_argument("--reports", default="paper,lr")
    parser.add_argument("--every", type=float, default=120.0, help="seconds between rounds")
    parser.add_argument("--once", action="store_true")
    args = parser.parse_args()
    reports = args.reports.split(",")
    while True:
        for report in reports:
            copied, written = publish(args.source.resolve(), report)
            if copied:
                shown = ", ".join(copied[:6]) + (f" and {len(copied) - 6} more" if len(copied) > 6 else "")
                commit(written, f"Publish finished runs of reports/{report}: {shown}")
                print(f"publish-finished: {report}: {shown}", flush=True)
        if args.once:
            return 0
        time.sleep(args.every)


if __name__ == "__main__":
    sys.exit(main())
