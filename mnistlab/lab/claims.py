"""The HW5 report's claims (the rows of ``hw5.CLAIMS``) and this project's own questions, judged by the rules the
page states (``rules``), each verdict with its scope: rate, hidden sizes, seeds and processors.

Which runs a claim may be judged on is decided here:

- a claim of the HW5 report only on runs of its protocol (``protocol.PROTOCOL``), on val-selected test accuracy;
  "at every hidden size" only with all three sizes; else *not tested here*, saying what it needs;
- this project's own questions (not claims of the report: "do the normalised models train faster?", asked at
  every rate the records hold; "does normalisation still help at each model's best learning rate?", or at each
  model's own where its rate was chosen elsewhere; "does each addition help, given the rest of a recipe?") are
  labelled as such, with measures that the learning-rate schedule does not decide.

How two cells are compared (paired or not) and how the parts of a claim become one verdict is ``comparisons``'.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import records as records_module
from ..config import cell_name
from ..origin import describe
from ..records import Record
from . import cells, hw5, stats
from .comparisons import (  # noqa: F401  (comparisons, comparisons_text: the analysis page reads them here too)
    PREDICTION_OF,
    TRAIN_LOSS,
    Comparison,
    compare,
    comparisons,
    comparisons_text,
    judge,
    metric_for,
    rule_text,
    setting_steps,
)
from .protocol import PROTOCOL, changes, settings

REPORT, OWN = "the HW5 report", "this project's question"
CPU_GENERATIONS = ("a run's numbers move in the last bits from one processor to another (about 0.1 point of "
                   "accuracy between two EPYC generations on the quick profile), which no interval covers")


@dataclass(frozen=True)
class Claim:
    """A claim of the HW5 report (or a question of this project), the verdict, and the sentences behind it."""

    name: str
    says: str  # what the HW5 report says, or the question asked
    source: str  # REPORT or OWN
    verdict: str
    text: str  # sentences generated from the numbers
    scope: str = ""  # the conditions the verdict holds under: rate, hidden sizes, seeds, processors
    rule: str = ""  # the rule the verdict follows, as one sentence (the text states it too)
    deciding: str | None = None  # the difference that decided it, with its interval; None: ``findings`` reads the text


def main_settings(records: Iterable[Record]) -> str | None:
    """The settings label with the most complete runs (among ties the protocol, else the fewest changes)."""
    counts = pd.Series([settings(r) for r in cells.included(records)]).value_counts()
    if counts.empty:
        return None
    best = counts[counts == counts.max()].index
    return PROTOCOL if PROTOCOL in best else sorted(best, key=lambda s: (s.count(","), s))[0]


def main_runs(records: Iterable[Record]) -> list[Record]:
    """The complete runs with the main settings: what the error figures use."""
    records = cells.included(records)
    label = main_settings(records)
    return [r for r in records if settings(r) == label]


def protocol_runs(records: Iterable[Record]) -> list[Record]:
    """The complete runs of the HW5 report's protocol: the only ones its claims are judged on."""
    return [r for r in cells.included(records) if settings(r) == PROTOCOL]


def prediction_for(records: Iterable[Record]) -> str:
    """Which kept predictions go with ``metric_for``: val_selected, or final for runs without validation."""
    return PREDICTION_OF[metric_for(records)]


def check(records: Iterable[Record], labels: np.ndarray | None = None) -> list[Claim]:
    """Every claim these records bear on, the questions the runs were designed to answer first: each model at its
    best learning rate and what each addition to a recipe buys (a learning-rate study's or an ablation's own
    question, where the records hold one); then the HW5 report's claims (``hw5.CLAIMS``), judged on its protocol's
    runs, and whether the normalised models train faster; that question before the report's claims where no run
    follows the protocol (the report's then all read *not tested here*)."""
    records = cells.included(records)
    if not records:
        return []
    protocol = protocol_runs(records)
    report = [report_claim(spec, protocol, labels, records) for spec in hw5.CLAIMS]
    designed = learning_rate_claims(records, labels) + addition_claims(records, labels)
    faster = trains_faster(records)
    return designed + (report + faster if protocol else faster + report)  # what these runs can judge first


