"""A first check of the GPU path in a few minutes: what a GPU node with little time should run before anything else.

    python benchmarks/gpu_check.py --json gpu-check.json         (scripts/gpu-check.sh, make gpu-check)

Parts, in order, each saved to ``--json`` as soon as it is done (a run cut off by a time limit still
says what it found), each with ``status`` ok, failed or skipped (and why):

  host_syncs       one eager epoch of one wmodel and of a five-seed stack at the first of --hidden-sizes
                   (1000), counting the tensor calls that wait for the device (``tolist``, ``item``, ``cpu``,
                   ...): one read-back per epoch (plus the predictions kept) is the design
  cuda_tests       ``pytest -m cuda`` (CUDA only)
  graphs_vs_eager  the three models at H=1000, five seeds, two epochs on the 50,000 images: CUDA graphs
                   against the eager stack, the largest difference per metric (CUDA only)
  step_times       host and device time per step, eager against graph replay, at H=1000 and 5000 (five
                   seeds); on a CPU only eager
  checkpoint       one checkpoint of a five-seed stack at the largest H (5000): its size and the seconds to write it

Exits 1 when a part failed. TF32 stays off (the protocol's precision).
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

import mnistlab
from mnistlab.atomic import atomic_write_bytes, atomic_write_text
from mnistlab.origin import describe, hardware
from mnistlab.stacked import StackedModel
from mnistlab.steps import GraphedStack, Stack
from mnistlab.syncs import HostTransfers
from mnistlab.train import train

ROOT = Path(__file__).resolve().parent.parent
SEEDS = [0, 1, 2, 3, 4]
# Largest differences accepted between graphed and eager stacks over two epochs: losses, accuracy points
# (bmodel: batch norm makes rounding noise into real steps; see tests/test_stacked.py).
TOLERANCE = {"nmodel": (1e-4, 0.1), "wmodel": (1e-4, 0.1), "bmodel": (5e-2, 1.0)}


def host_syncs(device, data, args) -> dict:
    result = {}
    for label, seeds in (("one network", [0]), ("five-seed stack", SEEDS)):
        configs = [mnistlab.Config(model="wmodel", hidden_size=args.hidden_sizes[0], epochs=1, seed=seed,
                                   device=str(device), train_size=args.train_size) for seed in seeds]
        with HostTransfers() as spy:
            train(configs, data=data)
        result[label] = {name: n for name, n in spy.calls.items() if n}
    # One epoch, one read-back (tolist); the test predictions are copied (cpu, then numpy on the host copy)
    # once per record that keeps them.
    ok = all(calls.get("tolist") == 1 and set(calls) <= {"tolist", "cpu", "numpy"}
             and calls.get("cpu", 0) <= seeds for calls, seeds in zip(result.values(), (1, len(SEEDS))))
    return {"status": "ok" if ok else "failed", "calls_per_epoch": result}


def cuda_tests(device, data, args) -> dict:
    if device.type != "cuda":
        return {"status": "skipped", "why": "no CUDA device"}
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "tests"],
                          cwd=ROOT, capture_output=True, text=True, env=env)
    return {"status": "ok" if done.returncode == 0 else "failed", "exit": done.returncode,
            "tail": done.stdout[-3000:] + done.stderr[-1000:]}


def graphs_vs_eager(device, data, args) -> dict:
    if device.type != "cuda":
        return {"status": "skipped", "why": "CUDA graphs need a CUDA device (tests/test_graphs.py checks the "
                                             "capture logic on a CPU with stand-ins)"}
    rows, ok = {}, True
    for model in ("nmodel", "bmodel", "wmodel"):
        configs = [mnistlab.Config(model=model, hidden_size=1000, epochs=2, seed=seed, device="cuda",
                                   train_size=args.train_size) for seed in SEEDS]
        eager, graphed = train(configs, data=data), train(configs, data=data, cuda_graphs=True)
        diffs = {key: max(abs(a[key] - b[key]) for x, y in zip(eager, graphed) for a, b in zip(x.history, y.history))
                 for key in ("train_loss", "val_loss", "test_loss", "train_acc", "val_acc", "test_acc")}
        lrs = all([h["lr"] for h in y.history] == [h["lr"] for h in x.history] for x, y in zip(eager, graphed))
        loss_tol, acc_tol = TOLERANCE[model]
        passed = lrs and all(v <= (loss_tol if k.endswith("loss") else acc_tol) for k, v in diffs.items())
        ok &= passed
        rows[model] = {"max_difference": diffs, "same_learning_rates": lrs, "ok": passed,
                       "epoch_seconds": {"eager": eager[0].history[-1]["seconds"],
                                         "graphs": graphed[0].history[-1]["seconds"]}}
    return {"status": "ok" if ok else "failed", "models": rows}


def step_times(device, data, args) -> dict:
    rows = {}
    cuda = device.type == "cuda"
    for hidden_size in args.hidden_sizes:
        for mode in ("eager", "graphs") if cuda else ("eager",):
            model = StackedModel.from_seeds("wmodel", hidden_size, SEEDS).to(device)
            lr = torch.tensor(0.01, device=device) if mode == "graphs" else 0.01
            optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=True, capturable=mode == "graphs")
            steps = (GraphedStack if mode == "graphs" else Stack)(model, optimizer, data.train, 100)
            index = torch.stack([torch.randperm(len(data.train), device=device)[:100] for _ in SEEDS])
            step = steps.graph.replay if mode == "graphs" else functools.partial(steps.step, index)
            for _ in range(5):
                step()
            _sync(device)
            n = args.steps
            start_event = torch.cuda.Event(enable_timing=True) if cuda else None
            end_event = torch.cuda.Event(enable_timing=True) if cuda else None
            if cuda:
                start_event.record()
            started = time.perf_counter()
            for _ in range(n):
                step()
            host = (time.perf_counter() - started) / n  # time to issue a step, without waiting for it
            if cuda:
                end_event.record()
            _sync(device)
            wall = (time.perf_counter() - started) / n
            row = {"host_ms_per_step": 1e3 * host, "wall_ms_per_step": 1e3 * wall}
            if cuda:
                row["gpu_ms_per_step"] = start_event.elapsed_time(end_event) / n
            rows[f"H={hidden_size} {mode}"] = row
    return {"status": "ok", "seeds": len(SEEDS), "steps": args.steps, "rows": rows}


def checkpoint(device, data, args) -> dict:
    hidden_size = max(args.hidden_sizes)
    model = StackedModel.from_seeds("wmodel", hidden_size, SEEDS).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, fused=True)
    Stack(model, optimizer, data.train, 100).step(torch.stack([torch.arange(100, device=device)] * len(SEEDS)))
    _sync(device)
    path = Path(args.scratch) / "gpu-check-checkpoint.pt"
    started = time.perf_counter()
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    atomic_write_bytes(path, buffer.getvalue())  # what train.train does: to memory, then fsync and rename
    seconds = time.perf_counter() - started
    size = path.stat().st_size
    path.unlink()
    return {"status": "ok", "hidden_size": hidden_size, "seeds": len(SEEDS), "mib": round(size / 2**20, 1),
            "seconds": round(seconds, 3)}


PARTS = {"host_syncs": host_syncs, "cuda_tests": cuda_tests, "graphs_vs_eager": graphs_vs_eager,
         "step_times": step_times, "checkpoint": checkpoint}


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--hidden-sizes", type=lambda s: [int(h) for h in s.split(",")], default=[1000, 5000])
    parser.add_argument("--steps", type=int, default=50, help="steps timed per row of step_times")
    parser.add_argument("--train-size", type=int, default=50_000)
    parser.add_argument("--scratch", default=os.environ.get("TMPDIR", "/tmp"), help="where the checkpoint is written")
    parser.add_argument("--json", help="results, rewritten after every part")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device(args.device)
    hw = hardware(device)
    results = {"device": str(device), "hardware": hw, "torch": torch.__version__, "parts": {}}
    print(f"gpu-check on {describe(hw)}, torch {torch.__version__}", flush=True)
    data = mnistlab.load(device=device, train_size=args.train_size)
    failed = False
    for name in args.parts.split(","):
        started = time.perf_counter()
        try:
            part = PARTS[name](device, data, args)
        except Exception as error:  # a part that breaks must not hide the others
            part = {"status": "failed", "error": f"{type(error).__name__}: {error}",
                    "traceback": traceback.format_exc()[-3000:]}
        part["seconds"] = round(time.perf_counter() - started, 1)
        failed |= part["status"] == "failed"
        results["parts"][name] = part
        shown = {k: v for k, v in part.items() if k not in ("traceback", "tail")}
        print(f"{name}: {json.dumps(shown)}", flush=True)
        if args.json:
            atomic_write_text(args.json, json.dumps(results, indent=1) + "\n")
    skipped = [name for name, part in results["parts"].items() if part["status"] == "skipped"]
    if skipped:
        print(f"gpu-check: skipped on {device}: {', '.join(skipped)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
