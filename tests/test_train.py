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

from mnistlab import MODELS, CheckpointError, Config, Record, run, runner
from mnistlab.data import MNISTSplits, Split
from mnistlab.records import val_selected
from syncs import HostTransfers

TINY = dict(hidden_size=64, epochs=2, train_size=2000, device="cpu")  # the CPU, also on a CUDA host


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


def test_one_host_sync_per_epoch_and_predictions_copied_only_when_kept(small_data):
    with HostTransfers() as spy:
        record = run(Config(model="wmodel", hidden_size=32, epochs=5, train_size=2000, lr=0.03), data=small_data)
    history = record.history
    kept = sum(val_selected(history[:e]) is history[e - 1] or e == 5 for e in range(1, 6))
    assert spy.calls == {**dict.fromkeys(HostTransfers.NAMES, 0), "tolist": 5, "cpu": kept, "numpy": kept}


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


@pytest.mark.slow
@pytest.mark.long
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
    done = len(torch.load(checkpoint, weights_only=True)["records"][0]["history"])
    assert 1 <= done < 4 and not list((tmp_path / "killed").glob("*.json"))  # killed before it wrote a record
    subprocess.run(train(f"--checkpoint={checkpoint}", f"--out-dir={tmp_path / 'resumed'}"), check=True,
                   capture_output=True)
    subprocess.run(train(f"--out-dir={tmp_path / 'straight'}"), check=True, capture_output=True)
    resumed, uninterrupted = (Record.load(tmp_path / folder / "wmodel-hs256-seed0.json")
                              for folder in ("resumed", "straight"))
    assert without_seconds(resumed) == without_seconds(uninterrupted)
    assert resumed.resumed_after_epoch == done and uninterrupted.resumed_after_epoch is None


@pytest.mark.slow
def test_resumed_run_says_who_trained_which_epochs(small_data, data_dir, tmp_path):
    """A process with one thread trains and is killed; this one resumes, then a third resumes the finished run."""
    settings = dict(model="wmodel", hidden_size=256, epochs=4, train_size=2000, step_size=2)
    checkpoint = tmp_path / "run.pt"
    code = (f"import mnistlab; mnistlab.run(mnistlab.Config(**{settings!r}), checkpoint={str(checkpoint)!r}, "
            f"data=mnistlab.load({str(data_dir)!r}, train_size=2000))")
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
    done = len(torch.load(checkpoint, weights_only=True)["records"][0]["history"])
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


def test_a_run_at_chance_is_diverged_from_the_first_epoch(small_data):
    """lr 1: about 10 % test accuracy at every epoch; a two-epoch run of it must not count as complete."""
    record = run(Config(model="nmodel", hidden_size=64, epochs=2, lr=1.0, train_size=2000, device="cpu"),
                 data=small_data)
    assert record.status == "diverged" and record.diverged_epoch <= 2, record.history
    assert "below 20 %" in record.diverged_reason


def test_training_accuracy_counts_only_the_images_trained_on(small_data):
    """201 images at batch 100: two batches, the lone last image left out (batch norm cannot normalise it)."""
    data = MNISTSplits(Split(small_data.train.x[:201], small_data.train.y[:201]), small_data.val, small_data.test)
    record = run(Config(model="bmodel", hidden_size=32, epochs=3, train_size=201, device="cpu"), data=data)
    for row in record.history:
        correct = row["train_acc"] * 200 / 100  # a whole number of the 200 images trained on
        assert correct == round(correct), row["train_acc"]


def test_training_set_is_measured_in_eval_mode_after_the_last_epoch_as_validation_and_test_are(small_data, tmp_path):
    """The checkpoint after the last epoch holds the final network: measured here in eval mode, it gives the
    record's test accuracy and predictions and its training-set figures; in train mode (batch statistics) it
    does not. Its batch norm tracked exactly the training steps: the evaluations ran in eval mode."""
    from mnistlab.models import build_model
    from mnistlab.steps import Network

    config = Config(model="bmodel", hidden_size=32, epochs=2, train_size=2000, device="cpu")
    record = run(config, data=small_data, checkpoint=tmp_path / "c.pt")
    model = build_model("bmodel", 32)
    model.load_state_dict(torch.load(tmp_path / "c.pt", weights_only=True)["model"])
    assert model.bn.num_batches_tracked.item() == 2 * 2000 // 100
    network = Network(model, None, small_data.train, 100)
    (test_sums,), (predicted,) = network.evaluate(small_data.test)
    assert 100 * test_sums[1].item() / 10_000 == record.history[-1]["test_acc"]
    assert (predicted.numpy() == record.predicted("final")).all()
    (train_sums,), _ = network.evaluate(small_data.train)
    expected = {"epoch": 2, "loss": train_sums[0].item() / 2000, "acc": 100 * train_sums[1].item() / 2000}
    assert record.train_eval == expected
    assert record.summary["train_eval_acc"] == record.train_eval["acc"] != record.history[-1]["train_acc"]
    model.train()
    with torch.no_grad():
        in_train_mode = (model(small_data.test.x).argmax(1) == small_data.test.y).float().mean().item() * 100
    assert in_train_mode != record.history[-1]["test_acc"]


