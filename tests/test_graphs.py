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

The real thing stays in ``test_stacked.py``'s ``cuda`` tests, run on a GPU node.
"""

import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

import mnistlab.checkpoints as checkpoints_module
import mnistlab.train as train_module
from mnistlab import MODELS, Config
from mnistlab.data import MNISTSplits, Split
from mnistlab.stacked import StackedModel
from mnistlab.steps import GraphedStack, Stack
from mnistlab.train import train

SEEDS = [0, 1, 7]
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
