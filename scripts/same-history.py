#!/usr/bin/env python
"""Does this checkout train exactly what an earlier commit trained? The check every training-code change needs.

    python scripts/same-history.py [COMMIT]          (default: HEAD, i.e. this tree's uncommitted changes)
    python scripts/same-history.py a43e37f --epochs 3 --hidden-size 1000 --threads 1
    python scripts/same-history.py c8b309d --record  (and, when all is equal, note COMMIT's fingerprint in
                                                      mnistlab/same_numbers.py: its records count as this code's)

For each registered model (``mnistlab.MODELS``, plugins included), two short runs by this tree's code
and by COMMIT's code (``git archive`` of its ``mnistlab/`` and ``notebooks/train.ipynb`` into a temporary
folder), each in a fresh ``python`` process with the same torch thread count, on this machine's CPU and
the same data: one with the HW5 report's settings, one with every training option on (``OPTIONS``:
dropout, shifts, elastic distortions, the cosine schedule), so that a change that moves the numbers of
the "beyond" study is caught too. The histories (every loss and accuracy of every epoch, the epoch times
left out), the kept test predictions, the status and, where both codes measure it, the training set in
eval mode must be equal bit for bit; the script prints each verdict and exits 1 when any differs. A model
or option COMMIT's code does not have is reported and skipped. Bit-identity holds only for one device,
thread count and kind of process (README, deviations), which is why both sides run the same way here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = {"dropout": 0.2, "shift": 2, "elastic": 34.0, "schedule": "cosine"}  # the "options" runs' settings

# Runs in the child: import mnistlab from the folder given (not from an editable install, whose finder
# would win over sys.path), train, print the history and predictions as JSON.
CHILD = r"""
import json, sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()]
sys.path.insert(0, sys.argv[1])
import mnistlab, torch
settings = json.loads(sys.argv[2])
data = mnistlab.load(settings.pop("data_dir"), train_size=settings["train_size"])
try:
    config = mnistlab.Config(**settings)
except (TypeError, ValueError) as error:  # a model or setting this code does not have
    print(json.dumps({"unsupported": str(error)}))
    sys.exit(0)
record = mnistlab.run(config, data=data)
assert mnistlab.__file__.startswith(sys.argv[1]), mnistlab.__file__
try:
    from mnistlab import origin
    fingerprint = origin.code()["fingerprint"]
except ImportError:  # code from before records named their code
    fingerprint = None
try:
    from mnistlab.same_numbers import SAME_NUMBERS
except ImportError:
    SAME_NUMBERS = {}
history = [{k: v for k, v in row.items() if k != "seconds"} for row in record.history]
print(json.dumps({"numbers": {"history": history, "predictions": record.predictions, "status": record.status,
                              "diverged_epoch": record.diverged_epoch},
                  "train_eval": getattr(record, "train_eval", "not measured"), "threads": torch.get_num_threads(),
                  "fingerprint": fingerprint, "same_numbers": SAME_NUMBERS}))
