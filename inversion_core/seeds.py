"""Per-image seeds, one rule for every optimisation: an int ``seed`` seeds image i with ``seed + i``,
so a batch equals its members run alone.

Seeds live in torch's unsigned 64-bit seed space: any Python int is reduced modulo 2**64 (torch
itself maps -1 to 2**64 - 1), so a seed near the top of a UI's seed widget plus an image index is
still a valid seed instead of an overflow error from ``manual_seed``. (torch's CPU generator reads
only the low 32 bits of a seed, as ComfyUI's own CPU noise does; CUDA generators read all 64.)
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch

SEED_SPACE = 2**64  # torch.Generator.manual_seed takes [-2**63, 2**64); we use its unsigned half


def image_seeds(seed: int | Sequence[int], count: int) -> list[int]:
    """``count`` per-image seeds from one int (``seed + i``) or from one seed per image."""
    if isinstance(seed, numbers.Integral):
        return [(int(seed) + i) % SEED_SPACE for i in range(count)]
    seeds = [int(s) % SEED_SPACE for s in seed]
    if len(seeds) != count:
        raise ValueError(f"got {len(seeds)} seeds for {count} images; pass one seed per image or a single int")
    return seeds


def seed_generators(seeds: Sequence[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per seed on ``device`` (CPU generators give the same draws on every machine)."""
    return [torch.Generator(device=device).manual_seed(s) for s in seeds]