def report_claim(spec: hw5.ClaimRow, protocol: list[Record], labels: np.ndarray | None = None,
                 records: Sequence[Record] = ()) -> Claim:
    """One claim of the HW5 report, judged on the protocol's runs by its rule (``records``: every run, for the
    context of a claim about training accuracy)."""
    if not protocol:
        return Claim(spec.name, spec.says, REPORT, stats.UNTESTED,
                     f"Not tested here: none of these runs follows the HW5 report's protocol. It needs {spec.needs}.")
    if spec.rule == hw5.REACHES:
        return training_accuracy(spec, protocol, records)
    by_cell = cells.group(protocol)
    parts, used = [], {}
    for part in spec.parts:
        a, b = (*part.a, PROTOCOL), (*part.b, PROTOCOL)
        used.update({key: by_cell[key] for key in (a, b) if key in by_cell})
        same_model = part.a[0] == part.b[0]
        name_a, name_b = (f"H={part.a[1]}", f"H={part.b[1]}") if same_model else (part.a[0], part.b[0])
        label = (f"{part.a[0]}: " if same_model else f"at H = {part.a[1]}: ") + f"{name_a} − {name_b}"
        found = compare(by_cell[a], by_cell[b], spec.measure, labels, name_a, name_b) \
            if a in by_cell and b in by_cell else None
        parts.append((label, found))
    verdict, texts = judge(parts, spec.margin)
    prefixed = [text if found is None else f"{label.split(':')[0]}: {text}" for (label, found), text in
                zip(parts, texts)]
    rule = rule_text(len(parts), spec.margin)
    text = "; ".join(prefixed) + ". " + rule
    text = text[0].upper() + text[1:]
    comparisons_made = [found for _, found in parts if found is not None]
    notes = [_floor_note(comparisons_made), _confound_note(used, spec.parts)]
    if spec.margin is not None:
        notes.append(hw5.MARGIN_REASON)
    return Claim(spec.name, spec.says, REPORT, verdict, " ".join([text, *[n for n in notes if n]]),
                 _scope(used, _settings_text(PROTOCOL)), _sentence(rule))


def training_accuracy(spec: hw5.ClaimRow, protocol: list[Record], records: Sequence[Record] = ()) -> Claim:
    """Every model reaches 100 % training accuracy in 100 epochs, read from ``train_eval`` (the whole training
    set in eval mode after the last epoch). Measured exactly (nothing sampled), so only the seeds are noise: a
    cell where most seeds fall short contradicts it; support needs every run of every cell at 100 %. Runs of other
    settings in ``records`` give the context: where the models that fall short do reach it."""
    by_cell = cells.group(protocol)
    sentences, short_cells, untested, unmeasured = [], [], [], []
    models = list(dict.fromkeys(m for m, _ in spec.cells))
    for model in models:
        parts = []
        for h in [h for m, h in spec.cells if m == model]:
            runs = by_cell.get((model, h, PROTOCOL), [])
            measured = [r for r in runs if r.summary["train_eval_acc"] is not None]
            unmeasured += [r for r in runs if r.summary["train_eval_acc"] is None]
            if len(measured) < stats.MIN_SEEDS:
                untested.append(cell_name(model, h))
            if not runs:
                continue
            if not measured:
                parts.append(f"H = {h} not measured")
                continue
            reach = sum(r.summary["train_eval_acc"] >= 100.0 for r in measured)
            if len(measured) >= stats.MIN_SEEDS and 2 * (len(measured) - reach) > len(measured):
                short_cells.append(cell_name(model, h))
            parts.append(f"H = {h} {reach} of {_count(len(measured), 'run')}" + _missed(measured))
        sentences.append(f"{model}: " + ", ".join(parts) if parts else f"{model}: no protocol runs")
    if short_cells:
        verdict = stats.CONTRADICTED
    elif untested:
        verdict = stats.UNTESTED
    else:
        all_reach = all(r.summary["train_eval_acc"] is None or r.summary["train_eval_acc"] >= 100.0
                        for runs in by_cell.values() for r in runs)
        verdict = stats.SUPPORTED if all_reach else stats.WITHIN_NOISE
    text = ("Runs at 100.00 % of their training images, measured in eval mode after the last epoch: "
            + "; ".join(sentences) + ".")
    if unmeasured:
        running = [r.history[-1]["train_acc"] for r in unmeasured if r.history]
        text += (f" Not measured for {_count(len(unmeasured), 'run')}: older records (format 2) lack the eval-mode "
                 "measurement; their training pass's running count, taken while the weights change, ended at "
                 f"{min(running):.2f}-{max(running):.2f} % and is not the trained network's accuracy.")
    if short_cells:
        text += f" Most seeds short of 100 % in {', '.join(short_cells)}."
        text += _elsewhere({c.split('-hs')[0] for c in short_cells}, records)
    if untested and not short_cells:
        text += f" Not tested: {', '.join(untested)} (a verdict needs {stats.MIN_SEEDS} measured seeds per cell)."
    rule = ("the measurement is exact (every training image), so only seeds are noise: contradicted when in some "
            "cell most seeds fall short of 100 %, supported when every run of every cell reaches it.")
    text += " Rule: " + rule
    used = {key: runs for key, runs in by_cell.items() if key[:2] in spec.cells}
    return Claim(spec.name, spec.says, REPORT, verdict, text, _scope(used, _settings_text(PROTOCOL)), _sentence(rule))


