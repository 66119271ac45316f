"""The HW5 report's protocol: what a run has off it, and the deviations from the report that still count as it.

The protocol is ``Config()``'s defaults (README.md, "What it does"). A run's *settings* are the training
settings in which it differs from them, besides model, hidden size and seed, as text (``"epochs=2,
lr=0.001"``), or ``PROTOCOL`` when there are none: the label every table, figure, claim and page uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..config import Config
from ..records import Record

PROTOCOL = "protocol"  # the settings of a run with every setting of the protocol
HIDDEN_SIZES = (5000, 2000, 1000)  # the HW5 report's hidden sizes, in its Table 1's column order


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


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
