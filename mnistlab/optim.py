"""The optimizer and the learning-rate schedule of a run, each made in one place from its config.

Adam with betas (0.9, 0.999), the HW5 report's "momentum 0.9", fused where torch has the fused kernel
(CPU and CUDA); the rate follows ``config.schedule``, stepped once per epoch. Another update rule is a
change to ``make_optimizer`` and a setting in ``Config`` (docs/extending.md shows SGD).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from .config import Config


def make_optimizer(parameters: Iterable[torch.nn.Parameter], config: Config, device: torch.device,
                   capturable: bool = False) -> torch.optim.Optimizer:
    """Adam at ``config.lr``. ``capturable``: the rate is a device tensor that the schedule fills in place, and
    every step stays on the device, so the step can be captured in a CUDA graph."""
    lr = torch.tensor(config.lr, device=device) if capturable else config.lr
    return torch.optim.Adam(parameters, lr=lr, betas=(0.9, 0.999), fused=fused(device), capturable=capturable)


def fused(device: torch.device) -> bool:
    """Whether Adam runs as one fused kernel on ``device`` (torch has one for the CPU and CUDA)."""
    return device.type in ("cuda", "cpu")


def make_scheduler(optimizer: torch.optim.Optimizer, config: Config) -> torch.optim.lr_scheduler.LRScheduler:
    """The schedule of ``config.schedule``, stepped after every epoch."""
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: cosine(done, config.epochs))


def cosine(done: int, epochs: int) -> float:
    """The cosine schedule's factor for the epoch after ``done`` epochs: from 1 down towards 0 at the end."""
    return 0.5 * (1.0 + math.cos(math.pi * done / epochs))


def scheduled_lr(config: Config, epoch: int) -> float:
    """The learning rate during ``epoch`` (from 1), computed as the scheduler computes it: the exact Python
    float, even when the optimizer holds it as a float32 device tensor (under CUDA graphs)."""
    if config.schedule == "cosine":
        return config.lr * cosine(epoch - 1, config.epochs)
    lr = config.lr
    for finished in range(1, epoch):
        if finished % config.step_size == 0:
            lr *= config.gamma
    return lr