def rules() -> str:
    """The rules every verdict on the page follows, as Markdown, with the numbers the code uses."""
    bonferroni = 100 * (1 - stats.ERROR_RATE / 6)
    return "\n".join([
        "- **Both sources of noise.** A run's test accuracy varies with its seed and with the 10,000 test images, "
        "which all runs share, so more seeds never remove the second part. Every comparison of test accuracy has "
        "a 95 % interval over seeds *and* test images, and verdicts use it: the seeds' part is a t interval "
        "over the per-seed values; the images' part is the spread of the per-image values averaged over seeds, "
        "less the seed-by-image interaction already in the seeds' part (the crossed random-effects model, method "
        "of moments); the two half-widths add in quadrature. It is computed, not resampled: the page reads the "
        "same on every rebuild. The t interval over seeds alone stands beside it, labelled *seeds only*: it leaves "
        "the test images out and decides nothing.",
        "- **Paired only where paired.** Runs at one hidden size and seed start from the same initial weights, so "
        "comparisons there match seeds (paired t on S − 1 degrees of freedom, McNemar per seed). Across hidden "
        "sizes a seed number shares nothing (the weights have other shapes), so each cell's seeds enter "
        "independently (Welch's interval on the Welch-Satterthwaite degrees of freedom), the test images still "
        "paired, and no verdict depends on which seed number a run carries. The table of seed agreement shows "
        "what a shared seed shares.",
        "- **A variance estimated below zero** (the images' part, for the same model at two hidden sizes: the same "
        "images are hard at every size) is printed as estimated and counted as 0: the interval is then the seeds' "
        "part of the same design, which holds the seed-by-image interaction.",
        "- **The test set's floor.** However many seeds, an interval's half-width stays at least 1.96 × the "
        "images' standard error (the *images' floor* column of the comparisons, and a sentence under each claim): "
        "no number of seeds resolves a smaller difference on this test set, only more test images would.",
        "- **Tests.** *Pooled p*: an exact sign-flip test on the shared images (per image, correct runs of a minus "
        "correct runs of b, summed over seeds, weighted by the other cell's seed count when the counts differ; "
        "with one seed each it is McNemar's test). McNemar's exact test per seed is listed for paired "
        "comparisons; those p values share the images and are never combined as if independent.",
        f"- **The HW5 report's protocol.** A claim of the HW5 report is judged only on runs of its protocol "
        f"({hw5.PROTOCOL_TEXT}), on val-selected test accuracy (its own metric, the best test accuracy, picks the "
        "epoch on the test set). Allowed deviations, as listed in the README: the 50,000 / 10,000 split its text "
        "gives, fused Adam, denormals flushed on the CPU, PyTorch's weight norm without data-dependent "
        "initialisation, evaluation in eval mode, the epoch chosen on validation. Runs with any other setting "
        "changed (fewer epochs, another learning rate, all 60,000 training images) are not its protocol; "
        "without protocol runs a claim reads *not tested here*, with what it would need. Every verdict names its "
        "scope: the rate, hidden sizes, seeds and processors it was judged on.",
        "- **Every hidden size** needs runs at all three, H = 5000, 2000 and 1000.",
        f"- **No verdict** from fewer than {stats.MIN_SEEDS} seeds or from an interval of zero width (no "
        "measured noise is not evidence of none).",
        "- **Supported**: every part of the claim tested and its 95 % interval on the claimed side: above 0; for "
        f"\"does not change much\", inside ±{hw5.EQUIVALENCE_MARGIN:g} points, an equivalence test (two one-sided "
        "tests, each at 2.5 %) with its margin fixed from the HW5 report's numbers and justified beside the "
        "verdict. Each part errs at most 2.5 %, so the claim does too. "
        f"**Contradicted**: the claim as a whole is wrong at error rate {100 * stats.ERROR_RATE:g} %: some part's "
        f"interval at 1 − {100 * stats.ERROR_RATE:g} %/k (k = the claim's number of parts: {bonferroni:.1f} % "
        "for the six parts of the ordering) lies wholly on the wrong side (Bonferroni), not any one part at 95 %. "
        "**Within noise**: every part tested, neither. **Not tested here**: neither, some part missing or "
        "untestable.",
        "- **This project's questions** (not claims of the HW5 report) are labelled so and follow the same rules, "
        "with measures the learning-rate schedule does not decide, at every rate the records hold.",
    ])


