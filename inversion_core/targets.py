"""Inversion targets: what the rendered image's CLIP embedding should match.

A target is a weighted list of terms (a prompt, an image, or a ready embedding). Terms stay
unresolved until a CLIP model is known, because each model of an ensemble needs the target in its
own embedding space. Negative weights push away (negative prompts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from .clip_models import ClipBundle

# A function that turns a CLIP into one unit-norm embedding (D,) for that CLIP.
Embedder = Callable[[ClipBundle], torch.Tensor]


@dataclass(frozen=True)
class TargetTerm:
    label: str  # what the user sees in logs and errors
    weight: float
    embed: Embedder = field(compare=False, repr=False)


@dataclass(frozen=True)
class Target:
    """A weighted set of terms; ``embeddings(clip)`` resolves them for one CLIP model."""

    terms: tuple[TargetTerm, ...]

    def embeddings(self, clip: ClipBundle) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, D) unit-norm embeddings and (T,) weights for ``clip``."""
        vectors = torch.stack([term.embed(clip).to(clip.device, torch.float32).reshape(-1) for term in self.terms])
        weights = torch.tensor([term.weight for term in self.terms], device=clip.device)
        return F.normalize(vectors, dim=-1), weights

    def direction(self, clip: ClipBundle) -> torch.Tensor:
        """normalize(Σ w_t e_t): the single direction the target points to (used for retrieval)."""
        vectors, weights = self.embeddings(clip)
        return F.normalize((weights[:, None] * vectors).sum(0), dim=-1)

    def __str__(self) -> str:
        return " + ".join(f"{t.weight:g}·{t.label}" for t in self.terms)


def _check_weight(weight: float) -> float:
    weight = float(weight)
    if not torch.isfinite(torch.tensor(weight)):
        raise ValueError(f"target weight must be a finite number, got {weight}")
    return weight


def text_target(prompt: str, weight: float = 1.0) -> Target:
    """The CLIP text embedding of ``prompt``."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt is empty: type what the image should show, e.g. 'a red circle on the left'")
    text = prompt.strip()
    return Target((TargetTerm(repr(text), _check_weight(weight), lambda clip: clip.encode_text([text])[0]),))


def check_pixels(images: torch.Tensor, name: str) -> torch.Tensor:
    """``images`` clamped to [0, 1] (resampling overshoots a little), or a ValueError naming ``name``
    for what is clearly not [0, 1] pixels: a uint8 or 0..255 tensor, or [-1, 1] ones, would otherwise
    reach CLIP as a saturated image without complaint."""
    if not torch.is_floating_point(images):
        raise ValueError(f"{name} must be a float tensor in [0, 1], got dtype {images.dtype}; "
                         f"convert with images.float() / 255")
    if images.numel():
        low, high = (v.item() for v in images.detach().aminmax())
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"{name} holds NaN or infinite values")
        if high > 2:
            raise ValueError(f"{name} must hold pixels in [0, 1], got values up to {high:g}: divide 0..255 pixels "
                             "by 255")
        if low < -0.5:
            raise ValueError(f"{name} must hold pixels in [0, 1], got values down to {low:g}: map [-1, 1] pixels "
                             "with (images + 1) / 2")
    return images.clamp(0, 1)


def image_target(image: torch.Tensor, weight: float = 1.0) -> Target:
    """The CLIP image embedding of ``image`` ((3, H, W) or (1, 3, H, W) in [0, 1])."""
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"image target must be one image of shape (3, H, W) or (1, 3, H, W), got {tuple(image.shape)}")
    pixels = check_pixels(image, "image target").detach().float().clone()

    def embed(clip: ClipBundle) -> torch.Tensor:
        with torch.no_grad():
            return clip.encode_image(pixels.to(clip.device))[0]

    return Target((TargetTerm(f"image{tuple(pixels.shape[-2:])}", _check_weight(weight), embed),))


def embedding_target(embedding: torch.Tensor, clip_identity: str, weight: float = 1.0, label: str = "embedding") -> Target:
    """A ready embedding (e.g. a Procrustes-projected text embedding), valid for one CLIP only."""
    vector = F.normalize(embedding.detach().float().reshape(-1).clone(), dim=-1)

    def embed(clip: ClipBundle) -> torch.Tensor:
        if clip.identity != clip_identity:
            raise ValueError(
                f"target {label!r} was computed with CLIP {clip_identity!r} but is used with {clip.identity!r}; "
                "recompute it with the CLIP you optimise with"
            )
        if vector.numel() != clip.embed_dim:
            raise ValueError(f"target {label!r} has {vector.numel()} dims, the CLIP has {clip.embed_dim}")
        return vector

    return Target((TargetTerm(label, _check_weight(weight), embed),))


def combine_targets(*targets: Target, weights: list[float] | None = None) -> Target:
    """One target holding the terms of all ``targets``, each optionally re-weighted."""
    if not targets:
        raise ValueError("combine_targets needs at least one target")
    if weights is not None and len(weights) != len(targets):
        raise ValueError(f"got {len(weights)} weights for {len(targets)} targets")
    scale = weights or [1.0] * len(targets)
    terms = tuple(
        TargetTerm(term.label, term.weight * _check_weight(s), term.embed)
        for target, s in zip(targets, scale)
        for term in target.terms
    )
    if all(term.weight <= 0 for term in terms):
        raise ValueError("a combined target needs at least one term with a positive weight (all are <= 0)")
    return Target(terms)
