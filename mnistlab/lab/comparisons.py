"""Comparisons between cells of whatever models a sweep has: a - b over seeds and test images, paired by seed only
where a shared seed gives two runs something in common, and the one rule (``judge``) that turns the parts of a
claim into a verdict.

Pairing. Every run is scored on the same 10,000 test images, so the images are always paired. Seeds are paired
only by construction: two runs at one hidden size and one seed start from the same initial weights (the seed is
set, then fc1 and fc2 are drawn; batch norm and weight norm draw nothing), so ``compare`` matches them by seed
(paired t over seeds, McNemar per seed). At different hidden sizes the weights have other shapes and a seed
number shares nothing, so the seeds of each cell enter independently (Welch over seeds, the images still paired:
``stats.unpaired_two_source``) and no result depends on which seed number a run carries. ``seed_agreement``
shows from the records how much a shared seed shares: how often same-seed and different-seed pairs of runs
disagree on a test image.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from ..records import Record
from . import cells, hw5, stats
from .misclassified import correct
from .protocol import PROTOCOL, changes

TRAIN_LOSS = "initial_rate_train_loss"  # this project's measure of training speed (``initial_rate_loss``)
PREDICTION_OF = {"val_selected_test_acc": "val_selected", "final_test_acc": "final"}  # none kept at the best epoch
PAIRED, UNPAIRED = "paired by seed", "seeds unpaired"


@dataclass(frozen=True)
class Comparison:
    """a - b: the seed-only t interval and, for test accuracy, the interval over seeds and test images."""

    a: str
    b: str
    metric: str
    seeds: tuple[int, ...]  # the seeds matched (paired), or every seed of a then of b (unpaired)
    seed_only: stats.Estimate  # paired t (or Welch) interval over seeds alone
    two_source: stats.TwoSource | None = None  # None: no per-example predictions for this metric
    mcnemar: tuple[stats.McNemar, ...] = ()  # per matched seed (paired only)
    pooled_p: float | None = None  # exact sign-flip test pooled over seeds (``stats.sign_flip``)
    missing: str = ""  # why there is no two-source interval
    paired: bool = True
    runs: tuple[int, int] = (0, 0)  # the runs of a and of b used

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

    @property
    def seed_count(self) -> str:
        """ "5 seeds" (paired), or "5 and 3 seeds" (unpaired)."""
        if self.paired:
            return _count(len(self.seeds), "seed")
        n_a, n_b = self.runs
        return _count(n_a, "seed") if n_a == n_b else f"{n_a} and {n_b} seeds"


def paired_by_seed(runs_a: Iterable[Record], runs_b: Iterable[Record]) -> bool:
    """Whether a shared seed gives runs of a and b something by construction: one hidden size, so the same initial
    weights (the module docstring)."""
    return len({r.config["hidden_size"] for r in [*runs_a, *runs_b]}) == 1


def compare(runs_a: Iterable[Record], runs_b: Iterable[Record], metric: str, labels: np.ndarray | None = None,
            a: str = "a", b: str = "b") -> Comparison | None:
    """a - b on ``metric``: paired over the seeds both have where ``paired_by_seed``, else every run of each
    (one run per seed); None without two runs to compare."""
    runs_a = sorted(runs_a, key=lambda r: r.config["seed"])
    runs_b = sorted(runs_b, key=lambda r: r.config["seed"])
    paired = paired_by_seed(runs_a, runs_b)
    if paired:
        by_seed = {r.config["seed"]: r for r in runs_b}
        pairs = [(r, by_seed[r.config["seed"]]) for r in runs_a if r.config["seed"] in by_seed]
        pairs = [(ra, rb) for ra, rb in pairs if _value(ra, metric) is not None and _value(rb, metric) is not None]
        runs_a, runs_b = [ra for ra, _ in pairs], [rb for _, rb in pairs]
    else:
        runs_a = [r for r in runs_a if _value(r, metric) is not None]
        runs_b = [r for r in runs_b if _value(r, metric) is not None]
    if not runs_a or not runs_b:
        return None
    values_a, values_b = [_value(r, metric) for r in runs_a], [_value(r, metric) for r in runs_b]
    seeds = tuple(r.config["seed"] for r in runs_a) + (() if paired else tuple(r.config["seed"] for r in runs_b))
    seed_only = (stats.paired_difference if paired else stats.welch_difference)(values_a, values_b)
    base = {"a": a, "b": b, "metric": metric, "seeds": seeds, "seed_only": seed_only, "paired": paired,
            "runs": (len(runs_a), len(runs_b))}
    which = PREDICTION_OF.get(metric)
    if which is None:
        missing = "" if metric == TRAIN_LOSS else "no per-example predictions are kept at the best epoch"
        return Comparison(**base, missing=missing)
    correct_a = _correctness(runs_a, which, labels)
    correct_b = _correctness(runs_b, which, labels)
    if correct_a is None or correct_b is None:
        return Comparison(**base, missing="these records keep no per-example predictions")
    if paired:
        tests = tuple(stats.mcnemar(labels, ra.predicted(which), rb.predicted(which)) for ra, rb in zip(runs_a, runs_b))
        two = stats.paired_two_source(correct_a, correct_b)
    else:
        tests, two = (), stats.unpaired_two_source(correct_a, correct_b)
    return Comparison(**base, two_source=two, mcnemar=tests, pooled_p=stats.sign_flip(correct_a, correct_b))


def metric_for(records: Iterable[Record]) -> str:
    """The honest metric these runs allow: val-selected test accuracy, or final test accuracy without validation."""
    records = list(records)
    validated = records and all(r.config.get("validation", True) for r in records)
    return "val_selected_test_acc" if validated else "final_test_acc"


def model_pairs(models: Iterable[str]) -> list[tuple[str, str]]:
    """Every pair of ``models`` once, as (a, b) for a - b: the HW5 report's pairs in its direction first
    (``hw5.PAIRS``), then the others in the registry's order, the later-registered model as a (the plain network,
    registered first, is b)."""
    present = sorted(set(models), key=cells.model_order)
    ordered = [pair for pair in hw5.PAIRS if set(pair) <= set(present)]
    done = {frozenset(pair) for pair in ordered}
    ordered += [(b, a) for a, b in combinations(present, 2) if frozenset((a, b)) not in done]
    return ordered


def comparisons(records: Iterable[Record], metric: str | None = None, labels: np.ndarray | None = None
                ) -> pd.DataFrame:
    """Every pair of models at one hidden size and settings (``model_pairs``): seeds, mean difference a - b, its
    95 % interval over seeds and test images (``low``, ``high``) and over seeds alone (``seed_low``,
    ``seed_high``), the images' standard error (``se_images``; and ``image_component``, the images' variance as
    estimated, which can fall below 0), the verdict on "a > b", the pooled sign-flip p value and McNemar's p
    value of each seed."""
    by_cell = cells.group(records)
    rows = []
    for label in sorted({key[2] for key in by_cell}, key=lambda s: (s != PROTOCOL, s)):
        group = [r for key, runs in by_cell.items() if key[2] == label for r in runs]
        chosen = metric or metric_for(group)
        for hidden_size in sorted({key[1] for key in by_cell if key[2] == label}, key=cells.size_order):
            models = [key[0] for key in by_cell if key[1:] == (hidden_size, label)]
            for a, b in model_pairs(models):
                found = compare(by_cell[(a, hidden_size, label)], by_cell[(b, hidden_size, label)], chosen, labels,
                                a, b)
                if found is not None:
                    rows.append(_row(found, hidden_size=hidden_size, settings=label))
    return pd.DataFrame(rows, columns=COLUMNS)


@dataclass(frozen=True)
class SettingStep:
    """Cell a (``settings``) against cell b (``base``) of one model and hidden size, where b's changes from the
    protocol are a subset of a's with the same values and no cell lies between: what ``change`` buys."""

    model: str
    hidden_size: int
    settings: str
    base: str
    change: str
    runs_a: list
    runs_b: list
    comparison: Comparison


