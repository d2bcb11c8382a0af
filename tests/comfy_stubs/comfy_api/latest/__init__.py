"""Test stand-in for ``comfy_api.latest``: the names a V3 node pack imports (io, ui, ComfyExtension).

Written for this project's tests from the public V3 API surface of ComfyUI 0.3.6x; it reproduces
what our nodes rely on (schema objects with the real constructor arguments, node classes executed
on a locked clone, NodeOutput), not ComfyUI's implementation.
"""

from abc import ABC, abstractmethod

from . import _io as io
from . import _ui as ui


class ComfyExtension(ABC):
    """Base class a pack's ``comfy_entrypoint()`` returns; ComfyUI awaits ``get_node_list()``."""

    async def on_load(self) -> None:
        """Called once when the extension is loaded."""

    @abstractmethod
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        """The pack's node classes."""


__all__ = ["ComfyExtension", "io", "ui"]
