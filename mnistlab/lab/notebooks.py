"""Keep committed notebooks lean: outputs only in the cells nbval checks."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nbformat

CHECK = "# NBVAL_CHECK_OUTPUT"  # first line of a cell whose stored output nbval compares


def is_checked(cell) -> bool:
    return cell.cell_type == "code" and cell.source.lstrip().startswith(CHECK)


def lean(notebook, executed=None):
    """Clear outputs and execution counts, except in checked cells, whose outputs come from ``executed``.

    nbval skips a stored output whose cell has no execution count, so checked cells keep one:
    their position among the code cells, which stays stable across refreshes.
    """
    fresh = {cell.source: cell.outputs for cell in executed.cells if is_checked(cell)} if executed else {}
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for count, cell in enumerate(code, start=1):
        cell.metadata.pop("execution", None)
        if not is_checked(cell):
            cell.execution_count, cell.outputs = None, []
            continue
        cell.execution_count = count
        if cell.source in fresh:
            cell.outputs = [_with_count(out, count) for out in fresh[cell.source]]
    return notebook


def refresh(path: str | os.PathLike, **parameters) -> None:
    """Execute ``path`` with papermill and store back only the checked cells' new outputs."""
    import papermill

    from .execute import unix_sockets

    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp, unix_sockets() as config:
        executed = papermill.execute_notebook(path, Path(tmp) / path.name, parameters=parameters,
                                              kernel_name="python3", progress_bar=False, config=config)
    notebook = nbformat.read(path, as_version=4)
    nbformat.write(lean(notebook, executed), path)


def _with_count(output, count):
    if "execution_count" in output:
        output["execution_count"] = count
    return output


def main(argv: list[str] | None = None) -> None:
    """``python -m mnistlab.lab.notebooks NOTEBOOK... [-p NAME VALUE]...``: refresh the checked outputs in place."""
    import argparse

    import yaml

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("notebooks", nargs="+")
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a parameter, its value read as YAML (as papermill's -p)")
    args = parser.parse_args(argv)
    parameters = {name: yaml.safe_load(value) for name, value in args.p}
    for path in args.notebooks:
        refresh(path, **parameters)
        print(f"refreshed {path}")


if __name__ == "__main__":
    main()
