"""Test stand-in for ``comfy.cli_args``: ComfyUI's parsed command line, with its defaults for the
options the pack reads (``--preview-size``: longest side of live previews, in pixels)."""

from types import SimpleNamespace

args = SimpleNamespace(preview_size=512)
