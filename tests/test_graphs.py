"""The CUDA-graph path on a CPU: capture, warm-up and replay with stand-ins for the CUDA graph and stream API.

A CUDA graph replays the kernels it captured, with the arguments it captured: the same tensors (by
address), the same Python scalars baked in, and nothing the host computes in between. The stand-in
does the same on a CPU: capture records every aten op of the step (``TorchDispatchMode``), and a
replay runs that tape again, feeding each op the tensors it had at capture or the outputs of earlier
ops of the tape, never re-running the Python that built it. So a step that relies on Python at replay
time (a learning rate read as a float, a gradient set to None, a tensor reallocated) gives other
numbers than the eager loop here, as it would on a GPU. What is checked:

- the capture itself works (it restores the warm-up's changes as data, outside autograd);
- every tensor the tape reads from outside itself is, at every replay, the same storage the model,
  its gradients, Adam's state and learning rate, the sums and the batch indices hold then, also after
  StepLR changed the rate;
- the captured step holds no host sync (``_local_scalar_dense``, ``nonzero``, ...);
- the histories are those of the eager stack, the learning rates the exact Python numbers, and an eager
  checkpoint resumes under graphs (Adam's ``capturable`` is set again after loading it).

The same stand-ins run the GPU node's first check (``benchmarks/gpu_check.py``): its replayed-step part passes
the real capture and fails one that keeps training at the first learning rate after a decay. The real thing
is in the ``cuda`` tests here and in ``test_stacked.py``, run on a GPU node (``scripts/gpu-node.sh``); the
sweep's ``--cuda-graphs`` option is tested at the end.
"""

import argparse
import contextlib
import importlib.util
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

import mnistlab.checkpoints as checkpoints_module
import mnistlab.train as train_module
from mnistlab import MODELS, Config, RunSpec
from mnistlab.data import MNISTSplits, Split
from mnistlab.stacked import StackedModel
from mnistlab.steps import GraphedStack, Stack
from mnistlab.train import train

ROOT = Path(__file__).resolve().parent.parent
SEEDS = [0, 1, 7]
HAS_CUDA = torch.cuda.is_available()


def _gpu_check():
    """benchmarks/gpu_check.py as a module (it imports torch and mnistlab's core, nothing of the lab)."""
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = _gpu_check()
HOST_SYNCS = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "item", "is_nonzero", "equal"}


