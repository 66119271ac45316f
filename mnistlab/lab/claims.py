"""Comparisons between runs, and the HW5 report's claims judged by rules that the page states (``rules``).

Pairs: two runs whose training identities differ only in the model (or only in the hidden size, or
only in the learning rate) and share the seed. At one seed the three models start from the same
initial weights, so the design is paired by seed; and every run is scored on the same 10,000 test
images. A comparison of test accuracy therefore carries the interval over seeds *and* test images
(``stats.paired_two_source``), the t interval over seeds alone beside it, the exact sign-flip test
pooled over seeds on the shared images, and McNemar's exact test per seed. Verdicts follow ``stats``
(its docstring); which runs a claim may be judged on is decided here:

- a claim of the HW5 report only on runs of its protocol (``protocol.PROTOCOL``), on val-selected test
  accuracy; "at every hidden size" only with all three sizes; else *not tested here*, saying what it needs;
- this project's own questions (not claims of the report: "do the normalised models train faster?",
  "does normalisation still help at each model's best learning rate?") are labelled as such, with
  measures that the learning-rate schedule does not decide.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import records as records_module
from ..config import MODELS, cell_name
from ..records import Record
from . import cells, stats
from .protocol import HIDDEN_SIZES, PROTOCOL, settings

REPORT, OWN = "the HW5 report", "this project's question"
MODEL_PAIRS = (("bmodel", "wmodel"), ("wmodel", "nmodel"), ("bmodel", "nmodel"))
STABLE_MARGIN = 0.2  # points: "does not change much", read as within about one binomial SE of a difference
TRAIN_LOSS = "initial_rate_train_loss"  # this project's measure of training speed (``initial_rate_loss``)
PREDICTION_OF = {"val_selected_test_acc": "val_selected", "final_test_acc": "final"}  # none kept at the best epoch
METRIC_NAMES = {"val_selected_test_acc": "val-selected test accuracy", "final_test_acc": "final test accuracy",
                "best_test_acc": "best test accuracy (the HW5 report's metric)",
                TRAIN_LOSS: "mean training loss over the epochs before the first learning-rate decay"}
PROTOCOL_TEXT = ("100 epochs, Adam lr 0.01, StepLR ×0.1 every 20 epochs, batch 100, the first 50,000 training "
                 "images with the last 10,000 for validation")


@dataclass(frozen=True)
class Claim:
    """A claim of the HW5 report (or a question of this project), the verdict, and the sentences behind it."""

    name: str
    says: str  # what the HW5 report says, or the question asked
    source: str  # REPORT or OWN
    verdict: str
    text: str  # sentences generated from the numbers


@dataclass(frozen=True)
class Comparison:
    """a - b over the seeds both have: the seed-only t interval and, for test accuracy, the two-source one."""

    a: str
    b: str
    metric: str
    seeds: tuple[int, ...]
    seed_only: stats.Estimate  # t interval over seeds of the per-seed differences
    two_source: stats.TwoSource | None = None  # None: no per-example predictions for this metric
    mcnemar: tuple[stats.McNemar, ...] = ()  # per seed
    pooled_p: float | None = None  # exact sign-flip test pooled over seeds (``stats.sign_flip``)
    missing: str = ""  # why there is no two-source interval

    @property
    def estimate(self) -> stats.Estimate | stats.TwoSource | None:
        """The interval verdicts use: over seeds and test images for a test accuracy; over seeds alone for
        a measure taken on the training set itself (every training image: nothing is sampled)."""
        return self.seed_only if self.metric == TRAIN_LOSS else self.two_source

    @property
    def mean(self) -> float:
        return self.two_source.mean if self.two_source is not None else self.seed_only.mean

    def verdict(self, parts: int = 1, margin: float | None = None) -> str:
        """The verdict on "a - b > 0" (or "|a - b| <= margin") as one of ``parts`` parts of a claim."""
        return stats.part_verdict(self.estimate, parts, margin)

    def why_untested(self) -> str:
        if self.estimate is None:
            return self.missing or "no interval over test images"
        return stats.why_untestable(self.estimate)


def main_settings(records: Iterable[Record]) -> str | None:
    """The settings label with the most complete runs (among ties the protocol, else the fewest changes)."""
    counts = pd.Series([settings(r) for r in cells.included(records)]).value_counts()
    if counts.empty:
        return None
    best = counts[counts == counts.max()].index
    return PROTOCOL if PROTOCOL in best else sorted(best, key=lambda s: (s.count(","), s))[0]


def main_runs(records: Iterable[Record]) -> list[Record]:
    """The complete runs with the main settings: what the error figures and this project's questions use."""
    records = cells.included(records)
    label = main_settings(records)
    return [r for r in records if settings(r) == label]


