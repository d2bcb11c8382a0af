"""Targets: what the optimised image's CLIP embedding should match (text, image, weighted mixes).

A target is resolved per CLIP model when a run starts, so one target works with any CLIP and with
ensembles. Negative weights push the image away from a term (negative prompts).
"""

from __future__ import annotations

from comfy_api.latest import io

from ..inversion_core import combine_targets, image_target, text_target
from .common import CATEGORY, TargetType, image_to_engine, make_schema

WEIGHT_RANGE = 10.0  # |weight| limit of the widgets

_WEIGHT_TOOLTIP = (
    "How strongly this term counts, relative to the other terms of the target. 1 = normal; "
    "0 = ignored; negative = push the image away from it (a negative prompt)."
)


def _weight_input(name: str = "weight", default: float = 1.0, tooltip: str = _WEIGHT_TOOLTIP) -> io.Float.Input:
    return io.Float.Input(name, default=default, min=-WEIGHT_RANGE, max=WEIGHT_RANGE, step=0.05, tooltip=tooltip)


class TextTarget(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return make_schema(
            node_id="CLIPInversionTextTarget",
            display_name="Text Target",
            category=f"{CATEGORY}/targets",
            description="A prompt as an inversion target: the image is optimised until CLIP reads it as this text.",
            search_aliases=["text embedding", "clip text", "inversion prompt"],
            inputs=[
                io.String.Input(
                    "text",
                    multiline=True,
                    default="a photograph of a red fox in the snow",
                    tooltip="What the image should show. Plain descriptions work best; CLIP reads up to ~75 tokens.",
                ),
                _weight_input(),
            ],
            outputs=[TargetType.Output(display_name="target", tooltip="The text target (resolved per CLIP at run time).")],
        )

    @classmethod
    def validate_inputs(cls, text: str | None = None) -> bool | str:
        if text is not None and not text.strip():
            return "text is empty: type what the image should show, e.g. 'a red circle on the left'"
        return True

    @classmethod
    def execute(cls, text: str, weight: float) -> io.NodeOutput:
        return io.NodeOutput(text_target(text, weight=weight))


class ImageTarget(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return make_schema(
            node_id="CLIPInversionImageTarget",
            display_name="Image Target",
            category=f"{CATEGORY}/targets",
            description=(
                "An image as an inversion target: the result is what CLIP 'sees' in it (reconstruction). "
                "A batch becomes one target whose images share the weight equally."
            ),
            search_aliases=["image embedding", "clip vision", "reconstruct"],
            inputs=[
                io.Image.Input("image", tooltip="The image(s) whose CLIP embedding the result should match."),
                _weight_input(),
            ],
            outputs=[TargetType.Output(display_name="target", tooltip="The image target (resolved per CLIP at run time).")],
        )

    @classmethod
    def execute(cls, image, weight: float) -> io.NodeOutput:
        pixels = image_to_engine(image, "image")  # (B, 3, H, W)
        if pixels.shape[0] == 1:
            return io.NodeOutput(image_target(pixels, weight=weight))
        if weight <= 0:
            raise ValueError(
                f"a batch of {pixels.shape[0]} images needs a positive weight (got {weight}); to push away "
                "from images, use one image per Image Target and a negative weight in Combine Targets"
            )
        terms = [image_target(pixels[i:i + 1]) for i in range(pixels.shape[0])]
        return io.NodeOutput(combine_targets(*terms, weights=[weight / len(terms)] * len(terms)))


class CombineTargets(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return make_schema(
            node_id="CLIPInversionCombineTargets",
            display_name="Combine Targets",
            category=f"{CATEGORY}/targets",
            description=(
                "Mixes up to four targets into one, each scaled by its weight (on top of its own weight). "
                "A negative weight turns a target into something to avoid. At least one term must stay positive."
            ),
            search_aliases=["mix targets", "negative prompt", "blend prompts", "weighted prompts"],
            inputs=[
                TargetType.Input("target_a", tooltip="First target (Text, Image or another Combine Targets node)."),
                _weight_input("weight_a", tooltip="Scale of target_a. " + _WEIGHT_TOOLTIP),
                TargetType.Input("target_b", tooltip="Second target, e.g. a negative prompt with a negative weight_b."),
                _weight_input("weight_b", tooltip="Scale of target_b. " + _WEIGHT_TOOLTIP),
                TargetType.Input("target_c", optional=True, tooltip="Optional third target; leave unconnected if not needed."),
                _weight_input("weight_c", tooltip="Scale of target_c (ignored when it is not connected)."),
                TargetType.Input("target_d", optional=True, tooltip="Optional fourth target; leave unconnected if not needed."),
                _weight_input("weight_d", tooltip="Scale of target_d (ignored when it is not connected)."),
            ],
            outputs=[TargetType.Output(display_name="target", tooltip="All terms of the inputs, re-weighted.")],
        )

    @classmethod
    def execute(cls, target_a, weight_a: float, target_b, weight_b: float, weight_c: float = 1.0,
                weight_d: float = 1.0, target_c=None, target_d=None) -> io.NodeOutput:
        pairs = [(t, w) for t, w in ((target_a, weight_a), (target_b, weight_b), (target_c, weight_c),
                                     (target_d, weight_d)) if t is not None]
        targets, weights = zip(*pairs)
        return io.NodeOutput(combine_targets(*targets, weights=list(weights)))
