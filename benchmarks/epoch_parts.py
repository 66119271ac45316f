"""Where a CPU epoch goes: mnistlab's epoch against the sum of its unavoidable kernels, timed in one process.

    python benchmarks/epoch_parts.py [--models nmodel,bmodel,wmodel] [--hidden-sizes 1000,5000] [--threads 1,2]
                                     [--rounds 3] [--layouts] [--json FILE]

For each model, hidden size and torch thread count: the *kernels' limit* of one protocol epoch (500 steps
of batch 100 on 50,000 images, then the 10,000 validation and 10,000 test images evaluated), the sum of

- ``forward``: fc1's forward product, 500 times (``addmm``, (100, 784) x (784, H));
- ``weight_grad``: fc1's weight gradient, 500 times (``mm``, (H, 100) x (100, 784));
- ``adam``: the fused Adam step over the model's parameters, 500 times;
- ``evaluate``: the model's forward over 20,000 images in eval mode, in the chunks training uses;

each timed alone in a tight loop; and mnistlab's own epoch (``train.Setup`` and ``steps``, the loop
``mnistlab.run`` drives: a shuffled pass and the two evaluations). ``efficiency`` = limit / epoch.

Two ceilings say how much of the gap any loop could close: ``ceiling_in_turn``, the limit over the same three
training kernels run one step after another (``in_turn``: each step's forward product, weight gradient and
Adam step in turn, as a loop runs them, so each finds the caches as the one before left them) plus the
evaluation; and, for nmodel, ``hand_written_efficiency``, the limit over an epoch stepped with no autograd and no
``Optimizer`` (``hand_written_step``: the aten calls of autograd's backward and the fused Adam kernel, called
directly; ``hand_written_apart_after_20_steps`` is how far its weights are from the loop's after 20 steps on the
same batches, so that the reference is seen to train the same network).

The timings are interleaved: after one warm-up of each, ``--rounds`` rounds each time every part once and then
the epoch once, so that the limit and the epoch sample the same minutes of the machine; the table keeps the
fastest of each, and ``efficiency_rounds`` gives each round's own ratio (the spread is the machine's noise: on
a shared VM the same epoch moves by 10-30 % within minutes). A profile of one more epoch then says where the
rest goes: the
products in the loop (slower than alone: Adam and the backward pass have moved the weights out of cache),
Adam, weight norm, the evaluation, the other operators, and what no operator accounts for (Python, the
autograd engine, launches).

``--layouts``: the sweep's layouts on this machine, for a run of the HW5 protocol and one of the beyond study
(H = 1000, 3 epochs each, the first left out): two processes of one thread each at once, against one process of
two threads running the two runs one after the other; prints the throughput ratio (runs an hour, two workers x
one thread / one worker x two threads), from each layout's steady epoch times (the processes' start left out).

Timings on a shared VM move by 10-20 % between runs: each figure is the fastest of its repeats, and
every ratio is taken within this one process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

import mnistlab
from mnistlab import Config
from mnistlab.origin import describe, hardware
from mnistlab.resources import EVAL_CHUNK
from mnistlab.train import Setup, _fast_cpu_math

STEPS, BATCH = 500, 100


def interleaved(works: dict[str, object], rounds: int) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Each of ``works`` once to warm up, then ``rounds`` rounds of each once, in order; (the fastest seconds of
    each, every round's seconds)."""
    for work in works.values():
        work()
    every = []
    for _ in range(rounds):
        times = {}
        for name, work in works.items():
            started = time.perf_counter()
            work()
            times[name] = time.perf_counter() - started
        every.append(times)
    return {name: min(times[name] for times in every) for name in works}, every


LIMIT_PARTS = ("forward", "weight_grad", "adam", "evaluate")


