"""The training loop: one network, or a stack of K seeds of one parameter set, with the data resident on the
device, no DataLoader, and one host sync per epoch.

``train(configs)`` is the one loop, epoch by epoch: train, evaluate, step the schedule, read the
epoch's sums back once, write each seed's record, save a checkpoint now and then. What it drives is
set up by ``Setup`` (the networks, Adam, the schedule, the random generators); how an epoch trains one
network or a stack is ``steps``; checkpoints are ``checkpoints``, what a run says while it trains is
``progress``. ``run(config)`` is the single-network case.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import checkpoints, origin
from .augment import Distort
from .config import Config, ConfigError
from .data import MNISTSplits, Split
from .datasets import DATASETS, labels_digest
from .models import build_model
from .optim import fused, make_optimizer, make_scheduler, scheduled_lr
from .progress import Progress
from .records import Record, divergence, encode_labels, epoch_row, predictions_to_keep
from .stacked import StackedModel
from .steps import GraphedStack, Network, Stack, trained_images

# A checkpoint after the first epoch, the last, and the first epoch that ends this long after the previous
# one: a kill loses at most this much training (or one epoch, when an epoch takes longer).
CHECKPOINT_SECONDS = 60.0
CODE = origin.code()  # the training code this process imported, read when it was imported
CheckpointError = checkpoints.CheckpointError
# Distortions draw from their own generator, seeded apart from the shuffling one (seeds are below 2**32).
DISTORTION_SEED_OFFSET = 2**32


def run(config: Config | None = None, *, data: MNISTSplits | None = None,
        checkpoint: str | os.PathLike | None = None, tensorboard_dir: str | os.PathLike | None = None,
        progress: bool = False, checkpoint_seconds: float = CHECKPOINT_SECONDS) -> Record:
    """Train one network of ``config`` and return its Record (``train`` with one config)."""
    return train([config or Config()], data=data, checkpoint=checkpoint, progress=progress,
                 tensorboard_dirs=None if tensorboard_dir is None else [tensorboard_dir],
                 checkpoint_seconds=checkpoint_seconds)[0]


def train(configs: list[Config], *, data: MNISTSplits | None = None, checkpoint: str | os.PathLike | None = None,
          tensorboard_dirs: list[str | os.PathLike | None] | None = None, progress: bool = False,
          cuda_graphs: bool = False, checkpoint_seconds: float = CHECKPOINT_SECONDS,
          on_end: Callable[[Record], object] | None = None) -> list[Record]:
    """Train one network (one config) or a stack of K seeds (configs that differ only in the seed); a Record each.

    ``data``: splits already loaded (on any device), to skip loading. ``checkpoint``: one file for the
    whole run, saved after the first and the last epoch and whenever ``checkpoint_seconds`` have passed
    since the previous save, and resumed from when present. ``tensorboard_dirs``: one log folder per config
    (None: no logs). ``cuda_graphs``: capture the stack's step as a CUDA graph (CUDA only). ``on_end``:
    called with each record as soon as it ends (its last epoch, or divergence), e.g. to save it.

    A network that blows up (``records.divergence``) is marked ``diverged`` and its record stops there;
    the others of a stack train on: the networks share nothing, so its NaNs cannot reach them. A stack's
    epoch ``seconds`` are the whole stack's; its provenance names the seeds it shared them with.
    """
    configs = check_seeds(configs)
    first = configs[0]
    device = first.resolved_device()
    if cuda_graphs and not _graphs_available(device):
        raise ConfigError(f"cuda_graphs needs a CUDA device; this run trains on {device}; use device 'cuda'")
    with _fast_cpu_math(device):
        if data is None:
            data = DATASETS[first.dataset].load(first.data_dir, device=device, train_size=first.train_size,
                                                validation=first.validation)
        train_split, val, test = _splits(data, first, device)
        setup = Setup(configs, device, cuda_graphs)
        tested_on = {"name": first.dataset, "test_labels": data.test_labels or labels_digest(test.y.cpu())}
        records = [Record(config=c.to_dict(), environment=dict(setup.environment), code=CODE, dataset=dict(tested_on))
                   for c in configs]
        if checkpoint is not None and Path(checkpoint).is_file():
            setup.resume(checkpoint, records)
        steps = setup.steps(train_split)
        done = max(len(record.history) for record in records)  # a diverged seed's history stops early
        sizes = (trained_images(len(train_split), first.batch_size), len(val) if val is not None else None,
                 len(test), len(train_split))
        talk = Progress(run_name(configs), first.epochs, done, setup.where, enabled=progress)
        writers = [_tensorboard(folder) for folder in tensorboard_dirs or [None] * len(configs)]
        started_utc, saved_at, ended = utc_now(), time.monotonic(), set()  # ended: the records handed to on_end
        talk.start()
        try:
            for epoch in range(done + 1, first.epochs + 1):
                started, last = time.perf_counter(), epoch == first.epochs
                parts = [steps.epoch(setup.shuffles, setup.distortions)]
                parts.append(steps.evaluate(val)[0] if val is not None else torch.zeros(steps.size, 0, device=device))
                test_sums, predicted = steps.evaluate(test)
                parts.append(test_sums)
                if last:  # the training set measured after training, in eval mode (the pass's counts are running)
                    parts.append(steps.evaluate(train_split)[0])
                setup.scheduler.step()
                # The one host synchronisation of the epoch: K rows of [train, val, test(, train in eval mode)] sums.
                sums = torch.cat(parts, dim=1).tolist()
                seconds = time.perf_counter() - started
                for record, row_sums, labels, writer in zip(records, sums, predicted, writers):
                    if record.status == "diverged":
                        continue  # its record ended there; its NaNs ride along without reaching the others
                    reason = finish_epoch(record, epoch, scheduled_lr(first, epoch), seconds, row_sums, sizes,
                                          labels, setup.environment, started_utc, last)
                    _log(writer, record.history[-1])
                    if (reason or last) and on_end is not None:
                        on_end(record)
                        ended.add(id(record))
                talk.epoch(epoch, [record.history[-1] for record in records if record.history])
                if all(record.status == "diverged" for record in records):
                    break
                if checkpoint is not None and (epoch == 1 or last
                                               or time.monotonic() - saved_at >= checkpoint_seconds):
                    setup.save(checkpoint, records)
                    saved_at = time.monotonic()
        finally:
            talk.close()
            for writer in writers:
                if writer is not None:
                    writer.close()
    if on_end is not None:  # records that ended before this process began (a finished checkpoint resumed)
        for record in records:
            if id(record) not in ended:
                on_end(record)
    return records


class Setup:
    """What one training process drives: the network (or the stack of them), Adam, the schedule, each seed's
    generators (shuffling, distortions), and the environment its records name."""

    def __init__(self, configs: list[Config], device: torch.device, cuda_graphs: bool = False):
        first = configs[0]
        self.configs, self.device, self.cuda_graphs = configs, device, cuda_graphs
        seeds = [config.seed for config in configs]
        self.stacked = len(configs) > 1 or cuda_graphs
        if self.stacked:
            self.module = StackedModel.from_seeds(first.model, first.hidden_size, seeds, first.dropout).to(device)
        else:
            torch.manual_seed(first.seed)
            self.module = build_model(first.model, first.hidden_size, first.dropout).to(device)
        self.optimizer = make_optimizer(self.module.parameters(), first, device, capturable=cuda_graphs)
        self.scheduler = make_scheduler(self.optimizer, first)
        self.shuffles = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        self.distortions = [torch.Generator(device=device).manual_seed(DISTORTION_SEED_OFFSET + seed) for seed in seeds]
        self.distort = Distort(first.shift, first.elastic)
        self.environment = environment(device, fused(device))
        if self.stacked:  # each seed's epoch time is the stack's: say which seeds shared it, and how
            self.environment |= {"stacked_seeds": seeds, "cuda_graphs": cuda_graphs}
        threads = torch.get_num_threads() if device.type == "cpu" else None
        self.where = f"{device}" + (f" ({threads} thread{'s' * (threads != 1)})" if threads else "")

    def steps(self, split: Split) -> Network | Stack:
        """How an epoch trains: one network, a stack stepped from Python, or a stack replayed from a CUDA graph."""
        kind = GraphedStack if self.cuda_graphs else Stack if self.stacked else Network
        return kind(self.module, self.optimizer, split, self.configs[0].batch_size, self.distort)

    def save(self, path: str | os.PathLike, records: list[Record]) -> None:
        checkpoints.save(path, self.configs, CODE["fingerprint"], self.module, self.optimizer, self.scheduler,
                         self.shuffles + self.distortions, records)

    def resume(self, path: str | os.PathLike, records: list[Record]) -> None:
        checkpoints.resume(path, self.configs, CODE, self.module, self.optimizer, self.scheduler,
                           self.shuffles + self.distortions, records)
        # ``Optimizer.load_state_dict`` restores every group option from the file (an eager checkpoint's
        # ``capturable=False`` included): set them back to this run's, and keep the graph's device-tensor rate.
        for group in self.optimizer.param_groups:
            group["capturable"], group["fused"] = self.cuda_graphs, fused(self.device)
            if self.cuda_graphs and not torch.is_tensor(group["lr"]):
                group["lr"] = torch.tensor(group["lr"], device=self.device)


def check_seeds(configs: list[Config]) -> list[Config]:
    """The configs of one run: at least one, distinct seeds, and identical in everything else."""
    if not configs:
        raise ConfigError("train needs at least one config; got an empty list")
    first = configs[0]
    seeds = [c.seed for c in configs]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must differ (one record per seed); got {seeds}")
    for config in configs[1:]:
        differing = first.differences({**config.identity(), "seed": first.seed})
        differing += [key for key in ("device", "data_dir") if getattr(config, key) != getattr(first, key)]
        if differing:
            values = ", ".join(f"{key}={getattr(first, key)!r} vs {getattr(config, key)!r}" for key in differing)
            raise ConfigError(f"seeds trained together must share every setting but the seed; seed {config.seed} "
                              f"differs from seed {first.seed} in {values}; train them in separate stacks")
    return list(configs)


def finish_epoch(record: Record, epoch: int, lr: float, seconds: float, sums: list[float],
                 sizes: tuple[int, int | None, int, int], predicted: torch.Tensor, here: dict, started_utc: str,
                 last: bool) -> str | None:
    """Write one epoch into ``record`` from its sums ([loss, correct] per measured split, read back once):
    the history row, the provenance, the training set in eval mode after the last epoch, the kept
    predictions, and the divergence rule; return why it diverged. ``sizes``: the images trained on, the
    validation, test and training images."""
    trained, n_val, n_test, n_train = sizes
    val = (*sums[2:4], n_val) if n_val is not None else None
    at = 4 if n_val is not None else 2
    row = epoch_row(epoch, lr, seconds, (*sums[0:2], trained), val, (*sums[at:at + 2], n_test))
    record.history.append(row)
    record.trained(epoch, here, started_utc)
    if last:
        loss_sum, correct = sums[at + 2:at + 4]
        record.train_eval = {"epoch": epoch, "loss": loss_sum / n_train, "acc": 100.0 * correct / n_train}
    reason = divergence(row)
    if reason is not None:
        record.status, record.diverged_epoch, record.diverged_reason = "diverged", epoch, reason
    keep_predictions(record, predicted, last=last or reason is not None)
    return reason


def keep_predictions(record: Record, predicted: torch.Tensor, last: bool) -> None:
    """Copy the epoch's test predictions (a device tensor) to the host only when the record keeps them."""
    keep = predictions_to_keep(record.history, last)
    if keep:
        labels = encode_labels(predicted.cpu().numpy())  # after the epoch's sync: the values are ready
        record.predictions.update(dict.fromkeys(keep, labels))