def setting_steps(records: Iterable[Record], labels: np.ndarray | None = None) -> list[SettingStep]:
    """Every ``SettingStep`` the records hold, by model and hidden size. With a full recipe and the recipe with
    each addition removed in turn, each is what one addition buys given the rest; with a learning-rate study, what
    each rate buys over the protocol's."""
    by_cell = cells.group(records)
    found_changes = {key: changes(runs[0]) for key, runs in by_cell.items()}
    steps = []
    for model, hidden_size in sorted({key[:2] for key in by_cell}, key=lambda k: (cells.model_order(k[0]),
                                                                                   cells.size_order(k[1]))):
        keys = [key for key in by_cell if key[:2] == (model, hidden_size)]
        for a_key in sorted(keys, key=cells.order):
            a = found_changes[a_key].items()
            below = [k for k in keys if k != a_key and set(found_changes[k].items()) < set(a)]
            for b_key in sorted(below, key=cells.order):
                b = set(found_changes[b_key].items())
                if any(b < set(found_changes[k].items()) < set(a) for k in below if k != b_key):
                    continue  # another cell lies between: the step is made of smaller ones
                runs_a, runs_b = by_cell[a_key], by_cell[b_key]
                found = compare(runs_a, runs_b, metric_for(runs_a + runs_b), labels, a_key[2], b_key[2])
                if found is not None:
                    change = ", ".join(f"{k}={_text(v)}" for k, v in a if (k, v) not in b)
                    steps.append(SettingStep(model, hidden_size, a_key[2], b_key[2], change, runs_a, runs_b, found))
    return steps