def scope(records: Iterable[Record]) -> str:
    """What these runs can and cannot show: which runs the report's claims are judged on, or why none (Markdown;
    strings from the records, such as settings, escaped)."""
    return _no_html(_scope_text(records))


def _scope_text(records: Iterable[Record]) -> str:
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
    """The claims as a Markdown list: claim, whose it is, verdict with its scope, then the generated sentences. What
    comes from the records (model names, settings, processors' names) is escaped: the list holds no HTML of theirs."""
    items = []
    for c in claims:
        whose = f"the HW5 report: *{c.says}*" if c.source == REPORT else \
            f"this project's question, not a claim of the HW5 report: *{c.says}*"
        where = f", {c.scope}" if c.scope else ""
        items.append(_no_html(f"- **{c.name}** ({whose}) **Verdict: {c.verdict}**{where}. {c.text}"))
    return "\n".join(items)


# --- this project's questions ----------------------------------------------------------------------

def trains_faster(records: Iterable[Record]) -> list[Claim]:
    """This project's question, at each settings (each rate) where the plain network and another model share a
    hidden size: does every other model reach a lower ``initial_rate_loss`` than nmodel? One claim per settings,
    its parts every (hidden size, model)."""
    by_cell = cells.group(records)
    says = ("at the same learning rate, the normalised models reach a lower training loss sooner than nmodel (the "
            "HW5 report does not claim this; only the titles of the papers it cites do).")
    found = []
    for label in sorted({key[2] for key in by_cell}, key=lambda s: (s != PROTOCOL, s)):
        sizes = sorted({h for m, h, s in by_cell if s == label and m == hw5.PLAIN}, key=cells.size_order)
        parts = [(h, m) for h in sizes for m in sorted({k[0] for k in by_cell if k[1:] == (h, label)},
                                                       key=cells.model_order) if m != hw5.PLAIN]
        if not parts:
            continue
        runs = by_cell[(hw5.PLAIN, sizes[0], label)]
        where = _settings_text(label, runs[0])
        rate = "the HW5 report's rate" if label == PROTOCOL else where.replace("Adam ", "")
        compared = [(f"H = {h}", compare(by_cell[(hw5.PLAIN, h, label)], by_cell[(m, h, label)], TRAIN_LOSS,
                                         None, hw5.PLAIN, m)) for h, m in parts]
        verdict, texts = judge(compared, unit="", digits=4)
        epochs = min(runs[0].config.get("step_size", 20), runs[0].config["epochs"])
        window = ("the first epochs of the cosine schedule, every model at the same rate each epoch"
                  if runs[0].config.get("schedule") == "cosine" else "before the first learning-rate decay")
        text = (f"Measure: the mean training loss over epochs 1-{epochs}, {window}; "
                f"{hw5.PLAIN} − other model > 0 means the other model got lower sooner. "
                + "; ".join(f"{label_}: {t}" for (label_, _), t in zip(compared, texts))
                + ". It is measured on the training images themselves (nothing sampled), so its interval is over "
                "seeds alone. " + rule_text(len(parts)))
        used = {key: by_cell[key] for h, m in parts for key in ((hw5.PLAIN, h, label), (m, h, label))}
        others = list(dict.fromkeys(m for _, m in parts))
        if set(others) <= set(hw5.NAMES):  # batch norm and weight norm: the question as the papers' titles ask it
            question, claim_says = f"Do the normalised models train faster at {rate}?", says
        else:  # a model of one's own is not assumed to be a normalisation: the question names whom it compares
            who = " and ".join([", ".join(others[:-1]), others[-1]] if len(others) > 1 else others)
            question = f"{'Do' if len(others) > 1 else 'Does'} {who} train faster than {hw5.PLAIN} at {rate}?"
            claim_says = f"at the same learning rate, {who} reach{'' if len(others) > 1 else 'es'} a lower " \
                         f"training loss sooner than {hw5.PLAIN}."
        found.append(Claim(question, claim_says, OWN, verdict, text, _scope(used, where),
                           _sentence(rule_text(len(parts)))))
    if not found:
        return [Claim("Do the normalised models train faster?", says, OWN, stats.UNTESTED,
                      f"Needs {hw5.PLAIN} and another model at one hidden size and settings.")]
    return found


