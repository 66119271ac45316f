#!/usr/bin/env python
"""Re-key the finished runs of a report after a change of how a run's identity is written, not of what it trains.

    python scripts/rekey-runs.py reports/beyond [--dry-run]

A sweep keeps each finished run under a key made from its seeds' training identities
(``Config.identity``). When the identity's form changes but not what it means (2026-12-07: options left
at their defaults, ``NAMED_WHEN_SET``, are no longer named), a run made before the change would read as
"settings changed" and be trained again. This rewrites the key of a run's manifest (``runs/.NAME.done``)
only when the old key is exactly what the run's own records give under the old form (every setting
named), so the records, notebook and page it vouches for are untouched and still checked by their
SHA-256; any other manifest is left alone and reported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mnistlab import Config, Record  # noqa: E402
from mnistlab.atomic import atomic_write_text  # noqa: E402
from mnistlab.config import PLACE_KEYS  # noqa: E402
from mnistlab.lab import cache  # noqa: E402


def keys(configs: list[Config], tensorboard: bool) -> tuple[str, str]:
    """The run's key with every setting named (the old form) and by ``Config.identity`` (the new one)."""
    every = [{k: v for k, v in c.to_dict().items() if k not in PLACE_KEYS} for c in configs]
    return (cache.key({"runs": every, "tensorboard": tensorboard}),
            cache.key({"runs": [c.identity() for c in configs], "tensorboard": tensorboard}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    changed = kept = 0
    for manifest in sorted((args.report / "runs").glob(".*.done")):
        entry = json.loads(manifest.read_text())
        records = [manifest.parent / name for name in entry["files"] if name.endswith(".json")]
        configs = [Config(**Record.load(path).config) for path in records]
        forms = [keys(configs, tensorboard) for tensorboard in (False, True)]
        match = [new for old, new in forms if old == entry["key"]]
        if entry["key"] in [new for _, new in forms]:
            kept += 1
            print(f"{manifest.name}: kept (already the new form)")
            continue
        if not match:
            kept += 1
            print(f"{manifest.name}: kept (neither form of its records' key: not this script's to change)")
            continue
        changed += 1
        print(f"{manifest.name}: {entry['key'][:12]} -> {match[0][:12]}")
        if not args.dry_run:
            atomic_write_text(manifest, json.dumps({**entry, "key": match[0]}, indent=1) + "\n")
    print(f"{changed} re-keyed, {kept} kept" + (" (dry run: nothing written)" if args.dry_run else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