"""


def train(source: Path, settings: dict, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "MNISTLAB_ROOT": str(source)}  # the train notebook of that code is the one fingerprinted
    result = subprocess.run([sys.executable, "-c", CHILD, str(source), json.dumps(settings)], env=env,
                            capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"same-history: training with {source} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commit", nargs="?", default="HEAD")
    parser.add_argument("--models", default=None, help="comma-separated; default: every registered model")
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in both processes")
    parser.add_argument("--record", action="store_true", help="when every model is bit-identical, add COMMIT's "
                        "fingerprint (and those it was itself checked against) to mnistlab/same_numbers.py")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    import mnistlab

    models = args.models.split(",") if args.models else list(mnistlab.MODELS)
    data_dir = str(mnistlab.fetch().folder.parent.parent)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.commit], check=True,
                            capture_output=True, text=True).stdout.strip()
    failed, checked, fingerprint, old_fingerprint = False, [], None, None
    with tempfile.TemporaryDirectory(prefix="same-history-") as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "mnistlab", "notebooks/train.ipynb"],
                                 check=True, capture_output=True).stdout
        old = Path(tmp) / commit
        old.mkdir()
        with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
            tar.extractall(old, filter="data")
        print(f"this tree against {commit}: H={args.hidden_size}, {args.epochs} epochs (lr decay every epoch), "
              f"{args.train_size} training images, {args.threads} torch thread(s), CPU, fresh processes")
        for model in models:
            for label, extra in (("protocol", {}), ("options", OPTIONS)):
                settings = {"model": model, "hidden_size": args.hidden_size, "epochs": args.epochs, "step_size": 1,
                            "train_size": args.train_size, "device": "cpu", "data_dir": data_dir, **extra}
                ours = train(ROOT, dict(settings), args.threads)
                theirs = train(old, dict(settings), args.threads)
                fingerprint = ours.get("fingerprint", fingerprint)
                if "unsupported" in ours:
                    sys.exit(f"same-history: this tree cannot train {model} ({label}): {ours['unsupported']}")
                if "unsupported" in theirs:
                    print(f"{model}, {label}: not in {commit}'s code, skipped ({theirs['unsupported'][:100]})")
                    continue
                old_fingerprint = theirs["fingerprint"]
                same = ours["numbers"] == theirs["numbers"] and (theirs["train_eval"] == "not measured"
                                                                 or ours["train_eval"] == theirs["train_eval"])
                failed |= not same
                checked.append(theirs)
                last = ours["numbers"]["history"][-1]
                print(f"{model}, {label}: {'bit-identical' if same else 'DIFFERENT'} "
                      f"({len(ours['numbers']['history'])} epochs, final test_loss {last['test_loss']!r}, "
                      f"test_acc {last['test_acc']!r})")
                if not same:
                    for a, b in zip(ours["numbers"]["history"], theirs["numbers"]["history"]):
                        changed = {k: (a[k], b[k]) for k in a if a[k] != b.get(k)}
                        if changed:
                            print(f"  epoch {a['epoch']}: {changed}")
        if not checked:
            sys.exit(f"same-history: {commit}'s code trains none of {', '.join(models)}; nothing was compared")
        print(f"fingerprints: this tree {str(fingerprint)[:12]}, {commit} {str(old_fingerprint)[:12]}")
        if args.record and not failed:
            record_same_numbers(checked[-1], commit, args, fingerprint, models)
    return 1 if failed else 0


def record_same_numbers(theirs: dict, commit: str, args, ours: str, models: list[str]) -> None:
    """Add the checked commit's fingerprint, and those it counted as its own, to mnistlab/same_numbers.py."""
    if not theirs["fingerprint"]:
        sys.exit(f"same-history: {commit}'s code records no fingerprint; nothing to note")
    sys.path.insert(0, str(ROOT))
    import torch

    from mnistlab.origin import describe, hardware
    from mnistlab.same_numbers import SAME_NUMBERS

    how = (f"{commit}, checked {time.strftime('%Y-%m-%d')} by scripts/same-history.py ({', '.join(models)}, "
           f"H={args.hidden_size}, {args.epochs} epochs, {args.train_size} images, {args.threads} thread(s), "
           f"on {describe(hardware(torch.device('cpu')))})")
    new = {fingerprint: f"as {commit}'s: {note}" for fingerprint, note in theirs["same_numbers"].items()}
    new[theirs["fingerprint"]] = how
    new = {fingerprint: note for fingerprint, note in new.items()
           if fingerprint not in SAME_NUMBERS and fingerprint != ours}
    if not new:
        print("same-history: nothing new to note in mnistlab/same_numbers.py")
        return
    path = ROOT / "mnistlab" / "same_numbers.py"
    text = path.read_text()
    table = "SAME_NUMBERS: dict[str, str] = {"
    if table + "}" in text:
        text = text.replace(table + "}", table + "\n}")
    lines = "".join(f"    {fingerprint!r}: {note!r},\n" for fingerprint, note in new.items())
    path.write_text(text.replace(table + "\n", table + "\n" + lines, 1))
    print(f"same-history: noted {len(new)} fingerprint(s) in mnistlab/same_numbers.py")


if __name__ == "__main__":
    sys.exit(main())
