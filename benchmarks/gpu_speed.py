"""Seconds per epoch on one device: one seed eager and graphed, five seeds together eager and graphed, and the FLOP
bound.

    python benchmarks/gpu_speed.py [--device cuda] [--hidden-sizes 1000,2000,5000] [--epochs 3] [--json out.json]
    python benchmarks/gpu_speed.py --device cpu --hidden-sizes 64 --epochs 1 --train-size 2000   # a smoke run

Ways of training, each the study's real loop with its records:
  eager          one seed, ``mnistlab.run``
  graphs         one seed, ``train([config], cuda_graphs=True)`` (CUDA only)
  stack          ``--seeds`` seeds together, ``train(configs)`` eager
  stack-graphs   ``--seeds`` seeds together, CUDA graphs (CUDA only)
An epoch is the record's: a shuffled training pass, then validation and test. The figure kept is
the median epoch (the first epoch pays for cuBLAS's and the allocator's warm-up; a graph's capture
happens before the first epoch and is reported as ``setup_s``). ``per_seed_s`` divides a stack's
epoch by its seeds, to compare with one seed's epoch.

Lower bound: the GEMM FLOPs of an epoch (forward and backward of both layers over the training
images, forward over validation and test; batch norm, weight norm, Adam and the loss are a few
per cent and left out) divided by ``--peak-flops`` (60e12: an H100's FP32 rate, TF32 off, as the
protocol trains in FP32). TF32 is switched off here whatever the defaults say.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch

import mnistlab
from mnistlab.atomic import atomic_write_text
from mnistlab.data import TEST_SIZE, VAL_SIZE
from mnistlab.models import IN_FEATURES, NUM_CLASSES
from mnistlab.origin import describe, hardware
from mnistlab.train import train

MODES = ("eager", "graphs", "stack", "stack-graphs")


def epoch_flops(hidden_size: int, train_size: int, evaluated: int = VAL_SIZE + TEST_SIZE) -> float:
    """GEMM FLOPs of one epoch of one model: 2 per multiply-add."""
    forward = 2 * (IN_FEATURES * hidden_size + hidden_size * NUM_CLASSES)  # per image
    # Backward: each layer's weight gradient, and the hidden layer's input gradient (fc2's); fc1's
    # input is the image, whose gradient nobody needs.
    backward = 2 * (IN_FEATURES * hidden_size + 2 * hidden_size * NUM_CLASSES)
    return train_size * (forward + backward) + evaluated * forward


def time_mode(mode: str, model: str, hidden_size: int, args, data) -> dict:
    """Train ``args.epochs`` epochs one way; seconds per epoch from the records."""
    seeds = list(range(args.seeds)) if mode.startswith("stack") else [0]
    configs = [mnistlab.Config(model=model, hidden_size=hidden_size, epochs=args.epochs, train_size=args.train_size,
                               seed=seed, device=args.device) for seed in seeds]
    _sync(args.device)
    started = time.perf_counter()
    if mode == "eager":
        records = [mnistlab.run(configs[0], data=data)]
    else:
        records = train(configs, data=data, cuda_graphs=mode.endswith("graphs"))
    _sync(args.device)
    wall = time.perf_counter() - started
    epochs = [h["seconds"] for h in records[0].history]
    epoch_s = statistics.median(epochs)
    bound = epoch_flops(hidden_size, args.train_size) * len(seeds) / args.peak_flops
    return {"model": model, "hidden_size": hidden_size, "mode": mode, "seeds": len(seeds), "epoch_s": epoch_s,
            "per_seed_s": epoch_s / len(seeds), "first_epoch_s": epochs[0], "setup_s": wall - sum(epochs),
            "bound_s": bound, "bound_fraction": bound / epoch_s,
            "final_test_acc": [r.history[-1]["test_acc"] for r in records]}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default="nmodel,bmodel,wmodel")
    parser.add_argument("--hidden-sizes", default="1000,2000,5000")
    parser.add_argument("--modes", default=",".join(MODES), help=f"some of {', '.join(MODES)}")
    parser.add_argument("--seeds", type=int, default=5, help="seeds trained together in the stack modes")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timing; the median epoch is kept")
    parser.add_argument("--train-size", type=int, default=50_000, help="training images per epoch")
    parser.add_argument("--peak-flops", type=float, default=60e12, help="FP32 FLOP/s of the device (H100: 60e12)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    # The protocol's precision: true FP32 products, never TF32.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    modes = args.modes.split(",")
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"--modes: unknown {', '.join(unknown)}; valid: {', '.join(MODES)}")
    cuda = args.device.startswith("cuda")
    skipped = [m for m in modes if m.endswith("graphs") and not cuda]
    modes = [m for m in modes if m not in skipped]

    data = mnistlab.load(device=args.device, train_size=args.train_size)
    hw = hardware(torch.device(args.device))
    device_name = describe(hw)
    print(f"{device_name}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, TF32 off, "
          f"{args.train_size} training images, median of {args.epochs} epoch(s), bound at {args.peak_flops:.3g} FLOP/s"
          + (f"; skipped without CUDA: {', '.join(skipped)}" if skipped else ""))
    print(f"{'model':7} {'H':>5} {'mode':>12} {'s/epoch':>9} {'per seed':>9} {'bound s':>9} {'of bound':>9}")
    header = {"device": args.device, "device_name": device_name, "hardware": hw, "torch": torch.__version__,
              "python": platform.python_version(), "cpu_threads": torch.get_num_threads(), "tf32": False,
              "train_size": args.train_size, "epochs": args.epochs, "seeds": args.seeds,
              "peak_flops": args.peak_flops, "skipped_modes": skipped}
    results = []
    for model in args.models.split(","):
        for hidden_size in (int(h) for h in args.hidden_sizes.split(",")):
            for mode in modes:
                try:
                    row = time_mode(mode, model, hidden_size, args, data)
                except Exception as error:  # one failing mode (graphs on a new GPU, say) must not hide the others
                    row = {"model": model, "hidden_size": hidden_size, "mode": mode,
                           "error": f"{type(error).__name__}: {error}"}
                    print(f"{model:7} {hidden_size:5} {mode:>12} FAILED: {row['error']}", flush=True)
                else:
                    print(f"{model:7} {hidden_size:5} {mode:>12} {row['epoch_s']:9.4f} {row['per_seed_s']:9.4f} "
                          f"{row['bound_s']:9.3g} {100 * row['bound_fraction']:8.3g}%", flush=True)
                results.append(row)
                if args.json:  # after every row: a run cut off by a time limit still says what it measured
                    atomic_write_text(args.json, json.dumps({**header, "results": results}, indent=1) + "\n")
    if any("error" in row for row in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
