"""Comparisons and verdicts on records built here: which runs a claim may be judged on, and by which rule."""

import numpy as np
import pytest

from helpers import make_record
from mnistlab import datasets
from mnistlab.lab import claims, comparisons, findings, hw5, misclassified, protocol, stats, table1
from mnistlab.records import encode_labels

_sizes = [str(h) for h in sorted((5000, 2000, 1000), key=claims.cells.size_order)]
SIZES = f"{_sizes[0]}, {_sizes[1]} and {_sizes[2]}"  # "5000, 2000 and 1000", in the pages' order of hidden sizes
IMAGES = 200
LABELS = np.arange(IMAGES) % 10
TEST_SET = {"name": "two hundred digits", "test_labels": datasets.labels_digest(LABELS)}


def predictions(wrong) -> str:
    predicted = LABELS.copy()
    predicted[list(wrong)] = (LABELS[list(wrong)] + 1) % 10
    return encode_labels(predicted)


def run(model, seed, wrong, hidden_size=1000, epochs=100, lr=0.01, val_acc=98.0, train_eval=100.0,
        train_loss=0.1, **settings):
    """A complete run whose test accuracy, every epoch, is that of its predictions (``wrong``: images it misses)."""
    test_acc = 100.0 * (1 - len(wrong) / IMAGES)
    validated = settings.get("validation", True)
    kept = {"final": predictions(wrong)} | ({"val_selected": predictions(wrong)} if validated else {})
    record = make_record(model, hidden_size, seed, test_accs=[test_acc] * epochs, val_accs=[val_acc] * epochs, lr=lr,
                         predictions=kept, train_eval=None if train_eval is None else
                         {"epoch": epochs, "loss": 0.01, "acc": train_eval}, **settings)
    for row in record.history:
        row.update(lr=lr, train_loss=train_loss)
    record.dataset = dict(TEST_SET)  # the test set these predictions were made on (LABELS, not MNIST's)
    return record


# Per model the images it misses: nested (bmodel's errors are among wmodel's, wmodel's among nmodel's), and one
# image per seed more, so that seeds differ. bmodel 10 + 1, wmodel 30 + 1, nmodel 60 + 1 of 200 images.
MISSES = {"bmodel": range(0, 10), "wmodel": range(0, 30), "nmodel": range(0, 60)}


def cell(model, hidden_size=1000, seeds=(0, 1, 2), **options):
    return [run(model, s, [*MISSES[model], 100 + s], hidden_size=hidden_size, **options) for s in seeds]


def study(sizes=(5000, 2000, 1000), seeds=(0, 1, 2), **options):
    return [r for h in sizes for m in MISSES for r in cell(m, h, seeds, **options)]


def found(records, labels=LABELS):
    return {c.name: c for c in claims.check(records, labels)}


def test_a_comparison_has_both_intervals_the_pooled_test_and_mcnemar_per_seed():
    table = claims.comparisons(study(sizes=(1000,)), labels=LABELS)
    bw = table[(table["a"] == "bmodel") & (table["b"] == "wmodel")].iloc[0]
    # 20 images only bmodel gets right at every seed: +10 points, the same at every seed.
    assert bw["seeds"] == 3 and bw["difference"] == pytest.approx(10.0) and bw["settings"] == protocol.PROTOCOL
    assert bw["seed_low"] == bw["seed_high"] == pytest.approx(10.0)  # seeds alone: zero width
    # The images: c = 100 on 20 of 200 images, else 0: se^2 = (20 * 90^2 + 180 * 10^2) / (200 * 199).
    se = np.sqrt((20 * 90**2 + 180 * 10**2) / (200 * 199))
    assert (bw["low"], bw["high"]) == (pytest.approx(10 - 1.95996 * se, abs=1e-3), pytest.approx(10 + 1.95996 * se,
                                                                                                    abs=1e-3))
    assert bw["verdict"] == stats.SUPPORTED
    assert bw["mcnemar_p"] == [pytest.approx(2 / 2**20)] * 3  # 20 discordant images, all one way
    # Pooled: k = 3 on 20 images, observed 60 = the largest of the 2^20 sign patterns' |sums|.
    assert bw["pooled_p"] == pytest.approx(2 / 2**20)


def test_with_two_seeds_or_without_predictions_a_comparison_gives_no_verdict():
    two = claims.comparisons(study(sizes=(1000,), seeds=(0, 1)), labels=LABELS)
    assert set(two["verdict"]) == {stats.UNTESTED} and "2 seeds, a verdict needs 3" in two["why"].iloc[0]
    bare = study(sizes=(1000,))
    for r in bare:
        r.predictions.clear()  # a version-1 record: no per-example predictions
    table = claims.comparisons(bare, labels=LABELS)
    assert set(table["verdict"]) == {stats.UNTESTED} and "keep no per-example predictions" in table["why"].iloc[0]
    assert table["low"].isna().all() and not table["seed_low"].isna().any()  # the seed-only interval stays