def protocol_runs(records: Iterable[Record]) -> list[Record]:
    """The complete runs of the HW5 report's protocol: the only ones its claims are judged on."""
    return [r for r in cells.included(records) if settings(r) == PROTOCOL]


def metric_for(records: Iterable[Record]) -> str:
    """The honest metric these runs allow: val-selected test accuracy, or final test accuracy without validation."""
    records = list(records)
    validated = records and all(r.config.get("validation", True) for r in records)
    return "val_selected_test_acc" if validated else "final_test_acc"


def prediction_for(records: Iterable[Record]) -> str:
    """Which kept predictions go with ``metric_for``: val_selected, or final for runs without validation."""
    return PREDICTION_OF[metric_for(records)]


def correctness(runs: Sequence[Record], which: str, labels: np.ndarray) -> np.ndarray | None:
    """(runs, test images): whether each run got each test image right at ``which``; None when one kept
    no predictions there."""
    rows = []
    for record in runs:
        predicted = record.predicted(which)
        if predicted is None:
            return None
        if predicted.shape != np.shape(labels):
            raise ValueError(f"{cells.run_name(record)}: {len(predicted)} predictions for {len(labels)} test labels; "
                             "pass the official test labels (misclassified.test_set)")
        rows.append(predicted == labels)
    return np.stack(rows)


def compare(runs_a: Iterable[Record], runs_b: Iterable[Record], metric: str, labels: np.ndarray | None = None,
            a: str = "a", b: str = "b") -> Comparison | None:
    """a - b on ``metric`` over the seeds both sets of runs have (one run per seed each); None without a pair."""
    by_seed = {r.config["seed"]: r for r in runs_b}
    pairs = [(r, by_seed[r.config["seed"]]) for r in sorted(runs_a, key=lambda r: r.config["seed"])
             if r.config["seed"] in by_seed]
    pairs = [(ra, rb) for ra, rb in pairs if _value(ra, metric) is not None and _value(rb, metric) is not None]
    if not pairs:
        return None
    seeds = tuple(ra.config["seed"] for ra, _ in pairs)
    seed_only = stats.paired_difference([_value(ra, metric) for ra, _ in pairs],
                                        [_value(rb, metric) for _, rb in pairs])
    which = PREDICTION_OF.get(metric)
    if which is None:
        missing = "" if metric == TRAIN_LOSS else "no per-example predictions are kept at the best epoch"
        return Comparison(a, b, metric, seeds, seed_only, missing=missing)
    correct_a = correctness([ra for ra, _ in pairs], which, labels) if labels is not None else None
    correct_b = correctness([rb for _, rb in pairs], which, labels) if labels is not None else None
    if correct_a is None or correct_b is None:
        return Comparison(a, b, metric, seeds, seed_only, missing="these records keep no per-example predictions")
    tests = tuple(stats.mcnemar(labels, ra.predicted(which), rb.predicted(which)) for ra, rb in pairs)
    return Comparison(a, b, metric, seeds, seed_only, stats.paired_two_source(correct_a, correct_b), tests,
                      stats.sign_flip(correct_a, correct_b))


def comparisons(records: Iterable[Record], metric: str | None = None, pairs: Sequence[tuple[str, str]] = MODEL_PAIRS,
                labels: np.ndarray | None = None) -> pd.DataFrame:
    """Per model pair, hidden size and settings: seeds, mean difference a - b, its 95 % interval over seeds and
    test images (``low``, ``high``) and over seeds alone (``seed_low``, ``seed_high``), the verdict on
    "a > b", the pooled sign-flip p value and McNemar's p value of each seed."""
    by_cell = cells.group(records)
    rows = []
    for label in sorted({key[2] for key in by_cell}, key=lambda s: (s != PROTOCOL, s)):
        group = [r for key, runs in by_cell.items() if key[2] == label for r in runs]
        chosen = metric or metric_for(group)
        for hidden_size in sorted({key[1] for key in by_cell if key[2] == label}, key=cells.size_order):
            for a, b in pairs:
                runs_a, runs_b = by_cell.get((a, hidden_size, label)), by_cell.get((b, hidden_size, label))
                found = compare(runs_a, runs_b, chosen, labels, a, b) if runs_a and runs_b else None
                if found is not None:
                    rows.append(_comparison_row(found, hidden_size=hidden_size, settings=label))
    columns = ["a", "b", "hidden_size", "settings", "metric", "seeds", "difference", "low", "high", "seed_low",
               "seed_high", "verdict", "why", "pooled_p", "mcnemar_p"]
    return pd.DataFrame(rows, columns=columns)


