"""Peer methods the benchmark compares CLIP⁻¹ against, written compactly on the engine's own
augmentation (`Augmenter`), view averaging and target loss, and `ClipBundle.encode_image`, so
the only thing that differs between methods is the image parameterisation and its prior.

* `PixelTV` (CLIP-Inv style, Kazemi et al.): free pixels, sigmoid-squashed, with a total
  variation prior, optimised coarse to fine (the pixel grid is upsampled at 1/3 and 2/3 of the
  run).
* `PixelPyramid` (DAS style, Direct Ascent Synthesis): the image is the tanh-squashed sum of
  pixel tensors at every power-of-two resolution from 1x1 to full size, each upsampled.
* `PlainSiren` (Deep Daze style): a SIREN (sine MLP, omega 30, Sitzmann et al. 2020) mapping
  coordinates to RGB, with one flat learning rate; random-crop views act as its cutouts.

Learning rates and prior weights are ours, picked once for 64 px renders; the step budget,
views and augmentation come from the benchmark and are the same for every method.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from inversion_core import AugmentConfig, Augmenter, ClipBundle
from inversion_core.losses import mean_view_embedding


class PixelTV(torch.nn.Module):
    """Free pixels at a growing resolution; `prior` is total variation."""

    lr = 0.05
    tv_weight = 0.5

    def __init__(self, batch: int, size: int, generator: torch.Generator):
        super().__init__()
        self.size = size
        self.stages = [max(8, size // 4), max(8, size // 2), size]
        self.pixels = torch.nn.Parameter(
            0.1 * torch.randn(batch, 3, self.stages[0], self.stages[0], generator=generator))

    def on_step(self, step: int, steps: int) -> bool:
        """Upsample the grid at stage boundaries; True when parameters were replaced."""
        stage = min(len(self.stages) - 1, 3 * step // max(1, steps))
        if self.pixels.shape[-1] == self.stages[stage]:
            return False
        grown = F.interpolate(self.pixels.detach(), size=self.stages[stage], mode="bilinear",
                              align_corners=False)
        self.pixels = torch.nn.Parameter(grown)
        return True

    def forward(self) -> torch.Tensor:
        up = F.interpolate(self.pixels, size=self.size, mode="bilinear", align_corners=False)
        return torch.sigmoid(up)  # (B, 3, S, S)

    def prior(self, images: torch.Tensor) -> torch.Tensor:
        dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean(dim=(1, 2, 3))
        dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean(dim=(1, 2, 3))
        return self.tv_weight * (dx + dy)  # (B,)


class PixelPyramid(torch.nn.Module):
    """Sum of upsampled pixel tensors at 1, 2, 4, ..., size px, tanh-squashed to [0, 1]."""

    lr = 0.03

    def __init__(self, batch: int, size: int, generator: torch.Generator):
        super().__init__()
        self.size = size
        levels = [2 ** i for i in range(int(math.log2(size)) + 1)] + [size]
        self.levels = torch.nn.ParameterList(
            torch.nn.Parameter(0.01 * torch.randn(batch, 3, r, r, generator=generator))
            for r in sorted(set(levels)))

    def on_step(self, step: int, steps: int) -> bool:
        return False

    def forward(self) -> torch.Tensor:
        total = sum(F.interpolate(p, size=self.size, mode="bilinear", align_corners=False)
                    for p in self.levels)
        return 0.5 + 0.5 * torch.tanh(total)

    def prior(self, images: torch.Tensor) -> torch.Tensor:
        return images.new_zeros(images.shape[0])


class PlainSiren(torch.nn.Module):
    """A batch of SIRENs (one per image): coordinates in [-1, 1]^2 -> RGB through sigmoid."""

    lr = 1e-3
    omega = 30.0

    def __init__(self, batch: int, size: int, generator: torch.Generator, hidden_layers: int = 3,
                 width: int = 256):
        super().__init__()
        self.size = size
        dims = [2] + [width] * (hidden_layers + 1) + [3]
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for i, (n_in, n_out) in enumerate(itertools.pairwise(dims)):
            bound = 1.0 / n_in if i == 0 else math.sqrt(6.0 / n_in) / self.omega
            w = (torch.rand(batch, n_in, n_out, generator=generator) * 2 - 1) * bound
            b = (torch.rand(batch, 1, n_out, generator=generator) * 2 - 1) / math.sqrt(n_in)
            self.weights.append(torch.nn.Parameter(w))
            self.biases.append(torch.nn.Parameter(b))

    def on_step(self, step: int, steps: int) -> bool:
        return False

    def forward(self) -> torch.Tensor:
        t = torch.linspace(-1, 1, self.size)
        y, x = torch.meshgrid(t, t, indexing="ij")
        h = torch.stack([x, y], -1).reshape(1, -1, 2).expand(len(self.weights[0]), -1, -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)  # (B, H*W, out)
            if i < last:
                h = torch.sin(self.omega * h)
        rgb = torch.sigmoid(h)  # (B, H*W, 3)
        return rgb.transpose(1, 2).reshape(-1, 3, self.size, self.size)

    def prior(self, images: torch.Tensor) -> torch.Tensor:
        return images.new_zeros(images.shape[0])


BASELINES: dict[str, type[torch.nn.Module]] = {
    "pixel_tv": PixelTV,
    "pyramid": PixelPyramid,
    "siren": PlainSiren,
}


@dataclass
class BaselineResult:
    images: torch.Tensor  # (B, 3, S, S) in [0, 1]
    history: list[float]  # batch-mean loss per step


def run_baseline(name: str, clip: ClipBundle, targets: torch.Tensor, *, steps: int, size: int,
                 augment: AugmentConfig, seeds: Sequence[int]) -> BaselineResult:
    """Optimise one image per target embedding (B, D) with the baseline `name`.

    Same objective as the engine: 1 - cos(mean of view embeddings, target), plus the method's
    prior; views from the engine's `Augmenter` with one seeded generator per image.
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}")
    if len(seeds) != len(targets):
        raise ValueError(f"got {len(seeds)} seeds for {len(targets)} targets")
    init = torch.Generator().manual_seed(int(seeds[0]))
    model = BASELINES[name](len(targets), size, init)
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    augmenter = Augmenter(augment, clip.image_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=model.lr)
    history = []
    with torch.enable_grad():
        for step in range(steps):
            if model.on_step(step, steps):
                optimizer = torch.optim.Adam(model.parameters(), lr=model.lr)
            images = model()
            views = augmenter(images, generators)  # (B * n, 3, S', S')
            embedding = mean_view_embedding(clip.encode_image(views), augment.views)  # (B, D)
            per_image = 1 - (embedding * targets).sum(-1) + model.prior(images)
            optimizer.zero_grad(set_to_none=True)
            per_image.sum().backward()
            optimizer.step()
            history.append(float(per_image.detach().mean()))
    with torch.no_grad():
        return BaselineResult(images=model().clamp(0, 1), history=history)