def test_the_reports_claims_read_not_tested_here_off_its_protocol():
    quick = study(sizes=(1000,), epochs=3, step_size=2)  # the quick profile's shape
    verdicts = found(quick)
    for name in ("Table 1 ordering", "100 % training accuracy", "Hidden size for nmodel", "bmodel stable across H"):
        assert verdicts[name].verdict == stats.UNTESTED and verdicts[name].source == claims.REPORT
        assert "none of these runs follows the HW5 report's protocol" in verdicts[name].text
    assert "It needs all three models at H = 5000, 2000 and 1000" in verdicts["Table 1 ordering"].text
    assert "every claim of the report reads *not tested here*" in claims.scope(quick)
    assert "epochs=3, step_size=2" in claims.scope(quick)
    # The comparisons at its own settings still stand, with both sources of noise.
    table = claims.comparisons(quick, labels=LABELS)
    assert set(table["settings"]) == {"epochs=3, step_size=2"} and set(table["verdict"]) == {stats.SUPPORTED}


def test_every_hidden_size_is_needed_for_support_but_not_for_contradiction():
    one_size = found(study(sizes=(1000,)))["Table 1 ordering"]
    assert one_size.verdict == stats.UNTESTED and "at H = 2000: bmodel − wmodel: no runs to compare" in one_size.text
    assert one_size.text.startswith("At H = 5000")
    full = found(study())["Table 1 ordering"]
    assert full.verdict == stats.SUPPORTED and "99.2 % interval" in full.text
    # wmodel behind nmodel at H = 1000 alone, by far more than the noise: the six-part claim is contradicted.
    swapped = [r for r in study(sizes=(1000,)) if r.config["model"] != "wmodel"]
    swapped += [run("wmodel", s, [*range(0, 100), 100 + s]) for s in (0, 1, 2)]
    assert found(swapped)["Table 1 ordering"].verdict == stats.CONTRADICTED


def test_contradiction_needs_the_bonferroni_interval_not_one_part_at_95_percent():
    # wmodel 4 images behind nmodel at H = 1000: its 95 % interval is below 0, its 99.2 % interval is not.
    records = [r for r in study() if not (r.config["model"] == "wmodel" and r.config["hidden_size"] == 1000)]
    records += [run("wmodel", s, [*range(0, 64), 100 + s]) for s in (0, 1, 2)]
    table = claims.comparisons(records, labels=LABELS)
    wn = table[(table["a"] == "wmodel") & (table["b"] == "nmodel") & (table["hidden_size"] == 1000)].iloc[0]
    assert wn["high"] < 0 and wn["verdict"] == stats.CONTRADICTED  # alone, at 95 %
    assert found(records)["Table 1 ordering"].verdict == stats.WITHIN_NOISE  # as one of six parts


def test_stability_is_an_equivalence_within_the_margin():
    assert hw5.EQUIVALENCE_MARGIN == 0.1 and "±0.1 points" in hw5.MARGIN_REASON
    same = found(study())["bmodel stable across H"]
    assert same.verdict == stats.UNTESTED and "zero width" in same.text  # identical predictions at every H
    near = [r for r in study() if r.config["model"] != "bmodel"]
    near += [run("bmodel", s, [*range(0, 10), *range(150 + k, 150 + k + s)], hidden_size=h)
             for h, k in ((5000, 0), (2000, 10), (1000, 20)) for s in (0, 1, 2)]
    # The same accuracy at each H, but other images wrong: 200 images cannot place it inside ±0.1 points.
    claim = found(near)["bmodel stable across H"]
    assert claim.verdict == stats.WITHIN_NOISE and "two one-sided tests" in claim.text
    assert hw5.MARGIN_REASON in claim.text  # the margin's justification stands beside the verdict
    big = [r for r in study() if not (r.config["model"] == "bmodel" and r.config["hidden_size"] == 5000)]
    big += [run("bmodel", s, [*range(0, 40), 100 + s], hidden_size=5000) for s in (0, 1, 2)]
    assert found(big)["bmodel stable across H"].verdict == stats.CONTRADICTED  # 15 points apart
    # Better at H = 5000 by 15 points: as "H = 5000 > the others" this would be supported in part; as "stable", it
    # is contradicted.
    better = [r for r in study() if not (r.config["model"] == "bmodel" and r.config["hidden_size"] != 5000)]
    better += [run("bmodel", s, [*range(0, 40), 100 + s], hidden_size=h) for h in (2000, 1000) for s in (0, 1, 2)]
    assert found(better)["bmodel stable across H"].verdict == stats.CONTRADICTED


