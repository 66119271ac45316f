#!/usr/bin/env python
"""Make the published notebooks of a report valid, keeping them up to date for the sweep.

    python scripts/repair-notebooks.py reports/paper reports/ablations [--check]

Sweeps before 6b6e129 wrote ``"outputs": []`` into markdown and raw cells, which ``nbformat.validate``
refuses and Jupyter Server answers with "Notebook validation failed". This removes from every non-code cell
what only code cells may hold (outputs, execution count), nothing else, and writes each repaired notebook in
place. Where a sweep's manifest (``.NAME.done`` beside it) vouches for the notebook, the manifest is stamped
again for the repaired file with the same key, so the run stays up to date and is not retrained. With
``--check`` nothing is written; the exit status is 1 when any notebook is invalid.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nbformat

from mnistlab.lab import cache

CODE_ONLY = ("outputs", "execution_count")


def repaired(path: Path) -> dict | None:
    """The notebook at ``path`` made valid; None when it already is."""
    notebook = json.loads(path.read_text())
    changed = False
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            for key in CODE_ONLY:
                changed |= cell.pop(key, None) is not None
    if not changed:
        return None
    nbformat.validate(nbformat.from_dict(notebook))  # anything else wrong: stop, write nothing
    return notebook


def vouched(manifest: Path) -> str | None:
    """The key of ``manifest`` when it vouches for its files as they are now; None otherwise."""
    try:
        key = json.loads(manifest.read_text())["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return key if cache.fresh(manifest, key) else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when any notebook is invalid")
    args = parser.parse_args()
    invalid = 0
    for report in args.reports:
        for path in sorted(report.rglob("*.ipynb")):
            if path.name.startswith(".") or "checkpoints" in path.parts:
                continue
            notebook = repaired(path)
            if notebook is None:
                continue
            invalid += 1
            if args.check:
                print(f"invalid: {path}")
                continue
            manifest = path.with_name(f".{path.stem}.done")
            key = vouched(manifest)
            nbformat.write(nbformat.from_dict(notebook), path)
            if key:  # up to date before: stays so, for the same files
                files = json.loads(manifest.read_text())["files"]
                cache.stamp(manifest, key, [manifest.parent / name for name in files])
            print(f"repaired: {path}" + (" (its manifest stamped again)" if key else ""))
    print(f"{invalid} notebook(s) {'invalid' if args.check else 'repaired'}")
    return 1 if args.check and invalid else 0


if __name__ == "__main__":
    sys.exit(main())