def comparisons_text(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """``comparisons`` for reading: intervals as "[low, high]", p values in two significant digits."""
    out = table[["a", "b", "hidden_size", "settings", "seeds"]].copy()
    out["a − b (points)"] = [f"{v:+.{digits}f}" for v in table["difference"]]
    out["95 % CI, seeds and images"] = [_interval(lo, hi, digits) for lo, hi in zip(table["low"], table["high"])]
    out["95 % CI, seeds only"] = [_interval(lo, hi, digits) for lo, hi in zip(table["seed_low"], table["seed_high"])]
    out["verdict on a > b"] = [v if not why else f"{v} ({why})" for v, why in zip(table["verdict"], table["why"])]
    out["pooled p"] = ["" if pd.isna(p) else f"{p:.2g}" for p in table["pooled_p"]]
    out["McNemar p per seed"] = [", ".join(f"{p:.2g}" for p in ps) for ps in table["mcnemar_p"]]
    return out


def check(records: Iterable[Record], labels: np.ndarray | None = None) -> list[Claim]:
    """The HW5 report's four claims, judged on its protocol's runs, then this project's own questions."""
    records = cells.included(records)
    if not records:
        return []
    protocol = protocol_runs(records)
    found = [ordering(protocol, labels), training_accuracy(protocol), hidden_size_effect(protocol, labels),
             stability(protocol, labels), trains_faster(main_runs(records))]
    return found + learning_rate_claims(records, labels)


def rules() -> str:
    """The rules every verdict on the page follows, as Markdown, with the numbers the code uses."""
    bonferroni = 100 * (1 - stats.ERROR_RATE / 6)
    return "\n".join([
        "- **Both sources of noise.** A run's test accuracy varies with its seed and with the 10,000 test images, "
        "which all runs share, so more seeds never remove the second part. Every comparison of test accuracy has "
        "a 95 % interval over seeds *and* test images, and verdicts use it: the seeds' part is the t interval "
        "over the per-seed values (S − 1 degrees of freedom); the images' part is the spread of the per-image "
        "values averaged over seeds, less the seed-by-image interaction already in the seeds' part (the crossed "
        "random-effects model, method of moments); the two half-widths add in quadrature, so the interval is "
        "never narrower than either alone. It is computed, not resampled: the page reads the same on every "
        "rebuild. The t interval over seeds alone stands beside it, labelled *seeds only*: it leaves the test "
        "images out and decides nothing.",
        "- **Tests.** *Pooled p*: an exact sign-flip test on the shared images (per image, correct runs of a minus "
        "correct runs of b, summed over seeds; with one seed it is McNemar's test). McNemar's exact test per seed "
        "is listed too; those p values share the images and are never combined as if independent.",
        f"- **The HW5 report's protocol.** A claim of the HW5 report is judged only on runs of its protocol "
        f"({PROTOCOL_TEXT}), on val-selected test accuracy (its own metric, the best test accuracy, picks the "
        "epoch on the test set). Allowed deviations, as listed in the README: the 50,000 / 10,000 split its text "
        "gives, fused Adam, denormals flushed on the CPU, PyTorch's weight norm without data-dependent "
        "initialisation, evaluation in eval mode, the epoch chosen on validation. Runs with any other setting "
        "changed (fewer epochs, another learning rate, all 60,000 training images) are not its protocol; "
        "without protocol runs a claim reads *not tested here*, with what it would need.",
        "- **Every hidden size** needs runs at all three, H = 5000, 2000 and 1000.",
        f"- **No verdict** from fewer than {stats.MIN_SEEDS} seeds or from an interval of zero width (no "
        "measured noise is not evidence of none).",
        f"- **Supported**: every part of the claim tested and its 95 % interval on the claimed side (above 0; for "
        f"\"stable\", inside ±{STABLE_MARGIN} points): each part errs at most 2.5 %, so the claim does too. "
        f"**Contradicted**: the claim as a whole is wrong at error rate {100 * stats.ERROR_RATE:g} %: some part's "
        f"interval at 1 − {100 * stats.ERROR_RATE:g} %/k (k = the claim's number of parts: {bonferroni:.1f} % "
        "for the "
        "six parts of the ordering) lies wholly on the wrong side (Bonferroni), not any one part at 95 %. "
        "**Within noise**: every part tested, neither. **Not tested here**: neither, some part missing or "
        "untestable.",
        "- **This project's questions** (not claims of the HW5 report) are labelled so and follow the same rules, "
        "with measures the learning-rate schedule does not decide.",
    ])


def scope(records: Iterable[Record]) -> str:
    """What these runs can and cannot show: which runs the report's claims are judged on, or why none."""
    runs = cells.included(records)
    if not runs:
        return "No complete run: no claim can be judged."
    protocol = protocol_runs(runs)
    if not protocol:
        differ = sorted({settings(r) for r in runs})
        return (f"None of these {_count(len(runs), 'run')} follows the HW5 report's protocol (they differ in "
                f"{'; '.join(differ)}), so every claim of the report reads *not tested here*. What they can show: "
                "the pipeline end to end, and how the models compare at these runs' own settings (the comparisons "
                "below, with both sources of noise). What they cannot: anything about 100 epochs, the three "
                "hidden sizes, or the HW5 report's numbers.")
    by_cell = cells.group(protocol)
    counts = ", ".join(f"{cell_name(m, h)} {_count(len(rs), 'seed')}" for (m, h, _), rs in
                       sorted(by_cell.items(), key=lambda item: cells.order(item[0])))
    text = (f"The HW5 report's claims are judged on the {_count(len(protocol), 'complete run')} of its protocol "
            f"({counts}), on val-selected test accuracy.")
    other = len(runs) - len(protocol)
    if other:
        text += f" The other {_count(other, 'run')} (other settings) are compared below but judge none of its claims."
    return text


def markdown(claims: Iterable[Claim]) -> str:
    """The claims as a Markdown list: claim, whose it is, verdict, then the generated sentences."""
    items = []
    for c in claims:
        whose = f"the HW5 report: *{c.says}*" if c.source == REPORT else \
            f"this project's question, not a claim of the HW5 report: *{c.says}*"
        items.append(f"- **{c.name}** ({whose}) **Verdict: {c.verdict}.** {c.text}")
    return "\n".join(items)


# --- the HW5 report's claims -----------------------------------------------------------------------

def ordering(protocol: list[Record], labels: np.ndarray | None = None) -> Claim:
    """bmodel > wmodel > nmodel at every hidden size: six parts (b > w and w > n at each of the three sizes)."""
    name, says = "Table 1 ordering", "bmodel > wmodel > nmodel at every hidden size."
    needs = ("all three models at H = 5000, 2000 and 1000 on the protocol, at least "
             f"{stats.MIN_SEEDS} seeds each, with per-example predictions (params/paper)")
    if not protocol:
        return Claim(name, says, REPORT, stats.UNTESTED, _not_protocol(needs))
    by_cell, metric = cells.group(protocol), "val_selected_test_acc"
    parts = [(h, a, b) for h in HIDDEN_SIZES for a, b in (("bmodel", "wmodel"), ("wmodel", "nmodel"))]
    verdicts, sentences = [], []
    for h in HIDDEN_SIZES:
        texts = []
        for _, a, b in [p for p in parts if p[0] == h]:
            found = _compare_cells(by_cell, (a, h), (b, h), metric, labels)
            if found is None:
                texts.append(f"{a} − {b}: no paired runs")
                continue
            verdicts.append(found.verdict(len(parts)))
            texts.append(_part_text(found, verdicts[-1]))
        paired = [t for t in texts if not t.endswith("no paired runs")]
        sentences.append(f"At H = {h}: " + ("; ".join(texts) if paired else "no paired runs") + ".")
    return Claim(name, says, REPORT, stats.claim_verdict(verdicts, len(parts)),
                 " ".join(sentences) + " " + _rule_text(len(parts)))


def training_accuracy(protocol: list[Record]) -> Claim:
    """Every model reaches 100 % training accuracy in 100 epochs, read from ``train_eval`` (the whole training
    set in eval mode after the last epoch). Measured exactly (nothing sampled), so only the seeds are noise: a
    cell where most seeds fall short contradicts it; support needs every run of all nine cells at 100 %."""
    name, says = "100 % training accuracy", "every model reaches 100 % training accuracy in 100 epochs."
    needs = (f"protocol runs of every model at every hidden size, at least {stats.MIN_SEEDS} seeds each, "
             "in records that measure the training set after training (format 3, train_eval)")
    if not protocol:
        return Claim(name, says, REPORT, stats.UNTESTED, _not_protocol(needs))
    by_cell = cells.group(protocol)
    sentences, short_cells, untested, unmeasured = [], [], [], []
    for model in MODELS:
        parts = []
        for h in HIDDEN_SIZES:
            runs = by_cell.get((model, h, PROTOCOL), [])
            measured = [r.summary["train_eval_acc"] for r in runs if r.summary["train_eval_acc"] is not None]
            unmeasured += [r for r in runs if r.summary["train_eval_acc"] is None]
            if not runs:
                untested.append(cell_name(model, h))
                continue
            if len(measured) < stats.MIN_SEEDS:
                untested.append(cell_name(model, h))
            if not measured:
                parts.append(f"H = {h} not measured")
                continue
            reach = sum(acc >= 100.0 for acc in measured)
            if len(measured) >= stats.MIN_SEEDS and 2 * (len(measured) - reach) > len(measured):
                short_cells.append(cell_name(model, h))
            low = "" if reach == len(measured) else f", lowest {min(measured):.2f} %"
            parts.append(f"H = {h} {reach} of {_count(len(measured), 'run')}{low}")
        sentences.append(f"{model}: " + ", ".join(parts) if parts else f"{model}: no protocol runs")
    if short_cells:
        verdict = stats.CONTRADICTED
    elif untested:
        verdict = stats.UNTESTED
    else:
        all_reach = all(r.summary["train_eval_acc"] is None or r.summary["train_eval_acc"] >= 100.0
                        for runs in by_cell.values() for r in runs)
        verdict = stats.SUPPORTED if all_reach else stats.WITHIN_NOISE
    text = ("Runs at 100.00 % of the 50,000 training images, measured in eval mode after the last epoch: "
            + "; ".join(sentences) + ".")
    if unmeasured:
        running = [r.history[-1]["train_acc"] for r in unmeasured if r.history]
        text += (f" Not measured for {_count(len(unmeasured), 'run')}: older records (format 2) lack the eval-mode "
                 "measurement; their training pass's running count, taken while the weights change, ended at "
                 f"{min(running):.2f}-{max(running):.2f} % and is not the trained network's accuracy.")
    if short_cells:
        text += f" Most seeds short of 100 % in {', '.join(short_cells)}."
    if untested and not short_cells:
        text += f" Not tested: {', '.join(untested)} (a verdict needs {stats.MIN_SEEDS} measured seeds per cell)."
    text += (" Rule: the measurement is exact (every training image), so only seeds are noise: contradicted when in "
             "some cell most seeds fall short of 100 %, supported when every run of all nine cells reaches it.")
    return Claim(name, says, REPORT, verdict, text)


def hidden_size_effect(protocol: list[Record], labels: np.ndarray | None = None) -> Claim:
    """For nmodel, H = 5000 is best and H = 2000 worst: three parts, 5000 > 1000, 5000 > 2000, 1000 > 2000."""
    name, says = "Hidden size for nmodel", "H = 5000 is best, H = 2000 worst."
    needs = f"nmodel on the protocol at H = 5000, 2000 and 1000, at least {stats.MIN_SEEDS} seeds each"
    return _across_sizes(name, says, needs, "nmodel", ((5000, 1000), (5000, 2000), (1000, 2000)), protocol, labels)


def stability(protocol: list[Record], labels: np.ndarray | None = None) -> Claim:
    """bmodel's accuracy does not change much with H: every paired difference between sizes within
    ±STABLE_MARGIN points (three parts)."""
    name, says = "bmodel stable across H", "bmodel's accuracy does not change much with the hidden size."
    needs = f"bmodel on the protocol at H = 5000, 2000 and 1000, at least {stats.MIN_SEEDS} seeds each"
    return _across_sizes(name, says, needs, "bmodel", ((5000, 2000), (5000, 1000), (2000, 1000)), protocol, labels,
                         margin=STABLE_MARGIN)


def _across_sizes(name: str, says: str, needs: str, model: str, pairs: Sequence[tuple[int, int]],
                  protocol: list[Record], labels: np.ndarray | None, margin: float | None = None) -> Claim:
    if not protocol:
        return Claim(name, says, REPORT, stats.UNTESTED, _not_protocol(needs))
    by_cell = cells.group(protocol)
    verdicts, texts = [], []
    for a, b in pairs:
        found = _compare_cells(by_cell, (model, a), (model, b), "val_selected_test_acc", labels, f"H={a}", f"H={b}")
        if found is None:
            texts.append(f"H={a} − H={b}: no paired runs")
            continue
        verdicts.append(found.verdict(len(pairs), margin))
        texts.append(_part_text(found, verdicts[-1]))
    rule = _rule_text(len(pairs), margin)
    measured = "; ".join(texts) if verdicts else f"no {model} runs at two hidden sizes with a common seed yet"
    return Claim(name, says, REPORT, stats.claim_verdict(verdicts, len(pairs)), f"{model}: {measured}. {rule}")


# --- this project's questions ----------------------------------------------------------------------

def initial_rate_loss(record: Record) -> float | None:
    """Mean training loss over the epochs before the first learning-rate decay (1 to step_size): the area
    under the training-loss curve while every model has the same, constant rate. The schedule does not
    decide it, as "the first epoch at 99 % training accuracy" was decided by the decay after epoch 20."""
    epochs = min(record.config.get("step_size", 20), len(record.history))
    losses = [h["train_loss"] for h in record.history[:epochs]]
    if not losses or not all(loss is not None and math.isfinite(loss) for loss in losses):
        return None
    return float(np.mean(losses))


def trains_faster(runs: list[Record]) -> Claim:
    """This project's question: do bmodel and wmodel train faster than nmodel (lower ``initial_rate_loss``)?"""
    name = "Do the normalised models train faster?"
    says = ("at the same learning rate, bmodel and wmodel reach a lower training loss sooner than nmodel (the HW5 "
            "report does not claim this; only the titles of the papers it cites do).")
    if not runs:
        return Claim(name, says, OWN, stats.UNTESTED, "No complete runs.")
    by_cell = cells.group(runs)
    sizes = sorted({key[1] for key in by_cell if key[0] == "nmodel"}, key=cells.size_order)
    parts = [(h, faster) for h in sizes for faster in ("bmodel", "wmodel")
             if (faster, h, settings(runs[0])) in by_cell]
    if not parts:
        return Claim(name, says, OWN, stats.UNTESTED, "Needs nmodel and a normalised model at one hidden size.")
    verdicts, texts = [], []
    for h, faster in parts:
        found = _compare_cells(by_cell, ("nmodel", h), (faster, h), TRAIN_LOSS, None)
        if found is None:
            texts.append(f"H = {h}: nmodel − {faster}: no paired runs")
            continue
        verdicts.append(found.verdict(len(parts)))
        texts.append(f"H = {h}: " + _part_text(found, verdicts[-1], unit="", digits=4))
    epochs = min(runs[0].config.get("step_size", 20), runs[0].config["epochs"])
    where = "the protocol" if settings(runs[0]) == PROTOCOL else settings(runs[0])
    text = (f"Measure: the mean training loss over epochs 1-{epochs}, before the first learning-rate decay, at "
            f"{where}; nmodel − normalised model > 0 means the normalised model got lower sooner. "
            + "; ".join(texts) + ". It is measured on the training images themselves (nothing sampled), so its "
            "interval is over seeds alone. " + _rule_text(len(parts)))
    return Claim(name, says, OWN, stats.claim_verdict(verdicts, len(parts)), text)


def rate_choices(records: Iterable[Record]) -> pd.DataFrame:
    """Where records hold several learning rates for a model at one hidden size (and otherwise the same
    settings): per model and rate, the seeds, validation accuracy at the val-selected epoch (mean and sd
    over seeds: what the rate is chosen on), val-selected test accuracy, and which rate is chosen.

    A model's rate is the one with the best mean validation accuracy among its rates with at least
    MIN_SEEDS seeds; test accuracy never enters the choice."""
    by_cell = cells.group(records, ignore=("lr",))
    groups = {(h, s) for (m, h, s, lr) in by_cell if len({k[3] for k in by_cell if k[:3] == (m, h, s)}) > 1}
    rows = []
    for h, s in sorted(groups, key=lambda g: (cells.size_order(g[0]), g[1])):
        for model in MODELS:
            rates = sorted(k[3] for k in by_cell if k[:3] == (model, h, s))
            summaries = []
            for lr in rates:
                runs = by_cell[(model, h, s, lr)]
                val = [_val_selected_val_acc(r) for r in runs]
                val = [v for v in val if v is not None]
                test = [r.summary["val_selected_test_acc"] for r in runs
                        if r.summary["val_selected_test_acc"] is not None]
                val_e, test_e = stats.describe(val), stats.describe(test)
                summaries.append({"model": model, "hidden_size": h, "settings": s, "lr": lr, "seeds": len(runs),
                                  "val_acc": val_e.mean, "val_acc_sd": val_e.sd, "test_acc": test_e.mean,
                                  "test_acc_sd": test_e.sd, "eligible": len(val) >= stats.MIN_SEEDS, "chosen": False})
            eligible = [row for row in summaries if row["eligible"]]
            if len(eligible) >= 2:  # one rate is no choice
                max(eligible, key=lambda row: (row["val_acc"], -row["lr"]))["chosen"] = True
            rows += summaries
    columns = ["model", "hidden_size", "settings", "lr", "seeds", "val_acc", "val_acc_sd", "test_acc", "test_acc_sd",
               "eligible", "chosen"]
    return pd.DataFrame(rows, columns=columns)


def rate_choices_text(table: pd.DataFrame) -> pd.DataFrame:
    """``rate_choices`` for reading."""
    out = table[["model", "hidden_size", "settings"]].copy()
    out["lr"] = [f"{lr:g}" for lr in table["lr"]]
    out["seeds"] = table["seeds"]
    out["validation acc. (chooses)"] = [_mean_sd(m, sd) for m, sd in zip(table["val_acc"], table["val_acc_sd"])]
    out["val-selected test acc."] = [_mean_sd(m, sd) for m, sd in zip(table["test_acc"], table["test_acc_sd"])]
    rates = table.groupby(["model", "hidden_size", "settings"])["lr"].transform("count")
    out["chosen"] = ["chosen" if c else (f"fewer than {stats.MIN_SEEDS} seeds" if not e else
                                         "the only rate" if n == 1 else "")
                     for c, e, n in zip(table["chosen"], table["eligible"], rates)]
    return out


def learning_rate_claims(records: Iterable[Record], labels: np.ndarray | None = None) -> list[Claim]:
    """This project's question, per normaliser: does it still beat nmodel once each model has the rate chosen
    on validation? Empty unless some model has several rates at one hidden size (``rate_choices``)."""
    records = list(records)
    table = rate_choices(records)
    if table.empty:
        return []
    by_cell = cells.group(records, ignore=("lr",))
    found = []
    for (h, s), group in table.groupby(["hidden_size", "settings"], sort=False):
        chosen = {row["model"]: row for _, row in group[group["chosen"]].iterrows()}
        tried = {m: sorted(part["lr"]) for m, part in group.groupby("model")}
        eligible = {m: sorted(part.loc[part["eligible"], "lr"]) for m, part in group.groupby("model")}
        for model, label in (("bmodel", "batch norm"), ("wmodel", "weight norm")):
            name = f"Does {label} still help at each model's best learning rate (H = {h})?"
            says = (f"{model} at its own best learning rate beats nmodel at its own best rate, each rate chosen on "
                    "validation accuracy.")
            where = "" if s == PROTOCOL else f" Settings besides the rate: {s}."
            missing = [m for m in (model, "nmodel") if len(eligible.get(m, [])) < 2]
            if missing:
                rates = "; ".join(f"{m} {', '.join(f'{lr:g}' for lr in tried.get(m, [])) or 'none'}"
                                  for m in (model, "nmodel"))
                text = (f"Not tested here: {' and '.join(missing)} not at two or more rates with {stats.MIN_SEEDS} "
                        f"seeds each (rates tried: {rates}).{where}")
                found.append(Claim(name, says, OWN, stats.UNTESTED, text))
                continue
            rate_a, rate_b = chosen[model]["lr"], chosen["nmodel"]["lr"]
            comparison = compare(by_cell[(model, h, s, rate_a)], by_cell[("nmodel", h, s, rate_b)],
                                 "val_selected_test_acc", labels, f"{model} (lr {rate_a:g})", f"nmodel (lr {rate_b:g})")
            verdict = comparison.verdict(1)
            edges = [f"{m}'s chosen rate {r:g} is the {'smallest' if r == eligible[m][0] else 'largest'} tried: "
                     "its best "
                     "may lie beyond" for m, r in ((model, rate_a), ("nmodel", rate_b))
                     if r in (eligible[m][0], eligible[m][-1])]
            text = (f"Chosen on validation accuracy: {model} lr {rate_a:g}, nmodel lr {rate_b:g}. "
                    + _part_text(comparison, verdict) + "." + (" " + "; ".join(edges) + "." if edges else "")
                    + where + " " + _rule_text(1))
            found.append(Claim(name, says, OWN, verdict, text))
    return found


# --- helpers ---------------------------------------------------------------------------------------

def _val_selected_val_acc(record: Record) -> float | None:
    row = records_module.val_selected(record.history)
    return None if row is None else float(row["val_acc"])


def _value(record: Record, metric: str) -> float | None:
    if metric == TRAIN_LOSS:
        return initial_rate_loss(record)
    value = record.summary[metric]
    return None if value is None or not math.isfinite(value) else float(value)


def _compare_cells(by_cell: dict, a: tuple, b: tuple, metric: str, labels, name_a: str | None = None,
                   name_b: str | None = None) -> Comparison | None:
    """Compare two protocol-or-main cells given as (model, hidden size): the settings of the first run found."""
    label = next((key[2] for key in by_cell if key[:2] == a), None)
    runs_a, runs_b = by_cell.get((*a, label)), by_cell.get((*b, label))
    if not runs_a or not runs_b:
        return None
    return compare(runs_a, runs_b, metric, labels, name_a or a[0], name_b or b[0])


def _comparison_row(c: Comparison, **where) -> dict:
    two = c.two_source
    return {"a": c.a, "b": c.b, **where, "metric": c.metric, "seeds": len(c.seeds), "difference": c.mean,
            "low": two.low if two else math.nan, "high": two.high if two else math.nan,
            "seed_low": c.seed_only.low, "seed_high": c.seed_only.high, "verdict": c.verdict(1),
            "why": c.why_untested(), "pooled_p": c.pooled_p if c.pooled_p is not None else math.nan,
            "mcnemar_p": [t.p_value for t in c.mcnemar]}


def _part_text(c: Comparison, verdict: str, unit: str = " points", digits: int = 2) -> str:
    """ "a − b = +0.20 points (95 % CI over seeds and test images [...]; seeds only [...]; 3 seeds; pooled p): v" """
    bits = []
    if c.two_source is not None:
        bits.append(f"95 % CI over seeds and test images {_interval(c.two_source.low, c.two_source.high, digits)}")
    if c.seed_only.n >= 2:
        bits.append(("95 % CI over seeds " if c.metric == TRAIN_LOSS else "seeds only ")
                    + _interval(c.seed_only.low, c.seed_only.high, digits))
    bits.append(_count(len(c.seeds), "seed"))
    if c.pooled_p is not None:
        bits.append(f"pooled p = {c.pooled_p:.2g}")
    text = f"{c.a} − {c.b} = {c.mean:+.{digits}f}{unit} ({'; '.join(bits)})"
    why = c.why_untested() if verdict == stats.UNTESTED else ""
    return text + (f": not tested ({why})" if why else f": {verdict}")


def _rule_text(parts: int, margin: float | None = None) -> str:
    """The verdict rule of a claim of ``parts`` parts, with its error rate (``stats.part_verdict``)."""
    level = 100 * (1 - stats.ERROR_RATE / parts)
    side = f"inside ±{margin:g} points" if margin is not None else "above 0"
    wrong = f"wholly outside ±{margin:g}" if margin is not None else "wholly below 0"
    rate = f"{100 * stats.ERROR_RATE:g} %"
    if parts == 1:
        return f"(Supported: its 95 % interval {side}; contradicted: that interval {wrong}.)"
    return (f"(Supported: all {parts} parts tested, each 95 % interval {side}; contradicted: one part's "
            f"{level:.1f} % interval {wrong}, a {rate} error rate for the whole claim.)")


def _not_protocol(needs: str) -> str:
    return f"Not tested here: none of these runs follows the HW5 report's protocol. It needs {needs}."


def _interval(low, high, digits: int = 2) -> str:
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return ""
    return f"[{low:+.{digits}f}, {high:+.{digits}f}]"


def _mean_sd(mean, sd, digits: int = 2) -> str:
    if pd.isna(mean):
        return ""
    return f"{mean:.{digits}f}" if pd.isna(sd) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