def limit_parts(name: str, hidden_size: int, data) -> dict[str, object]:
    """The kernels of one epoch's limit, each a function that runs it for one epoch."""
    torch.manual_seed(0)
    model = mnistlab.build_model(name, hidden_size)
    weight = model.fc1.weight.detach().clone()  # (H, 784): weight norm's w is such a tensor too
    bias = model.fc1.bias.detach().clone()
    order = torch.randperm(len(data.train))[:STEPS * BATCH].view(STEPS, BATCH)
    batches = [data.train.x[index] for index in order]  # (100, 784) each, gathered beforehand
    grads = torch.randn(BATCH, hidden_size)

    def forward():
        for x in batches:
            torch.addmm(bias, x, weight.t())

    def weight_grad():
        for x in batches:
            torch.mm(grads.t(), x)

    parameters = [p for p in model.parameters()]
    for p in parameters:
        p.grad = torch.randn_like(p) * 1e-3
    optimizer = torch.optim.Adam(parameters, lr=1e-3, fused=True)

    def adam():
        for _ in range(STEPS):
            optimizer.step()

    model.eval()
    images = torch.cat([data.val.x, data.test.x])

    @torch.no_grad()
    def evaluate():
        for start in range(0, len(images), EVAL_CHUNK):
            model(images[start:start + EVAL_CHUNK])

    def in_turn():  # the same three training kernels, one step after another, as a loop runs them
        for x in batches:
            torch.addmm(bias, x, weight.t())
            torch.mm(grads.t(), x)
            optimizer.step()

    return {"forward": forward, "weight_grad": weight_grad, "adam": adam, "evaluate": evaluate,
            "in_turn": in_turn}


def hand_written_step(model, lr: float = 1e-3):
    """One Adam step of nmodel (fc1 -> ReLU -> fc2, cross-entropy) with no autograd and no ``Optimizer``: the
    aten calls autograd makes for its backward, and the fused Adam kernel called directly, on state of its own.
    The least an eager loop can do for nmodel: a reference for the benchmark, never a training path (a
    second backward per model is what the model registry exists to prevent).

    Returns ``step(x, y) -> (loss, logits)``, which updates ``model``'s parameters in place."""
    w1, b1, w2, b2 = (p.detach() for p in (model.fc1.weight, model.fc1.bias, model.fc2.weight, model.fc2.bias))
    params = [w1, b1, w2, b2]
    exp_avgs, exp_avg_sqs = [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params]
    state_steps = [torch.zeros(()) for _ in params]
    one = torch.ones(())
    aten = torch.ops.aten

    def step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(torch.addmm(b1, x, w1.t()))
        logits = torch.addmm(b2, h, w2.t())
        log_p = torch.log_softmax(logits, 1)
        loss, total_weight = aten.nll_loss_forward(log_p, y, None, 1, -100)
        grad_logits = aten._log_softmax_backward_data(
            aten.nll_loss_backward(one, log_p, y, None, 1, -100, total_weight), log_p, 1, torch.float32)
        grad_h = aten.threshold_backward(grad_logits.mm(w2), h, 0)
        grads = [grad_h.t().mm(x), grad_h.sum(0), grad_logits.t().mm(h), grad_logits.sum(0)]
        torch._foreach_add_(state_steps, 1)
        torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], state_steps, lr=lr, beta1=0.9, beta2=0.999,
                           weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False)
        return loss, logits

    return step


def hand_written(hidden_size: int, data, train_split) -> tuple[dict[str, object], float]:
    """nmodel's epoch with ``hand_written_step`` (a shuffled pass with the loop's counts; the evaluation is the
    limit's own part), and how far its weights are from the loop's after 20 steps on the same batches."""
    torch.manual_seed(0)
    reference, model = mnistlab.build_model("nmodel", hidden_size), mnistlab.build_model("nmodel", hidden_size)
    model.load_state_dict(reference.state_dict())
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-3, fused=True)
    step = hand_written_step(model)
    order = torch.randperm(len(train_split))
    for index in order[:20 * BATCH].view(20, BATCH):
        x, y = train_split.x.index_select(0, index), train_split.y.index_select(0, index)
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(reference(x), y).backward()
        optimizer.step()
        step(x, y)
    apart = max((a - b).abs().max().item() for a, b in zip(reference.parameters(), model.parameters()))

    def epoch():
        order = torch.randperm(len(train_split))
        loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
        for start in range(0, STEPS * BATCH, BATCH):
            index = order[start:start + BATCH]
            x, y = train_split.x.index_select(0, index), train_split.y.index_select(0, index)
            loss, logits = step(x, y)
            loss_sum += loss * BATCH
            correct += (logits.argmax(dim=1) == y).sum()

    return {"hand_written": epoch}, apart