def test_each_seed_is_saved_as_soon_as_it_ends(tmp_path, data_dir, monkeypatch):
    from mnistlab import RunSpec

    events, real_train, real_save = [], runner.train, Record.save

    def train(configs, **kwargs):
        events.append(("train", [c.seed for c in configs]))
        return real_train(configs, **kwargs)

    def save(record, path):
        events.append(("save", record.config["seed"]))
        return real_save(record, path)

    monkeypatch.setattr(runner, "train", train)
    monkeypatch.setattr(Record, "save", save)
    spec = RunSpec.from_params(model="nmodel", hidden_size=8, epochs=1, train_size=500, seeds=[0, 1], device="cpu",
                               out_dir=str(tmp_path), data_dir=str(data_dir))
    runner.run(spec)
    assert events == [("train", [0]), ("save", 0), ("train", [1]), ("save", 1)]


def test_checkpoints_after_the_first_and_last_epoch_and_on_a_cadence(small_data, tmp_path, monkeypatch):
    import mnistlab.checkpoints as checkpoints_module

    saved, real = [], checkpoints_module.save
    monkeypatch.setattr(checkpoints_module, "save",
                        lambda path, *args: (saved.append(len(args[-1][0].history)), real(path, *args)))
    config = Config(model="nmodel", hidden_size=8, epochs=4, train_size=500, device="cpu")
    data = mnist_subset(small_data, 500)
    run(config, data=data, checkpoint=tmp_path / "a.pt", checkpoint_seconds=3600)
    assert saved == [1, 4]
    saved.clear()
    run(config, data=data, checkpoint=tmp_path / "b.pt", checkpoint_seconds=0)
    assert saved == [1, 2, 3, 4]


def test_a_checkpoint_of_other_training_code_is_refused_unless_checked_to_give_the_same_numbers(small_data, tmp_path,
                                                                                              monkeypatch):
    import mnistlab.checkpoints as checkpoints_module
    import mnistlab.train as train_module

    config = Config(model="nmodel", hidden_size=8, epochs=2, train_size=500, device="cpu")
    data = mnist_subset(small_data, 500)
    real = checkpoints_module.save

    def save_then_stop(*args):  # the real save after the first epoch, then a kill
        real(*args)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # an interrupted run of other training code
        patch.setattr(train_module, "CODE", {**train_module.CODE, "fingerprint": "f" * 64})
        patch.setattr(checkpoints_module, "save", save_then_stop)
        with pytest.raises(KeyboardInterrupt):
            run(config, data=data, checkpoint=tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="other training code"):
        run(config, data=data, checkpoint=tmp_path / "c.pt")
    # code checked to give this code's numbers (scripts/same-history.py --record): its checkpoint resumes
    from mnistlab.same_numbers import SAME_NUMBERS

    monkeypatch.setitem(SAME_NUMBERS, "f" * 64, "checked")
    record = run(config, data=data, checkpoint=tmp_path / "c.pt")
    codes = [segment["code"] for segment in record.segments]
    assert record.resumed_after_epoch == 1 and codes == ["f" * 64, train_module.CODE["fingerprint"]]


def test_a_record_says_what_code_and_hardware_made_it(small_data):
    from mnistlab import origin, train

    record = run(Config(model="nmodel", hidden_size=8, epochs=1, train_size=500, device="cpu"),
                 data=mnist_subset(small_data, 500))
    (segment,) = record.segments
    # The code this process imported (its git commit may have moved since: a publishing script commits reports
    # while tests run), and its fingerprint is the training code's as it is now.
    assert record.code == train.CODE and segment["code"] == record.code["fingerprint"]
    assert record.code["fingerprint"] == origin.code()["fingerprint"]
    assert set(record.code["files"]) >= {"mnistlab/models.py", "mnistlab/train.py", "notebooks/train.ipynb"}
    assert segment["hardware"]["capability"] == torch.backends.cpu.get_cpu_capability()
    assert segment["hardware"]["family"] is not None and segment["hardware"]["kind"] == "cpu"
    if (origin.PACKAGE.parent / ".git").exists():
        assert len(segment["git_commit"]) == 40 and isinstance(segment["git_dirty"], bool)


def test_a_finished_checkpoint_resumed_still_gives_its_record(tmp_path, data_dir):
    """A sweep killed after the last epoch's checkpoint but before the notebook finished: the rerun trains
    nothing and must still save the record (each record is saved when its run ends, here before this process)."""
    from mnistlab import RunSpec

    spec = RunSpec.from_params(model="nmodel", hidden_size=8, epochs=2, train_size=500, device="cpu",
                               out_dir=str(tmp_path / "out"), checkpoint=str(tmp_path / "c.pt"), data_dir=str(data_dir))
    (first,) = runner.run(spec)
    spec.record_path(0).unlink()
    (again,) = runner.run(spec)
    assert Record.load(spec.record_path(0)).history == first.history and again.resumed_after_epoch == 2


def test_a_rerun_says_which_records_it_replaces_before_it_trains(tmp_path, data_dir, capsys):
    from mnistlab import RunSpec

    spec = RunSpec.from_params(model="nmodel", hidden_size=8, epochs=1, train_size=500, seeds=[0, 1], device="cpu",
                               out_dir=str(tmp_path), data_dir=str(data_dir))
    runner.run(spec)
    assert "replaces" not in capsys.readouterr().out
    spec.record_path(1).unlink()
    runner.run(spec)
    said = capsys.readouterr().out
    assert f"{spec.record_path(0)} exists: this run replaces it when seed 0 ends" in said and "seed 1 ends" not in said
