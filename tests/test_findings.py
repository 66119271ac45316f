"""The findings table a published analysis opens with: one row per claim, with the number that decided it."""

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from mnistlab.lab import cells, claims, findings, stats

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def published_claims(data_dir):
    """The HW5 report's claims judged on the published paper records (45 runs), as the analysis page judges them."""
    from mnistlab.lab import misclassified

    runs = cells.included(cells.load_records(ROOT / "reports" / "paper" / "runs"))
    _, labels = misclassified.test_set(data_dir)
    return claims.check(runs, labels=labels)


def test_one_row_per_claim_with_its_verdict_deciding_number_and_rule(published_claims):
    table = findings.table(published_claims)
    assert list(table.columns) == findings.COLUMNS
    assert len(table) == len(published_claims) >= 5
    verdicts = {stats.SUPPORTED, stats.CONTRADICTED, stats.WITHIN_NOISE, stats.UNTESTED}
    for claim, row in zip(published_claims, table.to_dict("records")):
        assert row["claim"] == f"{claim.name} — {claim.says}" and row["verdict"] == claim.verdict
        assert row["verdict"] in verdicts
        assert row["rule"] != findings.MISSING and row["rule"][:1].isupper()
        assert row["rule"][1:].rstrip(".") in claim.text  # the rule the text states (capitalised), not one of ours
        number = row["deciding number (95 % interval)"]
        tested = re.match(r"(.+) = ([-+]\d+\.\d+)(?: points)? \[([-+]\d+\.\d+), ([-+]\d+\.\d+)\]", number)
        if tested:  # the part of the text it came from: the same difference, mean and interval
            what, mean, low, high = tested.groups()
            part = next(p for p in findings.parts(claim.text) if p.what == what)
            assert (float(mean), float(low), float(high)) == pytest.approx((part.mean, part.low, part.high), abs=1e-4)
            if claim.verdict == "supported":  # every part supports it; the row shows the weakest
                assert all(p.verdict == "supported" for p in findings.parts(claim.text))
        else:  # a claim measured exactly, on every training image: its first clause
            assert number != findings.MISSING and number in claim.text


def test_the_deciding_part_is_the_one_that_decides():
    """Contradicted: a part that contradicts; supported: the part nearest its line (0, or the margin of "stable");
    within noise: the within-noise part farthest from 0."""
    def part(what, mean, low, high, verdict):
        return (f"{what} = {mean:+.2f} points (95 % CI over seeds and test images [{low:+.2f}, {high:+.2f}]; seeds "
                f"only [{low:+.2f}, {high:+.2f}]; 5 seeds; pooled p = 0.1): {verdict}")

    rule = "(Supported: all 2 parts tested, each 95 % interval above 0; contradicted: ...)"
    two = "At H = 1000: " + "; ".join([part("a − b", 0.9, 0.5, 1.3, "supported"),
                                       part("b − c", 0.3, 0.05, 0.55, "supported")]) + ". " + rule
    assert findings.deciding(Claim("x", "a > b > c", "the HW5 report", "supported", two)) == \
        "b − c at H = 1000 = +0.30 points [+0.05, +0.55] (1 of 2 parts)"
    noisy = "At H = 2000: " + "; ".join([part("a − b", 0.05, -0.1, 0.2, "within noise"),
                                         part("b − c", -0.12, -0.3, 0.06, "within noise")]) + ". " + rule
    assert findings.deciding(Claim("x", "", "", "within noise", noisy)).startswith("b − c at H = 2000 = -0.12")
    wrong = "; ".join([part("a − b", 0.1, -0.05, 0.25, "within noise"),
                       part("b − c", -0.5, -0.8, -0.2, "contradicted")]) + ". " + rule
    assert findings.deciding(Claim("x", "", "", "contradicted", wrong)).startswith("b − c = -0.50 points")
    stable = "; ".join([part("H=5000 − H=2000", 0.09, 0.0, 0.19, "supported"),
                        part("H=2000 − H=1000", -0.1, -0.12, -0.05, "supported")]) + \
        ". (Supported: all 2 parts tested, each 95 % interval inside ±0.2 points; contradicted: ...)"
    assert findings.deciding(Claim("x", "", "", "supported", stable)).startswith("H=5000 − H=2000 = +0.09")
    assert findings.rule(Claim("x", "", "", "supported", stable)).startswith("Supported: all 2 parts tested")


def test_fields_a_claim_carries_are_used_as_they_are():
    """When a claim carries its deciding estimate and rule (the verdicts' rewrite may add them), they are shown."""
    claim = Claimed("x", "says", "the HW5 report", "supported", "no parts here",
                    deciding="a − b = +1.00 [+0.50, +1.50]", rule="one rule")
    assert findings.table([claim]).to_dict("records")[0] == {
        "claim": "x — says", "whose": "the HW5 report", "verdict": "supported", "judged at": findings.MISSING,
        "deciding number (95 % interval)": "a − b = +1.00 [+0.50, +1.50]", "rule": "one rule"}
    html = findings.styled(findings.table([claim])).to_html()
    assert "T_findings" in html and "text-align: left" in html  # the same page on every rebuild


@dataclass(frozen=True)
class Claim:
    name: str
    says: str
    source: str
    verdict: str
    text: str


@dataclass(frozen=True)
class Claimed(Claim):
    deciding: str = ""
    rule: str = ""


def test_the_rows_a_notebook_shows_are_read_back_from_it_as_data(published_claims, tmp_path):
    """``show`` displays the table and, beside it, the same rows as data; ``published`` reads them back from the
    saved notebook (what the index leads with), and finds none in a notebook that never showed them."""
    import nbformat
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()
    with capture_output() as shown:
        findings.show(published_claims)
    (bundle,) = [output.data for output in shown.outputs]
    assert "T_findings" in bundle["text/html"] and findings.MIME in bundle
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "findings.show(found)", outputs=[nbformat.v4.new_output("display_data", data=bundle)])])
    nbformat.write(notebook, tmp_path / "analysis.ipynb")
    rows = findings.published(tmp_path / "analysis.ipynb")
    table = findings.table(published_claims).to_dict("records")
    assert [row["name"] for row in rows] == [claim.name for claim in published_claims]
    assert [{key: row[key] for key in findings.COLUMNS} for row in rows] == table
    judged = [row for row in rows if row["verdict"] != stats.UNTESTED]
    assert judged and all(row["judged at"].startswith("at Adam lr 0.01") for row in judged)  # the rate, always
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "empty.ipynb")
    assert findings.published(tmp_path / "empty.ipynb") is None
    assert findings.published(tmp_path / "missing.ipynb") is None
