"""The training loop on real data: learning, determinism, schedule, divergence, resume, TensorBoard."""

import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from mnistlab import CheckpointError, Config, MODELS, Record, run

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


def test_train_size_must_match_the_data(small_data):
    with pytest.raises(ValueError, match="data.train has 2000 images but config.train_size is 1000"):
        run(Config(model="nmodel", hidden_size=8, epochs=1, train_size=1000), data=small_data)


def test_killed_run_resumes_to_the_same_history(small_data, data_dir, tmp_path):
    settings = dict(model="wmodel", hidden_size=256, epochs=4, train_size=2000, step_size=2)
    checkpoint = tmp_path / "run.pt"
    args = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
    process = subprocess.Popen([sys.executable, "-m", "mnistlab.cli", "train", *args, f"--data-dir={data_dir}",
                                f"--checkpoint={checkpoint}"], start_new_session=True)
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
    uninterrupted = run(Config(**settings), data=small_data)
    assert without_seconds(resumed) == without_seconds(uninterrupted)
    assert resumed.environment["resumed_after_epoch"] == done and "resumed_after_epoch" not in uninterrupted.environment


def test_checkpoint_of_another_config_is_refused(small_data, tmp_path):
    checkpoint = tmp_path / "run.pt"
    data = mnist_subset(small_data, 500)
    run(Config(model="nmodel", hidden_size=8, epochs=1, train_size=500), data=data, checkpoint=checkpoint)
    with pytest.raises(CheckpointError, match="different hidden_size"):
        run(Config(model="nmodel", hidden_size=9, epochs=1, train_size=500), data=data, checkpoint=checkpoint)
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
    from mnistlab.data import MNISTSplits, Split

    return MNISTSplits(Split(splits.train.x[:n], splits.train.y[:n]), splits.val, splits.test)