def setting_effects(records: Iterable[Record], labels: np.ndarray | None = None) -> pd.DataFrame:
    """``setting_steps`` as a table: columns as ``comparisons``, plus ``from`` (b's settings) and ``change`` (what
    a adds)."""
    rows = [_row(step.comparison, hidden_size=step.hidden_size, settings=step.settings, model=step.model,
                 **{"from": step.base, "change": step.change}) for step in setting_steps(records, labels)]
    return pd.DataFrame(rows, columns=["model", "hidden_size", "settings", "from", "change", *COLUMNS[4:]])


def comparisons_text(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """``comparisons`` (or ``setting_effects``) for reading: intervals as "[low, high]", the images' floor (the
    half-width no number of seeds goes below), p values in two significant digits."""
    keys = [k for k in ("model", "a", "b", "hidden_size", "settings", "from", "change", "seeds") if k in table]
    out = table[keys].copy()
    out["a − b (points)"] = [f"{v:+.{digits}f}" for v in table["difference"]]
    out["95 % CI, seeds and images"] = [_interval(lo, hi, digits) for lo, hi in zip(table["low"], table["high"])]
    out["95 % CI, seeds only"] = [_interval(lo, hi, digits) for lo, hi in zip(table["seed_low"], table["seed_high"])]
    out["images' floor"] = [_floor(floor, component, digits) for floor, component in zip(table["floor"],
                                                                                         table["image_component"])]
    out["verdict on a > b"] = [v if not why else f"{v} ({why})" for v, why in zip(table["verdict"], table["why"])]
    out["pooled p"] = ["" if pd.isna(p) else f"{p:.2g}" for p in table["pooled_p"]]
    out["McNemar p per seed"] = [", ".join(f"{p:.2g}" for p in ps) for ps in table["mcnemar_p"]]
    return out


def seed_agreement(records: Iterable[Record], which: str = "val_selected", labels: np.ndarray | None = None
                   ) -> pd.DataFrame:
    """How much a shared seed shares, from the records: for every two cells with predictions at ``which`` and a
    seed in common, how often (% of test images) runs of the same seed predict differently (``same_seed``), and
    runs of different seeds (``different_seed``); ``relation`` says what differs between the cells, ``pairing``
    whether comparisons pair their seeds. With ``labels`` the predictions must be of that test set
    (``misclassified.check_test_set``)."""
    by_cell = {key: runs for key, runs in cells.group(records).items()
               if all(r.predicted(which) is not None for r in runs)}
    if labels is not None:
        for runs in by_cell.values():
            for record in runs:
                correct(record, which, labels)
    rows = []
    for key_a, key_b in combinations(sorted(by_cell, key=cells.order), 2):
        runs_a = {r.config["seed"]: r.predicted(which) for r in by_cell[key_a]}
        runs_b = {r.config["seed"]: r.predicted(which) for r in by_cell[key_b]}
        same = [100.0 * np.mean(p != runs_b[s]) for s, p in runs_a.items() if s in runs_b]
        other = [100.0 * np.mean(p != q) for s, p in runs_a.items() for t, q in runs_b.items() if s != t]
        if not same or not other:
            continue
        rows.append({"a": cells.cell_text(key_a), "b": cells.cell_text(key_b), "relation": _relation(key_a, key_b),
                     "pairing": PAIRED if key_a[1] == key_b[1] else UNPAIRED, "same_seed": float(np.mean(same)),
                     "different_seed": float(np.mean(other)), "same_seed_pairs": len(same),
                     "different_seed_pairs": len(other)})
    return pd.DataFrame(rows, columns=["a", "b", "relation", "pairing", "same_seed", "different_seed",
                                       "same_seed_pairs", "different_seed_pairs"])


def agreement_summary(pairs: pd.DataFrame) -> pd.DataFrame:
    """``seed_agreement`` per relation, for reading: cell pairs, mean disagreement of same-seed and of
    different-seed runs, their difference (mean, and range over the cell pairs), and in how many cell pairs
    same-seed runs agree more."""
    rows = []
    for (relation, pairing), part in pairs.groupby(["relation", "pairing"], sort=False):
        gap = part["same_seed"] - part["different_seed"]
        rows.append({"relation": relation, "pairing": pairing, "cell pairs": len(part),
                     "same seed: disagree on (%)": f"{part['same_seed'].mean():.2f}",
                     "different seeds: disagree on (%)": f"{part['different_seed'].mean():.2f}",
                     "same − different (points)": f"{gap.mean():+.2f} ({gap.min():+.2f} to {gap.max():+.2f})",
                     "same-seed runs agree more": f"{int((gap < 0).sum())} of {len(part)}"})
    return pd.DataFrame(rows)


def agreement_note(pairs: pd.DataFrame) -> str:
    """What ``seed_agreement`` says about pairing, in a few sentences (Markdown)."""
    if pairs.empty:
        return "No two cells with per-example predictions and a seed in common: nothing to measure about pairing."
    lines = []
    for (relation, pairing), part in pairs.groupby(["relation", "pairing"], sort=False):
        gap = part["same_seed"] - part["different_seed"]
        same, other = part["same_seed"].mean(), part["different_seed"].mean()
        lines.append(f"{relation} ({pairing}): {same:.2f} % against {other:.2f} %, {gap.mean():+.2f} points "
                     f"({gap.min():+.2f} to {gap.max():+.2f} over {_count(len(part), 'cell pair')})")
    return ("Runs at one hidden size and seed start from the same weights, so comparisons there pair seeds; across "
            "hidden sizes a seed number shares nothing, so seeds enter unpaired and no verdict depends on seed "
            "numbers. How often same-seed runs of two cells predict a test image differently, against "
            "different-seed runs: " + "; ".join(lines) + ". A shared start that made runs alike would show as a "
            "negative difference; near zero, it is mostly forgotten by the end of training. The paired interval "
            "stays valid where seeds are paired by construction; an arbitrary pairing (across hidden sizes) "
            "would let a relabelling of seeds change a verdict.")


def judge(parts: Sequence[tuple[str, Comparison | None]], margin: float | None = None, unit: str = " points",
          digits: int = 2) -> tuple[str, list[str]]:
    """One verdict for a claim made of ``parts`` (each a label and the comparison behind it, None where runs are
    missing), by ``stats.part_verdict`` and ``stats.claim_verdict``, with one sentence per part."""
    verdicts, texts = [], []
    for label, found in parts:
        if found is None:
            texts.append(f"{label}: no runs to compare")
            continue
        verdicts.append(found.verdict(len(parts), margin))
        texts.append(part_text(found, verdicts[-1], unit, digits))
    return stats.claim_verdict(verdicts, len(parts)), texts


def part_text(c: Comparison, verdict: str, unit: str = " points", digits: int = 2) -> str:
    """ "a − b = +0.20 points (95 % CI over seeds and test images [...]; seeds only [...]; 3 seeds; pooled p): v" """
    bits = []
    two = c.two_source
    if two is not None:
        bits.append(f"95 % CI over seeds and test images {_interval(two.low, two.high, digits)}")
    if c.seed_only.n >= 2:
        bits.append(("95 % CI over seeds " if c.metric == TRAIN_LOSS else "seeds only ")
                    + _interval(c.seed_only.low, c.seed_only.high, digits))
    bits.append(c.seed_count + ("" if c.paired else ", unpaired"))
    if c.pooled_p is not None:
        bits.append(f"pooled p = {c.pooled_p:.2g}")
    if two is not None and two.negative_images:
        bits.append(f"images' variance estimated below 0 ({two.image_component:+.1e} points²), counted as 0")
    text = f"{c.a} − {c.b} = {c.mean:+.{digits}f}{unit} ({'; '.join(bits)})"
    why = c.why_untested() if verdict == stats.UNTESTED else ""
    return text + (f": not tested ({why})" if why else f": {verdict}")


def rule_text(parts: int, margin: float | None = None) -> str:
    """The verdict rule of a claim of ``parts`` parts, with its error rate (``stats.part_verdict``)."""
    level = 100 * (1 - stats.ERROR_RATE / parts)
    side = f"inside ±{margin:g} points (equivalence: two one-sided tests at 2.5 %)" if margin is not None \
        else "above 0"
    wrong = f"wholly outside ±{margin:g}" if margin is not None else "wholly below 0"
    rate = f"{100 * stats.ERROR_RATE:g} %"
    if parts == 1:
        return f"(Supported: its 95 % interval {side}; contradicted: that interval {wrong}.)"
    return (f"(Supported: all {parts} parts tested, each 95 % interval {side}; contradicted: one part's "
            f"{level:.1f} % interval {wrong}, a {rate} error rate for the whole claim.)")


def initial_rate_loss(record: Record) -> float | None:
    """Mean training loss over the epochs before the first learning-rate decay (1 to step_size): the area
    under the training-loss curve while every model has the same, constant rate. The schedule does not
    decide it, as "the first epoch at 99 % training accuracy" was decided by the decay after epoch 20. Under the
    cosine schedule (no step), the same first epochs, the rate falling alike for every model."""
    epochs = min(record.config.get("step_size", 20), len(record.history))
    losses = [h["train_loss"] for h in record.history[:epochs]]
    if not losses or not all(loss is not None and math.isfinite(loss) for loss in losses):
        return None
    return float(np.mean(losses))


COLUMNS = ["a", "b", "hidden_size", "settings", "metric", "seeds", "paired", "difference", "low", "high", "seed_low",
           "seed_high", "se_images", "floor", "image_component", "verdict", "why", "pooled_p", "mcnemar_p"]


def _row(c: Comparison, **where) -> dict:
    two = c.two_source
    return {"a": c.a, "b": c.b, **where, "metric": c.metric, "seeds": len(c.seeds) if c.paired else min(c.runs),
            "paired": c.paired, "difference": c.mean, "low": two.low if two else math.nan,
            "high": two.high if two else math.nan, "seed_low": c.seed_only.low, "seed_high": c.seed_only.high,
            "se_images": two.se_images if two else math.nan, "floor": two.floor() if two else math.nan,
            "image_component": two.image_component if two else math.nan, "verdict": c.verdict(1),
            "why": c.why_untested(), "pooled_p": c.pooled_p if c.pooled_p is not None else math.nan,
            "mcnemar_p": [t.p_value for t in c.mcnemar]}


def _correctness(runs: Sequence[Record], which: str, labels: np.ndarray | None) -> np.ndarray | None:
    """(runs, test images): whether each run got each image right at ``which``; None without labels or when a run
    kept no predictions there."""
    if labels is None:
        return None
    rows = [correct(record, which, labels) for record in runs]
    return None if any(row is None for row in rows) else np.stack(rows)


def _value(record: Record, metric: str) -> float | None:
    if metric == TRAIN_LOSS:
        return initial_rate_loss(record)
    value = record.summary[metric]
    return None if value is None or not math.isfinite(value) else float(value)


def _relation(key_a: tuple, key_b: tuple) -> str:
    differ = [name for name, x, y in (("model", key_a[0], key_b[0]), ("settings", key_a[2], key_b[2])) if x != y]
    if key_a[1] != key_b[1]:
        return "different hidden sizes" + (f", other {' and '.join(differ)}" if differ else ", one model")
    return f"one hidden size, other {' and '.join(differ)}"


def _spread(values: pd.Series, signed: bool = False) -> str:
    form = "+.2f" if signed else ".2f"
    if len(values) == 1:
        return f"{values.iloc[0]:{form}}"
    return f"{values.mean():{form}} ({values.min():{form}} to {values.max():{form}})"


def _floor(floor: float, component: float, digits: int) -> str:
    if pd.isna(floor):
        return ""
    if not pd.isna(component) and component < 0:
        return f"±0 (variance estimated {component:+.1e})"
    return f"±{floor:.{digits}f}"


def _interval(low, high, digits: int = 2) -> str:
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return ""
    return f"[{low:+.{digits}f}, {high:+.{digits}f}]"


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
