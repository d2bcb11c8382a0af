"""Seed INRs: FINER networks fitted to blurred bank images with Adversarial Weight Perturbation.

CLIP^-1 (D'Orazio et al., arXiv 2505.23161) starts text-to-image inversion from a
*seed*: an INR fitted offline to a blurred copy of the bank image whose caption is closest to
the prompt. The seed is fitted with Adversarial Weight Perturbation (AWP; Wu, Xia & Wang,
"Adversarial Weight Perturbation Helps Robust Generalization", NeurIPS 2020) so that it sits in
a flat region of weight space and survives the large updates of the inversion that follows::

    min_φ  max_{‖v_l‖ ≤ γ ‖W_l‖ ∀l}  L(φ + v),     L = mean-squared error to the blurred image

with one ascent step per iteration, as in AWP: for each layer l and each image b,
``v_l = γ ‖W_l‖_F · g_l / ‖g_l‖_F`` with ``g_l = ∂L/∂W_l`` at the current weights; the descent
step then uses ``∇L(φ + v)`` and the perturbation is removed before the optimiser updates φ
(SAM-style ordering; AWP's reference code removes it right after the update, which differs by
one step's second-order term). As in AWP's reference code only weight matrices are perturbed,
not biases.

The batch dimension of :class:`~inversion_core.inr.FinerINR` holds one independent network per
image; the loss is the sum over images of each image's mean error, every norm is taken per image
and each image's initialisation has its own random seed, so fitting B images together gives the
same seeds as fitting each alone (up to floating-point summation order).

Defaults in :class:`SeedConfig` are ours (the paper does not publish γ, blur, steps, lr or the
fitting resolution).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ._config import check_config
from ._grad import autograd_enabled
from .inr import FinerINR, INRConfig
from .seeds import image_seeds

__all__ = [
    "SeedConfig",
    "gaussian_blur",
    "awp_perturbation",
    "prepare_seed_targets",
    "fit_seeds",
    "psnr",
    "psnr_under_weight_noise",
]


@dataclass(frozen=True)
class SeedConfig:
    """How seed INRs are fitted (all defaults ours; the paper leaves them open)."""

    gamma: float = 0.002  # AWP radius relative to each layer's weight norm, ‖v_l‖ = γ‖W_l‖ (0 = plain fit).
    #   Ours, measured at the default INR (3 x 256, 64 px, σ = 2) with lr 1e-3: γ = 0 fits to ~40 dB but loses
    #   ~6 dB under 1 % random weight noise; γ = 0.002 fits to ~32 dB and loses ~0.2 dB;
    #   γ = 0.004 / 0.01 give ~27 / ~24 dB. Wider INRs need smaller γ.
    steps: int = 300  # optimiser iterations per seed (each costs two forward/backward passes when γ > 0)
    lr: float = 3e-4  # Adam learning rate, cosine-decayed to lr/10 over `steps`. Ours: on 8 toy-world
    #   references (64 px, γ = 0.002), 1e-3 left the init's high frequencies as visible noise (25.9 dB
    #   after 200 steps); 3e-4 gave clean seeds (37.1 dB after 150). 1e-4 underfits in 100 steps.
    size: int = 64  # fitting resolution in pixels (square); the seed renders at any size afterwards
    blur_sigma: float = 2.0  # Gaussian blur σ in pixels at `size` (0 = no blur): seeds carry layout and colour

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 <= self.gamma <= 1.0:
            problems.append(f"gamma must be in [0, 1] (relative weight-norm radius), got {self.gamma}")
        if not 1 <= self.steps <= 100_000:
            problems.append(f"steps must be in 1..100000, got {self.steps}")
        if not 0.0 < self.lr <= 1.0:
            problems.append(f"lr must be in (0, 1], got {self.lr}")
        if not 8 <= self.size <= 1024:
            problems.append(f"size must be in 8..1024 pixels, got {self.size}")
        if not 0.0 <= self.blur_sigma <= self.size / 4:
            problems.append(f"blur_sigma must be in [0, size/4 = {self.size / 4:g}] pixels, got {self.blur_sigma}")
        check_config("SeedConfig", problems)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur, kernel radius ⌈3σ⌉, reflect padding; (B, C, H, W) → same. σ=0 is identity."""
    if sigma <= 0:
        return images
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    B, C, H, W = images.shape
    if radius >= min(H, W):
        raise ValueError(f"gaussian_blur: sigma={sigma} needs a kernel radius {radius} smaller than the image "
                         f"({H}x{W}); lower sigma or fit at a larger size.")
    out = images.reshape(B * C, 1, H, W)
    out = F.conv2d(F.pad(out, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return out.reshape(B, C, H, W)


def awp_perturbation(weights: list[torch.Tensor], grads: list[torch.Tensor], gamma: float) -> list[torch.Tensor]:
    """One AWP ascent step: ``v_l[b] = γ ‖W_l[b]‖_F · g_l[b] / ‖g_l[b]‖_F`` per layer l and image b.

    Source: Wu et al. 2020 (AWP), layer-wise relative radius. weights/grads: lists of (B, ...)
    tensors (one per layer; the leading dimension indexes independent networks). A zero gradient
    gives a zero perturbation. Returns one (B, ...) tensor per layer.
    """
    deltas = []
    for w, g in zip(weights, grads):
        dims = tuple(range(1, w.ndim))
        w_norm = w.detach().norm(dim=dims, keepdim=True)
        g_norm = g.norm(dim=dims, keepdim=True)
        deltas.append(gamma * w_norm * g / g_norm.clamp_min(1e-12))
    return deltas


def _per_image_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).pow(2).flatten(1).mean(dim=1)  # (B,)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB for images in [0, 1]: 10 log10(1 / MSE); (B,)."""
    return -10.0 * torch.log10(_per_image_mse(pred, target).clamp_min(1e-12))


def prepare_seed_targets(images: torch.Tensor, config: SeedConfig) -> torch.Tensor:
    """Resize (B, 3, H, W) in [0, 1] to config.size² (antialiased bilinear) and blur with config.blur_sigma."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"seed images must be (B, 3, H, W) in [0, 1], got shape {tuple(images.shape)}")
    x = images.float()
    if x.shape[-2:] != (config.size, config.size):
        x = F.interpolate(x, size=(config.size, config.size), mode="bilinear", align_corners=False, antialias=True)
    return gaussian_blur(x, config.blur_sigma).clamp(0, 1)


def fit_seeds(
    images: torch.Tensor,
    inr_config: INRConfig,
    config: SeedConfig = SeedConfig(),
    *,
    seeds: Sequence[int] | int = 0,
    callback: Callable[[int, torch.Tensor], object] | None = None,
) -> tuple[FinerINR, torch.Tensor]:
    """Fit one seed INR per image to its blurred copy, with AWP when ``config.gamma > 0``.

    Args:
        images: (B, 3, H, W) in [0, 1], any size (resized to ``config.size`` then blurred).
        inr_config: architecture of the seeds; it must equal the INR configuration later used for
            generation (the bank records it and checks it when a seed is used).
        seeds: one random seed per image for its INR initialisation (an int s gives s + i to
            image i), drawn on the CPU, so a seed does not depend on its batch or device.
        callback: ``callback(step, per_image_loss (B,))`` after every step; raise in it to cancel.

    Returns:
        (FinerINR with batch B on the images' device, no gradients; PSNR in dB of each seed
        against its blurred target at ``config.size``, (B,)).
    """
    B = images.shape[0] if images.ndim == 4 else 0
    seeds = image_seeds(seeds, B)
    size = config.size
    with autograd_enabled():
        targets = prepare_seed_targets(images.detach().clone(), config)  # (B, 3, size, size)
        device = targets.device
        inr = FinerINR.seeded(inr_config, seeds, device)
        weights = list(inr.weights)
        optimiser = torch.optim.Adam(inr.parameters(), lr=config.lr)
        for step in range(config.steps):
            for group in optimiser.param_groups:  # cosine decay lr -> lr/10 (ours)
                group["lr"] = config.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * step / config.steps)))
            deltas = None
            if config.gamma > 0:  # ascent: v_l = γ‖W_l‖ g_l/‖g_l‖ at the current weights
                loss = _per_image_mse(inr(size, size), targets).sum()
                grads = torch.autograd.grad(loss, weights)
                deltas = awp_perturbation(weights, grads, config.gamma)
                with torch.no_grad():
                    for w, v in zip(weights, deltas):
                        w.add_(v)
            optimiser.zero_grad(set_to_none=True)
            per_image = _per_image_mse(inr(size, size), targets)  # (B,) at φ + v
            per_image.sum().backward()
            if deltas is not None:
                with torch.no_grad():
                    for w, v in zip(weights, deltas):
                        w.sub_(v)
            optimiser.step()
            if callback is not None:
                callback(step, per_image.detach())
        inr.requires_grad_(False)
        with torch.no_grad():
            quality = psnr(inr(size, size), targets)
    return inr, quality


@torch.no_grad()
def psnr_under_weight_noise(
    inr: FinerINR,
    targets: torch.Tensor,
    relative_sigma: float,
    *,
    trials: int = 8,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean PSNR (B,) of ``inr`` against ``targets`` (B, 3, H, W) after random weight noise.

    Each trial adds to every weight matrix (per image) a Gaussian direction rescaled to norm
    ``relative_sigma · ‖W_l‖`` — the random counterpart of AWP's adversarial radius — renders at
    the targets' size and measures PSNR. Used to check that AWP seeds are flatter.
    """
    H, W = targets.shape[-2:]
    noisy = inr.clone()
    clean = [w.detach().clone() for w in inr.weights]
    total = torch.zeros(inr.batch_size, device=targets.device)
    for _ in range(trials):
        for w_noisy, w in zip(noisy.weights, clean):
            noise = torch.randn(w.shape, generator=generator, device="cpu").to(w.device)
            dims = tuple(range(1, w.ndim))
            noise = noise * (relative_sigma * w.norm(dim=dims, keepdim=True) / noise.norm(dim=dims, keepdim=True))
            w_noisy.copy_(w + noise)
        total += psnr(noisy(H, W), targets)
    return total / trials
