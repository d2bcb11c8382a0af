"""Reading and writing images and INR files at the edge of the engine.

Writes go to a temporary name in the same folder and are renamed into place, so an interrupted
run never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ._config import config_from_dict, config_to_dict
from .inr import FinerINR, INRConfig

INR_FORMAT = "clip-inversion/finer-inr/v1"


def pil_to_tensor(image) -> torch.Tensor:
    """A PIL image as (3, H, W) float in [0, 1] (alpha dropped, greyscale expanded)."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """An image file as (1, 3, H, W) float in [0, 1] (alpha dropped, greyscale expanded)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {str(path)!r} not found (resolved to {path.resolve()})")
    try:
        with Image.open(path) as image:
            return pil_to_tensor(image).unsqueeze(0)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"could not read image {str(path)!r}: {exc}") from exc


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
    suffix = Path(path).suffix.lstrip(".").upper() or "PNG"
    image_format = {"JPG": "JPEG", "TIF": "TIFF"}.get(suffix, suffix)
    return atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format=image_format))


def save_inr(inr: FinerINR, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """INR weights as .safetensors with its config in the metadata, so it re-renders at any size later."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in inr.state_dict().items()}
    header = {"format": INR_FORMAT, "inr_config": json.dumps(config_to_dict(inr.config)), **(metadata or {})}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))


def load_inr(path: str | os.PathLike, device: str | torch.device = "cpu") -> FinerINR:
    """Inverse of :func:`save_inr`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"INR file {str(path)!r} not found")
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
