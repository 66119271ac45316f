"""Counting the calls that make the host wait for the device: how the one-read-back-per-epoch design is checked."""

from __future__ import annotations

import torch


class HostTransfers(torch.overrides.TorchFunctionMode):
    """While active, counts the tensor methods that wait for the device and copy to the host (``calls``)."""

    NAMES = ("tolist", "item", "cpu", "__bool__", "__float__", "__int__", "__index__", "numpy")

    def __init__(self):
        super().__init__()
        self.calls = dict.fromkeys(self.NAMES, 0)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.calls:
            self.calls[name] += 1
        return func(*args, **(kwargs or {}))