def test_training_accuracy_comes_from_the_eval_mode_measurement():
    assert found(study())["100 % training accuracy"].verdict == stats.SUPPORTED
    short = [r for r in study() if not (r.config["model"] == "nmodel" and r.config["hidden_size"] == 2000)]
    short += cell("nmodel", 2000, train_eval=99.98, seeds=(0, 1)) + cell("nmodel", 2000, seeds=(2,))
    claim = found(short)["100 % training accuracy"]
    assert claim.verdict == stats.CONTRADICTED and "H = 2000 1 of 3 runs, lowest 99.98 %" in claim.text
    assert "Most seeds short of 100 % in nmodel-hs2000." in claim.text
    one_short = [r for r in study() if not (r.config["model"] == "nmodel" and r.config["hidden_size"] == 2000)]
    one_short += cell("nmodel", 2000, train_eval=99.98, seeds=(0,)) + cell("nmodel", 2000, seeds=(1, 2))
    assert found(one_short)["100 % training accuracy"].verdict == stats.WITHIN_NOISE  # one seed of three: seed noise
    older = study(train_eval=None)  # format-2 records: no eval-mode measurement
    claim = found(older)["100 % training accuracy"]
    assert claim.verdict == stats.UNTESTED and "not measured" in claim.text and "running count" in claim.text


def test_training_speed_is_this_projects_question_on_a_measure_the_schedule_does_not_decide():
    records = study(sizes=(1000,))
    for r in records:
        loss = {"nmodel": 0.30, "bmodel": 0.10, "wmodel": 0.20}[r.config["model"]]
        for h in r.history:
            h["train_loss"] = loss + 0.01 * r.config["seed"] + (0.0 if h["epoch"] <= 20 else 5.0)
    claim = found(records)["Do the normalised models train faster at the HW5 report's rate?"]
    assert claim.source == claims.OWN and "epochs 1-20" in claim.text
    assert comparisons.initial_rate_loss(records[0]) == pytest.approx(0.10)  # epochs after the first decay left out
    # Every seed gives the same difference: zero width, so no verdict.
    assert claim.verdict == stats.UNTESTED and "zero width" in claim.text
    for r in records:
        if r.config["model"] == "nmodel":
            for h in r.history:
                h["train_loss"] += 0.003 * r.config["seed"] ** 2
    assert found(records)["Do the normalised models train faster at the HW5 report's rate?"].verdict == stats.SUPPORTED


def test_each_models_rate_is_chosen_on_validation_never_on_test():
    paper = study(sizes=(1000,))  # lr 0.01: the paper's runs
    # nmodel at lr 1e-3: better validation and 40 fewer test errors; at lr 3e-3: the best test accuracy of all, but
    # worse validation: the choice must not see it.
    rates = [run("nmodel", s, [*range(0, 20), 100 + s], lr=1e-3, val_acc=99.0) for s in (0, 1, 2)]
    rates += [run("nmodel", s, [100 + s], lr=3e-3, val_acc=97.0) for s in (0, 1, 2)]
    rates += [run("bmodel", s, [*range(0, 12), 100 + s], lr=1e-3, val_acc=97.5) for s in (0, 1, 2)]
    choices = claims.rate_choices(paper + rates)
    chosen = choices[choices["chosen"]].set_index("model")["lr"].to_dict()
    assert chosen == {"nmodel": 1e-3, "bmodel": 0.01}  # wmodel has one rate: listed, nothing to choose
    assert set(choices[choices["model"] == "wmodel"]["lr"]) == {0.01}
    assert claims.rate_choices_text(choices).set_index("model").loc["wmodel", "chosen"] == "the only rate"
    by_name = {c.name: c for c in claims.learning_rate_claims(paper + rates, LABELS)}
    batch = by_name["Does batch norm still help at each model's best learning rate (H = 1000)?"]
    assert batch.source == claims.OWN and "bmodel lr 0.01, nmodel lr 0.001" in batch.text
    assert batch.verdict == stats.SUPPORTED  # 10 + 1 against 20 + 1 errors of 200: +5 points
    weight = by_name["Does weight norm still help at each model's best learning rate (H = 1000)?"]
    assert weight.verdict == stats.UNTESTED and "wmodel not at two or more rates" in weight.text
    assert claims.learning_rate_claims(paper, LABELS) == []  # one rate per model: no such question
    # The findings row: the comparison that decided it, with the interval the verdict used, and where it was judged.
    row = findings.table([batch]).iloc[0]
    estimate = claims.compare(by_cell(paper + rates, "bmodel", 0.01), by_cell(paper + rates, "nmodel", 1e-3),
                              "val_selected_test_acc", LABELS, "a", "b").two_source
    assert row["deciding number (95 % interval)"] == (
        f"bmodel (lr 0.01) − nmodel (lr 0.001) = {estimate.mean:+.2f} points [{estimate.low:+.2f}, "
        f"{estimate.high:+.2f}]") and estimate.low > 0
    assert row["judged at"] == "at each model's chosen rate, H = 1000, 3 seeds per cell"
    assert findings.table([weight]).iloc[0]["judged at"] == findings.MISSING  # not tested: judged nowhere
    # The question a learning-rate study was designed for leads its findings, before the HW5 report's claims.
    order = [c.name for c in claims.check(paper + rates, LABELS)]
    assert order[:2] == [batch.name, weight.name] and order.index("Table 1 ordering") == 2


