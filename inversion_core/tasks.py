"""The four tasks built from one engine: text-to-image, reconstruction, style transfer, editing.

Each task only decides the target, the starting INR and any extra loss term, then calls
:func:`optimise.invert`. Defaults that are ours (content weight, edit strength, fit steps) are
documented where they are declared.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch
import torch.nn.functional as F

from .bank import ReferenceBank
from .bank_guidance import BankOptions, prepare_text_to_image
from .clip_models import ClipBundle
from .fitting import FitCallback, fit_inr_to_image
from .inr import FinerINR
from .losses import ContentLoss, LossTerm
from .optimise import InversionResult, RunConfig, StepCallback, invert
from .schedules import ScheduleConfig
from .targets import Target, TargetTerm, check_pixels, combine_targets, image_target, text_target

Clips = ClipBundle | Sequence[ClipBundle]
DEFAULT_FIT_STEPS = 300  # pixel-regression steps before style transfer / editing (ours)
DEFAULT_CONTENT_WEIGHT = 4.0  # style transfer: weight of the low-resolution content MSE (ours)
# style transfer: the content term compares render and content at this fraction of the render's long
# side, 32 px at the 224-px default (ours). A fraction, not a pixel count, so a render at another
# size keeps the same balance of layout and style (the rest of the objective is resolution-free).
CONTENT_SCALE = 32 / 224
DEFAULT_EDIT_STRENGTH = 1.0  # edit: α in e_image + α (e_edit - e_source) (ours)
DEFAULT_EDIT_STEPS = 100  # edit: steps from the fitted image; few, so the image stays recognisable (ours)
# edit: peak learning rate, a tenth of text-to-image's (ours). Adam moves every weight by about lr per
# step whatever its gradient, and a fitted FINER INR's hidden weights are ~0.003: at 1e-3 the first
# steps turn the image into noise (toy-world edit benchmark, benchmarks/toyworld/README.md).
DEFAULT_EDIT_LR = 1e-4
# edit's run when no config is given; derive yours from it (dataclasses.replace(EDIT_CONFIG, width=...))
# to keep the edit's steps and rate: a plain RunConfig() carries text-to-image's 400 steps at 1e-3.
EDIT_CONFIG = RunConfig(steps=DEFAULT_EDIT_STEPS, schedule=ScheduleConfig(lr=DEFAULT_EDIT_LR))


def prompt_target(prompt: str, negative_prompt: str | None = None, negative_weight: float = 0.5) -> Target:
    """A text target, optionally pushed away from a negative prompt."""
    target = text_target(prompt)
    if negative_prompt:
        target = combine_targets(target, text_target(negative_prompt, weight=-abs(negative_weight)))
    return target


def text_to_image(
    clips: Clips,
    prompts: str | Sequence[str],
    config: RunConfig = RunConfig(),
    *,
    negative_prompt: str | None = None,
    seed: int | Sequence[int] = 0,
    loss_terms: Sequence[LossTerm] = (),
    callback: StepCallback | None = None,
    bank: ReferenceBank | None = None,
    bank_options: BankOptions = BankOptions(),
    init: FinerINR | None = None,
) -> InversionResult:
    """One image per prompt, optimised together as a batch.

    With a reference ``bank`` the three CLIP⁻¹ stabilisers apply, each switchable in
    ``bank_options``: Procrustes projection of the text target, the blending loss toward real
    image embeddings, and the AWP seed INR as the starting point. Without a bank this is plain
    CLIP⁻¹ (random init). An explicit ``init`` (one INR, or one per prompt: a previous result to
    refine, or seeds fitted elsewhere) is the starting point instead of the bank's seed."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    targets = [prompt_target(p, negative_prompt) for p in prompts]
    if bank is not None:
        options = dataclasses.replace(bank_options, use_seed=False) if init is not None else bank_options
        guidance = prepare_text_to_image(bank, clips, targets, config.inr, options)
        targets, init = guidance.targets, guidance.init if init is None else init
        loss_terms = [*loss_terms, *guidance.loss_terms]
    return invert(clips, targets, config, init=init, seed=seed, loss_terms=loss_terms, callback=callback)


def reconstruct(
    clips: Clips,
    images: torch.Tensor,
    config: RunConfig = RunConfig(),
    *,
    seed: int | Sequence[int] = 0,
    callback: StepCallback | None = None,
) -> InversionResult:
    """What CLIP keeps of an image: invert its CLIP image embedding from a random INR."""
    images = _as_batch(images, "images")
    targets = [image_target(image) for image in images]
    return invert(clips, targets, config, seed=seed, callback=callback)