def rate_choices(records: Iterable[Record]) -> pd.DataFrame:
    """Where records hold several learning rates at one hidden size and otherwise the same settings (a model at
    several, or each model at its own): per model and rate, the seeds, validation accuracy at the val-selected
    epoch (mean and sd over seeds: what the rate is chosen on), val-selected test accuracy, and which rate is
    chosen.

    A model's rate is the one with the best mean validation accuracy among its rates with at least
    MIN_SEEDS seeds; test accuracy never enters the choice."""
    by_cell = cells.group(records, ignore=("lr",))
    groups = {(h, s) for (m, h, s, lr) in by_cell if len({k[3] for k in by_cell if k[1:3] == (h, s)}) > 1}
    rows = []
    for h, s in sorted(groups, key=lambda g: (cells.size_order(g[0]), g[1])):
        for model in sorted({k[0] for k in by_cell if k[1:3] == (h, s)}, key=cells.model_order):
            rates = sorted(k[3] for k in by_cell if k[:3] == (model, h, s))
            summaries = []
            for lr in rates:
                runs = by_cell[(model, h, s, lr)]
                val = [v for v in (_val_selected_val_acc(r) for r in runs) if v is not None]
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
    """This project's question, per model other than the plain network: does it still beat nmodel once each model
    has its own rate? Empty unless the records hold several rates at one hidden size and settings
    (``rate_choices``). A model's rate is the one chosen on validation among two or more (with ``MIN_SEEDS``
    seeds each), or the only one it was trained at there when that is not the protocol's (a rate chosen
    elsewhere, say by a learning-rate study: the beyond study's recipe). Where validation cannot tell a chosen
    rate from another (the paired 95 % interval of their validation accuracies holds 0), the comparison at that
    rate is given too, and the largest upper end over those is what these runs rule out."""
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
        # One rate, off the protocol's: set on purpose, chosen elsewhere (the protocol's own rate is no choice).
        only = {m: rates[0] for m, rates in tried.items() if len(rates) == 1 and eligible.get(m)
                and "lr" in changes(by_cell[(m, h, s, rates[0])][0])}
        for model in sorted(set(group["model"]) - {hw5.PLAIN}, key=cells.model_order):
            both_chosen = model in chosen and hw5.PLAIN in chosen
            best = both_chosen or not (model in only or hw5.PLAIN in only)  # else a rate was chosen elsewhere
            name = (f"Does {hw5.NAMES.get(model, model)} still help at each model's best learning rate (H = {h})?"
                    if best else
                    f"Does {hw5.NAMES.get(model, model)} still help, each model at its own learning rate (H = {h})?")
            says = (f"{model} at its own best learning rate beats {hw5.PLAIN} at its own best rate, each rate chosen "
                    "on validation accuracy." if best else
                    f"{model} at its own learning rate beats {hw5.PLAIN} at its own, every other setting the same.")
            where = "" if s == PROTOCOL else f" Settings besides the rate: {s}."
            missing = [m for m in (model, hw5.PLAIN) if m not in chosen and m not in only]
            if missing:
                rates = "; ".join(f"{m} {', '.join(f'{lr:g}' for lr in tried.get(m, [])) or 'none'}"
                                  for m in (model, hw5.PLAIN))
                why = [f"{m} has fewer than {stats.MIN_SEEDS} seeds at its one rate" if len(tried.get(m, [])) == 1
                       and not eligible.get(m) else f"{m} not at two or more rates with {stats.MIN_SEEDS} seeds each"
                       for m in missing]
                text = f"Not tested here: {'; '.join(why)} (rates tried: {rates}).{where}"
                found.append(Claim(name, says, OWN, stats.UNTESTED, text))
                continue
            rate_a, rate_b = (chosen[m]["lr"] if m in chosen else only[m] for m in (model, hw5.PLAIN))
            cell_a, cell_b = by_cell[(model, h, s, rate_a)], by_cell[(hw5.PLAIN, h, s, rate_b)]
            comparison = compare(cell_a, cell_b, "val_selected_test_acc", labels, f"{model} (lr {rate_a:g})",
                                 f"{hw5.PLAIN} (lr {rate_b:g})")
            verdict, (sentence,) = judge([("", comparison)])
            edges = [f"{m}'s chosen rate {r:g} is the {'smallest' if r == eligible[m][0] else 'largest'} tried: "
                     "its best may lie beyond" for m, r in ((model, rate_a), (hw5.PLAIN, rate_b))
                     if m in chosen and r in (eligible[m][0], eligible[m][-1])]
            if both_chosen:
                how = f"Chosen on validation accuracy: {model} lr {rate_a:g}, {hw5.PLAIN} lr {rate_b:g}."
            else:
                how = "Rates: " + "; ".join(
                    f"{m} lr {r:g}, " + (f"chosen on validation accuracy among {', '.join(f'{x:g}' for x in tried[m])}"
                                         if m in chosen else "the only rate it was trained at with these settings "
                                         "(chosen elsewhere, not by these runs)")
                    for m, r in ((model, rate_a), (hw5.PLAIN, rate_b))) + "."
            text = (f"{how} {sentence}."
                    + (" " + "; ".join(edges) + "." if edges else "")
                    + (_ties(by_cell, h, s, model, (rate_a, rate_b), eligible, comparison, labels) if both_chosen
                       else "")
                    + where + " " + rule_text(1))
            scope_runs = {(model, h, f"lr={rate_a:g}"): cell_a, (hw5.PLAIN, h, f"lr={rate_b:g}"): cell_b}
            found.append(Claim(name, says, OWN, verdict, text, _scope(scope_runs, "each model's chosen rate"
                                                                      if both_chosen else "each model's own rate"),
                               _sentence(rule_text(1)), _deciding(comparison)))
    return found


