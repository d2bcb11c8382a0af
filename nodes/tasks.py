"""Task nodes: style transfer and text-guided editing, each one engine call.

Both start by fitting an INR to the input image (the fitting phase shows on the same progress bar
and can be cancelled), then optimise it toward a target: a style target plus a content term that
keeps the layout, or an edited embedding e_image + α (e_edit − e_source) for a few steps.
Text-to-image and reconstruction need no node of their own: a Text or Image Target into the
INR Optimizer is exactly those tasks.
"""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..inversion_core import edit, style_transfer
from ..inversion_core.tasks import DEFAULT_CONTENT_WEIGHT, DEFAULT_EDIT_LR, DEFAULT_EDIT_STEPS, DEFAULT_EDIT_STRENGTH
from . import comfy_bridge
from .common import CATEGORY, MAX_SIZE, TargetType, image_to_engine, make_schema
from .optimizer import (
    check_target,
    clip_inputs,
    ensemble_inputs,
    fit_steps_input,
    learning_rate_input,
    node_outputs,
    outputs,
    performance_input,
    run_config,
    schedule_input,
    seed_input,
    settings_inputs,
    steps_input,
    views_input,
)


def resolution_input() -> io.Int.Input:
    return io.Int.Input("resolution", default=224, min=16, max=MAX_SIZE, step=8,
                        tooltip="Render size: the optimised image has about resolution x resolution pixels, with "
                        "the input image's aspect ratio. Render the INR output larger afterwards if needed.")


def one_image(image: torch.Tensor, input_name: str) -> torch.Tensor:
    pixels = image_to_engine(image, input_name)
    if pixels.shape[0] != 1:
        raise ValueError(f"{input_name} must be one image, got a batch of {pixels.shape[0]}; pick one first "
                         "(e.g. with an 'ImageFromBatch' node)")
    return pixels


def _run(task, clips, config, seed: int, fit_steps: int, **task_inputs) -> io.NodeOutput:
    bundles = comfy_bridge.load_for_run(clips, comfy_bridge.estimated_run_bytes(config, 1))
    device = bundles[0].device
    progress = comfy_bridge.RunProgress(config.steps, fit_steps)
    with comfy_bridge.gradient_run(config, 1, device):
        result = task(bundles, config=config, fit_steps=fit_steps, seed=seed,
                      callback=progress.step, fit_callback=progress.fit_step, **task_inputs)
    return node_outputs(result)


class StyleTransfer(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return make_schema(
            node_id="CLIPInversionStyleTransfer",
            display_name="Style Transfer (CLIP⁻¹)",
            category=CATEGORY,
            description=(
                "Repaints a content image toward a style target (a prompt such as 'an oil painting', a style "
                "image, or a mix) with CLIP alone: an INR is fitted to the content image, then optimised toward "
                "the style while a blurred-content term keeps the layout and colour masses."
            ),
            search_aliases=["style transfer", "restyle", "painting", "clip style"],
            is_experimental=True,
            inputs=[
                *clip_inputs(),
                io.Image.Input("content", tooltip="The image to restyle (one image)."),
                TargetType.Input("style", tooltip="The style to move toward: a Text Target ('a watercolour "
                                 "painting'), an Image Target of a style image, or a Combine Targets mix."),
                io.Float.Input("content_weight", default=DEFAULT_CONTENT_WEIGHT, min=0.0, max=100.0, step=0.1,
                               tooltip="How strongly the layout of the content image is kept (weight of a "
                               "low-resolution colour difference). 0 = free to drift; higher = closer to the content."),
                resolution_input(),
                steps_input(),
                seed_input(),
                learning_rate_input(),
                views_input(),
                schedule_input(),
                fit_steps_input("Steps fitting the INR to the content image before restyling. More = a sharper start."),
                *ensemble_inputs(),
                *settings_inputs(),
                performance_input(),
            ],
            outputs=outputs(),
        )

    @classmethod
    def execute(cls, clip, content, style, content_weight: float, resolution: int, steps: int, seed: int,
                learning_rate: float, views: int, schedule: str, fit_steps: int, clip_2=None, clip_3=None,
                inr_settings=None, schedule_settings=None, augment_settings=None, performance=None) -> io.NodeOutput:
        clips = comfy_bridge.as_clips([clip, clip_2, clip_3], ["clip", "clip_2", "clip_3"])
        config = run_config(steps, resolution, resolution, learning_rate, views, schedule, inr_settings,
                            schedule_settings, augment_settings, performance=performance)
        return _run(style_transfer, clips, config, seed, fit_steps, content=one_image(content, "content"),
                    style=check_target(style), content_weight=content_weight)


class TextGuidedEdit(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return make_schema(
            node_id="CLIPInversionEdit",
            display_name="Text-Guided Edit (CLIP⁻¹)",
            category=CATEGORY,
            description=(
                "Edits an image by a text instruction with CLIP alone: an INR is fitted to the image, then "
                "optimised for a few steps toward normalize(e_image + strength · (e_edit − e_source)), so the "
                "picture moves in the direction the prompts describe and stays recognisable."
            ),
            search_aliases=["text edit", "clip edit", "inversion edit"],
            is_experimental=True,
            inputs=[
                *clip_inputs(),
                io.Image.Input("image", tooltip="The image to edit (one image)."),
                io.String.Input("edit_prompt", multiline=True, default="a photo of a cat wearing a red hat",
                                tooltip="What the edited image should show (the whole scene, not just the change)."),
                io.String.Input("source_prompt", multiline=True, default="",
                                tooltip="Optional: what the image shows now. With it the edit follows the difference "
                                "edit − source (changes less of the rest); empty = move toward edit_prompt itself."),
                io.Float.Input("strength", default=DEFAULT_EDIT_STRENGTH, min=0.0, max=5.0, step=0.05,
                               tooltip="α: how far the target moves from the image's own embedding along the edit "
                               "direction. 0 = reconstruct the image; 1 = default; larger = stronger edit."),
                resolution_input(),
                steps_input(default=DEFAULT_EDIT_STEPS),
                seed_input(),
                learning_rate_input(default=DEFAULT_EDIT_LR),
                views_input(),
                schedule_input(),
                fit_steps_input("Steps fitting the INR to the image before editing. More = more faithful start."),
                *ensemble_inputs(),
                *settings_inputs(),
                performance_input(),
            ],
            outputs=outputs(),
        )

    @classmethod
    def validate_inputs(cls, edit_prompt: str | None = None) -> bool | str:
        if edit_prompt is not None and not edit_prompt.strip():
            return "edit_prompt is empty: describe the edited image, e.g. 'a photo of a cat wearing a red hat'"
        return True

    @classmethod
    def execute(cls, clip, image, edit_prompt: str, source_prompt: str, strength: float, resolution: int, steps: int,
                seed: int, learning_rate: float, views: int, schedule: str, fit_steps: int, clip_2=None,
                clip_3=None, inr_settings=None, schedule_settings=None, augment_settings=None,
                performance=None) -> io.NodeOutput:
        clips = comfy_bridge.as_clips([clip, clip_2, clip_3], ["clip", "clip_2", "clip_3"])
        config = run_config(steps, resolution, resolution, learning_rate, views, schedule, inr_settings,
                            schedule_settings, augment_settings, performance=performance)
        return _run(edit, clips, config, seed, fit_steps, image=one_image(image, "image"), edit_prompt=edit_prompt,
                    source_prompt=source_prompt.strip() or None, strength=strength)
