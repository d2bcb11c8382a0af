"""CLIP Inversion for ComfyUI: generate, reconstruct, restyle and edit images with CLIP alone (CLIP⁻¹).

This file is ComfyUI's entry point for the custom-node folder and nothing else. It imports no
module at load time, so tools that import the repository root as a package (pytest does while
collecting) need no ComfyUI; ComfyUI calls ``comfy_entrypoint()``, which imports the nodes.
The engine lives in ``inversion_core/`` (plain PyTorch, also usable without ComfyUI).
"""


async def comfy_entrypoint():
    """Return the pack's ``ComfyExtension`` (ComfyUI awaits this once at startup)."""
    import logging

    try:
        from .nodes import CLIPInversionExtension, register_folders
    except Exception:
        logging.getLogger("clip_inversion").exception(
            "CLIP Inversion: importing the nodes failed; the pack's nodes are unavailable"
        )
        raise
    register_folders()
    return CLIPInversionExtension()