def addition_claims(records: Iterable[Record], labels: np.ndarray | None = None) -> list[Claim]:
    """This project's question for a recipe of several changes from the protocol and the recipe with one change
    removed (an ablation: ``comparisons.setting_steps`` between two cells off the protocol): does that change
    still help, given the rest? One claim per step, on val-selected test accuracy. The steps from the protocol
    itself (what one rate buys in a learning-rate study) are the tables' business, not claims. Judged as
    ``comparisons.setting_steps`` compares (val-selected test accuracy where the runs validate)."""
    found = []
    for step in setting_steps(list(records), labels):
        if PROTOCOL in (step.settings, step.base):
            continue
        c = compare(step.runs_a, step.runs_b, step.comparison.metric, labels, f"{step.model} with {step.change}",
                    "without")
        verdict, (sentence,) = judge([("", c)])
        name = f"Does {step.change} help {step.model} (H = {step.hidden_size}) with the rest of its recipe?"
        says = (f"{step.model} with {step.settings} beats the same without {step.change} ({step.base}) on "
                "val-selected test accuracy.")
        text = f"{sentence}. {rule_text(1)}"
        used = {(step.model, step.hidden_size, step.settings): step.runs_a,
                (step.model, step.hidden_size, step.base): step.runs_b}
        found.append(Claim(name, says, OWN, verdict, text, _scope(used, "these two recipes"),
                           _sentence(rule_text(1))))
    return found


# --- helpers ---------------------------------------------------------------------------------------

