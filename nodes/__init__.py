"""CLIP Inversion's ComfyUI nodes (V3 schema API), thin over ``inversion_core``.

Imported by the pack's root ``comfy_entrypoint()``; importing it needs ComfyUI (``comfy``,
``comfy_api``, ``folder_paths``) on the path.
"""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .bank import BuildReferenceBank, LoadReferenceBank
from .comfy_bridge import register_folders, register_model_folder
from .guidance import BlendingLossTerm, ProcrustesProjection, RobustInit
from .loader import LoadClipForInversion
from .optimizer import INROptimizer
from .render import RenderINR
from .settings import AugmentSettings, INRSettings, PerformanceSettings, ScheduleSettings
from .targets import CombineTargets, ImageTarget, TextTarget
from .tasks import StyleTransfer, TextGuidedEdit

NODES: tuple[type[io.ComfyNode], ...] = (
    LoadClipForInversion,
    TextTarget,
    ImageTarget,
    CombineTargets,
    INROptimizer,
    RenderINR,
    StyleTransfer,
    TextGuidedEdit,
    INRSettings,
    ScheduleSettings,
    AugmentSettings,
    PerformanceSettings,
    LoadReferenceBank,
    BuildReferenceBank,
    ProcrustesProjection,
    RobustInit,
    BlendingLossTerm,
)


class CLIPInversionExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


__all__ = ["NODES", "CLIPInversionExtension", "register_folders", "register_model_folder"]
