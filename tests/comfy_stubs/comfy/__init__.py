"""Test stand-in for ComfyUI's ``comfy`` package (utils, model_management, model_patcher)."""
