"""The first check of the GPU path, in two or three minutes: what a GPU node runs before its sweep (gpu-node.sh).

    python benchmarks/gpu_check.py --json check.json            (needs torch, numpy and the MNIST files)

Parts, in order, each saved to ``--json`` as soon as it is done (a run cut off still says what it found),
each with ``status`` ok, failed or skipped (and why), and each stopped at ``--deadline`` seconds:

  schedule_in_place  StepLR on Adam with a device-tensor learning rate (what a graph needs) changes that
                     tensor in place, to the rate the record says: this torch's behaviour, on any device
  host_syncs         one eager epoch of one wmodel and of a five-seed stack, counting the tensor calls that
                     wait for the device (``tolist``, ``item``, ``cpu``, ...): one read-back per epoch (plus
                     the predictions kept) is the design
  cuda_tests         ``pytest -m cuda`` on the test files that import nothing of the lab (CUDA only)
  replay_step        the captured step replayed against the same step run eagerly from the same state, before
                     and after a StepLR decay: the weights' updates must agree (CUDA only)
  graphs_vs_eager    the three models at H=1000, five seeds, two epochs with a decay after the first: the
                     graphed training's histories against the eager ones, as statistics (CUDA only)
  step_times         host and device time per step, eager against graph replay, at each --hidden-sizes (five
                     seeds); on a CPU only eager
  checkpoint         one checkpoint of a five-seed stack at the largest H: its size and the seconds to write it

``graphs`` in the JSON says whether a sweep should capture its steps: only when schedule_in_place,
replay_step and graphs_vs_eager all passed. Exits 1 when a part failed. TF32 stays off (the protocol's
precision), and cuBLAS gets a fixed workspace (``CUBLAS_WORKSPACE_CONFIG``) so that a capture on a side
stream picks the same kernels as the eager step.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import importlib.util
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

# Before CUDA starts: one cuBLAS workspace size for every stream, so that the graph's side stream and the eager
# default stream choose the same algorithms (a different split of a sum changes the last bits of every product).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/syncs.py, the host-sync counter the tests use too

import mnistlab  # noqa: E402
from mnistlab.atomic import atomic_write_bytes, atomic_write_text  # noqa: E402
from mnistlab.origin import describe, hardware  # noqa: E402
from mnistlab.stacked import StackedModel  # noqa: E402
from mnistlab.steps import GraphedStack, Stack  # noqa: E402
from mnistlab.train import scheduled_lr, train  # noqa: E402
from syncs import HostTransfers  # noqa: E402

SEEDS = [0, 1, 2, 3, 4]
# replay_step: the largest difference between a replayed and an eager update, relative to the update's size.
# Rounding alone gives about 1e-6; a rate baked into the graph, a gradient or a weight read from a stale copy
# gives 0.5 to 10. Batch norm makes rounding noise into lr-sized steps of fc1 (its gradient there is exactly
# zero in real arithmetic), so bmodel is compared on the layers after it.
REPLAY_TOLERANCE = 1e-3
COMPARED = {"nmodel": None, "wmodel": None, "bmodel": ("fc2.weight", "fc2.bias", "bn.weight", "bn.bias")}  # None: all
# graphs_vs_eager: over 1,000 steps the last-bit differences between two ways of computing the same step grow
# until the runs are two runs of one distribution (as 1 and 2 CPU threads are: 0.2 points apart after one epoch;
# tests/test_stacked.py). So the histories are compared as statistics over the five seeds: the mean signed
# difference per metric, and the largest single one. A decay not applied moves epoch 2 by a point or more.
MEAN_TOLERANCE = {"acc": 0.3, "loss": 0.1}  # points; relative to the eager loss
WORST_TOLERANCE = {"acc": 1.5, "loss": 0.3}


class Deadline(Exception):
    """A part ran past its ``--deadline``."""


@contextlib.contextmanager
def deadline(seconds: float):
    """Raise ``Deadline`` in this (the main) thread after ``seconds``; a CUDA call in progress ends first."""
    def expired(signum, frame):
        raise Deadline(f"stopped after its deadline of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def graphs_available(device: torch.device) -> bool:
    """Whether this device can capture CUDA graphs (tests/test_graphs.py stands in for them on a CPU)."""
    from mnistlab import train as train_module

    return train_module._graphs_available(device)


def schedule_in_place(device, data, args) -> dict:
    weight = torch.nn.Parameter(torch.zeros(3, device=device))
    lr = torch.tensor(0.01, device=device)
    optimizer = torch.optim.Adam([weight], lr=lr, fused=True, capturable=True)  # as train() makes it for graphs
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.1)
    address = lr.data_ptr()
    seen = []
    for _ in range(2):
        weight.grad = torch.ones_like(weight)
        optimizer.step()
        schedule.step()
        now = optimizer.param_groups[0]["lr"]
        seen.append({"same_tensor": now is lr and torch.is_tensor(now) and now.data_ptr() == address,
                     "value": float(now)})
    config = mnistlab.Config(step_size=1, gamma=0.1, lr=0.01)
    expected = [scheduled_lr(config, epoch) for epoch in (2, 3)]
    ok = all(s["same_tensor"] for s in seen) and all(
        math.isclose(s["value"], e, rel_tol=1e-6) for s, e in zip(seen, expected))
    return {"status": "ok" if ok else "failed", "torch": torch.__version__, "after_each_decay": seen,
            "expected": expected,
            **({} if ok else {"why": "StepLR did not update the tensor learning rate in place: a captured graph "
                                     "would keep training at the first rate"})}


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


def lab_free_test_files(root: Path = ROOT) -> tuple[list[str], dict[str, str]]:
    """The test files with ``cuda`` tests that import nothing this Python lacks and nothing of the lab (so that
    they are collected on a node before, or without, the notebook stack), and why the others are left out."""
    chosen, left = [], {}
    for path in sorted((root / "tests").glob("test_*.py")):
        text = path.read_text()
        if "mark.cuda" not in text:
            continue
        needs = set()
        for node in ast.parse(text).body:  # the module's own imports; those inside functions run only when used
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for name in names:
                local = (root / "tests" / f"{name}.py").exists()  # helpers.py, syncs.py
                missing = not local and importlib.util.find_spec(name.split(".")[0]) is None
                if name.startswith("mnistlab.lab") or missing:
                    needs.add(name)
        if needs:
            left[path.name] = f"imports {', '.join(sorted(needs))}"
        else:
            chosen.append(f"tests/{path.name}")
    return chosen, left


def cuda_tests(device, data, args) -> dict:
    if device.type != "cuda":
        return {"status": "skipped", "why": "no CUDA device"}
    files, left = lab_free_test_files()
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", *files]
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env,
                              timeout=args.tests_deadline)
    except subprocess.TimeoutExpired as stopped:
        out = stopped.stdout.decode() if isinstance(stopped.stdout, bytes) else stopped.stdout or ""
        return {"status": "failed", "why": f"stopped after {args.tests_deadline:g} s", "files": files,
                "not_collected": left, "tail": out[-3000:]}
    return {"status": "ok" if done.returncode == 0 else "failed", "exit": done.returncode, "files": files,
            "not_collected": left, "tail": done.stdout[-3000:] + done.stderr[-1000:]}


def _graph_optimizer(model, device, lr=0.01):
    """Adam as a graph needs it (a device-tensor rate, capturable), and a StepLR that decays it after each call."""
    optimizer = torch.optim.Adam(model.parameters(), lr=torch.tensor(lr, device=device), fused=True,
                                 capturable=True)
    return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.1)


def replay_step(device, data, args) -> dict:
    if not graphs_available(device):
        return {"status": "skipped", "why": "CUDA graphs need a CUDA device (tests/test_graphs.py runs this part "
                                            "on a CPU with stand-ins for the CUDA graph API)"}
    rows, ok = {}, True
    batch = 100
    for name in ("nmodel", "bmodel", "wmodel"):
        eager_model = StackedModel.from_seeds(name, args.graph_hidden_size, SEEDS).to(device)
        model = StackedModel.from_seeds(name, args.graph_hidden_size, SEEDS).to(device)
        eager_optimizer, eager_schedule = _graph_optimizer(eager_model, device)
        optimizer, schedule = _graph_optimizer(model, device)
        eager = Stack(eager_model, eager_optimizer, data.train, batch)
        graphed = GraphedStack(model, optimizer, data.train, batch)
        generators = [torch.Generator(device=device).manual_seed(seed) for seed in SEEDS]
        order = graphed.shuffle(generators)
        graphed.order.copy_(order)
        graphed.position.zero_()
        differences = []
        keys = COMPARED[name] or model.parameter_keys
        if not set(keys) <= set(model.parameter_keys):  # a name that compares nothing would pass any graph
            raise KeyError(f"{name} has no parameter {sorted(set(keys) - set(model.parameter_keys))}")
        for steps in (range(0, 3), range(3, 5)):  # three steps, a decay, two more
            before = {key: model.stacked(key).detach().clone() for key in keys}
            eager_before = {key: eager_model.stacked(key).detach().clone() for key in keys}
            for i in steps:
                eager.step(order[:, i * batch:(i + 1) * batch])
                graphed.graph.replay()
            worst = 0.0
            for key in keys:
                update = model.stacked(key).detach() - before[key]
                eager_update = eager_model.stacked(key).detach() - eager_before[key]
                scale = eager_update.norm().item()
                worst = max(worst, (update - eager_update).norm().item() / scale if scale else
                            float(update.norm().item() != 0))
            differences.append(worst)
            eager_schedule.step()
            schedule.step()
        passed = all(d <= REPLAY_TOLERANCE for d in differences)
        ok &= passed
        rows[name] = {"relative_difference": {"lr 0.01": differences[0], "lr 0.001": differences[1]},
                      "compared": COMPARED[name] or "every tensor", "ok": passed}
    return {"status": "ok" if ok else "failed", "tolerance": REPLAY_TOLERANCE, "models": rows}


def graphs_vs_eager(device, data, args) -> dict:
    if not graphs_available(device):
        return {"status": "skipped", "why": "CUDA graphs need a CUDA device (tests/test_graphs.py checks the "
                                            "capture logic on a CPU with stand-ins)"}
    rows, ok = {}, True
    for model in ("nmodel", "bmodel", "wmodel"):
        # step_size 1: the rate decays after the first epoch, inside the window compared.
        configs = [mnistlab.Config(model=model, hidden_size=args.graph_hidden_size, epochs=2, step_size=1,
                                   seed=seed, device=str(device), train_size=args.train_size) for seed in SEEDS]
        eager, graphed = train(configs, data=data), train(configs, data=data, cuda_graphs=True)
        compared = compare_histories(eager, graphed)
        ok &= compared["ok"]
        rows[model] = {**compared, "epoch_seconds": {"eager": eager[0].history[-1]["seconds"],
                                                     "graphs": graphed[0].history[-1]["seconds"]}}
    return {"status": "ok" if ok else "failed", "mean_tolerance": MEAN_TOLERANCE, "worst_tolerance": WORST_TOLERANCE,
            "models": rows}


def compare_histories(eager: list, graphed: list) -> dict:
    """Graphed against eager records of the same seeds: per metric and epoch, the mean signed difference over the
    seeds and the largest one (accuracies in points, losses relative to the eager loss), against the tolerances."""
    worst_mean, worst_single = {}, {}
    for key in ("train_loss", "val_loss", "test_loss", "train_acc", "val_acc", "test_acc"):
        kind = "acc" if key.endswith("acc") else "loss"
        means, singles = [], []
        for epoch in range(len(eager[0].history)):
            diffs = []
            for a, b in zip(eager, graphed):
                x, y = a.history[epoch][key], b.history[epoch][key]
                diffs.append((y - x) if kind == "acc" else (y - x) / abs(x))
            means.append(abs(sum(diffs) / len(diffs)))
            singles.append(max(abs(d) for d in diffs))
        worst_mean[key], worst_single[key] = max(means), max(singles)
    lrs = all([h["lr"] for h in x.history] == [h["lr"] for h in y.history] for x, y in zip(eager, graphed))
    ok = lrs and all(v <= MEAN_TOLERANCE["acc" if k.endswith("acc") else "loss"] for k, v in worst_mean.items()) \
        and all(v <= WORST_TOLERANCE["acc" if k.endswith("acc") else "loss"] for k, v in worst_single.items())
    return {"ok": ok, "same_learning_rates": lrs, "mean_difference": worst_mean, "largest_difference": worst_single}


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
    path = Path(args.scratch) / f"gpu-check-checkpoint-{os.getpid()}.pt"
    started = time.perf_counter()
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    atomic_write_bytes(path, buffer.getvalue())  # what train.train does: to memory, then fsync and rename
    seconds = time.perf_counter() - started
    size = path.stat().st_size
    path.unlink()
    return {"status": "ok", "hidden_size": hidden_size, "seeds": len(SEEDS), "mib": round(size / 2**20, 1),
            "seconds": round(seconds, 3)}


PARTS = {"schedule_in_place": schedule_in_place, "host_syncs": host_syncs, "cuda_tests": cuda_tests,
         "replay_step": replay_step, "graphs_vs_eager": graphs_vs_eager, "step_times": step_times,
         "checkpoint": checkpoint}
GRAPH_PARTS = ("schedule_in_place", "replay_step", "graphs_vs_eager")  # all ok: a sweep may capture its steps


def graphs_verdict(parts: dict) -> dict:
    """Whether a sweep should train with CUDA graphs, and why (or why not)."""
    missing = [name for name in GRAPH_PARTS if name not in parts]
    not_ok = [f"{name} {parts[name]['status']}" for name in GRAPH_PARTS if name in parts
              and parts[name]["status"] != "ok"]
    if missing or not_ok:
        return {"use": False, "because": "; ".join(not_ok + [f"{name} not run" for name in missing])}
    return {"use": True, "because": f"{', '.join(GRAPH_PARTS)} passed"}


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_parts(device, data, args, names) -> dict:
    """Run the named parts in order, each under its deadline; rewrite ``args.json`` after each."""
    hw = hardware(device)
    results = {"device": str(device), "hardware": hw, "torch": torch.__version__, "cuda": torch.version.cuda,
               "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"), "tf32": False, "parts": {}}
    print(f"gpu-check on {describe(hw)}, torch {torch.__version__}", flush=True)
    for name in names:
        started = time.perf_counter()
        try:
            with deadline(args.deadline):
                part = PARTS[name](device, data, args)
        except Exception as error:  # a part that breaks, or runs out of time, must not hide the others
            part = {"status": "failed", "error": f"{type(error).__name__}: {error}",
                    "traceback": traceback.format_exc()[-3000:]}
        part["seconds"] = round(time.perf_counter() - started, 1)
        results["parts"][name] = part
        results["graphs"] = graphs_verdict(results["parts"])
        shown = {k: v for k, v in part.items() if k not in ("traceback", "tail")}
        print(f"{name}: {json.dumps(shown)}", flush=True)
        if args.json:
            atomic_write_text(args.json, json.dumps(results, indent=1) + "\n")
    return results


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"some of {', '.join(PARTS)}")
    parser.add_argument("--hidden-sizes", type=lambda s: [int(h) for h in s.split(",")], default=[1000, 5000],
                        help="host_syncs takes the first, step_times each, checkpoint the largest")
    parser.add_argument("--graph-hidden-size", type=int, default=1000, help="replay_step's and graphs_vs_eager's H")
    parser.add_argument("--steps", type=int, default=50, help="steps timed per row of step_times")
    parser.add_argument("--train-size", type=int, default=50_000)
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds each part may take")
    parser.add_argument("--tests-deadline", type=float, default=100.0, help="seconds the cuda tests may take")
    parser.add_argument("--scratch", default=os.environ.get("TMPDIR", "/tmp"), help="where the checkpoint is written")
    parser.add_argument("--json", help="results, rewritten after every part")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.parts.split(",")) - set(PARTS))
    if unknown:
        parser.error(f"--parts: unknown {', '.join(unknown)}; valid: {', '.join(PARTS)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device(args.device)
    data = mnistlab.load(device=device, train_size=args.train_size)
    results = run_parts(device, data, args, args.parts.split(","))
    skipped = [name for name, part in results["parts"].items() if part["status"] == "skipped"]
    if skipped:
        print(f"gpu-check: skipped on {device}: {', '.join(skipped)}")
    print(f"gpu-check: CUDA graphs {'on' if results['graphs']['use'] else 'off'} ({results['graphs']['because']})")
    return 1 if any(part["status"] == "failed" for part in results["parts"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
