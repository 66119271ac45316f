"""The training loop on real data: learning, determinism, schedule, divergence, predictions, provenance,
resume, TensorBoard."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from mnistlab import CheckpointError, Config, MODELS, Record, run
from mnistlab.data import MNISTSplits, Split
from mnistlab.records import val_selected

TINY = dict(hidden_size=64, epochs=2, train_size=2000)


def without_seconds(record):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in record.history]


@pytest.mark.parametrize("model", MODELS)
def test_short_run_learns_well_above_chance(model, small_data):
    record = run(Config(model=model, **TINY), data=small_data)
    assert record.status == "complete" and len(record.history) == 2
    assert record.summary["final_test_acc"] > 80  # chance is 10%
    assert record.history[-1]["train_loss"] < record.history[0]["train_loss"]
    assert set(record.history[0]) == {"epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
                                      "test_loss", "test_acc", "seconds"}
    assert record.environment["torch"] == torch.__version__ and record.environment["device"] == "cpu"
    (segment,) = record.segments  # this process trained every epoch
    assert (segment["first_epoch"], segment["last_epoch"]) == (1, 2) and segment["device"] == "cpu"
    assert segment["threads"] == torch.get_num_threads() and record.resumed_after_epoch is None
    assert record.summary["wall_seconds"] == pytest.approx(record.seconds) and record.seconds > 0


def test_same_config_and_seed_give_the_same_history(small_data):
    config = Config(model="bmodel", **TINY)
    first, second = run(config, data=small_data), run(config, data=small_data)
    assert without_seconds(first) == without_seconds(second)
    other = run(Config(model="bmodel", seed=1, **TINY), data=small_data)
    assert without_seconds(other) != without_seconds(first)


def test_step_lr_schedule_is_recorded(small_data):
    record = run(Config(model="nmodel", hidden_size=16, epochs=3, step_size=1, gamma=0.5, train_size=500),
                 data=mnist_subset(small_data, 500))
    assert [h["lr"] for h in record.history] == pytest.approx([0.01, 0.005, 0.0025])


def test_summary_selects_epochs_as_documented():
    history = [{"epoch": e, "lr": 0.01, "train_loss": 1.0, "train_acc": 90.0, "val_loss": 1.0,
                "val_acc": val, "test_loss": 1.0, "test_acc": test, "seconds": 1.0}
               for e, (val, test) in enumerate([(95.0, 96.0), (97.0, 95.5), (96.0, 97.5)], start=1)]
    summary = Record(config={}, environment={}, history=history).summary
    assert (summary["best_test_acc"], summary["best_test_epoch"]) == (97.5, 3)
    assert (summary["val_selected_test_acc"], summary["val_selected_epoch"]) == (95.5, 2)
    assert summary["final_test_acc"] == 97.5 and summary["seconds"] == 3.0


def test_diverging_run_stops_and_says_so(small_data, tmp_path):
    record = run(Config(model="nmodel", hidden_size=32, epochs=5, lr=1e30, train_size=500),
                 data=mnist_subset(small_data, 500))
    assert record.status == "diverged" and record.diverged_epoch == len(record.history) < 5
    assert not math.isfinite(record.history[-1]["train_loss"])
    loaded = Record.load(record.save(tmp_path / "diverged.json"))  # JSON null stands for NaN
    assert loaded.status == "diverged" and math.isnan(loaded.history[-1]["train_loss"])


def test_run_that_blows_up_but_stays_finite_is_diverged(small_data, tmp_path):
    record = run(Config(model="nmodel", hidden_size=32, epochs=5, lr=1e6, train_size=500),
                 data=mnist_subset(small_data, 500))
    assert all(math.isfinite(h["train_loss"]) for h in record.history)  # no NaN to catch: only the bound does
    assert record.status == "diverged" and record.diverged_epoch == len(record.history) < 5
    assert "above 2303" in record.diverged_reason
    loaded = Record.load(record.save(tmp_path / "r.json"))
    assert (loaded.status, loaded.diverged_reason) == ("diverged", record.diverged_reason)
    assert loaded.predicted("final") is not None  # what the blown-up network predicted when it stopped


def test_predictions_are_those_the_accuracies_were_measured_on(small_data, tmp_path):
    record = run(Config(model="bmodel", hidden_size=32, epochs=4, train_size=2000, lr=0.003), data=small_data)
    labels = small_data.test.y.numpy()
    for which, epoch in (("val_selected", record.summary["val_selected_epoch"]), ("final", 4)):
        predicted = record.predicted(which)
        assert predicted.dtype == np.uint8 and predicted.shape == (10_000,)
        assert 100.0 * (predicted == labels).mean() == pytest.approx(record.history[epoch - 1]["test_acc"])
    text = record.save(tmp_path / "r.json").read_text()
    assert len(json.loads(text)["predictions"]["final"]) == 10_000 and len(text) < 30_000  # compact


class HostTransfers(torch.overrides.TorchFunctionMode):
    """Counts the tensor methods that wait for the device and copy to the host."""

    NAMES = ("tolist", "item", "cpu", "__bool__", "__float__", "__int__", "__index__")

    def __init__(self):
        super().__init__()
        self.calls = dict.fromkeys(self.NAMES, 0)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.calls:
            self.calls[name] += 1
        return func(*args, **(kwargs or {}))


def test_one_host_sync_per_epoch_and_predictions_copied_only_when_kept(small_data):
    with HostTransfers() as spy:
        record = run(Config(model="wmodel", hidden_size=32, epochs=5, train_size=2000, lr=0.03), data=small_data)
    history = record.history
    kept = sum(val_selected(history[:e]) is history[e - 1] or e == 5 for e in range(1, 6))
    assert spy.calls == {**dict.fromkeys(HostTransfers.NAMES, 0), "tolist": 5, "cpu": kept}


def test_run_without_validation_trains_and_skips_validation(small_data, tmp_path):
    data = MNISTSplits(Split(small_data.train.x[:500], small_data.train.y[:500]), None, small_data.test)
    record = run(Config(model="nmodel", hidden_size=16, epochs=3, train_size=500, validation=False), data=data)
    assert record.status == "complete" and len(record.history) == 3
    assert all(h["val_loss"] is None and h["val_acc"] is None for h in record.history)
    s = record.summary
    assert s["val_selected_test_acc"] is None and s["best_test_acc"] > 50 and s["final_test_acc"] > 50
    assert set(record.predictions) == {"final"}
    assert Record.load(record.save(tmp_path / "r.json")) == record
    with pytest.raises(ValueError, match="no validation split"):
        run(Config(model="nmodel", hidden_size=16, epochs=1, train_size=500), data=data)


def test_train_size_must_match_the_data(small_data):
    with pytest.raises(ValueError, match="data.train has 2000 images but config.train_size is 1000"):
        run(Config(model="nmodel", hidden_size=8, epochs=1, train_size=1000), data=small_data)


def test_killed_run_resumes_to_the_same_history(data_dir, tmp_path):
    """Killed, resumed and uninterrupted runs, each in a fresh `mnistlab train` process (the same thread count
    and library state: bit-identical histories need them the same)."""
    settings = dict(model="wmodel", hidden_size=256, epochs=4, train_size=2000, step_size=2)
    checkpoint = tmp_path / "run.pt"

    def train(*extra):
        args = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
        return [sys.executable, "-m", "mnistlab.cli", "train", *args, f"--data-dir={data_dir}", *extra]

    process = subprocess.Popen(train(f"--checkpoint={checkpoint}", f"--out-dir={tmp_path / 'killed'}"),
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, "the run finished before it could be killed"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    done = len(torch.load(checkpoint, weights_only=True)["history"])
    assert 1 <= done < 4 and not list((tmp_path / "killed").glob("*.json"))  # killed before it wrote a record
    subprocess.run(train(f"--checkpoint={checkpoint}", f"--out-dir={tmp_path / 'resumed'}"), check=True,
                   capture_output=True)
    subprocess.run(train(f"--out-dir={tmp_path / 'straight'}"), check=True, capture_output=True)
    resumed, uninterrupted = (Record.load(tmp_path / folder / "wmodel-hs256-seed0.json") for folder in ("resumed", "straight"))
    assert without_seconds(resumed) == without_seconds(uninterrupted)
    assert resumed.resumed_after_epoch == done and uninterrupted.resumed_after_epoch is None


def test_resumed_run_says_who_trained_which_epochs(small_data, data_dir, tmp_path):
    """A process with one thread trains and is killed; this one resumes, then a third resumes the finished run."""
    settings = dict(model="wmodel", hidden_size=256, epochs=4, train_size=2000, step_size=2)
    checkpoint = tmp_path / "run.pt"
    code = ("import mnistlab; mnistlab.run(mnistlab.Config(**{settings!r}), checkpoint={checkpoint!r}, "
            "data=mnistlab.load({data_dir!r}, train_size=2000))").format(
        settings=settings, data_dir=str(data_dir), checkpoint=str(checkpoint))
    process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, "the run finished before it could be killed"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    done = len(torch.load(checkpoint, weights_only=True)["history"])
    assert 1 <= done < 4
    resumed = run(Config(**settings), data=small_data, checkpoint=checkpoint)
    first, second = resumed.segments
    assert (first["first_epoch"], first["last_epoch"], first["threads"]) == (1, done, 1)
    assert (second["first_epoch"], second["last_epoch"]) == (done + 1, 4)
    assert second["threads"] == torch.get_num_threads()
    assert resumed.resumed_after_epoch == done and resumed.resumed_from == "run.pt"  # never a machine path
    assert resumed.summary["wall_seconds"] is None and resumed.summary["median_epoch_seconds"] > 0
    uninterrupted = run(Config(**settings), data=small_data)
    assert resumed.predictions == uninterrupted.predictions and set(resumed.predictions) == {"val_selected", "final"}

    again = run(Config(**settings), data=small_data, checkpoint=checkpoint)  # trains nothing
    assert again.segments == resumed.segments and again.resumed_after_epoch == 4
    assert again.history == resumed.history and again.predictions == resumed.predictions
    text = json.dumps(again.to_dict())
    assert str(tmp_path) not in text and str(data_dir) not in text


def test_checkpoint_of_another_config_is_refused(small_data, tmp_path):
    checkpoint = tmp_path / "run.pt"
    data = mnist_subset(small_data, 500)
    run(Config(model="nmodel", hidden_size=8, epochs=1, train_size=500), data=data, checkpoint=checkpoint)
    with pytest.raises(CheckpointError, match="different hidden_size"):
        run(Config(model="nmodel", hidden_size=9, epochs=1, train_size=500), data=data, checkpoint=checkpoint)
    no_val = MNISTSplits(data.train, None, data.test)
    with pytest.raises(CheckpointError, match="different validation"):
        run(Config(model="nmodel", hidden_size=8, epochs=1, train_size=500, validation=False), data=no_val,
            checkpoint=checkpoint)
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        run(Config(model="nmodel", hidden_size=8, epochs=1, train_size=500), data=data, checkpoint=checkpoint)


def test_tensorboard_scalars_are_written(small_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(Config(model="nmodel", hidden_size=8, epochs=2, train_size=500), data=mnist_subset(small_data, 500),
        tensorboard_dir=tmp_path / "runs" / "x")
    events = EventAccumulator(str(tmp_path / "runs" / "x"))
    events.Reload()
    assert {"train/loss", "test/acc", "val/acc", "lr"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("test/acc")] == [1, 2]


def mnist_subset(splits, n):
    return MNISTSplits(Split(splits.train.x[:n], splits.train.y[:n]), splits.val, splits.test)