def measure(name: str, hidden_size: int, data, rounds: int) -> dict[str, object]:
    """The limit's parts and mnistlab's epoch, interleaved (``interleaved``), and a profile of one more epoch."""
    config = Config(model=name, hidden_size=hidden_size, device="cpu")
    setup = Setup([config], torch.device("cpu"))
    steps = setup.steps(data.train)

    def one():
        steps.epoch(setup.shuffles, setup.distortions)
        steps.evaluate(data.val)
        steps.evaluate(data.test)

    works, apart = {**limit_parts(name, hidden_size, data), "epoch": one}, None
    if name == "nmodel":
        reference, apart = hand_written(hidden_size, data, data.train)
        works.update(reference)
    fastest, every = interleaved(works, rounds)
    limit = sum(fastest[part] for part in LIMIT_PARTS)
    per_round = [sum(times[part] for part in LIMIT_PARTS) / times["epoch"] for times in every]
    found = {**fastest, "limit": limit, "efficiency": limit / fastest["epoch"], "efficiency_rounds": per_round,
             # what no loop running these kernels one step after another can beat: the limit, with the caches
             # as a step leaves them
             "ceiling_in_turn": limit / (fastest["in_turn"] + fastest["evaluate"])}
    if apart is not None:  # nmodel, stepped without autograd or Optimizer, and its weights' distance from the loop's
        found.update(hand_written_efficiency=limit / (fastest["hand_written"] + fastest["evaluate"]),
                     hand_written_apart_after_20_steps=apart)
    return {**found, "profile": profile(steps, setup, data)}


def profile(steps, setup, data) -> dict[str, float]:
    """Where one epoch's time goes (seconds), from torch's profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        steps.epoch(setup.shuffles, setup.distortions)
        trained = time.perf_counter() - started
        steps.evaluate(data.val)
        steps.evaluate(data.test)
        wall = time.perf_counter() - started
    own = {event.key: event.self_cpu_time_total / 1e6 for event in prof.key_averages()}
    products = own.get("aten::addmm", 0) + own.get("aten::mm", 0)
    norms = ("aten::norm", "aten::linalg_vector_norm")
    weight_norm = sum(v for k, v in own.items() if "weight_norm" in k or k in norms)
    adam = own.get("aten::_fused_adam_", 0)
    operators = sum(v for k, v in own.items() if k.startswith("aten::"))
    return {"products in the loop and evaluation": products, "adam": adam, "weight norm": weight_norm,
            "evaluation (wall)": wall - trained, "other operators": operators - products - adam - weight_norm,
            "no operator (Python, autograd, launches)": max(0.0, wall - operators)}


LAYOUT_CHILD = """
import json, sys, mnistlab
settings = json.loads(sys.argv[2])
data = mnistlab.load(train_size=50000)
for seed in map(int, sys.argv[1].split(",")):
    record = mnistlab.run(mnistlab.Config(**settings, seed=seed, device="cpu"), data=data)
    print(json.dumps([row["seconds"] for row in record.history]), flush=True)
