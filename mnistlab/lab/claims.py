"""Paired comparisons between runs, and the seed's claims checked in sentences generated from the records.

Pairs: two runs whose training identities differ only in the model (or only in the hidden size) and
share the seed. At one seed the three models start from the same initial weights, so the design is
paired: the interval is over the per-seed differences, and McNemar's test compares the two runs'
errors on the same 10,000 test images. Verdicts follow ``stats`` (module docstring).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..records import Record
from . import plots, stats

MODEL_PAIRS = (("bmodel", "wmodel"), ("wmodel", "nmodel"), ("bmodel", "nmodel"))
SEED_HIDDEN_SIZES = (5000, 2000, 1000)
STABLE_MARGIN = 0.2  # points: about one binomial standard error of a difference of two accuracies near 98.6 %
CONVERGED_TRAIN_ACC = 99.0  # %: "converged" = the first epoch whose training accuracy reaches this
PREDICTION_OF = {"val_selected_test_acc": "val_selected", "final_test_acc": "final"}  # no predictions at the best epoch
METRIC_NAMES = {"val_selected_test_acc": "val-selected test accuracy", "final_test_acc": "final test accuracy",
                "best_test_acc": "best test accuracy (the seed's metric)", "epochs_to_converge": "epochs to converge"}


@dataclass(frozen=True)
class Claim:
    """One claim of the seed, what the records say about it, and the verdict."""

    name: str
    seed_says: str
    verdict: str
    text: str  # sentences generated from the numbers


def main_settings(records: Iterable[Record]) -> str | None:
    """The settings label with the most complete runs (the protocol among ties): the claims are checked there."""
    counts = pd.Series([plots.settings(r) for r in plots.included(records)]).value_counts()
    if counts.empty:
        return None
    best = counts[counts == counts.max()].index
    return plots.PROTOCOL if plots.PROTOCOL in best else sorted(best)[0]


def main_runs(records: Iterable[Record]) -> list[Record]:
    """The complete runs with the main settings (``main_settings``): what the claims and the error figures use."""
    records = plots.included(records)
    label = main_settings(records)
    return [r for r in records if plots.settings(r) == label]


def metric_for(records: Iterable[Record]) -> str:
    """The honest metric these runs allow: val-selected test accuracy, or final test accuracy without validation."""
    records = list(records)
    validated = records and all(r.config.get("validation", True) for r in records)
    return "val_selected_test_acc" if validated else "final_test_acc"


def paired_runs(records: Iterable[Record], a: str, b: str, metric: str, vary: str = "model",
                labels: np.ndarray | None = None) -> pd.DataFrame:
    """One row per pair of complete runs that differ only in ``vary`` (a vs b) and share the seed: both
    values, a - b, and the exact McNemar test when ``labels`` and both runs' predictions are there."""
    index: dict[tuple, Record] = {}
    for record in plots.included(records):
        c = record.config
        fixed = ("hidden_size" if vary == "model" else "model")
        index[(c[vary], c[fixed], plots.settings(record), c["seed"])] = record
    rows = []
    for (value, fixed, label, seed), run_a in sorted(index.items(), key=lambda item: _sort_key(item[0])):
        run_b = index.get((b, fixed, label, seed))
        if value != a or run_b is None:
            continue
        va, vb = _value(run_a, metric), _value(run_b, metric)
        if va is None or vb is None:
            continue
        row = {"fixed": fixed, "settings": label, "seed": seed, a: va, b: vb, "difference": va - vb,
               "only_a": np.nan, "only_b": np.nan, "p_value": np.nan}
        test = _mcnemar(run_a, run_b, metric, labels)
        if test is not None:
            row.update(only_a=test.only_a, only_b=test.only_b, p_value=test.p_value)
        rows.append(row)
    columns = ["fixed", "settings", "seed", a, b, "difference", "only_a", "only_b", "p_value"]
    return pd.DataFrame(rows, columns=columns)


