"""Differentiable, batched, seeded augmentations: the n views CLIP sees of every render.

Without augmentation, optimising an image against CLIP finds adversarial pixel patterns; averaging
the embedding over randomly cropped, sheared and colour-jittered views makes only features that
survive those changes pay off (the standard remedy since Deep Daze / CLIP-guided synthesis).
All views of all images come from one ``affine_grid`` + ``grid_sample`` call and a few
element-wise ops: no Python loop over views, no host synchronisation. The ranges are ours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from ._config import check_config


@dataclass(frozen=True)
class AugmentConfig:
    views: int = 16  # n, augmented views per image per step (ours)
    crop_scale: tuple[float, float] = (0.6, 1.0)  # square crop side as a fraction of the short image side
    translate: float = 1.0  # fraction of the free room a crop may move (0 = always centred)
    shear: float = 0.1  # max |shear| (x shift per unit y), both directions
    brightness: float = 0.1  # multiplicative brightness in [1 - b, 1 + b]
    contrast: float = 0.1  # contrast factor in [1 - c, 1 + c]
    saturation: float = 0.1  # saturation factor in [1 - s, 1 + s]
    noise: float = 0.02  # max std of additive Gaussian pixel noise (per view, uniform in [0, noise])

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.views <= 1024:
            problems.append(f"views must be in 1..1024, got {self.views}")
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            problems.append(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        for name in ("translate", "shear", "brightness", "contrast", "saturation", "noise"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must be in [0, 1], got {getattr(self, name)}")
        check_config("AugmentConfig", problems)


class Augmenter:
    """Turns renders (B, 3, H, W) into views (B * n, 3, S, S), ordered image-major."""

    def __init__(self, config: AugmentConfig = AugmentConfig(), output_size: int = 224) -> None:
        self.config = config
        self.output_size = output_size

    def __call__(self, images: torch.Tensor, generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        """``generators``: one per image (so a batch draws what its members would alone), or None."""
        cfg, size = self.config, self.output_size
        images = self._prefilter(images)
        batch, _, height, width = images.shape
        count = batch * cfg.views
        u, noise = self._draw(batch, images.device, generators)  # (B*n, 8) in [0, 1), (B*n, 3, S, S)
        signed = lambda i: 2 * u[:, i] - 1  # noqa: E731 -- uniform in [-1, 1)

        low, high = cfg.crop_scale
        side = low + (high - low) * u[:, 0]  # crop side, fraction of the short image side
        short = min(height, width)
        scale_x, scale_y = side * short / width, side * short / height
        shift_x = signed(1) * (1 - scale_x) * cfg.translate
        shift_y = signed(2) * (1 - scale_y) * cfg.translate
        shear = signed(3) * cfg.shear
        zeros = torch.zeros_like(side)
        theta = torch.stack(
            [torch.stack([scale_x, shear * scale_y, shift_x], -1), torch.stack([zeros, scale_y, shift_y], -1)], 1
        )  # (B*n, 2, 3), maps output coordinates to input coordinates
        grid = F.affine_grid(theta, [count, 3, size, size], align_corners=False)
        source = images.unsqueeze(1).expand(batch, cfg.views, 3, height, width).reshape(count, 3, height, width)
        views = F.grid_sample(source, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

        brightness = (1 + signed(4) * cfg.brightness).view(-1, 1, 1, 1)
        contrast = (1 + signed(5) * cfg.contrast).view(-1, 1, 1, 1)
        saturation = (1 + signed(6) * cfg.saturation).view(-1, 1, 1, 1)
        views = views * brightness
        mean = views.mean(dim=(1, 2, 3), keepdim=True)
        views = (views - mean) * contrast + mean
        gray = views.mean(dim=1, keepdim=True)
        views = (views - gray) * saturation + gray
        return views + noise * (u[:, 7] * cfg.noise).view(-1, 1, 1, 1)

    def _draw(self, batch: int, device: torch.device,
              generators: Sequence[torch.Generator] | None) -> tuple[torch.Tensor, torch.Tensor]:
        shape_u, shape_noise = (self.config.views, 8), (self.config.views, 3, self.output_size, self.output_size)
        if generators is None:
            return torch.rand(batch * shape_u[0], 8, device=device), torch.randn(batch * shape_u[0], *shape_noise[1:], device=device)
        if len(generators) != batch:
            raise ValueError(f"got {len(generators)} generators for {batch} images")
        u = [torch.rand(shape_u, generator=g, device=g.device) for g in generators]
        noise = [torch.randn(shape_noise, generator=g, device=g.device) for g in generators]
        return torch.cat(u).to(device), torch.cat(noise).to(device)

    def _prefilter(self, images: torch.Tensor) -> torch.Tensor:
        """Antialiased downscale of large renders, so bilinear sampling of crops does not alias."""
        short = min(images.shape[-2:])
        wanted = math.ceil(self.output_size / self.config.crop_scale[0])
        if short <= wanted:
            return images
        factor = wanted / short
        size = (round(images.shape[-2] * factor), round(images.shape[-1] * factor))
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