def by_cell(records, model, lr):
    return [r for r in records if r.config["model"] == model and r.config["lr"] == lr]


def test_runs_without_validation_use_final_predictions_for_errors_and_mcnemar():
    full = [run(m, 0, [*MISSES[m]], validation=False, train_size=60_000) for m in MISSES]
    assert comparisons.metric_for(full) == "final_test_acc" and claims.prediction_for(full) == "final"
    assert misclassified.kept_predictions(full) and not misclassified.kept_predictions(full, "val_selected")
    table = claims.comparisons(full, labels=LABELS)
    bn = table[(table["a"] == "bmodel") & (table["b"] == "nmodel")].iloc[0]
    assert bn["mcnemar_p"] == [pytest.approx(2 / 2**50)] and bn["verdict"] == stats.UNTESTED  # one seed
    found_errors = misclassified.find(full, LABELS, claims.prediction_for(full))
    assert found_errors.runs == {"nmodel": 1, "bmodel": 1, "wmodel": 1}
    assert found_errors.every == "all three"
    assert np.flatnonzero(found_errors.wrong[found_errors.every]).tolist() == list(range(10))


def test_table1_gives_each_cell_an_interval_over_seeds_and_images():
    table = table1.compute(cell("bmodel"), labels=LABELS)
    row = table.iloc[0]
    # 11 of 200 wrong in every seed (a different eleventh): mean 94.5, every seed the same.
    assert row["val_selected_test_acc"] == pytest.approx(94.5) and row["val_selected_test_acc_std"] == 0.0
    assert row["val_selected_test_acc_both_low"] < 94.5 - 2 < row["val_selected_test_acc_both_high"] - 4
    assert "best_test_acc_both_low" not in table.columns  # no predictions are kept at the best epoch
    # Seeds 10, 11 and 12 errors of 200: 95.0, 94.5, 94.0; the interval is centred on their mean and holds the
    # seed-only t interval (4.3027 * 0.5 / sqrt(3) = 1.242 either side) with the images' part added.
    spread = table1.compute([run("bmodel", s, range(0, 10 + s)) for s in (0, 1, 2)], labels=LABELS).iloc[0]
    low, high = spread["val_selected_test_acc_both_low"], spread["val_selected_test_acc_both_high"]
    assert (low + high) / 2 == pytest.approx(94.5) and (high - low) / 2 > 1.242 + 0.1
    assert spread["val_selected_test_acc_high"] == pytest.approx(94.5 + 1.242, abs=1e-3)
    text = table1.text(table).iloc[0]["val_selected_test_acc"]
    assert text.startswith("94.50 ± 0.00 · seeds [94.50, 94.50] · seeds+images [")
    assert np.isnan(table1.compute(cell("bmodel")).iloc[0]["val_selected_test_acc_both_low"])  # no labels given


def test_claims_in_markdown_say_whose_claim_it_is_and_the_rules_name_their_numbers():
    text = claims.markdown(claims.check(study(), LABELS))
    assert "(the HW5 report: *bmodel > wmodel > nmodel at every hidden size.*) **Verdict: supported**, at Adam lr " \
           f"0.01 on the HW5 report's protocol, H = {SIZES}, 3 seeds per cell; trained on AMD EPYC" in text
    assert "this project's question, not a claim of the HW5 report" in text
    rules = claims.rules()
    assert "fewer than 3 seeds" in rules and "99.2 %" in rules and "seeds only" in rules
    assert claims.check([]) == [] and "No complete run" in claims.scope([])


def relabelled(records, model, hidden_size, mapping):
    """The records with one cell's seed numbers relabelled (e.g. 0 -> 1, 1 -> 2, 2 -> 0); the runs are unchanged."""
    for r in records:
        if (r.config["model"], r.config["hidden_size"]) == (model, hidden_size):
            r.config["seed"] = mapping[r.config["seed"]]
    return records


def varied_bmodel(seeds=(0, 1, 2)):
    """study() with bmodel missing 10 + s images at seed s at every H (other images per H): seeds differ."""
    records = [r for r in study(seeds=seeds) if r.config["model"] != "bmodel"]
    return records + [run("bmodel", s, [*range(0, 10), *range(150 + k, 150 + k + s)], hidden_size=h)
                      for h, k in ((5000, 0), (2000, 12), (1000, 24)) for s in seeds]