def comparisons(records: Iterable[Record], metric: str | None = None, pairs: Sequence[tuple[str, str]] = MODEL_PAIRS,
                labels: np.ndarray | None = None) -> pd.DataFrame:
    """Per model pair, hidden size and settings: seeds, mean difference a - b with sd and 95 % t interval,
    the verdict on "a > b", and the McNemar p value of each seed (empty when predictions are missing)."""
    records = list(records)
    rows = []
    for settings_label in sorted({plots.settings(r) for r in plots.included(records)}):
        group = [r for r in records if plots.settings(r) == settings_label]
        chosen = metric or metric_for(group)
        for a, b in pairs:
            runs = paired_runs(group, a, b, chosen, labels=labels)
            for hidden_size, part in runs.groupby("fixed", sort=False):
                rows.append(_comparison_row(part, a, b, chosen, hidden_size=hidden_size, settings=settings_label))
    columns = ["a", "b", "hidden_size", "settings", "metric", "seeds", "difference", "sd", "low", "high", "verdict",
               "mcnemar_p"]
    return pd.DataFrame(rows, columns=columns)


def comparisons_text(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """``comparisons`` for reading: the difference as "mean [low, high]", p values in two significant digits."""
    out = table[["a", "b", "hidden_size", "settings", "metric", "seeds"]].copy()
    out["difference"] = [_estimate_text(_estimate(row)).replace(" points", "") for _, row in table.iterrows()]
    out["verdict"] = table["verdict"]
    out["mcnemar_p"] = [", ".join(f"{p:.2g}" for p in ps) for ps in table["mcnemar_p"]]
    return out


def check(records: Iterable[Record], labels: np.ndarray | None = None) -> list[Claim]:
    """The seed's five claims, each checked on the runs of the main settings, in words and with a verdict."""
    group = main_runs(records)
    if not group:
        return []
    metric = metric_for(group)
    return [ordering(group, metric, labels), training_accuracy(group), hidden_size_effect(group, metric),
            stability(group, metric), convergence(group)]


def scope(records: Iterable[Record]) -> str:
    """One sentence: which runs the claims are checked on, with which metric, over how many seeds."""
    group = main_runs(records)
    if not group:
        return "No complete run: no claim can be checked."
    label = plots.settings(group[0])
    seeds = sorted({r.config["seed"] for r in group})
    where = "the paper protocol's settings" if label == plots.PROTOCOL else f"the settings {label}"
    text = (f"The claims are checked on the {len(group)} complete runs with {where} "
            f"({_count(len(seeds), 'seed')}: {', '.join(map(str, seeds))}), on {METRIC_NAMES[metric_for(group)]}.")
    if len(seeds) < 2:
        text += (" With one seed, no comparison can be tested for noise: every difference below is a single "
                 "measurement, and the verdicts say untested.")
    return text


def markdown(claims: Iterable[Claim]) -> str:
    """The claims as a Markdown list: claim, verdict, then the generated sentences; empty without claims."""
    items = [f"- **{c.name}** — the seed: *{c.seed_says}* **Verdict: {c.verdict}.** {c.text}" for c in claims]
    return "\n".join(items)  # none: ``scope`` says why


def ordering(records: list[Record], metric: str, labels: np.ndarray | None = None) -> Claim:
    """Claim 1: bmodel > wmodel > nmodel at each hidden size."""
    table = comparisons(records, metric, labels=labels)
    sentences, verdicts = [], []
    for hidden_size, part in table.groupby("hidden_size", sort=False):
        # Neighbours in the claimed order among the models present: b > w and w > n, or b > n without wmodel.
        present = [m for m in ("bmodel", "wmodel", "nmodel") if m in set(part["a"]) | set(part["b"])]
        rows = [part[(part["a"] == a) & (part["b"] == b)] for a, b in zip(present, present[1:])]
        rows = [row.iloc[0] for row in rows if len(row)]
        verdicts += [row["verdict"] for row in rows]
        sentences.append(f"At H = {hidden_size}: " + "; ".join(_difference_text(row) for row in rows) + ".")
    verdict = stats.combine(verdicts) if verdicts else stats.UNTESTED
    text = " ".join(sentences) if sentences else "No hidden size has two of the models to compare."
    return Claim("Table 1 ordering", "bmodel > wmodel > nmodel at every hidden size.", verdict, text)


def training_accuracy(records: list[Record]) -> Claim:
    """Claim 2: every model reaches 100 % training accuracy."""
    sentences, all_reach = [], True
    for model, runs in _by_model(records).items():
        best = [max(h["train_acc"] for h in r.history) for r in runs]
        reach = sum(acc >= 100.0 for acc in best)
        all_reach &= reach == len(runs)
        worst = "" if reach == len(runs) else f" (highest training accuracy of the worst run: {min(best):.2f} %)"
        sentences.append(f"{model}: {reach} of {_count(len(runs), 'run')} reach 100 %{worst}")
    epochs = sorted({r.config["epochs"] for r in records})
    text = "; ".join(sentences) + f", training for {'/'.join(map(str, epochs))} epochs (training accuracy is " \
        "measured during each epoch's training pass)."
    verdict = stats.SUPPORTED if all_reach else stats.CONTRADICTED
    return Claim("100 % training accuracy", "every model reaches 100 % training accuracy in 100 epochs.", verdict, text)


def hidden_size_effect(records: list[Record], metric: str) -> Claim:
    """Claim 3: for nmodel, H = 5000 is best and H = 2000 worst."""
    nmodel = [r for r in records if r.config["model"] == "nmodel"]
    sentences, verdicts = [], []
    for a, b in ((5000, 1000), (5000, 2000), (1000, 2000)):
        runs = paired_runs(nmodel, a, b, metric, vary="hidden_size")
        if runs.empty:
            continue
        row = _comparison_row(runs, f"H={a}", f"H={b}", metric)
        sentences.append(_difference_text(row))
        verdicts.append(row["verdict"])
    means = {h: np.mean([_value(r, metric) for r in nmodel if r.config["hidden_size"] == h])
             for h in SEED_HIDDEN_SIZES if any(r.config["hidden_size"] == h for r in nmodel)}
    if len(means) >= 2:
        best, worst = max(means, key=means.get), min(means, key=means.get)
        sentences.append(f"measured means: best H = {best}, worst H = {worst}")
    text = ("; ".join(sentences) + ".") if verdicts \
        else "Needs nmodel runs at two of H = 5000, 2000, 1000 with a common seed."
    return Claim("Hidden size for nmodel", "H = 5000 is best, H = 2000 worst.",
                 stats.combine(verdicts) if verdicts else stats.UNTESTED, text)


def stability(records: list[Record], metric: str) -> Claim:
    """Claim 4: bmodel's accuracy is stable across hidden sizes (rule: every paired H difference's interval
    within ±STABLE_MARGIN: supported; one entirely outside it: contradicted; else within noise)."""
    bmodel = [r for r in records if r.config["model"] == "bmodel"]
    sentences, verdicts = [], []
    for a, b in ((5000, 2000), (5000, 1000), (2000, 1000)):
        runs = paired_runs(bmodel, a, b, metric, vary="hidden_size")
        if runs.empty:
            continue
        e = stats.describe(runs["difference"])
        verdicts.append(_stable_verdict(e))
        sentences.append(f"H={a} − H={b} = {_estimate_text(e)}")
    ranges = {m: _range_of_means(rs, metric) for m, rs in _by_model(records).items()}
    ranges = {m: v for m, v in ranges.items() if v is not None}
    if ranges:
        sentences.append("range of the cell means across H: " + ", ".join(f"{m} {v:.2f}" for m, v in ranges.items()))
    text = ("; ".join(sentences) + f" (stable means every interval within ±{STABLE_MARGIN} points).") if verdicts \
        else "Needs bmodel runs at two hidden sizes with a common seed."
    return Claim("bmodel stable across H", "bmodel's accuracy does not change with the hidden size.",
                 stats.combine(verdicts) if verdicts else stats.UNTESTED, text)


def convergence(records: list[Record]) -> Claim:
    """Claim 5: the normalised models converge faster (fewer epochs to CONVERGED_TRAIN_ACC % training accuracy)."""
    sentences, verdicts = [], []
    for faster in ("bmodel", "wmodel"):
        runs = paired_runs(records, "nmodel", faster, "epochs_to_converge")
        for hidden_size, part in runs.groupby("fixed", sort=False):
            row = _comparison_row(part, "nmodel", faster, "epochs_to_converge", hidden_size=hidden_size)
            verdicts.append(row["verdict"])
            sentences.append(f"H = {hidden_size}: nmodel − {faster} = {_estimate_text(_estimate(row), unit=' epochs')}"
                             + (f": {row['verdict']}" if row["seeds"] >= 2 else ""))
    text = ("; ".join(sentences) + f". Converged: the first epoch with {CONVERGED_TRAIN_ACC:g} % training accuracy;"
            " a run that never gets there counts as one epoch after its last.") if verdicts \
        else "Needs nmodel and a normalised model at one hidden size with a common seed."
    return Claim("Normalised models converge faster", "batch and weight normalisation converge faster than nmodel.",
                 stats.combine(verdicts) if verdicts else stats.UNTESTED, text)


def epochs_to_converge(record: Record, threshold: float = CONVERGED_TRAIN_ACC) -> int:
    """The first epoch whose training accuracy reaches ``threshold`` %; epochs run + 1 when none does."""
    for h in record.history:
        if h["train_acc"] is not None and h["train_acc"] >= threshold:
            return h["epoch"]
    return len(record.history) + 1


def _value(record: Record, metric: str) -> float | None:
    if metric == "epochs_to_converge":
        return float(epochs_to_converge(record))
    value = record.summary[metric]
    return None if value is None or not math.isfinite(value) else float(value)


def _mcnemar(run_a: Record, run_b: Record, metric: str, labels: np.ndarray | None) -> stats.McNemar | None:
    which = PREDICTION_OF.get(metric)
    if labels is None or which is None:
        return None
    predicted_a, predicted_b = run_a.predicted(which), run_b.predicted(which)
    if predicted_a is None or predicted_b is None:
        return None
    return stats.mcnemar(labels, predicted_a, predicted_b)


def _comparison_row(runs: pd.DataFrame, a: str, b: str, metric: str, **where) -> dict:
    e = stats.describe(runs["difference"])
    p_values = [p for p in runs["p_value"] if not pd.isna(p)]
    return {"a": a, "b": b, **where, "metric": metric, "seeds": e.n, "difference": e.mean, "sd": e.sd, "low": e.low,
            "high": e.high, "verdict": stats.verdict(e), "mcnemar_p": p_values}


def _estimate(row) -> stats.Estimate:
    return stats.Estimate(int(row["seeds"]), row["difference"], row["sd"], row["low"], row["high"])


def _estimate_text(e: stats.Estimate, unit: str = " points") -> str:
    if e.n < 2:
        return f"{e.mean:+.2f}{unit} (one seed: cannot be tested for noise)"
    return f"{e.mean:+.2f}{unit} (95 % CI {e.low:+.2f} to {e.high:+.2f}, {e.n} seeds)"


def _difference_text(row) -> str:
    text = f"{row['a']} − {row['b']} = {_estimate_text(_estimate(row))}"
    if row["seeds"] >= 2:
        text += f": {row['verdict']}"
    if row["mcnemar_p"]:
        text += "; exact McNemar p per seed " + ", ".join(f"{p:.2g}" for p in row["mcnemar_p"])
    return text


def _stable_verdict(e: stats.Estimate) -> str:
    if e.n < 2:
        return stats.UNTESTED
    if -STABLE_MARGIN <= e.low and e.high <= STABLE_MARGIN:
        return stats.SUPPORTED
    if e.low > STABLE_MARGIN or e.high < -STABLE_MARGIN:
        return stats.CONTRADICTED
    return stats.WITHIN_NOISE


def _range_of_means(records: list[Record], metric: str) -> float | None:
    means = pd.Series({h: np.mean([_value(r, metric) for r in records if r.config["hidden_size"] == h])
                       for h in {r.config["hidden_size"] for r in records}}).dropna()
    return float(means.max() - means.min()) if len(means) >= 2 else None


def _by_model(records: list[Record]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for model in plots.MODELS:
        runs = [r for r in records if r.config["model"] == model]
        if runs:
            out[model] = runs
    return out


def _sort_key(key: tuple) -> tuple:
    value, fixed, label, seed = key
    order = plots.HIDDEN_SIZES.index(fixed) if fixed in plots.HIDDEN_SIZES else len(plots.HIDDEN_SIZES)
    return (order, -fixed if isinstance(fixed, int) else 0, str(fixed), label, seed, str(value))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