"""

LAYOUT_RUNS = {  # one run of each study, a few epochs
    "the HW5 protocol (nmodel, H = 1000)": {"model": "nmodel", "hidden_size": 1000, "epochs": 3},
    "the beyond study (nmodel, H = 1000, distortions, dropout)": {
        "model": "nmodel", "hidden_size": 1000, "epochs": 3, "lr": 1e-3, "schedule": "cosine", "dropout": 0.2,
        "shift": 2, "elastic": 34},
}


def layouts() -> dict[str, dict[str, float]]:
    """Runs an hour of the sweep's two layouts on this machine, from steady epochs (the first of each run, and the
    processes' start, left out): two one-thread runs side by side, against one two-thread run at a time."""
    def epochs(processes: list[tuple[str, str]], settings: dict) -> list[list[float]]:
        children = [subprocess.Popen([sys.executable, "-c", LAYOUT_CHILD, seeds, json.dumps(settings)],
                                     stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
                    for seeds, threads in processes]
        outputs = [child.communicate()[0] for child in children]
        if any(child.returncode for child in children):
            sys.exit("epoch_parts: a layout run failed")
        return [json.loads(line)[1:] for out in outputs for line in out.splitlines() if line.startswith("[")]

    found = {}
    for name, settings in LAYOUT_RUNS.items():
        side_by_side = epochs([("0", "1"), ("1", "1")], settings)  # each run's steady epochs, both at once
        in_turn = epochs([("0,1", "2")], settings)
        two_by_one = 2 / max(min(run) for run in side_by_side)  # epochs a second, the slower of the two runs
        one_by_two = 1 / min(min(run) for run in in_turn)
        found[name] = {"two_workers_one_thread_epoch_s": max(min(run) for run in side_by_side),
                       "one_worker_two_threads_epoch_s": min(min(run) for run in in_turn),
                       "throughput_ratio": two_by_one / one_by_two}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(mnistlab.MODELS))
    parser.add_argument("--hidden-sizes", default="1000,5000")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds of the parts and the epoch (the fastest of each kept)")
    parser.add_argument("--layouts", action="store_true", help="also compare the sweep's layouts")
    parser.add_argument("--layouts-only", action="store_true", help="the layouts alone, no table of epochs")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    data = mnistlab.load()
    print(f"{describe(hardware(torch.device('cpu')))}, torch {torch.__version__}")
    print(f"{'model':7} {'H':>5} {'thr':>3} {'limit s':>8} {'epoch s':>8} {'eff.':>5} {'rounds':>9} {'ceil.':>5} "
          f"{'hand':>5}   limit: forward, weight grad, adam, evaluate | the epoch's profile")
    rows = []
    with _fast_cpu_math(torch.device("cpu")):
        for threads in [] if args.layouts_only else map(int, args.threads.split(",")):
            torch.set_num_threads(threads)
            for hidden_size in map(int, args.hidden_sizes.split(",")):
                for name in args.models.split(","):
                    row = {"model": name, "hidden_size": hidden_size, "threads": threads,
                           **measure(name, hidden_size, data, args.rounds)}
                    rows.append(row)
                    kernels = ", ".join(f"{row[k]:.2f}" for k in LIMIT_PARTS)
                    spread = f"{min(row['efficiency_rounds']):.2f}-{max(row['efficiency_rounds']):.2f}"
                    profile_text = ", ".join(f"{k} {v:.2f}" for k, v in row["profile"].items())
                    hand = f"{row['hand_written_efficiency']:5.2f}" if "hand_written_efficiency" in row else "    -"
                    print(f"{name:7} {hidden_size:5} {threads:3} {row['limit']:8.2f} {row['epoch']:8.2f} "
                          f"{row['efficiency']:5.2f} {spread:>9} {row['ceiling_in_turn']:5.2f} {hand}   {kernels} | "
                          f"{profile_text}", flush=True)
    result = {"hardware": hardware(torch.device("cpu")), "torch": torch.__version__, "rows": rows}
    if args.layouts or args.layouts_only:
        result["layouts"] = layouts()
        for name, found in result["layouts"].items():
            print(f"layouts, {name}: an epoch takes {found['two_workers_one_thread_epoch_s']:.2f} s with two "
                  f"one-thread runs side by side, {found['one_worker_two_threads_epoch_s']:.2f} s alone on two "
                  f"threads: 2 workers x 1 thread train {found['throughput_ratio']:.2f}x the runs an hour of 1 x 2")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
