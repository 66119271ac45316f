"""Command line: ``mnistlab fetch``, ``mnistlab train``."""

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

    p = commands.add_parser("train", help="train one config and print its summary as JSON")
    for name, default in Config().to_dict().items():
        kind = type(default) if default is not None else str
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default)
    p.add_argument("--out", help="write the record JSON here")
    p.add_argument("--progress", action="store_true")

    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(fetch(args.data_dir, force=args.force))
        elif args.command == "train":
            from .train import run

            settings = {k: getattr(args, k) for k in Config.field_names()}
            record = run(Config(**settings), progress=args.progress)
            if args.out:
                record.save(args.out)
            print(json.dumps(record.summary, indent=1))
    except (DataError, ConfigError) as error:
        print(f"mnistlab {args.command}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