def test_across_hidden_sizes_seeds_enter_unpaired_and_no_verdict_depends_on_seed_numbers():
    by_cell = {(r.config["model"], r.config["hidden_size"]): [] for r in varied_bmodel()}
    for r in varied_bmodel():
        by_cell[(r.config["model"], r.config["hidden_size"])].append(r)
    # Matched by seed the H = 5000 and 2000 runs would differ by exactly 0 at every seed (10 + s misses each).
    across = comparisons.compare(by_cell[("bmodel", 5000)], by_cell[("bmodel", 2000)], hw5.VAL, LABELS)
    assert not across.paired and across.mcnemar == () and across.seed_count == "3 seeds"
    assert across.seed_only.high - across.seed_only.low > 1.0  # Welch over 10, 11, 12 misses per cell, not 0 width
    same_size = comparisons.compare(by_cell[("bmodel", 2000)], by_cell[("wmodel", 2000)], hw5.VAL, LABELS)
    assert same_size.paired and len(same_size.mcnemar) == 3  # one hidden size: the same initial weights
    before = {c.name: (c.verdict, c.text) for c in claims.check(varied_bmodel(), LABELS)}
    after = {c.name: (c.verdict, c.text) for c in
             claims.check(relabelled(varied_bmodel(), "bmodel", 2000, {0: 1, 1: 2, 2: 0}), LABELS)}
    assert after["bmodel stable across H"] == before["bmodel stable across H"]
    assert after["Hidden size for nmodel"] == before["Hidden size for nmodel"]
    assert [v for v, _ in after.values()] == [v for v, _ in before.values()]


def test_every_verdict_names_its_scope_and_the_confound_of_hidden_size_with_processor():
    records = study()
    claim = found(records)["Hidden size for nmodel"]
    assert claim.scope == (f"at Adam lr 0.01 on the HW5 report's protocol, H = {SIZES}, 3 seeds per cell; "
                           "trained on AMD EPYC (family 25 model 1, AVX2)")
    assert "confounded" not in claim.text  # one processor: nothing to confound
    for r in records:
        if r.config["hidden_size"] == 5000:
            for segment in r.segments:
                segment["hardware"] = {**segment["hardware"], "name": "Intel Xeon", "family": 6, "model": 167,
                                       "capability": "AVX512"}
    claim = found(records)["Hidden size for nmodel"]
    assert "at H = 5000 on Intel Xeon (family 6 model 167, AVX512)" in claim.scope
    assert "at H = 2000 on AMD EPYC (family 25 model 1, AVX2)" in claim.scope
    assert "Hidden size is confounded with processor here" in claim.text
    assert "confounded" not in found(records)["Table 1 ordering"].text  # its parts stay at one hidden size
    text = claims.markdown([claim])
    assert f"**Verdict: {claim.verdict}**, at Adam lr 0.01 on the HW5 report's protocol, H = {SIZES}" in text


def test_trains_faster_is_asked_at_every_rate_the_records_hold():
    records = study(sizes=(1000,)) + [r for m in MISSES for r in cell(m, lr=1e-3)]
    for r in records:
        # At lr 0.01 the normalised models' loss is lower; at lr 1e-3 wmodel's is higher than nmodel's.
        lr, model = r.config["lr"], r.config["model"]
        loss = {"nmodel": 0.30, "bmodel": 0.10, "wmodel": 0.20 if lr == 0.01 else 0.40}[model]
        for h in r.history:
            h["train_loss"] = loss + 0.01 * r.config["seed"] + (0.003 * r.config["seed"] ** 2 if model == "nmodel"
                                                                 else 0.0)
    verdicts = {c.name: c for c in claims.trains_faster(records)}
    assert verdicts["Do the normalised models train faster at the HW5 report's rate?"].verdict == stats.SUPPORTED
    slower = verdicts["Do the normalised models train faster at lr 0.001?"]
    assert slower.verdict == stats.CONTRADICTED and slower.scope.startswith("at Adam lr 0.001, H = 1000")
    assert "nmodel − wmodel = -0.0950" in slower.text  # 0.30 + 0.003 s^2 - 0.40 over s = 0, 1, 2
    assert "before the first learning-rate decay" in slower.text


def test_trains_faster_under_the_cosine_schedule_does_not_speak_of_a_first_decay():
    """Under the cosine schedule the rate falls every epoch (alike for both models): the measure's window is said as
    what it is, not as the time "before the first learning-rate decay" of the HW5 report's StepLR."""
    records = [r for m in MISSES for r in cell(m, lr=1e-3, schedule="cosine")]
    (claim,) = claims.trains_faster(records)
    assert "cosine" in claim.name
    assert "first learning-rate decay" not in claim.text
    assert "the first epochs of the cosine schedule, every model at the same rate each epoch" in claim.text


