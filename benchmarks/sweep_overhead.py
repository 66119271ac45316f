"""Seconds a sweep spends per notebook beyond training: this checkout's sweep against an earlier commit's, same command.

    python benchmarks/sweep_overhead.py [--runs 4] [--baseline a020418] [--json PATH]

Both sweep the same tiny params files (nmodel, H=16, 1 epoch on 500 images) into a fresh folder,
with one-cell stand-ins for the analysis, data and backprop pages, so what is left is the cost of a
notebook itself: starting papermill and a kernel, imports, saving, rendering, bookkeeping. The
overhead per notebook is (wall time - the runs' training seconds from their records) / (runs + 3
pages). The baseline is the package and notebooks of ``--baseline`` (a git commit of this
repository, checked out into a temporary worktree and put first on PYTHONPATH for the sweep and its
kernels). Each side runs ``--repeats`` times, alternating; the fastest is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import yaml
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("analysis", "data", "backprop")
TINY = {"model": "nmodel", "hidden_size": 16, "epochs": 1, "step_size": 1, "train_size": 500}


def project(folder: Path, code: Path, runs: int) -> Path:
    """A project root: ``code``'s train notebook, stand-in pages, ``runs`` params files."""
    notebooks, params = folder / "notebooks", folder / "params"
    notebooks.mkdir(parents=True)
    params.mkdir()
    (notebooks / "train.ipynb").symlink_to(code / "notebooks" / "train.ipynb")
    for name in PAGES:
        kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
        cell = new_code_cell("records_dir = ''", metadata={"tags": ["parameters"]})
        nbformat.write(new_notebook(cells=[cell, new_code_cell("print(1 + 1)")], metadata=kernel),
                       notebooks / f"{name}.ipynb")
    for i in range(runs):
        (params / f"tiny{i}.yaml").write_text(yaml.safe_dump(TINY))
    return folder


def sweep_once(folder: Path, code: Path, baseline: bool, data: Path) -> float:
    """Overhead per notebook of one sweep of ``folder``'s params with ``code``'s package."""
    out = folder / f"out-{time.time_ns()}"
    env = {**os.environ, "MNISTLAB_ROOT": str(folder), "MNISTLAB_DATA": str(data)}
    if baseline:
        env["PYTHONPATH"] = str(code)
        call = (f"from mnistlab.sweep import sweep; sweep({str(folder / 'params')!r}, {str(out)!r}, "
                f"notebooks={str(folder / 'notebooks')!r})")
    else:
        call = f"from mnistlab.lab.sweep import sweep; sweep({str(folder / 'params')!r}, {str(out)!r})"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", call], env=env, cwd=folder, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the {'baseline' if baseline else 'current'} sweep failed:\n{done.stderr[-3000:]}")
    wall = time.perf_counter() - started
    records = list((out / "runs").glob("*.json"))
    training = sum(sum(row["seconds"] for row in json.loads(path.read_text())["history"]) for path in records)
    runs = len(list((folder / "params").glob("*.yaml")))
    assert len(records) == runs, f"{len(records)} records for {runs} runs in {out}"
    return (wall - training) / (runs + len(PAGES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--baseline", default="a020418", help="git commit of the 'before' sweep")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    import mnistlab

    data = mnistlab.fetch().folder.parent.parent
    with tempfile.TemporaryDirectory(prefix="mnistlab-overhead-") as tmp:
        tmp = Path(tmp)
        old = tmp / "baseline-code"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.baseline],
                       check=True, capture_output=True)
        try:
            times = {"before": [], "after": []}
            folders = {"before": project(tmp / "before", old, args.runs),
                       "after": project(tmp / "after", ROOT, args.runs)}
            for _ in range(args.repeats):
                for side in ("before", "after"):
                    times[side].append(sweep_once(folders[side], old if side == "before" else ROOT,
                                                  side == "before", data))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)
    best = {side: min(values) for side, values in times.items()}
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; {args.runs} tiny runs + "
          f"{len(PAGES)} stand-in pages per sweep, fastest of {args.repeats}")
    print(f"seconds per notebook beyond training: before ({args.baseline}) {best['before']:.1f} s, "
          f"after {best['after']:.1f} s ({best['before'] / best['after']:.1f}x less)")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": args.runs, "times": times, "best": best}, indent=1) + "\n")


if __name__ == "__main__":
    main()
