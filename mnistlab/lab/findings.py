"""The findings first: one row per claim (claim | verdict | the deciding number with its interval | rule), the
table a published analysis opens with, above the sentences and figures that back it.

Written against ``claims.Claim`` as it is (name, says, source, verdict, text). Where a claim carries its deciding
estimate or its rule as fields (``deciding``, ``rule``), those are used; otherwise ``deciding`` and ``rule`` read
them from the claim's generated text, whose parts say "a − b = +0.07 points (95 % CI over seeds and test images
[-0.01, +0.15]; ...): within noise" and whose last sentence states the rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from .formatting import MISSING
from .stats import UNTESTED

# One part of a claim's text: "[At H = 1000: ]bmodel − wmodel = +0.07 points (95 % CI over seeds and test images
# [-0.01, +0.15]; seeds only [...]; 5 seeds; pooled p = 0.16): within noise"
_PART = re.compile(r"(?P<what>(?=[^:;()]*−)[^:;()]+?) = (?P<mean>[-+−]?\d+\.\d+)(?P<unit> points)? "
                   r"\(95 % CI over (?P<over>seeds and test images|seeds) \[(?P<low>[^,\]]+), (?P<high>[^\]]+)\][^)]*\)"
                   r"(?:: (?P<verdict>not tested|[a-z][a-z ]*[a-z]))?")
_RULE = re.compile(r"(?:\((?P<paren>Supported: [^()]*(?:\([^()]*\)[^()]*)*)\)|Rule: (?P<plain>.+?))\s*$", re.S)
# Which part decides a verdict: the one that contradicts; the weakest support; the one that left it within noise.
_DECIDES = {"contradicted": "contradicted", "supported": "supported", "within noise": "within noise"}
COLUMNS = ["claim", "whose", "verdict", "judged at", "deciding number (95 % interval)", "rule"]
# The findings as data, beside the table's HTML in the analysis notebook's output: what the index reads
MIME = "application/vnd.mnistlab.findings+json"
MAX_NOTEBOOK = 64 << 20  # bytes: an executed analysis notebook is a few MB


@dataclass(frozen=True)
class Part:
    """One tested part of a claim, read from its text."""

    what: str  # "bmodel − wmodel", "H=5000 − H=1000", with "at H = 1000" when the text says so
    mean: float
    low: float
    high: float
    over: str  # "seeds and test images" or "seeds"
    unit: str  # " points" or ""
    verdict: str  # the part's own verdict ('' when the text gives none)

    def text(self) -> str:
        digits = 4 if not self.unit and abs(self.mean) < 1 else 2
        return (f"{self.what} = {self.mean:+.{digits}f}{self.unit} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"
                + ("" if self.over == "seeds and test images" else " (interval over seeds)"))


def parts(text: str) -> list[Part]:
    """The tested parts a claim's text states, in its order, each with the hidden size it is at ("At H = 1000:",
    "H = 1000: a − b = ...") where the text says so."""
    found, at = [], ""
    for match in _PART.finditer(text):
        before = text[:match.start()]
        heading = re.search(r"(?:^|[.:;] )(?:[Aa]t )?(H = \d+):\s*$", before)
        if heading:
            at = heading.group(1)
        what = match.group("what").strip()
        if at and "H=" not in what and "H = " not in what:
            what = f"{what} at {at}"
        found.append(Part(what, _number(match.group("mean")), _number(match.group("low")),
                          _number(match.group("high")), match.group("over"), match.group("unit") or "",
                          match.group("verdict") or ""))
    return found


def deciding(claim) -> str:
    """The number that decided ``claim``'s verdict, with its 95 % interval: its ``deciding`` field where it has one;
    else, of the parts its text states, the one contradicting it, or for "supported" the part whose interval comes
    nearest the line, or for "within noise" the part with its verdict that lies farthest from 0."""
    explicit = getattr(claim, "deciding", None)
    if explicit is not None:
        return str(explicit)
    found = parts(claim.text)
    if not found:  # a claim measured exactly (every training image): its first clause says what decided it
        first = re.split(r"(?<=\.) |; ", claim.text.strip(), maxsplit=1)[0].rstrip(".")
        return first if first and not first.startswith("(") else MISSING
    verdict = _DECIDES.get(claim.verdict)
    same = [p for p in found if p.verdict == verdict] or found
    margin = re.search(r"inside ±(\d+(?:\.\d+)?)", rule(claim))
    if verdict == "supported" and margin:  # "stable": the part with the least room inside ±margin
        part = min(same, key=lambda p: float(margin.group(1)) - max(abs(p.low), abs(p.high)))
    elif verdict == "supported":  # the part whose interval comes nearest 0
        part = min(same, key=lambda p: min(abs(p.low), abs(p.high)) if p.low * p.high > 0 else 0.0)
    else:
        part = max(same, key=lambda p: abs(p.mean))
    others = len(found) - 1
    return part.text() + (f" (1 of {len(found)} parts)" if others else "")


def rule(claim) -> str:
    """The rule the verdict follows: the claim's ``rule`` field where it has one, else its text's last sentence
    ("(Supported: ...)" or "Rule: ...")."""
    explicit = getattr(claim, "rule", None)
    if explicit:
        return str(explicit)
    match = _RULE.search(claim.text.strip())
    if not match:
        return MISSING
    text = (match.group("paren") or match.group("plain")).strip()
    return text[:1].upper() + text[1:]


def judged_at(claim) -> str:
    """Where the verdict holds, in short: the rate or recipe, the hidden sizes and the seeds of its scope ("at Adam
    lr 0.01 on the HW5 report's protocol, H = 1000, 2000 and 5000, 5 seeds per cell"); the processors are in the
    claim's text. ``MISSING`` for a claim these runs did not test."""
    scope = str(getattr(claim, "scope", "") or "")
    return scope.split(";")[0].strip() if scope and claim.verdict != UNTESTED else MISSING


def table(claims: Iterable) -> pd.DataFrame:
    """One row per claim: the claim (what it says), whose it is, the verdict, where it was judged (rate, sizes,
    seeds), the deciding number with its interval, and the rule. What a published analysis opens with."""
    rows = []
    for claim in claims:
        whose = "the HW5 report" if "HW5" in str(getattr(claim, "source", "")) else "this project's question"
        rows.append({"claim": f"{claim.name} — {claim.says}", "whose": whose, "verdict": claim.verdict,
                     "judged at": judged_at(claim), "deciding number (95 % interval)": deciding(claim),
                     "rule": rule(claim)})
    return pd.DataFrame(rows, columns=COLUMNS)


def show(claims: Sequence) -> None:
    """Display the findings in a notebook: the table (``styled``) as HTML, and beside it the same rows with each
    claim's short name as data (``MIME``), which ``published`` reads back from the executed notebook. A page shows
    the HTML; the report's index lists the verdicts from the data, so the two cannot disagree."""
    from IPython.display import display

    frame = table(claims)
    rows = [{"name": claim.name, **row} for claim, row in zip(claims, frame.to_dict("records"))]
    display({"text/html": styled(frame).to_html(), "text/plain": frame.to_string(index=False), MIME: rows},
            raw=True)


def published(notebook) -> list[dict] | None:
    """The findings rows an executed analysis notebook displayed (``show``), or None where it displayed none (not
    executed, an older notebook, no complete run)."""
    import nbformat

    from ..atomic import read_regular

    try:  # a report's own file, never read through a link, and no larger than a notebook of a page should be
        executed = nbformat.reads(read_regular(notebook, MAX_NOTEBOOK, follow=False).decode(), as_version=4)
    except (OSError, ValueError):
        return None
    for cell in executed.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            rows = output.get("data", {}).get(MIME)
            if isinstance(rows, list) and all(isinstance(row, dict) for row in rows):
                return [{key: str(value) for key, value in row.items()} for row in rows]
    return None


def styled(frame: pd.DataFrame):
    """``table``'s frame for a page: text left-aligned, no index column, each verdict in bold."""
    left = [{"selector": "th", "props": "text-align: left"}, {"selector": "td", "props": "text-align: left"}]
    return (frame.style.set_uuid("findings").format(escape="html").hide(axis="index").set_table_styles(left)
            .map(lambda _: "font-weight: bold", subset=["verdict"]))


def _number(text: str) -> float:
    return float(text.replace("−", "-").strip())
