"""Test stand-in for ``comfy_api.latest.ui``: only PreviewText/PreviewImage, kept in memory."""

from __future__ import annotations


class _UIOutput:
    def as_dict(self) -> dict:
        raise NotImplementedError


class PreviewText(_UIOutput):
    def __init__(self, value: str, **kwargs):
        self.value = value

    def as_dict(self) -> dict:
        return {"text": (self.value,)}


class PreviewImage(_UIOutput):
    """Real ComfyUI writes temp PNGs; the stub keeps the tensor so tests can inspect it."""

    def __init__(self, image, animated: bool = False, cls=None, **kwargs):
        self.image = image
        self.animated = animated

    def as_dict(self) -> dict:
        return {"images": [{"filename": f"preview_{i}.png", "subfolder": "", "type": "temp"}
                           for i in range(int(self.image.shape[0]))]}
