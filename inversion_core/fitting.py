"""Fitting INRs to given images by pixel regression: the starting point for style transfer and edits.

Each step regresses the INRs on a random subset of pixel coordinates (stochastic coordinate
sampling), so a step costs the same at any image size, and the continuous coordinates match the
ones :func:`inr.coordinate_grid` renders. Adam with a flat learning rate; the values are ours.
"""

from __future__ import annotations

from typing import Callable

import torch

from ._grad import autograd_enabled
from .inr import FinerINR, INRConfig, coordinate_grid
from .seeds import image_seeds

FitCallback = Callable[[int, int], object]  # (step, total); raise to cancel


def fit_inr_to_image(
    images: torch.Tensor,
    config: INRConfig = INRConfig(),
    *,
    steps: int = 300,
    lr: float = 1e-3,
    pixels_per_step: int = 16384,
    seed: int = 0,
    init: FinerINR | None = None,
    callback: FitCallback | None = None,
) -> FinerINR:
    """One INR per image of ``images`` (B, 3, H, W) in [0, 1], fitted by mean squared error.

    ``callback(step, total)`` is called after every step (progress and cancellation: raise to stop).
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
    if steps < 1:
        raise ValueError(f"fit steps must be >= 1, got {steps}")
    batch, _, height, width = images.shape
    device = images.device
    seeds = image_seeds(seed, batch)
    with autograd_enabled():
        pixels = images.detach().float().clone().reshape(batch, 3, -1).transpose(1, 2)  # (B, H*W, 3)
        if init is None:
            inr = FinerINR.seeded(config, seeds, device)
        else:
            inr = init.clone().to(device)
        coords = coordinate_grid(height, width, device)  # (H*W, 2)
        optimizer = torch.optim.Adam(inr.parameters(), lr=lr)
        sampler = torch.Generator(device=device).manual_seed(seeds[0])
        count = min(pixels_per_step, height * width)
        for step in range(steps):
            index = torch.randperm(height * width, generator=sampler, device=device)[:count]
            prediction = inr(1, count, coords=coords[index])  # (B, 3, 1, count)
            target = pixels[:, index].transpose(1, 2).unsqueeze(2)  # (B, 3, 1, count)
            loss = (prediction - target).pow(2).mean(dim=(1, 2, 3)).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if callback is not None:
                callback(step + 1, steps)
    return inr
