"""Blending target and loss: anchor the inversion to the bank's natural-image embeddings.

CLIP^-1 (D'Orazio et al., arXiv 2505.23161) adds to the inversion loss a pull
toward a convex combination of real image embeddings similar to the prompt::

    s_j    = cos(q, e_img_j)  for the k bank images nearest the query q
    w      = softmax(s / τ)
    e_img* = normalize(Σ_j w_j e_img_j)
    L_blend(e*) = β · (1 − cos(e*, e_img*))     (e*: the rendered image's view-averaged embedding)

Ours, not the paper's (k, τ, β are not published): k = 8, τ = 0.01 (CLIP's own learned
temperature, 1 / logit_scale = 1/100), β = 0.25; the query q is the inversion target *after*
Procrustes projection when that is on (it then lies in the image region, where similarities to
image embeddings are meaningful), else the raw text embedding. These are starting values to be
tuned on the toy-world benchmark.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import torch
import torch.nn.functional as F

from .retrieval import DEFAULT_CHUNK_SIZE, cosine_topk

if TYPE_CHECKING:
    from .clip_models import ClipBundle

__all__ = ["DEFAULT_BLEND_K", "DEFAULT_BLEND_TAU", "DEFAULT_BLEND_BETA", "blend_target", "BlendingLoss"]

DEFAULT_BLEND_K = 8  # ours: bank images mixed into the blending target
DEFAULT_BLEND_TAU = 0.01  # ours: softmax temperature on cosine similarities (CLIP's 1/logit_scale)
DEFAULT_BLEND_BETA = 0.25  # ours: weight of the blending term next to the main cosine loss (weight 1)


def blend_target(
    query: torch.Tensor,
    image_embeddings: torch.Tensor,
    k: int = DEFAULT_BLEND_K,
    tau: float = DEFAULT_BLEND_TAU,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """e_img* = normalize(Σ_j softmax(s/τ)_j e_img_j) over the k image embeddings nearest each query.

    Args:
        query: (B, D) query embeddings; image_embeddings: (N, D) unit-norm bank rows (any device).
    Returns:
        (targets (B, D) unit-norm on the query's device, indices (B, k), weights (B, k)).
    """
    if not tau > 0:
        raise ValueError(f"blend temperature tau must be > 0, got {tau}; smaller tau → fewer neighbours count.")
    scores, idx = cosine_topk(query, image_embeddings, k, chunk_size=chunk_size)  # (B, k)
    weights = torch.softmax(scores / tau, dim=-1)
    neighbours = image_embeddings[idx.reshape(-1).to(image_embeddings.device)].to(query.device, torch.float32)
    neighbours = neighbours.reshape(*idx.shape, -1)  # (B, k, D)
    targets = F.normalize((weights.unsqueeze(-1) * neighbours).sum(dim=1), dim=-1)
    return targets, idx, weights


class BlendingLoss:
    """Loss term ``β · (1 − cos(e*, e_img*))`` for the engine's loop (the :class:`~inversion_core.losses.LossTerm`
    protocol: ``name`` and ``__call__(render, embeddings, clips) -> (B,)``).

    ``targets`` (B, D) or (1, D) (broadcast) are blended image embeddings from :func:`blend_target`.
    They live in the embedding space of the CLIP that embedded the bank (``clip_identity``), so
    the term reads that CLIP's view-mean embedding (B, D) from ``embeddings``; in an ensemble the
    other CLIPs are not involved.
    """

    name = "blend"

    def __init__(self, targets: torch.Tensor, clip_identity: str, beta: float = DEFAULT_BLEND_BETA) -> None:
        if targets.ndim != 2:
            raise ValueError(f"BlendingLoss targets must be (B, D) or (1, D), got {tuple(targets.shape)}")
        if not beta >= 0:
            raise ValueError(f"blend weight beta must be >= 0 (0 turns blending off), got {beta}")
        self.targets = F.normalize(targets.detach().float().clone(), dim=-1)
        self.clip_identity = clip_identity
        self.beta = float(beta)

    def loss(self, embedding: torch.Tensor) -> torch.Tensor:
        """β (1 − cos(embedding, target)) per row; embedding (B, D) → (B,)."""
        target = self.targets.to(embedding.device)
        if target.shape[0] not in (1, embedding.shape[0]) or target.shape[1] != embedding.shape[1]:
            raise ValueError(f"BlendingLoss: targets {tuple(target.shape)} do not fit embeddings "
                             f"{tuple(embedding.shape)}; build one target per image (or one for all).")
        return self.beta * (1.0 - F.cosine_similarity(embedding.float(), target, dim=-1))

    def __call__(self, render: torch.Tensor, embeddings: Mapping[str, torch.Tensor],
                 clips: Sequence["ClipBundle"]) -> torch.Tensor:
        if self.clip_identity not in embeddings:
            raise ValueError(
                f"the blending term was built from a bank embedded by CLIP {self.clip_identity!r}, which is "
                f"not among the CLIPs of this run ({sorted(embeddings)}); add that CLIP or turn blending off."
            )
        if self.targets.is_inference():  # built under ComfyUI's inference_mode: keep a normal copy for backward
            self.targets = self.targets.clone()
        return self.loss(embeddings[self.clip_identity])

    def __repr__(self) -> str:
        return f"BlendingLoss(beta={self.beta}, targets={tuple(self.targets.shape)}, clip={self.clip_identity!r})"
