"""Seconds per epoch: mnistlab's loop against a faithful copy of the HW5 report's (its Figure 2), same process.

    python benchmarks/epoch_speed.py [--hidden-size 1000] [--epochs 1] [--repeats 2] [--models nmodel,bmodel,wmodel]

Both train on the same 50,000 images with the same model and Adam settings. The HW5 report's epoch is
a train phase over a torchvision Dataset through DataLoader(batch_size=100) with
ToTensor + Normalize and a ``.item()`` per batch, then a test phase; mnistlab's epoch also
evaluates the 10,000 validation images, so it does more work. Each loop is timed ``--repeats``
times, alternating, from a fresh model; the fastest of each is kept (as timeit advises: the
others measure the machine's noise, which on a shared 2-core VM is +-20 %). Prints a table and,
with ``--json``, writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

import mnistlab
from mnistlab.data import MEAN, STD, TRAIN_SIZE


def seed_style_epochs(model_name: str, hidden_size: int, epochs: int, root) -> float:
    """Mean seconds per epoch of the HW5 report's loop (its Figure 2), denormals not flushed, as it ran."""
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    train = Subset(datasets.MNIST(root, train=True, transform=transform), range(TRAIN_SIZE))
    test = datasets.MNIST(root, train=False, transform=transform)
    loaders = {"train": DataLoader(train, batch_size=100, shuffle=True),
               "test": DataLoader(test, batch_size=100, shuffle=False)}
    torch.manual_seed(0)
    model = mnistlab.build_model(model_name, hidden_size)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.9, 0.999))
    started = time.perf_counter()
    for _ in range(epochs):
        for phase in ["train", "test"]:
            logs = {"Loss": 0.0, "Accuracy": 0.0}
            model.train() if phase == "train" else model.eval()
            for images, labels in loaders[phase]:
                images = images.reshape(-1, 28 * 28)
                optimizer.zero_grad()
                with torch.set_grad_enabled(phase == "train"):
                    outputs = model(images)
                    loss = criterion(outputs, labels)
                    accuracy = torch.sum(torch.max(outputs, 1)[1] == labels.data).item()
                    logs["Loss"] += images.shape[0] * loss.detach().item()
                    logs["Accuracy"] += accuracy
                if phase == "train":
                    loss.backward()
                    optimizer.step()
    return (time.perf_counter() - started) / epochs


def mnistlab_epochs(model_name: str, hidden_size: int, epochs: int, splits) -> float:
    """Mean seconds per epoch of ``mnistlab.run`` (train, validation and test), as its record times them."""
    record = mnistlab.run(mnistlab.Config(model=model_name, hidden_size=hidden_size, epochs=epochs,
                                          device="cpu"), data=splits)
    return sum(h["seconds"] for h in record.history) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden-size", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1, help="epochs timed per loop (mean reported)")
    parser.add_argument("--repeats", type=int, default=2, help="timings of each loop; the fastest is kept")
    parser.add_argument("--models", default="nmodel,bmodel,wmodel")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    root = mnistlab.fetch().folder.parent.parent
    splits = mnistlab.load(root)
    results = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}, "
          f"H = {args.hidden_size}, {args.epochs} epoch(s) each, fastest of {args.repeats}")
    print(f"{'model':8} {'seed-style s/epoch':>19} {'mnistlab s/epoch':>17} {'speed-up':>9}")
    for name in args.models.split(","):
        timings = [(mnistlab_epochs(name, args.hidden_size, args.epochs, splits),
                    seed_style_epochs(name, args.hidden_size, args.epochs, root)) for _ in range(args.repeats)]
        ours, seed = min(t[0] for t in timings), min(t[1] for t in timings)
        results.append({"model": name, "seed_style_s": seed, "mnistlab_s": ours, "speedup": seed / ours})
        print(f"{name:8} {seed:19.2f} {ours:17.2f} {seed / ours:8.1f}x", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"hidden_size": args.hidden_size, "epochs": args.epochs, "torch": torch.__version__,
                       "threads": torch.get_num_threads(), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
