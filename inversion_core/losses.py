"""The inversion objective: cosine distance between the views' mean embedding and the target.

CLIP⁻¹: the n view embeddings of an image are L2-normalised, averaged and
re-normalised into one embedding e, and the loss is Σ_t w_t (1 - cos(e, e_t)) over the target's
terms (negative w_t pushes away). Extra terms (blending toward real image embeddings, a content
term for style transfer) follow the :class:`LossTerm` protocol and return one value per image.
"""

from __future__ import annotations

import math
from typing import Mapping, Protocol, Sequence

import torch
import torch.nn.functional as F

from .clip_models import ClipBundle


class LossTerm(Protocol):
    """An extra term of the objective, evaluated once per step for the whole batch."""

    name: str

    def __call__(self, render: torch.Tensor, embeddings: Mapping[str, torch.Tensor],
                 clips: Sequence[ClipBundle]) -> torch.Tensor:
        """render (B, 3, H, W); embeddings: CLIP identity -> (B, D) view-mean embedding.
        Returns the weighted term, shape (B,)."""
        ...


def mean_view_embedding(view_embeddings: torch.Tensor, views: int) -> torch.Tensor:
    """(B * n, D) unit-norm view embeddings (image-major) -> (B, D): mean over views, re-normalised."""
    per_image = view_embeddings.reshape(-1, views, view_embeddings.shape[-1])  # (B, n, D)
    return F.normalize(per_image.mean(dim=1), dim=-1)


def target_loss(embedding: torch.Tensor, target_vectors: torch.Tensor, target_weights: torch.Tensor) -> torch.Tensor:
    """Σ_t w_t (1 - cos(e, e_t)) per image.

    embedding (B, D) unit-norm; target_vectors (B, T, D) unit-norm; target_weights (B, T), zero for
    padding. Returns (B,).
    """
    cosine = torch.einsum("bd,btd->bt", embedding, target_vectors)
    return (target_weights * (1 - cosine)).sum(dim=1)


class ContentLoss:
    """Mean squared error between a blurred render and a blurred content image.

    Comparing at ``resolution`` (a downsampled copy) constrains layout and colour masses while
    leaving texture free for the style target: the content term of our style transfer.
    """

    name = "content"

    def __init__(self, content: torch.Tensor, weight: float = 1.0, resolution: int = 32) -> None:
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"content weight must be a finite number >= 0, got {weight}")
        self.weight = weight
        self.resolution = resolution
        self.reference = self._low_pass(content.detach().float().clone())

    def _low_pass(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        scale = self.resolution / max(height, width)
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)

    def __call__(self, render: torch.Tensor, embeddings: Mapping[str, torch.Tensor],
                 clips: Sequence[ClipBundle]) -> torch.Tensor:
        reference = self.reference.to(render.device)
        return self.weight * (self._low_pass(render) - reference).pow(2).mean(dim=(1, 2, 3))
