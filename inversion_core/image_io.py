"""Reading and writing images and INR files at the edge of the engine.

Writes go to a temporary name in the same folder and are renamed into place, so an interrupted
run never leaves a half-written file behind.
"""

from __future__ import annotations

import functools
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ._config import config_from_dict, config_to_dict
from ._paths import existing_file
from .inr import FinerINR, INRConfig

INR_FORMAT = "clip-inversion/finer-inr/v1"
_UINT16_MAX = 65535.0
_INT32_MAX = 2.0**31 - 1


def pil_to_tensor(image) -> torch.Tensor:
    """A PIL image as (3, H, W) float in [0, 1] (alpha dropped, greyscale expanded).

    High-bit-depth greyscale (16-bit PNGs, 32-bit integer and float TIFFs) is scaled from its own
    range: PIL's ``convert("RGB")`` clips those values at 255, which turns most images white."""
    levels = _high_bit_depth_levels(image)
    if levels is not None:
        array = np.repeat(levels[..., None], 3, axis=2)
    else:
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _high_bit_depth_levels(image) -> np.ndarray | None:
    """(H, W) float32 in [0, 1] for PIL's high-bit-depth greyscale modes; None for other modes.

    'I;16*' is 16-bit data. 'I' (32-bit int) is also how PIL reports many 16-bit PNGs and TIFFs, so
    it is read as 16-bit when every value fits and over the positive int32 range otherwise. 'F'
    (float) is read as [0, 1] when every value fits, else as 0..255 (PIL's own scale for 'F')."""
    mode = image.mode
    if not (mode.startswith("I") or mode == "F"):
        return None
    values = np.nan_to_num(np.asarray(image).astype(np.float64), nan=0.0)
    peak = values.max(initial=0.0)
    if mode.startswith("I;16"):
        scale = _UINT16_MAX
    elif mode.startswith("I"):
        scale = _UINT16_MAX if peak <= _UINT16_MAX else _INT32_MAX
    else:
        scale = 1.0 if peak <= 1.0 else 255.0
    return np.clip(values / scale, 0.0, 1.0).astype(np.float32)


def upright_rgb(image):
    """An opened PIL image as upright 8-bit RGB, for pipelines that resize in PIL (the bank's): EXIF
    orientation applied, high-bit-depth greyscale scaled (as ``pil_to_tensor`` does) instead of clipped."""
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    levels = _high_bit_depth_levels(image)
    if levels is None:
        return image.convert("RGB")
    return Image.fromarray(np.round(levels * 255).astype(np.uint8)).convert("RGB")


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """An image file as (1, 3, H, W) float in [0, 1] (alpha dropped, greyscale expanded), turned
    upright by its EXIF orientation as ComfyUI's LoadImage does (phone photos are stored sideways)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = existing_file(path, "image")
    try:
        with Image.open(path) as image:
            return pil_to_tensor(ImageOps.exif_transpose(image)).unsqueeze(0)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"could not read image {str(path)!r}: {exc}") from exc


def image_format(path: str | os.PathLike, what: str = "image path") -> str:
    """The PIL format that ``save_image`` writes ``path`` in, from its suffix (none: PNG).

    A ValueError (naming the path as ``what``) for a suffix PIL cannot write RGB images as (.txt,
    .npy, .xbm, ...), so callers can check an output path before the work that produces the image."""
    from PIL import Image

    suffix = Path(path).suffix.lower()
    if not suffix:
        return "PNG"
    pil_format = Image.registered_extensions().get(suffix)
    if pil_format is None or not _writes_rgb(pil_format):
        raise ValueError(f"{what} {str(path)!r}: cannot write an image as {suffix!r}; use an image suffix such as "
                         ".png (lossless), .jpg, .webp or .tif")
    return pil_format


@functools.lru_cache(maxsize=None)
def _writes_rgb(pil_format: str) -> bool:
    """Whether PIL can save an RGB image in ``pil_format`` (some formats are read-only stubs or
    take only other modes); found by saving one pixel to memory."""
    from PIL import Image

    try:
        Image.new("RGB", (1, 1)).save(io.BytesIO(), format=pil_format)
    except (OSError, ValueError, KeyError):
        return False
    return True


def _process_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which would race with other threads.
_FILE_MODE = 0o666 & ~_process_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)``, then rename the temporary file to ``path``.

    The file gets the permissions a plain ``open(path, "w")`` would give (mkstemp's are owner-only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_image(image: torch.Tensor, path: str | os.PathLike) -> Path:
    """Save one (3, H, W) or (1, 3, H, W) image in [0, 1]; the format follows the suffix (PNG, JPEG, ...)."""
    from PIL import Image

    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"save_image saves one image, got a batch of {image.shape[0]}")
        image = image[0]
    array = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    pil_format = image_format(path)
    return atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format=pil_format))


def save_inr(inr: FinerINR, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """INR weights as .safetensors with its config in the metadata, so it re-renders at any size later."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in inr.state_dict().items()}
    header = {"format": INR_FORMAT, "inr_config": json.dumps(config_to_dict(inr.config)), **(metadata or {})}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))


def load_inr(path: str | os.PathLike, device: str | torch.device = "cpu") -> FinerINR:
    """Inverse of :func:`save_inr`."""
    from safetensors import safe_open

    path = existing_file(path, "INR file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    except Exception as exc:  # safetensors raises several types for damaged files
        raise ValueError(f"could not read INR file {str(path)!r} (truncated or not safetensors): {exc}") from exc
    if header.get("format") != INR_FORMAT:
        raise ValueError(f"{str(path)!r} is not an INR file of this pack (format {header.get('format')!r})")
    config = config_from_dict(INRConfig, json.loads(header["inr_config"]))
    layers = config.num_layers
    expected = {f"{kind}.{i}" for kind in ("weights", "biases") for i in range(layers)}
    if set(tensors) != expected:
        raise ValueError(f"INR file {str(path)!r} does not match its config {config}: tensors {sorted(tensors)}")
    weights = [tensors[f"weights.{i}"] for i in range(layers)]
    biases = [tensors[f"biases.{i}"] for i in range(layers)]
    return FinerINR.from_tensors(config, weights, biases).to(device)
