"""Seeds trained together: same start, same gradients and close histories as separate runs, per-model batch norm.

Tolerances, and why results are close but not bit-identical: a batched product (bmm) sums in
another order than a separate model's mm, so floats differ in their last bits, and Adam magnifies
that where a gradient is a sum that nearly cancels: its first step is lr * g / (|g| + eps), so
rounding noise of 1e-10 in such a g moves the weight by up to lr * 1e-10 / 1e-8 = 1e-4. Over
two short epochs (20 steps at H=32) nmodel and wmodel stay within ~1e-7 of ``mnistlab.run``.
bmodel does not: batch norm subtracts the batch mean, so the gradient of fc1's bias and of fc1's
weights on pixels constant over a batch (MNIST's border) is exactly zero in real arithmetic and
pure rounding noise in floats, which Adam turns into steps of up to lr: a different random walk
for any summation order. Those weights cancel in training mode but reach eval mode through the
lagging running mean, so bmodel agrees to ~1e-3 in loss and a few tenths of a point in accuracy.
At the protocol's size the difference grows until the runs decorrelate within an epoch (H=1000,
50k images: from step ~300 on), exactly as ``mnistlab.run`` on 1 vs 2 CPU threads does (seed 0,
epoch 1 test accuracy 94.36 vs 94.16): a stacked seed is the same run as far as floats allow, and
statistically, not numerically, the same over 100 epochs.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import mnistlab
from mnistlab import MODELS, Config, ConfigError, Record, build_model, run
from mnistlab.data import MNISTSplits, Split
from mnistlab.stacked import StackedModel
from mnistlab.steps import Stack
from mnistlab.train import train

SEEDS = [0, 1, 7]
TINY = dict(hidden_size=32, epochs=2, train_size=1000, device="cpu")
HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def data_1000(small_data):
    return MNISTSplits(Split(small_data.train.x[:1000], small_data.train.y[:1000]), small_data.val, small_data.test)


def separate_model(name, seed, hidden_size=32):
    torch.manual_seed(seed)
    return build_model(name, hidden_size)


def batches(split, count, size=100, seed=0):
    """(count, size) different image indices per model, drawn once."""
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(len(split), generator=generator)[:size] for _ in range(count)])


@pytest.mark.parametrize("name", MODELS)
def test_each_stacked_model_starts_with_build_models_weights_for_its_seed(name):
    stacked = StackedModel.from_seeds(name, 32, SEEDS)
    for model, seed in zip(stacked.unstack(), SEEDS):
        expected = separate_model(name, seed).state_dict()
        assert model.state_dict().keys() == expected.keys()
        for key, value in model.state_dict().items():
            assert torch.equal(value, expected[key]), (seed, key)
    assert not torch.equal(stacked.stacked("fc1.bias")[0], stacked.stacked("fc1.bias")[1])  # the seeds really differ


@pytest.mark.parametrize("name", MODELS)
def test_first_step_gradients_match_separate_models(name, small_data):
    stacked = StackedModel.from_seeds(name, 32, SEEDS)
    index = batches(small_data.train, len(SEEDS))  # each model its own batch, as with its own shuffling
    # lr 0: the real training step, leaving the weights alone and the gradients in place.
    trainer = Stack(stacked, torch.optim.SGD(stacked.parameters(), lr=0.0), small_data.train, 100)
    trainer.step(index)
    for k, seed in enumerate(SEEDS):
        alone = separate_model(name, seed)
        F.cross_entropy(alone(small_data.train.x[index[k]]), small_data.train.y[index[k]]).backward()
        stacked_grads = _gradients_as_separate(stacked, k)
        for key, p in alone.named_parameters():
            torch.testing.assert_close(stacked_grads[key], p.grad, rtol=0, atol=1e-6, msg=f"{name} seed {seed} {key}")
        with torch.no_grad():
            loss = F.cross_entropy(alone(small_data.train.x[index[k]]), small_data.train.y[index[k]])
        assert float(trainer.sums[0, k]) == pytest.approx(100 * float(loss), rel=1e-5)  # the summed loss it reports


def _gradients_as_separate(stacked, k):
    """Model k's gradients, keyed and shaped as one ``build_model``'s parameters."""
    return {key: stacked.stacked(key).grad[k] for key in stacked.unstack()[0].state_dict()
            if isinstance(stacked.stacked(key), torch.nn.Parameter)}


# Largest differences allowed between a seed trained in the stack and alone over two epochs
# (losses absolute, accuracies in points, test predictions that differ out of 10,000); see the module docstring.
TOLERANCE = {"nmodel": (1e-5, 0.05, 5), "wmodel": (1e-5, 0.05, 5), "bmodel": (2e-2, 1.0, 150)}


@pytest.mark.parametrize("name", MODELS)
def test_short_runs_agree_with_separate_runs_per_seed(name, data_1000, tmp_path):
    assert_stack_agrees_with_separate_runs(name, data_1000, tmp_path, device="cpu")


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("name", MODELS)
def test_short_runs_on_cuda_agree_with_separate_runs_per_seed(name, data_1000, tmp_path):
    on_gpu = MNISTSplits(*(Split(s.x.cuda(), s.y.cuda()) for s in (data_1000.train, data_1000.val, data_1000.test)))
    assert_stack_agrees_with_separate_runs(name, on_gpu, tmp_path, device="cuda")


def assert_stack_agrees_with_separate_runs(name, data_1000, tmp_path, device):
    configs = [Config(model=name, seed=seed, **{**TINY, "device": device}) for seed in SEEDS]
    records = train(configs, data=data_1000)
    loss_tol, acc_tol, predictions_tol = TOLERANCE[name]
    for config, record in zip(configs, records):
        alone = run(config, data=data_1000)
        assert record.config == alone.config and record.status == alone.status == "complete"
        assert len(record.history) == len(alone.history) == 2
        for ours, theirs in zip(record.history, alone.history):
            assert ours["epoch"] == theirs["epoch"] and ours["lr"] == theirs["lr"]
            for key in ("train_loss", "val_loss", "test_loss"):
                assert ours[key] == pytest.approx(theirs[key], abs=loss_tol), (config.seed, key)
            for key in ("train_acc", "val_acc", "test_acc"):
                assert ours[key] == pytest.approx(theirs[key], abs=acc_tol), (config.seed, key)
        assert record.predictions.keys() == alone.predictions.keys() == {"val_selected", "final"}
        mine, theirs = record.predicted("final"), alone.predicted("final")
        assert len(mine) == 10_000 and (mine != theirs).sum() <= predictions_tol
        # The usual record format: it saves and loads, and says the seed shared its epochs.
        loaded = Record.load(record.save(tmp_path / f"{config.run_name}.json"))
        assert loaded.history == record.history and loaded.segments[0]["stacked_seeds"] == SEEDS
    if name != "bmodel":  # the seeds differ from each other by far more than from their separate runs
        assert abs(records[0].history[-1]["train_loss"] - records[1].history[-1]["train_loss"]) > 100 * loss_tol


def test_batch_norm_keeps_each_models_running_statistics_and_eval_uses_them(small_data):
    # Forward passes only (no steps), so that the weights stay equal and the statistics can be compared closely.
    stacked = StackedModel.from_seeds("bmodel", 32, SEEDS)
    alone = [separate_model("bmodel", seed) for seed in SEEDS]
    stacked.train()
    with torch.no_grad():
        for step in range(3):
            index = batches(small_data.train, len(SEEDS), seed=step)
            stacked(small_data.train.x[index])
            for k, model in enumerate(alone):
                model(small_data.train.x[index[k]])
    for k, model in enumerate(alone):
        # momentum 0.1, the unbiased batch variance tracked: as nn.BatchNorm1d, model by model
        torch.testing.assert_close(stacked.stacked("bn.running_mean")[k], model.bn.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(stacked.stacked("bn.running_var")[k], model.bn.running_var, rtol=1e-5, atol=1e-6)
        assert stacked.stacked("bn.num_batches_tracked")[k].item() == model.bn.num_batches_tracked.item() == 3
    variances = stacked.stacked("bn.running_var")
    assert not torch.allclose(variances[0], variances[1])  # one set of statistics per model
    # Eval mode normalises with each model's own running statistics and no longer updates them.
    x = small_data.test.x[:500]
    stacked.eval()
    with torch.no_grad():
        logits = stacked(x)
        for k, model in enumerate(alone):
            torch.testing.assert_close(logits[k], model.eval()(x), rtol=1e-5, atol=1e-5)
            assert not torch.allclose(logits[k], model.train()(x), atol=1e-3)  # and not the batch's
    assert stacked.stacked("bn.num_batches_tracked").tolist() == [3, 3, 3]


def test_configs_must_differ_only_in_the_seed():
    with pytest.raises(ConfigError, match=r"differs from seed 0 in hidden_size=32 vs 64, lr=0\.01 vs 0\.1"):
        train([Config(model="nmodel", seed=0, **TINY), Config(model="nmodel", seed=1, **{**TINY, "hidden_size": 64},
                                                                  lr=0.1)])
    with pytest.raises(ConfigError, match=r"seeds must differ.*\[3, 3\]"):
        train([Config(seed=3, **TINY), Config(seed=3, **TINY)])
    with pytest.raises(ConfigError, match="at least one config"):
        train([])
    with pytest.raises(ConfigError, match="cuda_graphs needs a CUDA device"):
        train([Config(seed=0, **TINY)], cuda_graphs=True)


def test_a_models_nans_do_not_reach_the_others(small_data):
    stacked = StackedModel.from_seeds("bmodel", 32, SEEDS)
    clean = StackedModel.from_seeds("bmodel", 32, SEEDS)
    with torch.no_grad():
        stacked.stacked("fc1.weight")[1, 0, :] = math.nan
    index = batches(small_data.train, len(SEEDS))
    for model in (stacked, clean):
        Stack(model, torch.optim.Adam(model.parameters(), lr=0.01), small_data.train, 100).step(index)
    assert torch.isnan(stacked.stacked("fc2.weight")[1]).any()
    for k in (0, 2):
        for name, p in stacked.named_parameters():
            assert torch.equal(p[k], dict(clean.named_parameters())[name][k]), (k, name)
    sums, _ = Stack(stacked, torch.optim.Adam(stacked.parameters()), small_data.test, 100).evaluate(small_data.test)
    assert math.isnan(sums[1, 0]) and torch.isfinite(sums[[0, 2]]).all()


def test_diverged_seeds_are_marked(data_1000):
    records = train([Config(model="nmodel", lr=1e30, seed=s, **{**TINY, "epochs": 4}) for s in SEEDS],
                        data=data_1000)
    for record in records:
        assert record.status == "diverged" and record.diverged_epoch == len(record.history) < 4
        assert record.diverged_reason and record.summary["status"] == "diverged"


def test_interrupted_stack_resumes_to_the_same_histories(data_1000, tmp_path, monkeypatch):
    import mnistlab.checkpoints as checkpoints_module

    # the first decay after epoch 2, so after the resume: the schedule must resume too
    configs = [Config(model="wmodel", seed=seed, **{**TINY, "epochs": 3, "step_size": 2}) for seed in SEEDS[:2]]
    straight = train(configs, data=data_1000)
    assert [h["lr"] for h in straight[0].history] == pytest.approx([0.01, 0.01, 0.001])
    save = checkpoints_module.save

    def save_then_stop(path, *args):  # the real save, then a kill right after the first epoch's checkpoint
        save(path, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints_module, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(configs, data=data_1000, checkpoint=tmp_path / "stack.pt")
    monkeypatch.setattr(checkpoints_module, "save", save)
    resumed = train(configs, data=data_1000, checkpoint=tmp_path / "stack.pt")
    for a, b in zip(straight, resumed):
        assert [{k: v for k, v in h.items() if k != "seconds"} for h in a.history] == \
               [{k: v for k, v in h.items() if k != "seconds"} for h in b.history]
        assert b.resumed_after_epoch == 1 and [s["first_epoch"] for s in b.segments] == [1, 2]
        assert a.predictions == b.predictions
    other = [Config(model="wmodel", seed=seed, **{**TINY, "epochs": 3, "step_size": 2, "lr": 0.02})
             for seed in SEEDS[:2]]
    with pytest.raises(mnistlab.CheckpointError, match="different lr"):
        train(other, data=data_1000, checkpoint=tmp_path / "stack.pt")


# Graphed vs eager on one GPU: the graph replays the eager step's own kernels, so histories should agree
# to float rounding (losses 1e-5 absolute, accuracies 0.05 points); bmodel as against mnistlab.run (above).
@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("name", MODELS)
def test_cuda_graphs_give_the_eager_histories(name, small_data):
    data = MNISTSplits(*(Split(s.x.cuda(), s.y.cuda()) for s in (small_data.train, small_data.val, small_data.test)))
    configs = [Config(model=name, seed=seed, hidden_size=256, epochs=3, step_size=1, train_size=2000, device="cuda")
               for seed in SEEDS]
    eager, graphed = train(configs, data=data), train(configs, data=data, cuda_graphs=True)
    loss_tol, acc_tol, _ = TOLERANCE[name] if name == "bmodel" else (1e-5, 0.05, 0)
    for a, b in zip(eager, graphed):
        assert b.environment["cuda_graphs"] and not a.environment["cuda_graphs"]
        assert [h["lr"] for h in b.history] == pytest.approx([0.01, 0.001, 0.0001])  # StepLR without recapture
        for x, y in zip(a.history, b.history):
            for key in ("train_loss", "val_loss", "test_loss"):
                assert x[key] == pytest.approx(y[key], abs=loss_tol)
            for key in ("train_acc", "val_acc", "test_acc"):
                assert x[key] == pytest.approx(y[key], abs=acc_tol)


def test_a_weight_normalised_stack_batches_its_weight_norm_and_unstacks_to_torchs():
    """The stack computes w = g v / ||v|| in operations vmap batches (torch's own kernel has no batching rule and
    would run once per network); the networks it gives back are torch's weight-normalised modules."""
    from torch.nn.utils.parametrizations import _WeightNorm

    stacked = StackedModel.from_seeds("wmodel", 32, SEEDS)
    x = torch.randn(len(SEEDS), 20, 784)
    with torch.no_grad():
        for k, model in enumerate(stacked.unstack()):
            assert isinstance(model.fc1.parametrizations.weight[0], _WeightNorm)
            torch.testing.assert_close(stacked(x)[k], model(x[k]), rtol=1e-5, atol=1e-5)
    with torch.autograd.profiler.profile() as prof:
        stacked(x)
    assert not any("_weight_norm" in event.name for event in prof.function_events)