def test_trains_faster_names_the_models_it_compares_when_one_is_not_the_hw5_reports_normalisation():
    """A model of one's own (a plugin's) is not assumed to be a normalisation: the question names it."""
    records = [r for m in ("nmodel", "bmodel") for r in cell(m)]
    for r in cell("wmodel"):  # a model of one's own, in the records as a plugin's model would be
        r.config["model"] = "dmodel"
        records.append(r)
    (claim,) = claims.trains_faster(records)
    assert claim.name == "Do bmodel and dmodel train faster than nmodel at the HW5 report's rate?"
    assert "normalised" not in claim.says and "bmodel and dmodel reach a lower training loss" in claim.says
    (alone,) = claims.trains_faster([r for r in records if r.config["model"] != "bmodel"])
    assert alone.name == "Does dmodel train faster than nmodel at the HW5 report's rate?"
    (hw5,) = claims.trains_faster([r for r in records if r.config["model"] != "dmodel"])
    assert hw5.name == "Do the normalised models train faster at the HW5 report's rate?"


def test_training_accuracy_says_how_many_images_are_missed_and_where_they_are_not():
    records = [r for r in study() if not (r.config["model"] == "nmodel" and r.config["hidden_size"] == 2000)]
    records += cell("nmodel", 2000, train_eval=99.98) + cell("nmodel", 1000, lr=1e-3)
    claim = found(records)["100 % training accuracy"]
    assert claim.verdict == stats.CONTRADICTED
    assert "H = 2000 0 of 3 runs, lowest 99.98 % (missing 10 of the 50,000 images)" in claim.text
    assert "At other settings in these records, runs at 100 %: nmodel at H = 1000, lr=0.001: 3 of 3 runs." \
        in claim.text


def test_rates_validation_cannot_tell_apart_widen_what_the_runs_rule_out():
    paper = study(sizes=(1000,))
    rates = [run("nmodel", s, [*range(0, 20), 100 + s], lr=1e-3, val_acc=99.0 + 0.01 * s) for s in (0, 1, 2)]
    # wmodel: lr 1e-3 chosen on validation, lr 3e-3 as good on validation (seed by seed ±0.01) and better on test.
    rates += [run("wmodel", s, [*range(0, 20), 100 + s], lr=1e-3, val_acc=99.0 + 0.01 * s) for s in (0, 1, 2)]
    rates += [run("wmodel", s, [*range(0, 12), 100 + s], lr=3e-3, val_acc=99.0 - 0.01 * s) for s in (0, 1, 2)]
    weight = {c.name: c for c in claims.learning_rate_claims(paper + rates, LABELS)}[
        "Does weight norm still help at each model's best learning rate (H = 1000)?"]
    assert "wmodel lr 0.001, nmodel lr 0.001" in weight.text
    assert "Validation cannot tell these rates from the chosen ones" in weight.text and "wmodel 0.003" in weight.text
    at_tie = comparisons.compare(rates[6:], rates[:3], hw5.VAL, LABELS)  # wmodel 3e-3 - nmodel 1e-3: +4 points
    assert f"rule out a gain larger than {at_tie.two_source.high:+.2f} points" in weight.text


def test_a_fourth_model_gets_compared_and_changes_no_verdict_of_the_hw5_report():
    """A model the HW5 report never had (layer norm, say): its runs get Table 1 rows and comparisons with every
    other model; the report's claims read the same."""
    def lmodel(hidden_size, seeds=(0, 1, 2)):
        records = [run("nmodel", s, [*range(0, 20), 100 + s], hidden_size=hidden_size) for s in seeds]
        for r in records:
            r.config["model"] = "lmodel"  # whether or not this checkout registers it
        return records

    hw5_claims = {c.name: c for c in claims.check(study(), LABELS) if c.source == claims.REPORT}
    with_fourth = study() + [r for h in (5000, 2000, 1000) for r in lmodel(h)]
    assert {c.name: c for c in claims.check(with_fourth, LABELS) if c.source == claims.REPORT} == hw5_claims
    table = claims.comparisons(with_fourth, labels=LABELS)
    pairs = set(zip(table["a"], table["b"]))
    assert {("lmodel", "nmodel"), ("lmodel", "bmodel"), ("lmodel", "wmodel"), ("bmodel", "wmodel")} <= pairs
    assert len(table) == 3 * 6  # every pair of four models at each of three sizes
    assert misclassified.find(with_fourth, LABELS).every == "all four"
    # An nmodel + lmodel sweep: Table 1 of its cells, the lmodel - nmodel comparison, the digits both get wrong.
    sweep = cell("nmodel") + lmodel(1000)
    assert list(table1.compute(sweep, LABELS).index.get_level_values("model")) == ["nmodel", "lmodel"]
    (a, b), = zip(claims.comparisons(sweep, labels=LABELS)["a"], claims.comparisons(sweep, labels=LABELS)["b"])
    assert (a, b) == ("lmodel", "nmodel")
    errors = misclassified.find(sweep, LABELS)
    assert errors.every == "both models" and np.flatnonzero(errors.wrong["both models"]).tolist() == list(range(20))
    # The HW5 report's cells this sweep lacks; lmodel's cells are none of them.
    assert claims.cells.missing_configs(sweep) == ["nmodel-hs2000", "nmodel-hs5000", "bmodel-hs1000", "bmodel-hs2000",
                                                   "bmodel-hs5000", "wmodel-hs1000", "wmodel-hs2000", "wmodel-hs5000"]
    assert found(sweep)["Table 1 ordering"].verdict == stats.UNTESTED


