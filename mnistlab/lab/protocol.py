"""The HW5 report's protocol: what a run has off it, and the deviations from the report that still count as it.

The protocol is ``Config()``'s defaults (README.md, "What it does"). A run's *settings* are the training
settings in which it differs from them, besides model, hidden size and seed, as text (``"epochs=2,
lr=0.001"``), or ``PROTOCOL`` when there are none: the label every table, figure, claim and page uses.
What mnistlab does differently from the HW5 report and still calls its protocol is written once, in
``docs/deviations.md``: the README links to it and the analysis page shows it (``deviations``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..config import Config
from ..records import Record

PROTOCOL = "protocol"  # the settings of a run with every setting of the protocol
HIDDEN_SIZES = (1000, 2000, 5000)  # the HW5 report's hidden sizes, increasing, as every page orders them
# Beside the code it describes, in the checkout this package runs from (not the project root a sweep is given).
DEVIATIONS = Path(__file__).resolve().parents[2] / "docs" / "deviations.md"


def off_protocol(name: str, value: Any) -> bool:
    """Whether a train-notebook parameter's value is not the protocol's (one that is no setting of ``Config``,
    such as ``seeds``, always is)."""
    defaults = Config().to_dict()
    return name not in defaults or defaults[name] != value


def settings(record: Record, ignore: Iterable[str] = ()) -> str:
    """The run's settings off the protocol, besides model, hidden size, seed and ``ignore`` (e.g. ``("lr",)``
    to group the rates of a learning-rate study), as text; ``PROTOCOL`` when there are none."""
    known = {k: v for k, v in record.config.items() if k in Config.field_names()}
    skip = {"model", "hidden_size", "seed", *ignore}
    changed = [f"{key}={_text(value)}" for key, value in Config(**known).identity().items()
               if key not in skip and off_protocol(key, value)]
    return ", ".join(changed) or PROTOCOL


def deviations() -> str:
    """The deviations from the HW5 report, as Markdown: ``docs/deviations.md`` without its title."""
    if not DEVIATIONS.is_file():  # an install without its checkout
        return "The deviations are in `docs/deviations.md` of the mnistlab repository, which is not installed here."
    title, _, body = DEVIATIONS.read_text().partition("\n")
    return body.strip() if title.startswith("# ") else f"{title}\n{body}".strip()


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
