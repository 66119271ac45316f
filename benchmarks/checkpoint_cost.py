"""What a checkpoint costs: its size and the seconds to write it, for one network and a five-seed stack.

    python benchmarks/checkpoint_cost.py [--hidden-sizes 1000,5000] [--seeds 5] [--device cpu] [--folder /tmp]

Each row builds the network (or stack) with Adam's state after one step, then writes the checkpoint the
way training does (``train._save_checkpoint``: the state to memory, then to a temporary file, fsync,
rename) three times and keeps the fastest. ``share`` is that time as a fraction of the checkpoint
cadence (``train.CHECKPOINT_SECONDS``): a checkpoint is written after the first and the last epoch and
otherwise at most once per cadence, so ``share`` bounds what checkpointing adds to a run whose epochs
are shorter than the cadence (on a GPU at H=5000, every epoch is). With longer epochs it is
``seconds / epoch seconds``, smaller still.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import mnistlab
from mnistlab.models import build_model
from mnistlab.origin import describe, hardware
from mnistlab.records import Record
from mnistlab.stacked import StackedModel
from mnistlab.train import CHECKPOINT_SECONDS, _save_checkpoint


def row(hidden_size: int, seeds: int, device: torch.device, folder: Path) -> dict:
    configs = [mnistlab.Config(model="wmodel", hidden_size=hidden_size, seed=seed) for seed in range(seeds)]
    module = (StackedModel.from_seeds("wmodel", hidden_size, list(range(seeds))) if seeds > 1
              else build_model("wmodel", hidden_size)).to(device)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01, fused=True)
    for p in module.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # Adam's state exists, as in any checkpoint after the first epoch
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=20)
    generators = [torch.Generator(device=device).manual_seed(seed) for seed in range(seeds)]
    records = [Record(config=c.to_dict()) for c in configs]
    path = folder / f"checkpoint-cost-{hidden_size}-{seeds}.pt"
    times = []
    for _ in range(3):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        _save_checkpoint(path, configs, module, optimizer, scheduler, generators, records)
        times.append(time.perf_counter() - started)
    size = path.stat().st_size
    path.unlink()
    seconds = min(times)
    return {"hidden_size": hidden_size, "seeds": seeds, "mib": size / 2**20, "seconds": seconds,
            "share": seconds / CHECKPOINT_SECONDS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden-sizes", default="1000,5000")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--folder", default=tempfile.gettempdir(), help="where the checkpoints are written")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"{describe(hardware(device))}, torch {torch.__version__}, writing to {args.folder}, "
          f"cadence {CHECKPOINT_SECONDS:g} s, fastest of 3")
    print(f"{'H':>5} {'seeds':>5} {'MiB':>7} {'seconds':>8} {'share of cadence':>17}")
    for hidden_size in (int(h) for h in args.hidden_sizes.split(",")):
        for seeds in sorted({1, args.seeds}):
            r = row(hidden_size, seeds, device, Path(args.folder))
            print(f"{r['hidden_size']:5} {r['seeds']:5} {r['mib']:7.1f} {r['seconds']:8.3f} {100 * r['share']:16.2f}%",
                  flush=True)


if __name__ == "__main__":
    main()
