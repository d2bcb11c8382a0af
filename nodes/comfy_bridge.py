"""Glue between the engine and ComfyUI: model folder, model management, progress, memory.

* ``register_model_folder()`` adds ``models/clip_inversion`` under the key ``clip_inversion``, and
  ``register_bank_folder()`` adds ``models/clip_inversion_banks`` under ``clip_inversion_banks``,
  each keeping any paths the user configured for that key in extra_model_paths.yaml.
* ``InversionClip`` is what travels on an INVERSION_CLIP link: the engine's ClipBundle plus a
  ComfyUI ``ModelPatcher`` around its model, so ComfyUI's model management places it on the GPU
  (evicting e.g. a diffusion model when needed) and can evict it in turn.
* ``RunProgress`` turns engine callbacks into ComfyUI progress: a ProgressBar update every step,
  a JPEG preview every few steps (at most ``--preview-size`` pixels, like the samplers'), and an
  interrupt check every step (``POST /interrupt``).
* ``gradient_run()`` wraps one optimisation: checks the memory it needs, gives an out-of-memory
  error a message naming the inputs to lower (``out_of_memory_hint``, keeping the type ComfyUI
  recovers from), and releases cached memory afterwards.
* ``CountProgress`` turns a ``(done, total)`` callback (bank shards, render chunks) into ComfyUI
  progress and interrupt checks.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import comfy.model_management as mm
import comfy.model_patcher
import comfy.utils
import folder_paths
import torch
from comfy.cli_args import args as comfy_args
from PIL import Image

from ..inversion_core import ClipBundle, RunConfig, StepProgress
from ..inversion_core.clip_models import FOLDER_CONFIG_NAME, config_for_weights

MODEL_FOLDER = "clip_inversion"  # key in folder_paths and directory name under models/
BANK_FOLDER = "clip_inversion_banks"  # reference banks (.safetensors), same convention
BANK_SUFFIX = ".safetensors"  # the only format a bank file has
PARTS_SUFFIX = ".parts"  # an interrupted build keeps its shards in <bank>.safetensors.parts/ (bank_build)
CONFIG_SUFFIX = ".json"  # open_clip model config next to the weights (same stem)
HUB_WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # open_clip's names on the hub
MAX_CONFIG_BYTES = 256 * 1024  # model configs are ~1 KB; larger JSON files (tokenizers) are not read
PREVIEW_EVERY = 5  # steps between live previews


# --- model folder ------------------------------------------------------------------------------


def register_model_folder() -> list[str]:
    """Register ``models/clip_inversion`` (idempotent) and return the folders searched, in order.

    A user's extra_model_paths.yaml may already define ``clip_inversion``: those folders are kept
    and come first; the default folder is appended, and the extension filter is widened to weights
    plus ``.json`` configs (ComfyUI gives a key created from the yaml an empty filter).
    """
    return _register_folder(MODEL_FOLDER, set(folder_paths.supported_pt_extensions) | {CONFIG_SUFFIX})


def register_bank_folder() -> list[str]:
    """Register ``models/clip_inversion_banks`` (idempotent), like :func:`register_model_folder`;
    only ``.safetensors`` files are listed (the bank format)."""
    return _register_folder(BANK_FOLDER, {BANK_SUFFIX})


def register_folders() -> None:
    """Every folder the pack reads from (called once by the pack's ``comfy_entrypoint``)."""
    register_model_folder()
    register_bank_folder()


def _register_folder(key: str, extensions: set[str]) -> list[str]:
    """Add ``models/<key>`` to ``key``'s folders after any the user configured; return them in order."""
    default = os.path.join(folder_paths.models_dir, key)
    if key in folder_paths.folder_names_and_paths:
        paths, existing = folder_paths.folder_names_and_paths[key]
        if default not in paths:
            paths.append(default)
        folder_paths.folder_names_and_paths[key] = (paths, set(existing) | extensions)
    else:
        folder_paths.folder_names_and_paths[key] = ([default], set(extensions))
    with contextlib.suppress(OSError):
        os.makedirs(default, exist_ok=True)
    return list(folder_paths.folder_names_and_paths[key][0])


def model_files() -> list[str]:
    """Loadable entries of the model folder, as relative paths.

    * weight files, except that in a Hugging Face open_clip folder (one with
      ``open_clip_config.json``) only open_clip's own weight files are listed, not the
      transformers-format copies such repositories also hold;
    * open_clip model configs without weights (random weights, for quick tests of an
      architecture); configs that belong to weights and other JSON files (tokenizers, transformers
      configs) are not listed.
    """
    register_model_folder()
    names = folder_paths.get_filename_list(MODEL_FOLDER)
    weights = [n for n in names if not n.lower().endswith(CONFIG_SUFFIX)]
    stems = {os.path.splitext(n)[0] for n in weights}
    hub_folders = {os.path.dirname(n) for n in names if os.path.basename(n) == FOLDER_CONFIG_NAME}
    listed = [
        n for n in weights
        if os.path.dirname(n) not in hub_folders
        or os.path.basename(n) in HUB_WEIGHT_NAMES
        or os.path.splitext(n)[0] + CONFIG_SUFFIX in names
    ]
    listed += [
        n for n in names
        if n.lower().endswith(CONFIG_SUFFIX)
        and os.path.splitext(n)[0] not in stems
        and os.path.basename(n) != FOLDER_CONFIG_NAME
        and _is_model_config(folder_paths.get_full_path(MODEL_FOLDER, n))
    ]
    return sorted(listed)


def _is_model_config(path: str | None) -> bool:
    """Whether ``path`` is a small JSON file holding an open_clip model config (either layout)."""
    try:
        if path is None or os.path.getsize(path) > MAX_CONFIG_BYTES:
            return False
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return False
    config = data.get("model_cfg", data) if isinstance(data, dict) else None
    return isinstance(config, dict) and {"embed_dim", "vision_cfg", "text_cfg"} <= set(config)


def resolve_model_file(name: str) -> tuple[str, str | None]:
    """(architecture for ``load_clip``, weights path or None) for an entry of :func:`model_files`.

    A weights file needs its open_clip config either beside it with the same stem
    (``ViT-B-32.safetensors`` + ``ViT-B-32.json``; architecture = that .json) or as
    ``open_clip_config.json`` in its folder (the layout of open_clip repositories on the Hugging
    Face hub; architecture = the folder). A .json entry alone means random weights.
    """
    path = folder_paths.get_full_path(MODEL_FOLDER, name)
    if path is None:
        searched = ", ".join(register_model_folder())
        raise FileNotFoundError(
            f"model file {name!r} is not in the CLIP Inversion model folders ({searched}). Put the weights "
            f"and their open_clip config .json there, or pick an 'open_clip/...' entry (downloads when online)."
        )
    if path.lower().endswith(CONFIG_SUFFIX):
        return path, None
    architecture = config_for_weights(path)
    if architecture is None:
        raise FileNotFoundError(
            f"no open_clip config found for {name!r}: put the model's config next to it as "
            f"{os.path.splitext(os.path.basename(path))[0] + CONFIG_SUFFIX!r}, or as {FOLDER_CONFIG_NAME!r} in its "
            f"folder (the file of that name in the model's Hugging Face repository)."
        )
    return architecture, path


def bank_files() -> list[str]:
    """Bank files (``.safetensors``) of the bank folders, as relative paths; the shards of an
    interrupted build (``<bank>.safetensors.parts/``) are not banks and are left out."""
    register_bank_folder()
    return sorted(n for n in folder_paths.get_filename_list(BANK_FOLDER)
                  if not any(part.endswith(BANK_SUFFIX + PARTS_SUFFIX) for part in Path(n).parts[:-1]))


def resolve_bank_file(name: str) -> str:
    """Full path of an entry of :func:`bank_files`; a FileNotFoundError naming the folders otherwise."""
    register_bank_folder()
    path = folder_paths.get_full_path(BANK_FOLDER, name)
    if path is None:
        searched = ", ".join(register_bank_folder())
        raise FileNotFoundError(
            f"bank file {name!r} is not in the reference bank folders ({searched}). Build one with the "
            f"'Build Reference Bank' node or `python -m inversion_core bank build --out <folder>/{name}`, "
            f"then press R to refresh."
        )
    return path


def bank_file_name(file_name: str) -> str:
    """``file_name`` as a relative ``.safetensors`` path inside a bank folder (suffix added when
    missing); a ValueError for an empty name or one that would leave the folder."""
    name = (file_name or "").strip().replace("\\", "/")
    if not name:
        raise ValueError("file_name is empty: give the bank a name, e.g. 'my_bank'")
    if not name.lower().endswith(BANK_SUFFIX):
        name += BANK_SUFFIX
    parts = name.split("/")
    if name.startswith("/") or os.path.isabs(name) or ".." in parts or any(not p for p in parts):
        raise ValueError(
            f"file_name {file_name!r} must be a name inside models/{BANK_FOLDER} (subfolders allowed), not an "
            "absolute path or one with '..'; e.g. 'my_bank' or 'toyworld/reference'"
        )
    return name


def bank_output_path(file_name: str) -> tuple[str, str]:
    """(relative name, absolute path in the default bank folder) for a bank to be written."""
    name = bank_file_name(file_name)
    register_bank_folder()
    return name, os.path.join(folder_paths.models_dir, BANK_FOLDER, *name.split("/"))


# --- model management --------------------------------------------------------------------------


@dataclass(eq=False)
class InversionClip:
    """The INVERSION_CLIP value: a frozen CLIP for inversion, managed by ComfyUI."""

    bundle: ClipBundle
    patcher: Any  # comfy.model_patcher.ModelPatcher around bundle.model
    source: str  # what the loader was asked for (file name or open_clip name/tag)

    @property
    def identity(self) -> str:
        return self.bundle.identity

    def __repr__(self) -> str:
        return f"InversionClip({self.bundle.identity}, load_device={self.patcher.load_device})"


def wrap_clip(bundle: ClipBundle, source: str, device_choice: str | None) -> InversionClip:
    """Wrap a bundle built on the CPU so ComfyUI can move it: ``device_choice`` None means
    ComfyUI's device (the GPU when there is one), "cpu" keeps it on the CPU."""
    load_device = torch.device(device_choice) if device_choice else mm.get_torch_device()
    offload_device = mm.text_encoder_offload_device()
    patcher = comfy.model_patcher.ModelPatcher(bundle.model, load_device=load_device, offload_device=offload_device)
    return InversionClip(bundle=bundle, patcher=patcher, source=source)


def as_clips(values: Sequence[Any], input_names: Sequence[str]) -> list[InversionClip]:
    """The connected INVERSION_CLIP inputs, checked; a clear message for anything else."""
    clips = []
    for value, name in zip(values, input_names):
        if value is None:
            continue
        if not isinstance(value, InversionClip):
            raise ValueError(
                f"{name} must come from a 'Load CLIP for Inversion' node, got {type(value).__name__}; "
                "ComfyUI's own CLIP/CLIP_VISION models cannot be used for inversion"
            )
        clips.append(value)
    if not clips:
        raise ValueError("connect a 'Load CLIP for Inversion' node to the clip input")
    return clips


def load_for_run(clips: Sequence[InversionClip], memory_required: int = 0) -> list[ClipBundle]:
    """Load the CLIPs onto their device through ComfyUI and make them usable by autograd.

    ``memory_required`` (bytes the run itself needs) makes ComfyUI evict other models, e.g. a
    diffusion model, until the weights *and* the run fit. Runs outside inference mode, so moved
    weights stay normal tensors.
    """
    devices = {str(c.patcher.load_device) for c in clips}
    if len(devices) > 1:
        raise ValueError(
            f"the CLIP models of an ensemble must use one device, got {sorted(devices)}; "
            "set the same device on every 'Load CLIP for Inversion' node"
        )
    with torch.inference_mode(False):
        mm.load_models_gpu([c.patcher for c in clips], memory_required=memory_required, force_full_load=True)
        for clip in clips:
            device = next(clip.bundle.model.parameters()).device
            if clip.bundle.device != device:
                clip.bundle.to(device)  # the model is already there; this moves mean/std
            clip.bundle.make_autograd_ready()
    return [c.bundle for c in clips]


# --- memory ------------------------------------------------------------------------------------


def estimated_run_bytes(config: RunConfig, batch_size: int) -> int:
    """A rough lower bound (ours) on what one optimisation step keeps for backward: per image and
    per sine layer, about four (H·W, width) float32 tensors (pre-activation, frequency scale, sine
    argument, sine output). CLIP's own activations come on top."""
    layers = config.inr.hidden_layers + 1
    return 4 * 4 * batch_size * config.width * config.height * config.inr.width * layers


def readable_bytes(count: float) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


def check_memory(config: RunConfig, batch_size: int, device: torch.device) -> None:
    """Refuse, before starting, an optimisation the device cannot hold."""
    needed = estimated_run_bytes(config, batch_size)
    free = mm.get_free_memory(device)
    if needed > free:
        raise ValueError(
            f"a {config.width}x{config.height} render with batch_size {batch_size} and INR width "
            f"{config.inr.width} needs at least {readable_bytes(needed)} on {device}, but only "
            f"{readable_bytes(free)} is free. Lower width/height (the INR can be rendered larger afterwards "
            f"with 'Render INR'), batch_size, or the INR width."
        )


def check_render_memory(width: int, height: int, count: int, host: torch.device) -> None:
    """Refuse, before rendering, images the host cannot hold: the float32 render and its IMAGE copy
    (Render INR assembles its chunks there)."""
    needed = 2 * 3 * 4 * width * height * count
    free = mm.get_free_memory(host)
    if needed > free:
        raise ValueError(
            f"a {width}x{height} render of {count} INR(s) needs {readable_bytes(needed)} on {host}, but only "
            f"{readable_bytes(free)} is free: lower width/height (or the optimiser's batch_size)"
        )


def is_out_of_memory(exc: BaseException) -> bool:
    """A MemoryError (the engine reports an OOM in its loop as one, naming the run's sizes), or
    what ComfyUI's own test calls one (newer ComfyUI also recognises accelerator OOM errors)."""
    is_oom = getattr(mm, "is_oom", None) or (lambda error: isinstance(error, mm.OOM_EXCEPTION))
    return isinstance(exc, MemoryError) or is_oom(exc)


@contextlib.contextmanager
def out_of_memory_hint(hint: str) -> Iterator[None]:
    """Re-raise an out-of-memory error with ``hint`` (the inputs to lower) as ComfyUI's OOM type, so
    ComfyUI still recognises it: it adds its own tips and unloads models to recover."""
    try:
        yield
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        raise mm.OOM_EXCEPTION(hint) from exc


@contextlib.contextmanager
def gradient_run(config: RunConfig, batch_size: int, device: torch.device) -> Iterator[None]:
    """Around one optimisation: memory check before, a readable OOM message, cache release after."""
    check_memory(config, batch_size, device)
    try:
        with out_of_memory_hint(
            f"out of memory on {device} while optimising a {config.width}x{config.height} render "
            f"(batch_size {batch_size}, {config.augment.views} views, INR width {config.inr.width}). "
            "Lower width/height, batch_size or views, or free memory by closing other workflows."
        ):
            yield
    finally:
        mm.soft_empty_cache()


# --- progress ----------------------------------------------------------------------------------


class RunProgress:
    """Engine callbacks -> ComfyUI progress bar, live previews and interrupt checks.

    One bar covers an optional fitting phase (``fit_steps``) followed by the optimisation.
    """

    def __init__(self, steps: int, fit_steps: int = 0, preview_every: int = PREVIEW_EVERY):
        self.fit_steps = fit_steps
        self.total = fit_steps + steps
        self.preview_every = preview_every
        self.bar = comfy.utils.ProgressBar(self.total)

    def fit_step(self, step: int, total: int) -> None:
        """``fit_inr_to_image`` callback: (step, total) of the fitting phase."""
        mm.throw_exception_if_processing_interrupted()
        self.bar.update_absolute(step, self.total)

    def step(self, progress: StepProgress) -> bool:
        """``invert`` callback; never asks to stop early (an interrupt raises instead)."""
        mm.throw_exception_if_processing_interrupted()
        preview = None
        if progress.step % self.preview_every == 0 or progress.step == progress.total:
            preview = ("JPEG", preview_image(progress.images[0]), comfy_args.preview_size)  # --preview-size
        self.bar.update_absolute(self.fit_steps + progress.step, self.total, preview)
        return False


class CountProgress:
    """A ``callback(done, total)`` of the engine (bank shards, render chunks): ComfyUI progress and
    an interrupt check per call, so Cancel takes effect at the next call."""

    def __init__(self, total: int):
        self.bar = comfy.utils.ProgressBar(total)

    def __call__(self, done: int, total: int) -> None:
        mm.throw_exception_if_processing_interrupted()
        self.bar.update_absolute(done, total)


def preview_image(image: torch.Tensor) -> Image.Image:
    """(3, H, W) in [0, 1] on any device -> PIL RGB image."""
    pixels = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(pixels.movedim(0, -1).cpu().numpy())