class Tape(TorchDispatchMode):
    """Every aten op run while active, with its arguments and outputs (what a graph capture records)."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.ops.append((func, args, kwargs, out))
        return out


class FakeGraph:
    """``torch.cuda.CUDAGraph`` on a CPU: ``replay`` reruns the captured tape, not the Python step."""

    live = None  # set by a test: the storages the step must still be reading at replay time

    def __init__(self):
        self.tape, self.replays, self.external = None, 0, []

    def captured(self, tape: Tape) -> None:
        self.tape = tape
        produced = {id(t) for *_, out in tape.ops for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)}
        inputs = [t for _, args, kwargs, _ in tape.ops for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor)]
        # The tensors the step reads that it did not make: what must stay put between replays.
        self.external = list({id(t): t for t in inputs if id(t) not in produced}.values())

    def replay(self) -> None:
        if FakeGraph.live is not None:
            live = {t.untyped_storage().data_ptr() for t in FakeGraph.live()}
            moved = [tuple(t.shape) for t in self.external if t.untyped_storage().data_ptr() not in live]
            assert not moved, f"replay {self.replays}: the step reads tensors the trainer no longer holds: {moved}"
        produced = {}

        def current(value):
            return produced.get(id(value), value) if isinstance(value, torch.Tensor) else value

        for func, args, kwargs, out in self.tape.ops:
            new = func(*tree_map(current, args), **tree_map(current, kwargs))
            for old, fresh in zip(tree_flatten(out)[0], tree_flatten(new)[0]):
                if isinstance(old, torch.Tensor):
                    produced[id(old)] = fresh
        self.replays += 1


class FakeStream:
    def wait_stream(self, other):
        pass


@contextlib.contextmanager
def fake_capture(graph, *args, **kwargs):
    with Tape() as tape:
        yield
    graph.captured(tape)


@pytest.fixture
def fake_cuda(monkeypatch):
    """The CUDA graph and stream API replaced by CPU stand-ins; graphs allowed on the CPU."""
    graphs = []

    def new_graph():
        graphs.append(FakeGraph())
        return graphs[-1]

    monkeypatch.setattr(torch.cuda, "CUDAGraph", new_graph)
    monkeypatch.setattr(torch.cuda, "graph", fake_capture)
    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: None)
    monkeypatch.setattr(train_module, "_graphs_available", lambda device: True)
    monkeypatch.setattr(FakeGraph, "live", None)
    return graphs


@pytest.fixture(scope="module")
def data_1000(small_data):
    return MNISTSplits(Split(small_data.train.x[:1000], small_data.train.y[:1000]), small_data.val, small_data.test)


def stack_and_optimizer(name):
    """A stack and the optimizer a graph needs (a tensor rate, capturable); eager steps take it too."""
    model = StackedModel.from_seeds(name, 32, SEEDS)
    optimizer = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.01), fused=True, capturable=True)
    return model, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)


@pytest.mark.parametrize("name", MODELS)
def test_replays_read_the_live_storages_sync_nothing_and_match_the_eager_stack(name, data_1000, fake_cuda):
    eager_model, eager_optimizer, eager_schedule = stack_and_optimizer(name)
    model, optimizer, schedule = stack_and_optimizer(name)
    eager = Stack(eager_model, eager_optimizer, data_1000.train, 100)
    graphed = GraphedStack(model, optimizer, data_1000.train, 100)
    (graph,) = fake_cuda
    # Every tensor the captured step reads from outside: the live weights, gradients, Adam's state and rate...
    FakeGraph.live = lambda: [*graphed._state_tensors(), optimizer.param_groups[0]["lr"], graphed.order,
                              graphed.position, graphed.offsets, data_1000.train.x, data_1000.train.y]
    ops = {func.__name__.split(".")[0] for func, *_ in graph.tape.ops}
    assert "_fused_adam_" in ops and not ops & HOST_SYNCS, sorted(ops & HOST_SYNCS)
    # The replayed tape runs the eager step's own ops on the same values: equal bit for bit, epoch after epoch.
    for epoch in range(3):
        generators = [torch.Generator().manual_seed(seed + epoch) for seed in SEEDS]
        again = [torch.Generator().manual_seed(seed + epoch) for seed in SEEDS]
        assert torch.equal(graphed.epoch(generators), eager.epoch(again)), f"epoch {epoch + 1}: sums differ"
        for (key, p), q in zip(model.named_parameters(), eager_model.parameters()):
            assert torch.equal(p, q), f"epoch {epoch + 1}: {key} differs"
        for (key, p), q in zip(model.named_buffers(), eager_model.buffers()):
            assert torch.equal(p, q), f"epoch {epoch + 1}: {key} differs"
        schedule.step()
        eager_schedule.step()
    assert graph.replays == 30  # 10 full batches per epoch, none run from Python
    assert float(optimizer.param_groups[0]["lr"]) == pytest.approx(0.01 / 8)


@pytest.mark.parametrize("name", ["nmodel", "bmodel"])
def test_graphed_training_gives_the_eager_histories_and_exact_learning_rates(name, data_1000, fake_cuda):
    configs = [Config(model=name, seed=seed, hidden_size=32, epochs=3, step_size=1, train_size=1000, device="cpu")
               for seed in SEEDS]
    eager, graphed = train(configs, data=data_1000), train(configs, data=data_1000, cuda_graphs=True)
    tolerance = (2e-2, 1.0) if name == "bmodel" else (1e-5, 0.05)
    for a, b in zip(eager, graphed):
        assert b.environment["cuda_graphs"] and not a.environment["cuda_graphs"]
        assert [h["lr"] for h in b.history] == [h["lr"] for h in a.history] == [0.01, 0.001, 0.0001]
        for x, y in zip(a.history, b.history):
            for key in ("train_loss", "val_loss", "test_loss"):
                assert x[key] == pytest.approx(y[key], abs=tolerance[0]), key
            for key in ("train_acc", "val_acc", "test_acc"):
                assert x[key] == pytest.approx(y[key], abs=tolerance[1]), key
    assert len(fake_cuda) == 1 and fake_cuda[0].replays == 30


def test_an_eager_checkpoint_resumes_under_graphs(data_1000, fake_cuda, tmp_path, monkeypatch):
    configs = [Config(model="wmodel", seed=seed, hidden_size=32, epochs=3, step_size=1, train_size=1000,
                      device="cpu") for seed in SEEDS[:2]]
    straight = train(configs, data=data_1000)
    save = checkpoints_module.save

    def save_then_stop(*args):  # the real save after the first epoch, then a kill
        save(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints_module, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(configs, data=data_1000, checkpoint=tmp_path / "stack.pt")
    monkeypatch.setattr(checkpoints_module, "save", save)
    resumed = train(configs, data=data_1000, checkpoint=tmp_path / "stack.pt", cuda_graphs=True)
    for a, b in zip(straight, resumed):
        assert b.resumed_after_epoch == 1 and b.segments[-1]["cuda_graphs"]
        assert [h["lr"] for h in b.history] == [0.01, 0.001, 0.0001]
        for x, y in zip(a.history, b.history):
            assert x["test_loss"] == pytest.approx(y["test_loss"], abs=1e-5)


# The node's first check (benchmarks/gpu_check.py) on the stand-ins ---------------------------------------------

def keep_the_first_rate_tensor(monkeypatch):
    """A torch whose StepLR puts a new tensor in the param group instead of filling the old one: eager steps read
    the new rate, a captured graph keeps reading the tensor it was captured with (the first rate)."""
    step = torch.optim.lr_scheduler.StepLR.step

    def replacing_step(self, *args, **kwargs):
        for group in self.optimizer.param_groups:
            group["lr"] = group["lr"].clone()
        step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.lr_scheduler.StepLR, "step", replacing_step)


def check_args(**values):
    return argparse.Namespace(**{"graph_hidden_size": 32, "train_size": 1000, **values})


def test_the_checks_replayed_steps_agree_with_eager_steps_across_a_decay(data_1000, fake_cuda):
    part = gpu_check.replay_step(torch.device("cpu"), data_1000, check_args())
    assert part["status"] == "ok", part
    assert set(part["models"]) == set(MODELS)
    for row in part["models"].values():  # the stand-in replays the eager step's own ops: no difference at all
        assert row["relative_difference"] == {"lr 0.01": 0.0, "lr 0.001": 0.0}


def test_the_check_fails_a_graph_that_trains_on_at_the_first_rate_after_a_decay(data_1000, fake_cuda, monkeypatch):
    keep_the_first_rate_tensor(monkeypatch)
    part = gpu_check.replay_step(torch.device("cpu"), data_1000, check_args())
    assert part["status"] == "failed"
    for row in part["models"].values():
        assert row["relative_difference"]["lr 0.01"] == 0.0  # before the decay graph and eager still agree
        assert row["relative_difference"]["lr 0.001"] > 1  # after it, the graph steps ten times too far
    schedule = gpu_check.schedule_in_place(torch.device("cpu"), data_1000, check_args())
    assert schedule["status"] == "failed" and not schedule["after_each_decay"][0]["same_tensor"]
    assert gpu_check.graphs_verdict({"schedule_in_place": schedule, "replay_step": part,
                                     "graphs_vs_eager": {"status": "ok"}})["use"] is False


def test_the_checks_histories_with_a_decay_inside_compare_graphs_and_eager(data_1000, fake_cuda):
    part = gpu_check.graphs_vs_eager(torch.device("cpu"), data_1000, check_args())
    assert part["status"] == "ok", part
    # The eager run's rate is a Python float, the graph's a float32 tensor: last bits, which batch norm makes into
    # tenths of a point (tests/test_stacked.py), within the check's tolerances.
    for name, row in part["models"].items():
        assert row["same_learning_rates"] and (name == "bmodel" or max(row["largest_difference"].values()) < 1e-3)
    verdict = gpu_check.graphs_verdict({"schedule_in_place": {"status": "ok"}, "replay_step": {"status": "ok"},
                                        "graphs_vs_eager": part})
    assert verdict == {"use": True, "because": "schedule_in_place, replay_step, graphs_vs_eager passed"}


def test_the_histories_comparison_fails_runs_that_learned_differently(data_1000):
    configs = [Config(model="nmodel", seed=seed, hidden_size=32, epochs=2, step_size=1, train_size=1000,
                      device="cpu") for seed in SEEDS]
    decayed = train(configs, data=data_1000)
    not_decayed = train([Config(**{**c.to_dict(), "gamma": 1.0}) for c in configs], data=data_1000)
    for run in not_decayed:  # the rates the record says are the schedule's: only the training differs
        for row, expected in zip(run.history, decayed[0].history):
            row["lr"] = expected["lr"]
    same = gpu_check.compare_histories(decayed, decayed)
    assert same["ok"] and set(same["largest_difference"].values()) == {0.0}
    assert not gpu_check.compare_histories(decayed, not_decayed)["ok"]


# The node's check on a real GPU (scripts/gpu-node.sh runs these before anything else) ------------------------

needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def cuda_data(small_data):
    if not HAS_CUDA:
        pytest.skip("needs a CUDA GPU")
    return MNISTSplits(*(Split(s.x.cuda(), s.y.cuda()) for s in (small_data.train, small_data.val, small_data.test)))


@pytest.mark.cuda
@needs_cuda
def test_on_cuda_steplr_fills_the_captured_rate_and_replays_match_eager_steps(cuda_data):
    device = torch.device("cuda")
    assert gpu_check.schedule_in_place(device, cuda_data, check_args())["status"] == "ok"
    part = gpu_check.replay_step(device, cuda_data, check_args(graph_hidden_size=256))
    assert part["status"] == "ok", part


# The sweep's option that turns graphs on ------------------------------------------------------------------------

def test_a_sweep_with_cuda_graphs_hands_every_notebook_cuda_graphs(tmp_path):
    from mnistlab.lab import sweep as sweep_module
    from mnistlab.lab.params import jobs

    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "a.yaml").write_text("model: wmodel\nhidden_size: 16\nseeds: [0, 1]\n")
    (job,) = jobs([tmp_path / "params"], tmp_path / "out")
    notebooks = ROOT / "notebooks"
    plain = sweep_module._run_task(job, (0, 1), notebooks, tmp_path / "out", None)
    graphed = sweep_module._run_task(job, (0, 1), notebooks, tmp_path / "out", None, cuda_graphs=True)
    assert "cuda_graphs" not in plain.parameters and not plain.spec.cuda_graphs
    assert graphed.parameters["cuda_graphs"] is True and graphed.spec.cuda_graphs
    # What the notebook rebuilds from its parameters is the task's run, graphs on; the cache key is the same.
    again = RunSpec.from_params(**graphed.parameters)
    assert again.cuda_graphs and again.stacked() and again.configs() == graphed.spec.configs()
    assert graphed.key == plain.key


@pytest.mark.slow
def test_cuda_graphs_on_a_cluster_without_gpus_are_refused_before_anything_runs(tmp_path, data_dir):
    from helpers import TINY, make_project, project_env, write_params
    from mnistlab.lab.params import ParamsError
    from mnistlab.lab.sweep import sweep

    root = make_project(tmp_path / "project", analysis=False)
    params = write_params(root / "params", "a", {"model": "nmodel", **TINY})
    with project_env(root, data_dir, OMP_NUM_THREADS="1"), \
            pytest.raises(ParamsError, match="--cuda-graphs: CUDA graphs need GPU workers"):
        sweep(params, "site", cuda_graphs=True)
    assert not (root / "site" / "runs").exists()