def style_transfer(
    clips: Clips,
    content: torch.Tensor,
    style: str | torch.Tensor | Target,
    config: RunConfig = RunConfig(),
    *,
    content_weight: float = DEFAULT_CONTENT_WEIGHT,
    fit_steps: int = DEFAULT_FIT_STEPS,
    seed: int = 0,
    callback: StepCallback | None = None,
    fit_callback: FitCallback | None = None,
) -> InversionResult:
    """Start from an INR fitted to ``content`` and optimise toward ``style`` (a prompt, an image or
    any Target) while a low-resolution content term (at ``CONTENT_SCALE`` of the render) keeps the layout.

    ``fit_callback(step, total)`` reports the fitting phase (raise in it to cancel)."""
    content = _as_batch(content, "content")
    if content.shape[0] != 1:
        raise ValueError(f"style transfer takes one content image, got {content.shape[0]}")
    config = _sized_like(config, content)
    if isinstance(style, str):
        style = text_target(style)
    elif not isinstance(style, Target):
        style = image_target(_as_batch(style, "style")[0])
    resolution = max(1, round(CONTENT_SCALE * max(config.width, config.height)))
    loss = ContentLoss(content, weight=content_weight, resolution=resolution)  # checks the weight before the fit
    init = fit_inr_to_image(_resized(content, config, clips), config.inr, steps=fit_steps, seed=seed,
                            callback=fit_callback)
    return invert(clips, [style], config, init=init, seed=seed, loss_terms=[loss], callback=callback)


def edit_target(image: torch.Tensor, edit_prompt: str, source_prompt: str | None = None,
                strength: float = DEFAULT_EDIT_STRENGTH) -> Target:
    """normalize(e_image + α (e_edit - e_source)) per CLIP; without a source prompt,
    normalize(e_image + α e_edit)."""
    pixels = _as_batch(image, "image")[:1].detach().float().clone()
    if not edit_prompt or not edit_prompt.strip():
        raise ValueError("edit prompt is empty: describe the change, e.g. 'a blue square'")
    if not math.isfinite(strength):
        raise ValueError(f"edit strength must be a finite number, got {strength}; 1 is a full edit, 0 none")

    def embed(clip: ClipBundle) -> torch.Tensor:
        with torch.no_grad():
            e_image = clip.encode_image(pixels.to(clip.device))[0]
        e_edit = clip.encode_text([edit_prompt.strip()])[0]
        direction = e_edit - clip.encode_text([source_prompt.strip()])[0] if source_prompt else e_edit
        return F.normalize(e_image + strength * direction, dim=-1)

    label = f"edit({edit_prompt!r}" + (f" - {source_prompt!r}" if source_prompt else "") + f", α={strength:g})"
    return Target((TargetTerm(label, 1.0, embed),))


def edit(
    clips: Clips,
    image: torch.Tensor,
    edit_prompt: str,
    config: RunConfig | None = None,
    *,
    source_prompt: str | None = None,
    strength: float = DEFAULT_EDIT_STRENGTH,
    fit_steps: int = DEFAULT_FIT_STEPS,
    seed: int = 0,
    callback: StepCallback | None = None,
    fit_callback: FitCallback | None = None,
) -> InversionResult:
    """Text-guided edit: fit an INR to ``image``, then a few steps toward the edited embedding.

    ``config`` defaults to ``EDIT_CONFIG`` (100 steps at lr 1e-4); a config passed is used as it is,
    so build it with ``dataclasses.replace(EDIT_CONFIG, ...)`` to keep the edit's gentle rate.
    """
    image = _as_batch(image, "image")
    if image.shape[0] != 1:
        raise ValueError(f"edit takes one image, got {image.shape[0]}")
    config = _sized_like(config or EDIT_CONFIG, image)
    target = edit_target(image, edit_prompt, source_prompt, strength)
    init = fit_inr_to_image(_resized(image, config, clips), config.inr, steps=fit_steps, seed=seed,
                            callback=fit_callback)
    return invert(clips, [target], config, init=init, seed=seed, callback=callback)


def _as_batch(images: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name} must be a tensor of shape (B, 3, H, W) in [0, 1], got {type(images).__name__}")
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{name} must have shape (B, 3, H, W) or (3, H, W), got {tuple(images.shape)}")
    return check_pixels(images, name)


def _sized_like(config: RunConfig, image: torch.Tensor) -> RunConfig:
    """Keep the render's pixel budget (config width x height) but take the image's aspect ratio."""
    height, width = image.shape[-2:]
    area = config.width * config.height
    new_height = max(8, round(height * (area / (height * width)) ** 0.5))
    return dataclasses.replace(config, height=new_height, width=max(8, round(new_height * width / height)))


def _resized(image: torch.Tensor, config: RunConfig, clips: Clips) -> torch.Tensor:
    """``image`` at the render size, on the CLIP's device (where the fit runs)."""
    device = (clips if isinstance(clips, ClipBundle) else clips[0]).device
    return F.interpolate(image.float().to(device), size=(config.height, config.width), mode="bilinear",
                         align_corners=False, antialias=True)
