"""What a run says while it trains: a bar where it runs, and a line per epoch on the terminal behind a kernel.

In a terminal (``mnistlab train --progress``) and in a notebook's cell the bar is tqdm's, in plain
text: it reads the same in JupyterLab, a terminal and a published notebook, and gives the time left
once the first epoch has ended. A notebook's kernel also writes one line per epoch to the terminal
of the process that started it, and there only (``kernel_terminal``): under a plain ``papermill in.ipynb
out.ipynb`` that terminal is the user's, which would otherwise show only papermill's cell counter for hours.
"""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """``start()``, then ``epoch(epoch, rows)`` after every epoch (rows: its history row per seed), then ``close()``."""

    def __init__(self, name: str, epochs: int, done: int, where: str, enabled: bool = True):
        self.name, self.epochs, self.done, self.where, self.enabled = name, epochs, done, where, enabled
        self.bar = None
        self.terminal = kernel_terminal() if enabled else None
        self.started = time.monotonic()

    def start(self) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm  # only when a bar is shown: the core trains with torch and numpy alone

        # Plain text on stdout, not a widget: it reads the same in JupyterLab, a terminal and a papermill report.
        self.bar = tqdm(total=self.epochs, initial=self.done, desc=self.name, unit="epoch", file=sys.stdout,
                        mininterval=2.0)
        left = self.epochs - self.done
        resumed = f" (resumed after epoch {self.done})" if self.done else ""
        self._say(f"{self.name}: training {left} epoch{'s' * (left != 1)} on {self.where}{resumed}")
        self.started = time.monotonic()

    def epoch(self, epoch: int, rows: list[dict[str, Any]]) -> None:
        if not self.enabled:
            return
        self.bar.update(1)
        self.bar.set_postfix_str(postfix(rows), refresh=False)
        each = (time.monotonic() - self.started) / (epoch - self.done)
        left = each * (self.epochs - epoch)
        self._say(f"{self.name}: epoch {epoch}/{self.epochs}, {postfix(rows)}, {each:.1f} s/epoch"
                  + (f", about {duration(left)} left" if epoch < self.epochs else ", done"))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def _say(self, line: str) -> None:
        if self.terminal is not None:
            print(line, file=self.terminal, flush=True)


def postfix(rows: list[dict[str, Any]]) -> str:
    """The epoch's numbers for a progress line: one seed's loss and accuracy, or each seed's test accuracy."""
    if len(rows) == 1:
        return f"train_loss {rows[0]['train_loss']:.4g}, test_acc {rows[0]['test_acc']:.2f} %"
    return "test_acc " + "/".join(f"{row['test_acc']:.2f}" for row in rows) + " %"


def duration(seconds: float) -> str:
    """ "2 h 5 min", "6 min 40 s", "12 s"."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


_TERMINAL: list = []  # the kernel's terminal, opened once


def kernel_terminal():
    """The terminal behind a notebook kernel, or None outside a kernel: there the bar is already on the terminal.

    ipykernel forwards what its process writes to file descriptor 2 into the notebook as well as to the terminal
    (``capture_fd_output``), where a line per epoch would bury the cells' output; its ``sys.stderr.fileno()`` is
    the copy of the terminal's descriptor it keeps for that, which reaches the terminal alone. Without fd capture:
    the process's own stderr."""
    if sys.stdout is sys.__stdout__ or sys.__stderr__ is None or "ipykernel" not in sys.modules:
        return None
    if not _TERMINAL:
        try:
            _TERMINAL.append(open(sys.stderr.fileno(), "w", buffering=1, closefd=False))  # noqa: SIM115
        except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation: ipykernel without fd capture
            _TERMINAL.append(sys.__stderr__)
    return _TERMINAL[0]
