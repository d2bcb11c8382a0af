"""Shared pieces of the node layer: socket types, the category, the schema helper, image layout.

Our objects travel between our nodes as prefixed custom types, never as ComfyUI's CLIP or
CLIP_VISION (core nodes would accept them and crash). IMAGE is converted to the engine's layout
once, here: ComfyUI (B, H, W, C) float in [0, 1] <-> engine (B, 3, H, W) float in [0, 1].
"""

from __future__ import annotations

import dataclasses
from enum import Enum

import torch
from comfy_api.latest import io

CATEGORY = "CLIP Inversion"

# Custom socket types (the names users see on links).
ClipType = io.Custom("INVERSION_CLIP")  # nodes.comfy_bridge.InversionClip
TargetType = io.Custom("INVERSION_TARGET")  # inversion_core.Target
InrType = io.Custom("INVERSION_INR")  # inversion_core.FinerINR (on the intermediate device)
InrSettingsType = io.Custom("INVERSION_INR_SETTINGS")  # inversion_core.INRConfig
ScheduleSettingsType = io.Custom("INVERSION_SCHEDULE_SETTINGS")  # inversion_core.ScheduleConfig
AugmentSettingsType = io.Custom("INVERSION_AUGMENT_SETTINGS")  # inversion_core.AugmentConfig
PerformanceSettingsType = io.Custom("INVERSION_PERFORMANCE_SETTINGS")  # nodes.settings.PerformanceConfig
BankType = io.Custom("INVERSION_BANK")  # inversion_core.bank.ReferenceBank
LossType = io.Custom("INVERSION_LOSS")  # a list of engine loss terms (inversion_core.LossTerm protocol)

MAX_SEED = 0xFFFFFFFFFFFFFFFF  # the widget range ComfyUI's samplers use
MAX_SIZE = 4096  # largest width/height a widget accepts, in pixels


def make_schema(**fields) -> io.Schema:
    """``io.Schema(**fields)``, dropping ``search_aliases`` on ComfyUI versions whose Schema lacks it
    (added after 0.3.64; passing an unknown field would fail the whole pack's import)."""
    known = {f.name for f in dataclasses.fields(io.Schema)}
    return io.Schema(**{k: v for k, v in fields.items() if k in known or k != "search_aliases"})


def choice(table: type[Enum], label: str, input_name: str):
    """The engine value behind combo ``label``; a clear error for a value no longer offered."""
    for member in table:
        if member.value == label:
            return member
    raise ValueError(f"{input_name} must be one of {[m.value for m in table]}, got {label!r}")


def image_to_engine(image: torch.Tensor, input_name: str) -> torch.Tensor:
    """ComfyUI IMAGE (B, H, W, C) -> engine (B, 3, H, W) float32; grey is repeated, alpha dropped."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"{input_name} must be an IMAGE of shape [batch, height, width, 1|3|4], got {shape}")
    if image.shape[0] == 0:
        raise ValueError(f"{input_name} is an empty image batch")
    pixels = image[..., :3] if image.shape[-1] >= 3 else image.expand(*image.shape[:-1], 3)
    return pixels.movedim(-1, 1).float()


def image_to_comfy(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Engine (B, 3, H, W) -> ComfyUI IMAGE (B, H, W, 3) float32 in [0, 1], detached, on ``device``."""
    return images.detach().clamp(0, 1).movedim(1, -1).to(device=device, dtype=torch.float32).contiguous()