def test_what_one_change_of_settings_buys_is_each_step_between_nested_settings():
    # A recipe (lr 1e-3 and batch 50), the recipe with each change undone in turn, and the protocol.
    records = cell("nmodel") + cell("nmodel", lr=1e-3, batch_size=50)
    records += [run("nmodel", s, [*range(0, 30), 100 + s], lr=1e-3) for s in (0, 1, 2)]
    records += [run("nmodel", s, [*range(0, 50), 100 + s], batch_size=50) for s in (0, 1, 2)]
    effects = comparisons.setting_effects(records, LABELS)
    steps = set(zip(effects["settings"], effects["from"], effects["change"]))
    assert steps == {("lr=0.001, batch_size=50", "lr=0.001", "batch_size=50"),
                     ("lr=0.001, batch_size=50", "batch_size=50", "lr=0.001"),
                     ("lr=0.001", protocol.PROTOCOL, "lr=0.001"), ("batch_size=50", protocol.PROTOCOL, "batch_size=50")}
    # Removing the rate from the recipe costs 30 + 1 - (60 + 1)... the recipe misses 60 + 1, lr alone 30 + 1.
    row = effects[effects["from"] == "lr=0.001"].iloc[0]
    assert row["difference"] == pytest.approx(100 * (31 - 61) / IMAGES) and bool(row["paired"])


def test_a_recipe_study_asks_whether_normalisation_still_helps_and_what_each_addition_buys():
    """The beyond study's design: each model with every addition at its own rate (chosen elsewhere: one rate per
    model here), and the plain network's recipe with one addition removed in turn (the rate among them)."""
    recipe = {"dropout": 0.2, "batch_size": 50}
    nmodel = [run("nmodel", s, [*range(0, 20), 100 + s], lr=1e-3, val_acc=99.0, **recipe) for s in (0, 1, 2)]
    bmodel = [run("bmodel", s, [*range(0, 10), 100 + s], lr=3e-3, **recipe) for s in (0, 1, 2)]
    # Before the ablation's runs: one rate per model, each its own; still asked.
    alone = {c.name: c for c in claims.check(nmodel + bmodel, LABELS)}
    question = "Does batch norm still help, each model at its own learning rate (H = 1000)?"
    assert alone[question].verdict == stats.SUPPORTED and alone[question].source == claims.OWN
    assert "bmodel lr 0.003, the only rate it was trained at with these settings" in alone[question].text
    without_rate = [run("nmodel", s, [*range(0, 40), 100 + s], val_acc=97.0, **recipe) for s in (0, 1, 2)]
    without_dropout = [run("nmodel", s, [*range(0, 30), 100 + s], lr=1e-3, batch_size=50) for s in (0, 1, 2)]
    by_name = {c.name: c for c in claims.check(nmodel + bmodel + without_rate + without_dropout, LABELS)}
    batch = by_name[question]  # nmodel's rate now chosen on validation between two
    assert batch.verdict == stats.SUPPORTED and "nmodel lr 0.001, chosen on validation accuracy among 0.001, 0.01" \
        in batch.text and "bmodel (lr 0.003) − nmodel (lr 0.001) = +5.00" in batch.text
    dropout = by_name["Does dropout=0.2 help nmodel (H = 1000) with the rest of its recipe?"]
    assert dropout.verdict == stats.SUPPORTED and "nmodel with dropout=0.2 − without = +5.00" in dropout.text
    rate = by_name["Does lr=0.001 help nmodel (H = 1000) with the rest of its recipe?"]
    assert rate.verdict == stats.SUPPORTED and "+10.00" in rate.text and "H = 1000" in rate.scope
    # A removal that costs nothing: within noise, never "supported".
    same = [run("nmodel", s, [*range(0, 20 - (s == 2)), 100 + s], lr=1e-3, dropout=0.2) for s in (0, 1, 2)]
    batch_size = {c.name: c for c in claims.check(nmodel + same, LABELS)}[
        "Does batch_size=50 help nmodel (H = 1000) with the rest of its recipe?"]
    assert batch_size.verdict == stats.WITHIN_NOISE
    # The HW5 protocol's learning-rate study asks no such question: its steps start at the protocol.
    assert not [c for c in claims.check(cell("nmodel") + cell("nmodel", lr=1e-3), LABELS) if "recipe" in c.name]
    # The findings lead with what the runs can judge: this project's questions where no run follows the protocol.
    assert [c.source for c in claims.check(nmodel + bmodel, LABELS)][:2] == [claims.OWN, claims.OWN]
    assert claims.check(cell("nmodel") + cell("nmodel", lr=1e-3), LABELS)[0].source == claims.REPORT


