"""Render INR: draw optimised INRs at any resolution (they are continuous images)."""

from __future__ import annotations

import comfy.model_management as mm
from comfy_api.latest import io

from ..inversion_core import FinerINR
from . import comfy_bridge
from .common import CATEGORY, MAX_SIZE, InrType, image_to_comfy, make_schema

MAX_RENDER = 16384  # widget limit, in pixels per side (chunks go to host memory, which holds the image)
CHUNK_PIXELS = 1 << 18  # pixels over the batch per chunk: what the accelerator holds at once


class RenderINR(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return make_schema(
            node_id="CLIPInversionRenderINR",
            display_name="Render INR",
            category=CATEGORY,
            description=(
                "Renders INRs from an optimiser or task node at any width and height. The INR is a continuous "
                "function of the pixel coordinates, so a larger render adds resolution instead of blur (detail "
                "beyond what was optimised is the network's own interpolation). The aspect ratio may differ "
                "from the optimised one (the image is stretched). Renders in chunks straight into host memory, "
                "with a progress bar and Cancel: the GPU holds one chunk, the host the image (12 bytes per pixel "
                "per INR, twice while it becomes an IMAGE; 16384x16384 is 3 GiB); a render the host cannot hold "
                "is refused before it starts."
            ),
            search_aliases=["upscale inr", "render inr", "inr resolution"],
            inputs=[
                InrType.Input("inr", tooltip="INRs from an 'INR Optimizer', 'Style Transfer' or 'Text-Guided Edit' node."),
                io.Int.Input("width", default=512, min=8, max=MAX_RENDER, step=8,
                             tooltip=f"Output width in pixels (any size; above {MAX_SIZE} takes a while)."),
                io.Int.Input("height", default=512, min=8, max=MAX_RENDER, step=8, tooltip="Output height in pixels."),
            ],
            outputs=[io.Image.Output(display_name="images", tooltip="One image per INR of the batch.")],
        )

    @classmethod
    def execute(cls, inr, width: int, height: int) -> io.NodeOutput:
        if not isinstance(inr, FinerINR):
            raise ValueError(f"inr must come from an INR Optimizer or task node, got {type(inr).__name__}")
        host = mm.intermediate_device()
        comfy_bridge.check_render_memory(width, height, inr.batch_size, host)
        device = mm.get_torch_device()
        # one chunk's activations: the same four (pixels, width) float32 tensors per layer as a run's estimate
        mm.free_memory(4 * 4 * CHUNK_PIXELS * inr.config.width * (inr.config.hidden_layers + 1), device)
        progress = comfy_bridge.CountProgress(height * width)
        with comfy_bridge.out_of_memory_hint(
            f"out of memory on {device} while rendering {inr.batch_size} INR(s) of width {inr.config.width}: "
            "free memory by closing other workflows, or render fewer INRs at once"
        ):
            images = inr.clone().to(device).render(  # a copy: the cached input stays where it is
                height, width, CHUNK_PIXELS, out_device=host, callback=progress)
        return io.NodeOutput(image_to_comfy(images, host))