def _ties(by_cell: dict, h: int, s: str, model: str, chosen: tuple[float, float], eligible: dict,
          comparison: Comparison, labels: np.ndarray | None) -> str:
    """The rates validation cannot tell from each model's chosen one, the comparison at each such pair of rates,
    and the largest upper end among them and the chosen pair's: what these runs rule out."""
    tied = {}
    for m, rate in zip((model, hw5.PLAIN), chosen):
        tied[m] = [rate]
        for other in eligible[m]:
            if other == rate:
                continue
            difference = _validation_difference(by_cell[(m, h, s, other)], by_cell[(m, h, s, rate)])
            if difference is not None and difference.low <= 0 <= difference.high:
                tied[m].append(other)
    if len(tied[model]) == 1 and len(tied[hw5.PLAIN]) == 1:
        return ""
    names = [f"{m} {', '.join(f'{r:g}' for r in rates[1:])} (beside {rates[0]:g})" for m, rates in tied.items()
             if len(rates) > 1]
    texts, highs = [], [comparison.two_source.high] if comparison.two_source is not None else []
    for rate_a in tied[model]:
        for rate_b in tied[hw5.PLAIN]:
            if (rate_a, rate_b) == chosen:
                continue
            other = compare(by_cell[(model, h, s, rate_a)], by_cell[(hw5.PLAIN, h, s, rate_b)],
                            "val_selected_test_acc", labels, f"{model} (lr {rate_a:g})", f"{hw5.PLAIN} (lr {rate_b:g})")
            if other is None or other.two_source is None:
                continue
            texts.append(f"{other.a} − {other.b} = {other.mean:+.2f} "
                         f"[{other.two_source.low:+.2f}, {other.two_source.high:+.2f}]")
            highs.append(other.two_source.high)
    bound = f" Over these choices the runs rule out a gain larger than {max(highs):+.2f} points." if highs else ""
    return (f" Validation cannot tell these rates from the chosen ones (paired 95 % interval of validation accuracy "
            f"holding 0): {'; '.join(names)}. At them: {'; '.join(texts) or 'no comparison'}.{bound}")


def _validation_difference(runs_a: list[Record], runs_b: list[Record]) -> stats.Estimate | None:
    """Validation accuracy a - b at the val-selected epoch over the seeds both have (same model and hidden size:
    paired by seed); None with fewer than MIN_SEEDS."""
    b = {r.config["seed"]: _val_selected_val_acc(r) for r in runs_b}
    pairs = [(_val_selected_val_acc(r), b[r.config["seed"]]) for r in runs_a if r.config["seed"] in b]
    pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
    if len(pairs) < stats.MIN_SEEDS:
        return None
    return stats.paired_difference([x for x, _ in pairs], [y for _, y in pairs])


def _deciding(c: Comparison | None) -> str | None:
    """ "bmodel (lr 0.003) − nmodel (lr 0.001) = +0.05 points [-0.06, +0.16]": the one comparison that decided a
    claim, with the interval its verdict used, written as the findings table writes a part read from a claim's
    text (``findings.Part``); None when there is none (no comparison: the two cells share no seed)."""
    from .findings import Part

    estimate = None if c is None else c.estimate
    if estimate is None:
        return None
    over = "seeds and test images" if estimate is c.two_source else "seeds"
    return Part(f"{c.a} − {c.b}", estimate.mean, estimate.low, estimate.high, over, " points", "").text()


def _scope(used: dict[tuple, list[Record]], where: str) -> str:
    """ "at Adam lr 0.01 (…), H = 5000, 2000 and 1000, 5 seeds per cell; trained on …" """
    if not used:
        return f"at {where}"
    sizes = sorted({key[1] for key in used}, key=cells.size_order)
    seeds = sorted({len(runs) for runs in used.values()})
    seeds_text = _count(seeds[0], "seed") if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]} seeds"
    by_size = {h: _processors(r for key, runs in used.items() if key[1] == h for r in runs) for h in sizes}
    every = sorted({p for ps in by_size.values() for p in ps})
    if len(every) == 1:
        machines = f"trained on {every[0]}"
    elif len(sizes) == 1:
        machines = f"trained on {_and(every)}"
    else:
        machines = "trained " + ", ".join(f"at H = {h} on {_and(ps)}" for h, ps in by_size.items())
    return f"at {where}, H = {_and([str(h) for h in sizes])}, {seeds_text} per cell; {machines}"


def _processors(runs: Iterable[Record]) -> list[str]:
    """The processors that trained ``runs`` (every segment's), as the pages name them, sorted."""
    found = set()
    for record in runs:
        for segment in getattr(record, "segments", None) or []:
            found.add(describe(segment["hardware"], cores=False) if segment.get("hardware")
                      else segment.get("device_name") or "a processor not recorded")
    return sorted(found) or ["processors not recorded"]


