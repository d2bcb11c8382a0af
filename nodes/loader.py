"""Load CLIP for Inversion: an open_clip image+text pair from the model folder or a pretrained tag."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
from comfy_api.latest import io

from ..inversion_core import load_clip
from . import comfy_bridge
from .common import CATEGORY, ClipType, choice, make_schema

# open_clip pretrained weights offered without a local file (downloaded once into the Hugging Face
# cache when the machine is online). ViT-B-32 first: the scale the paper tested.
PRETRAINED = (
    ("ViT-B-32", "laion2b_s34b_b79k"),
    ("ViT-B-32", "openai"),
    ("ViT-B-32", "datacomp_xl_s13b_b90k"),
    ("ViT-B-16", "laion2b_s34b_b88k"),
    ("ViT-B-16", "openai"),
    ("ViT-L-14", "laion2b_s32b_b82k"),
    ("ViT-L-14", "openai"),
)


@dataclass(frozen=True)
class ModelSource:
    """What a ``model`` combo entry loads: a file of the model folder, or an open_clip tag."""

    file: str | None = None
    architecture: str | None = None
    tag: str | None = None


def pretrained_label(architecture: str, tag: str) -> str:
    return f"open_clip/{architecture}/{tag}"


def model_sources() -> dict[str, ModelSource]:
    """The ``model`` combo's table: label -> source; local files first, then pretrained tags."""
    table = {name: ModelSource(file=name) for name in comfy_bridge.model_files()}
    table.update({pretrained_label(a, t): ModelSource(architecture=a, tag=t) for a, t in PRETRAINED})
    return table


class Device(str, Enum):
    DEFAULT = "default"  # ComfyUI's device (the GPU when there is one), managed with other models
    CPU = "cpu"


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"


class LoadClipForInversion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        sources = list(model_sources())
        return make_schema(
            node_id="CLIPInversionLoadCLIP",
            display_name="Load CLIP for Inversion",
            category=f"{CATEGORY}/loaders",
            description=(
                "Loads a matched open_clip pair (image tower + text tower) for CLIP inversion. "
                "ComfyUI's own CLIP (a diffusion model's text encoder) and CLIP_VISION (image tower only) "
                "are not such a pair, so this loader reads open_clip weights itself: a file from "
                "models/clip_inversion (weights plus their open_clip config .json) or an open_clip "
                "pretrained tag (downloaded once when online). The model is frozen; ComfyUI moves it "
                "to the GPU when a run needs it and can unload it to make room for other models."
            ),
            search_aliases=["open_clip", "clip loader", "inversion clip", "clip inverse"],
            inputs=[
                io.Combo.Input(
                    "model",
                    options=sources,
                    default=pretrained_label(*PRETRAINED[0]),
                    tooltip=(
                        "Which CLIP to invert. Files: weights in models/clip_inversion with their open_clip "
                        "config beside them (same name .json) or as open_clip_config.json in their folder; a "
                        ".json alone gives random weights (tests only). 'open_clip/<architecture>/<tag>' "
                        "downloads that pretrained model once (needs internet the first time)."
                    ),
                ),
                io.Combo.Input(
                    "device",
                    options=Device,
                    default=Device.DEFAULT,
                    tooltip=(
                        "default: ComfyUI's device (the GPU when there is one), shared with other models "
                        "through ComfyUI's memory management. cpu: always on the CPU (slow, no VRAM used)."
                    ),
                ),
                io.Combo.Input(
                    "precision",
                    options=Precision,
                    default=Precision.FP32,
                    tooltip=(
                        "Weight precision. fp32: exact, works everywhere. fp16/bf16: half the memory and "
                        "faster on a GPU; avoid on the CPU (slow or unsupported)."
                    ),
                ),
            ],
            outputs=[ClipType.Output(display_name="clip", tooltip="The frozen CLIP pair, for targets and optimisers.")],
        )

    @classmethod
    def validate_inputs(cls, model: str | None = None) -> bool | str:
        if model is None or model in model_sources():
            return True
        folders = ", ".join(comfy_bridge.register_model_folder())
        return (
            f"model {model!r} is not available: put the file in one of {folders} (with its open_clip "
            f"config .json) and refresh, or choose an 'open_clip/...' entry."
        )

    @classmethod
    def execute(cls, model: str, device: str, precision: str) -> io.NodeOutput:
        sources = model_sources()
        if model not in sources:
            raise ValueError(cls.validate_inputs(model=model))
        source = sources[model]
        device_choice = None if choice(Device, device, "device") is Device.DEFAULT else "cpu"
        precision = choice(Precision, precision, "precision").value
        # Built outside inference mode, so weights and constants are normal tensors autograd can use.
        with torch.inference_mode(False):
            if source.file is not None:
                config, weights = comfy_bridge.resolve_model_file(source.file)
                bundle = load_clip(config, weights=weights, device="cpu", precision=precision)
            else:
                bundle = load_clip(source.architecture, weights=source.tag, device="cpu", precision=precision)
        return io.NodeOutput(comfy_bridge.wrap_clip(bundle, model, device_choice))
