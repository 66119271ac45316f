"""Training images distorted on the device: random shifts and elastic distortions (Simard et al. 2003).

Every training image of every epoch is resampled through its own random displacement field before
the network sees it; validation, test and the training set measured after training are never
distorted. For output pixel p the new image is the old one read at p + d(p) (bilinear, pixels
outside the frame are background):

- shift: d(p) = (s_x, s_y), whole pixels drawn uniformly from -shift ... shift, one pair per image;
- elastic: d(p) = alpha (G_sigma * u)(p), u two fields of independent uniform(-1, 1) values, one per
  pixel, smoothed by a Gaussian of sigma = 4 pixels (Simard et al.'s) and scaled by alpha pixels. A
  small sigma gives noise, a large one a near-constant shift; sigma 4 bends strokes the way hands do.

One ``torch.Generator`` per seed draws the fields, so a run's distortions are decided by its seed and
resumed from its checkpoint. The images stay normalised rows (B, 784): they are un-normalised to
[0, 1] for the resampling (so the background is 0) and normalised again.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .data import MEAN, STD

SIDE = 28
ELASTIC_SIGMA = 4.0  # pixels (Simard et al. 2003)


class Distort:
    """``distort(x, generator)``: the rows (..., 784) of a batch, each shifted and elastically distorted."""

    def __init__(self, shift: int = 0, elastic: float = 0.0, sigma: float = ELASTIC_SIGMA):
        self.shift, self.elastic, self.sigma = shift, elastic, sigma
        radius = math.ceil(3 * sigma)  # 99.7 % of the Gaussian's weight
        t = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-t**2 / (2 * sigma**2))
        kernel = kernel / kernel.sum()  # sums to 1, as scipy's gaussian_filter's does
        # Smoothing along one axis with zeros beyond the frame is a product with this banded (28, 28) matrix.
        offsets = torch.arange(SIDE)[None, :] - torch.arange(SIDE)[:, None]  # j - i
        self.blur = torch.where(offsets.abs() <= radius, kernel[(offsets + radius).clamp(0, 2 * radius)], 0.0)
        centres = (2 * torch.arange(SIDE, dtype=torch.float32) + 1) / SIDE - 1  # pixel centres in [-1, 1]
        self.identity = torch.stack(torch.meshgrid(centres, centres, indexing="xy"), dim=-1)  # (28, 28, 2): x, y

    def __bool__(self) -> bool:
        return bool(self.shift or self.elastic)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        shape, device = x.shape, x.device
        images = (x.reshape(-1, 1, SIDE, SIDE) * STD + MEAN)  # (N, 1, 28, 28) on [0, 1]
        n = len(images)
        displacement = torch.zeros(n, SIDE, SIDE, 2, device=device)  # pixels
        if self.elastic:
            fields = torch.rand(n, 2, SIDE, SIDE, generator=generator, device=device) * 2 - 1
            blur = self.blur.to(device)
            smooth = blur @ fields @ blur.T  # (N, 2, 28, 28): each field smoothed down its columns and rows
            displacement += self.elastic * smooth.permute(0, 2, 3, 1)
        if self.shift:
            offsets = torch.randint(-self.shift, self.shift + 1, (n, 1, 1, 2), generator=generator, device=device)
            displacement += offsets
        grid = self.identity.to(device) + displacement * (2 / SIDE)
        moved = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return ((moved - MEAN) / STD).reshape(shape)

    def __repr__(self) -> str:
        return f"Distort(shift={self.shift}, elastic={self.elastic:g}, sigma={self.sigma:g})"