def _confound_note(used: dict[tuple, list[Record]], parts: Sequence[hw5.Part]) -> str:
    """Where a claim compares hidden sizes trained on different processors, say that the two are confounded."""
    if not any(p.a[1] != p.b[1] for p in parts):
        return ""
    sizes = sorted({key[1] for key in used}, key=cells.size_order)
    by_size = {h: tuple(_processors(r for key, runs in used.items() if key[1] == h for r in runs)) for h in sizes}
    if len(set(by_size.values())) <= 1:
        return ""
    return ("Hidden size is confounded with processor here (each size trained on other processors, as the scope "
            f"says): a difference between sizes is also one between processors, and {CPU_GENERATIONS}.")


def _floor_note(found: Sequence[Comparison]) -> str:
    """The test set's floor under these intervals: the images' part of the half-width, which no seed count shrinks."""
    twos = [c.two_source for c in found if c.two_source is not None]
    if not twos:
        return ""
    floors = [t.floor() for t in twos if not t.negative_images]
    negative = len(twos) - len(floors)
    text = ""
    if floors:
        low, high = min(floors), max(floors)
        span = f"±{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"±{low:.2f} to ±{high:.2f}"
        text = (f"The test images alone put a floor of {span} points under these intervals: no number of seeds "
                f"resolves a smaller difference on these {twos[0].images:,} test images.")
    if negative:
        text += (f" In {_count(negative, 'part')} the images' variance was estimated below 0 (the same images are "
                 "hard for both cells), counted as 0: those intervals are the seeds' part alone, unpaired.")
    return text.strip()


def _elsewhere(models: set[str], records: Sequence[Record]) -> str:
    """Where in these records (other settings) the models that fall short at the protocol reach 100 %."""
    by_cell = cells.group(records)
    found = []
    for (model, h, label), runs in sorted(by_cell.items(), key=lambda item: cells.order(item[0])):
        if model not in models or label == PROTOCOL:
            continue
        measured = [r for r in runs if r.summary["train_eval_acc"] is not None]
        if measured:
            reach = sum(r.summary["train_eval_acc"] >= 100.0 for r in measured)
            found.append(f"{model} at H = {h}, {label}: {reach} of {_count(len(measured), 'run')}")
    if not found:
        return ""
    return f" At other settings in these records, runs at 100 %: {'; '.join(found)}."


def _missed(measured: list[Record]) -> str:
    """ ", missing 31-92 of the 50,000 images" for runs short of 100 %; empty when every run reaches it."""
    short = [r for r in measured if r.summary["train_eval_acc"] < 100.0]
    if not short:
        return ""
    missed = sorted(round((100.0 - r.summary["train_eval_acc"]) * _train_images(r) / 100.0) for r in short)
    sizes = {_train_images(r) for r in short}
    span = f"{missed[0]}" if missed[0] == missed[-1] else f"{missed[0]}-{missed[-1]}"
    return (f", lowest {min(r.summary['train_eval_acc'] for r in short):.2f} % (missing {span} of the "
            f"{'/'.join(f'{n:,}' for n in sorted(sizes))} images)")


def _train_images(record: Record) -> int:
    return int(record.config.get("train_size", 50_000))


def _settings_text(label: str, record: Record | None = None) -> str:
    """The settings as a verdict names them: "Adam lr 0.01 on the HW5 report's protocol", "Adam lr 0.0003",
    "Adam lr 0.01, epochs=3, step_size=2"."""
    if label == PROTOCOL:
        return f"{hw5.RATE} on the HW5 report's protocol"
    rest = settings(record, ignore=("lr",))
    rate = f"Adam lr {record.config['lr']:g}"
    return rate if rest == PROTOCOL else f"{rate}, {rest}"


def _no_html(text: str) -> str:
    """Markdown that cannot open an HTML tag or entity: "&" and "<" written as entities (">" stays: "a > b")."""
    return text.replace("&", "&amp;").replace("<", "&lt;")


def _val_selected_val_acc(record: Record) -> float | None:
    row = records_module.val_selected(record.history)
    return None if row is None else float(row["val_acc"])


def _mean_sd(mean, sd, digits: int = 2) -> str:
    if pd.isna(mean):
        return ""
    return f"{mean:.{digits}f}" if pd.isna(sd) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _and(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _sentence(rule: str) -> str:
    """A rule as one sentence of its own: "(Supported: ...)" or "the measurement ..." -> "Supported: ...", "The ..."."""
    rule = rule.strip()
    if rule.startswith("(") and rule.endswith(")"):
        rule = rule[1:-1]
    return rule[:1].upper() + rule[1:]