def test_predictions_made_on_another_test_set_are_refused():
    records = study(sizes=(1000,))
    other = datasets.labels_digest((LABELS + 1) % 10)
    records[0].dataset = {"name": "another set", "test_labels": other}
    for score in (lambda: claims.comparisons(records, labels=LABELS), lambda: table1.compute(records, LABELS),
                  lambda: misclassified.find(records, LABELS), lambda: misclassified.check_test_set(records, LABELS),
                  lambda: comparisons.seed_agreement(records, labels=LABELS)):
        with pytest.raises(misclassified.WrongTestSet, match="predictions made on the test set of another set"):
            score()
    records[0].dataset = {}  # a record that names no test set was made on MNIST's, and LABELS are not MNIST's
    with pytest.raises(misclassified.WrongTestSet, match="MNIST"):
        claims.comparisons(records, labels=LABELS)
    records[0].dataset = dict(TEST_SET)
    assert len(claims.comparisons(records, labels=LABELS)) == 3


def test_the_claims_markdown_holds_no_html_from_the_records():
    records = study()
    for r in records:
        for segment in r.segments:
            segment["hardware"] = {**segment["hardware"], "name": "<img src=x onerror=alert(1)>"}
    records[0].config["model"] = "<b>lmodel</b>"  # a model name from a record: text, never markup
    text = claims.markdown(claims.check(records, LABELS)) + claims.scope(records)
    assert "<img" not in text and "<b>" not in text
    assert "&lt;img src=x onerror=alert(1)> (family 25 model 1, AVX2)" in text
    assert "&lt;b>lmodel&lt;/b>" in text


def test_seed_agreement_counts_the_images_same_seed_and_different_seed_runs_predict_differently():
    records = cell("bmodel") + cell("wmodel") + cell("bmodel", hidden_size=2000)
    pairs = comparisons.seed_agreement(records, labels=LABELS).set_index(["a", "b"])
    # bmodel misses 0-9, wmodel 0-29, and each seed s one image more, 100 + s, in both: same-seed runs differ on
    # the 20 images 10-29 (10 %), different-seed runs on those and on 100 + s and 100 + t (22, 11 %).
    one_size = pairs.loc[("bmodel-hs1000", "wmodel-hs1000")]
    assert (one_size["same_seed"], one_size["different_seed"]) == (pytest.approx(10.0), pytest.approx(11.0))
    assert one_size["relation"] == "one hidden size, other model" and one_size["pairing"] == comparisons.PAIRED
    assert (one_size["same_seed_pairs"], one_size["different_seed_pairs"]) == (3, 6)
    across = pairs.loc[("bmodel-hs1000", "bmodel-hs2000")]  # the pages' order: hidden sizes increasing
    assert across["pairing"] == comparisons.UNPAIRED and across["relation"] == "different hidden sizes, one model"
    assert (across["same_seed"], across["different_seed"]) == (0.0, pytest.approx(1.0))  # 2 of 200 images
    summary = comparisons.agreement_summary(comparisons.seed_agreement(records, labels=LABELS))
    row = summary.set_index("relation").loc["one hidden size, other model"]
    assert row["same − different (points)"] == "-1.00 (-1.00 to -1.00)" and row["same-seed runs agree more"] == "1 of 1"
    assert "paired by seed" in comparisons.agreement_note(comparisons.seed_agreement(records, labels=LABELS))


def test_models_at_their_best_rates_with_no_seed_in_common_are_not_tested_and_nothing_fails():
    """bmodel on seeds 0-2, nmodel on seeds 3-5, each at two rates: the rates are chosen, but the two cells share no
    seed to pair, so the question reads not tested here, with no deciding number (it once raised instead)."""
    records = []
    for lr, val_acc in ((1e-3, 99.0), (3e-3, 97.0)):
        records += [run("bmodel", s, [*range(0, 12), 100 + s], lr=lr, val_acc=val_acc) for s in (0, 1, 2)]
        records += [run("nmodel", s, [*range(0, 20), 100 + s], lr=lr, val_acc=val_acc) for s in (3, 4, 5)]
    (batch,) = [c for c in claims.check(records, LABELS) if "best learning rate" in c.name]
    assert batch.verdict == stats.UNTESTED and batch.deciding is None
    assert findings.table([batch]).iloc[0]["judged at"] == findings.MISSING