def environment(device: torch.device, fused_adam: bool) -> dict[str, object]:
    """This process: where it trains, on what, with how many threads, with which versions and code
    (a record's segment keys)."""
    hardware = origin.hardware(device)
    return {
        "mnistlab": CODE["mnistlab"],
        "torch": str(torch.__version__),  # a str subclass that weights_only checkpoints refuse
        "python": sys.version.split()[0],
        "device": str(device),
        "device_name": (f"{hardware['name']} ({hardware['cores']} cores)" if hardware["kind"] == "cpu"
                        else hardware["name"]),
        "threads": torch.get_num_threads(),
        "fused_adam": fused_adam,
        "hardware": hardware,
        "code": CODE["fingerprint"],
        "git_commit": CODE["git_commit"],
        "git_dirty": CODE["git_dirty"],
    }


def _graphs_available(device: torch.device) -> bool:
    """CUDA graphs need a CUDA device (the CPU tests stand in for the CUDA API and for this)."""
    return device.type == "cuda"


def utc_now() -> str:
    """The time now, UTC, ISO 8601 to the second (a segment's ``started``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_name(configs: list[Config]) -> str:
    """E.g. ``wmodel-hs1000-seed0``, or ``wmodel-hs1000-seeds0-1-2`` for a stack."""
    first = configs[0]
    if len(configs) == 1:
        return first.run_name
    return f"{first.model}-hs{first.hidden_size}-seeds{'-'.join(str(c.seed) for c in configs)}"


def _splits(data: MNISTSplits, config: Config, device: torch.device) -> tuple[Split, Split | None, Split]:
    """The splits on ``device``, checked against the config; no validation split when it has none."""
    if len(data.train) != config.train_size:
        raise ValueError(f"data.train has {len(data.train)} images but config.train_size is {config.train_size}")
    if config.validation and data.val is None:
        raise ValueError("config.validation is true but data has no validation split (data.val is None); "
                         "load the data with validation=True")
    val = _on(data.val, device) if config.validation else None
    return _on(data.train, device), val, _on(data.test, device)


def _on(split: Split, device: torch.device) -> Split:
    return split if split.x.device == device else Split(split.x.to(device), split.y.to(device))


@contextlib.contextmanager
def _fast_cpu_math(device: torch.device) -> Iterator[None]:
    """Flush denormals on CPU while training: after a few hundred Adam steps they slow it several-fold."""
    if device.type != "cpu" or not torch.set_flush_denormal(True):
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def _tensorboard(log_dir: str | os.PathLike | None):
    if log_dir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

    return SummaryWriter(os.fspath(log_dir))


def _log(writer, row: dict) -> None:
    if writer is not None:
        for key, value in row.items():
            if key not in ("epoch", "seconds") and value is not None:
                writer.add_scalar(key.replace("_", "/", 1), value, row["epoch"])
