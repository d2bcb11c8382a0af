"""Reference bank nodes: load a bank file, or build one from captioned images.

A reference bank holds real (image, caption) pairs embedded by one CLIP, plus optional AWP seed
INRs (``inversion_core.bank``). Banks live in ``models/clip_inversion_banks`` (paths
set for ``clip_inversion_banks`` in extra_model_paths.yaml are searched first). The CLIP is
checked where it is known: in the Procrustes, Robust Init and Blending Loss nodes.
"""

from __future__ import annotations

import hashlib
import logging
import os
from enum import Enum

import comfy.model_management as mm
import folder_paths
import torch
from comfy_api.latest import io

from ..inversion_core import INRConfig
from ..inversion_core.awp import SeedConfig
from ..inversion_core.bank import ReferenceBank, load_bank
from ..inversion_core.bank_build import DEFAULT_BATCH_SIZE, build_bank, read_usable_entries, request_differences
from . import comfy_bridge
from .common import CATEGORY, BankType, ClipType, InrSettingsType, choice, make_schema
from .settings import INR_DEFAULTS

BANK_CATEGORY = f"{CATEGORY}/reference bank"
SEED_DEFAULTS = SeedConfig()
MAX_RANDOM_SEED = 2**32 - 1  # entry i uses random_seed + i

log = logging.getLogger("clip_inversion")


# --- shared checks (also used by the guidance nodes) ---------------------------------------------


def check_bank(bank, input_name: str = "bank") -> ReferenceBank:
    if not isinstance(bank, ReferenceBank):
        raise ValueError(f"{input_name} must come from a 'Load Reference Bank' or 'Build Reference Bank' node, "
                         f"got {type(bank).__name__}")
    return bank


def bank_label(bank: ReferenceBank) -> str:
    return repr(os.path.basename(bank.path)) if bank.path else "(in memory)"


def check_bank_clip(bank: ReferenceBank, clip: comfy_bridge.InversionClip) -> None:
    """A ValueError naming both CLIPs and the fix when ``bank`` was embedded by another CLIP."""
    if clip.identity != bank.clip_identity:
        raise ValueError(
            f"bank {bank_label(bank)} was built with CLIP {bank.clip_identity!r}, but clip is {clip.identity!r} "
            f"(loaded from {clip.source!r}). Embeddings of different CLIP models cannot be compared: connect the "
            f"CLIP the bank was built with (same open_clip config name and weights file), or build a bank for "
            f"this CLIP with 'Build Reference Bank'."
        )


# --- Load Reference Bank ---------------------------------------------------------------------------


class LoadReferenceBank(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return make_schema(
            node_id="CLIPInversionLoadReferenceBank",
            display_name="Load Reference Bank",
            category=BANK_CATEGORY,
            description=(
                "Loads a reference bank: real (image, caption) pairs embedded by one CLIP, optionally with a "
                "seed INR per image. It feeds CLIP⁻¹'s three stabilisers for text-to-image: Procrustes "
                "Projection, Blending Loss and Robust Init. Banks are .safetensors files in "
                "models/clip_inversion_banks, made by 'Build Reference Bank' or "
                "`python -m inversion_core bank build`. A bank only works with the CLIP that built it; "
                "the nodes using it check that. The file's checksums are verified on load."
            ),
            search_aliases=["bank", "reference set", "load bank", "procrustes bank", "seed bank"],
            inputs=[
                io.Combo.Input(
                    "bank",
                    options=comfy_bridge.bank_files(),
                    tooltip=(
                        "Bank file from models/clip_inversion_banks (or a clip_inversion_banks path in "
                        "extra_model_paths.yaml). Press R to refresh after building a new one."
                    ),
                ),
            ],
            outputs=[BankType.Output(display_name="bank", tooltip="The reference bank, for Procrustes "
                                     "Projection, Robust Init and Blending Loss.")],
        )

    @classmethod
    def validate_inputs(cls, bank: str | None = None) -> bool | str:
        if bank is None or bank in comfy_bridge.bank_files():
            return True
        folders = ", ".join(comfy_bridge.register_bank_folder())
        return (f"bank {bank!r} is not available: put the file in one of {folders} (build one with 'Build "
                f"Reference Bank' or `python -m inversion_core bank build`) and press R to refresh.")

    @classmethod
    def fingerprint_inputs(cls, bank: str) -> str:
        """A rebuilt file of the same name is loaded again instead of served from the cache."""
        path = folder_paths.get_full_path(comfy_bridge.BANK_FOLDER, bank)
        if path is None:
            return ""
        stat = os.stat(path)
        return f"{stat.st_mtime_ns}:{stat.st_size}"

    @classmethod
    def execute(cls, bank: str) -> io.NodeOutput:
        path = comfy_bridge.resolve_bank_file(bank)
        with torch.inference_mode(False):  # normal tensors: later gradient work may read them
            return io.NodeOutput(load_bank(path))


# --- Build Reference Bank --------------------------------------------------------------------------


class IfExists(str, Enum):
    REUSE = "reuse"  # load the existing file when it matches the request (else refuse)
    REBUILD = "rebuild"  # overwrite it, discarding any interrupted partial build


def input_folder() -> str:
    return os.path.realpath(folder_paths.get_input_directory())


def is_inside(folder: str, path: str) -> bool:
    """Whether ``path`` (symlinks resolved) lies in the resolved ``folder``."""
    return os.path.commonpath([folder, os.path.realpath(path)]) == folder


def source_path(source: str) -> str:
    """The source folder/file, inside ComfyUI's input folder.

    Like ComfyUI's own dataset nodes, a queued prompt may not make the server read anywhere else
    (an absolute path, '..', a symlink out): anyone who can reach a ComfyUI server can queue one.
    The CLI builds banks from anywhere.
    """
    folder = input_folder()
    path = os.path.join(folder, source.strip())
    if not is_inside(folder, path):
        raise ValueError(
            f"source {source!r} is outside ComfyUI's input folder: give a folder or file inside it (e.g. "
            f"'reference_images' for input/reference_images), or build the bank from anywhere with `python -m "
            f"inversion_core bank build --source ... --out models/{comfy_bridge.BANK_FOLDER}/NAME.safetensors` "
            f"and load it with 'Load Reference Bank'"
        )
    return os.path.realpath(path)


def folder_fingerprint(path: str) -> str:
    """Names, sizes and modification times of everything under ``path``: changes when images or
    captions are added, removed or edited, so a queued build is not answered from ComfyUI's cache."""
    if not os.path.isdir(path):
        stat = os.stat(path)
        return f"{stat.st_mtime_ns}:{stat.st_size}"
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            stat = os.stat(os.path.join(root, name))
            digest.update(f"{os.path.relpath(os.path.join(root, name), path)}\t{stat.st_mtime_ns}\t{stat.st_size}\n"
                          .encode())
    return digest.hexdigest()


def seed_fit_bytes(inr_config: INRConfig, seed_config: SeedConfig, batch_size: int) -> int:
    """Rough bound (ours) on what one shard's seed fit keeps for backward; the same four (H·W, width)
    float32 tensors per sine layer and image as ``comfy_bridge.estimated_run_bytes``."""
    return 4 * 4 * batch_size * seed_config.size ** 2 * inr_config.width * (inr_config.hidden_layers + 1)


class BuildReferenceBank(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return make_schema(
            node_id="CLIPInversionBuildReferenceBank",
            display_name="Build Reference Bank",
            category=BANK_CATEGORY,
            description=(
                "Builds a reference bank from a folder of images with same-name .txt captions (or a .csv with "
                "path,caption columns or a .jsonl file): every image and caption is embedded with the CLIP and, "
                "with seeds on, one seed INR is fitted per blurred image with Adversarial Weight Perturbation. "
                "Writes models/clip_inversion_banks/<file_name>.safetensors and outputs the bank. Long-running: "
                "the progress bar counts images. Cancel stops at the next batch boundary and keeps the finished "
                "batches; queueing again with the same settings resumes. Unreadable images and missing captions "
                "are skipped and counted in the log. Same as `python -m inversion_core bank build`."
            ),
            search_aliases=["build bank", "reference set", "awp seeds", "embed dataset", "bank build"],
            is_experimental=True,
            is_output_node=True,  # it writes a file: a graph of Load CLIP -> Build Reference Bank alone can be queued
            inputs=[
                ClipType.Input("clip", tooltip="The CLIP to embed with. The bank only works with this CLIP later."),
                io.String.Input(
                    "source", default="reference_images",
                    tooltip=(
                        "Folder of images (png, jpg, webp, ...) with a same-name .txt caption each, searched "
                        "recursively; or a .csv (columns path, caption) or .jsonl file. Inside ComfyUI's input "
                        "folder (e.g. 'reference_images' = input/reference_images); for data elsewhere use "
                        "`python -m inversion_core bank build`. Adding images makes the next queue build again."
                    ),
                ),
                io.String.Input(
                    "file_name", default="my_bank",
                    tooltip="Name of the bank file in models/clip_inversion_banks ('.safetensors' is added; "
                    "subfolders with '/' allowed).",
                ),
                io.Boolean.Input(
                    "with_seeds", default=True,
                    tooltip=(
                        "on: also fit one seed INR per image (needed by 'Robust Init'); the slow part of a build. "
                        "off: embeddings only, enough for Procrustes Projection and Blending Loss, much faster."
                    ),
                ),
                io.Float.Input(
                    "gamma", default=SEED_DEFAULTS.gamma, min=0.0, max=1.0, step=0.001, round=0.0001,
                    tooltip=(
                        "AWP radius γ: each seed is fitted so that weight changes of relative size γ hurt it "
                        "little (flatter seeds survive the inversion's large updates). 0 = a plain fit (closest "
                        "seed, most fragile); 0.002 is ours; larger = flatter but less exact seeds (0.01 fits about "
                        "8 dB PSNR worse than 0.002 at the default INR)."
                    ),
                ),
                io.Int.Input(
                    "seed_steps", default=SEED_DEFAULTS.steps, min=1, max=100000,
                    tooltip="Fitting steps per seed (each costs two forward/backward passes when gamma > 0). "
                    "More = closer seeds, build time grows linearly.",
                ),
                io.Float.Input(
                    "blur", default=SEED_DEFAULTS.blur_sigma, min=0.0, max=SEED_DEFAULTS.size / 4, step=0.1,
                    tooltip=(
                        f"Gaussian blur σ in pixels of the {SEED_DEFAULTS.size}x{SEED_DEFAULTS.size} image each "
                        "seed is fitted to. 0 = sharp seeds that carry texture; larger = seeds carry only layout "
                        "and colour, leaving detail to the inversion."
                    ),
                ),
                io.Int.Input(
                    "batch_size", default=DEFAULT_BATCH_SIZE, min=1, max=4096,
                    tooltip=(
                        "Images per batch (one CLIP batch and one batched seed fit; progress, Cancel and resume "
                        "work in whole batches). Larger = faster on a GPU, more memory; smaller = quicker Cancel. "
                        "A resumed build needs the same value."
                    ),
                ),
                io.Int.Input(
                    "random_seed", default=0, min=0, max=MAX_RANDOM_SEED,
                    tooltip="Seeds the seed INRs' random initialisation (image i uses random_seed + i). Same "
                    "value and settings = the same bank.",
                ),
                io.Combo.Input(
                    "if_exists", options=IfExists, default=IfExists.REUSE,
                    tooltip=(
                        "When the file already exists. reuse: load it without building, if it was built from "
                        "the same images with this CLIP and these seed settings (otherwise the run stops and "
                        "says what differs). rebuild: build again and overwrite it, also discarding an "
                        "interrupted build of that name."
                    ),
                ),
                InrSettingsType.Input(
                    "inr_settings", optional=True,
                    tooltip="Architecture of the seed INRs, from 'INR Settings'; it must equal the INR settings you "
                    "generate with (Robust Init refuses a mismatch). Unconnected: the defaults (the optimiser's too).",
                ),
            ],
            outputs=[BankType.Output(display_name="bank", tooltip="The bank just built (or reused), for "
                                     "Procrustes Projection, Robust Init and Blending Loss.")],
        )

    @classmethod
    def validate_inputs(cls, source: str | None = None, file_name: str | None = None) -> bool | str:
        if source is not None:
            if not source.strip():
                return "source is empty: give the folder of captioned images, e.g. 'reference_images'"
            try:
                path = source_path(source)
            except ValueError as exc:
                return str(exc)
            if not os.path.exists(path):
                return (f"source {source!r} not found in ComfyUI's input folder: put the captioned images in "
                        f"input/{source.strip()} or give the name of a folder that is there")
        if file_name is not None:
            try:
                comfy_bridge.bank_file_name(file_name)
            except ValueError as exc:
                return str(exc)
        return True

    @classmethod
    def fingerprint_inputs(cls, source: str | None = None, file_name: str | None = None, **_) -> str:
        """Images added to the source, or the bank file replaced, make ComfyUI run the node again
        (which then reuses, resumes or refuses, as if_exists says) instead of serving its cache."""
        if not (source or "").strip():
            return ""  # linked (not known yet) or empty (validation reports it)
        try:
            fingerprint = folder_fingerprint(source_path(source))
            _, output = comfy_bridge.bank_output_path(file_name or "")
        except (OSError, ValueError):
            return ""  # validation reports the problem
        return f"{fingerprint}|{folder_fingerprint(output) if os.path.isfile(output) else ''}"

    @classmethod
    def execute(cls, clip, source: str, file_name: str, with_seeds: bool, gamma: float, seed_steps: int,
                blur: float, batch_size: int, random_seed: int, if_exists: str, inr_settings=None) -> io.NodeOutput:
        verdict = cls.validate_inputs(source=source, file_name=file_name)
        if verdict is not True:
            raise ValueError(verdict)
        (clip,) = comfy_bridge.as_clips([clip], ["clip"])
        mode = choice(IfExists, if_exists, "if_exists")
        name, output = comfy_bridge.bank_output_path(file_name)
        inr_config = inr_settings or INR_DEFAULTS
        seed_config = SeedConfig(gamma=gamma, steps=seed_steps, blur_sigma=blur)
        folder = source_path(source)
        # build_bank reads the entries itself but reports no total before its first shard, so the node
        # reads them too, for the progress bar's total, the input-folder check and the reuse check.
        entries, _ = read_usable_entries(folder)
        inputs = input_folder()
        outside = [e.path for e in entries if not is_inside(inputs, e.path)]
        if outside:
            raise ValueError(f"source {source!r} lists {len(outside)} image(s) outside ComfyUI's input folder, e.g. "
                             f"{outside[0]!r}: the node reads only inside it; copy them there, or build with "
                             "`python -m inversion_core bank build`")
        if mode is IfExists.REUSE and os.path.isfile(output):
            with torch.inference_mode(False):
                bank = load_bank(output)
            problems = request_differences(bank, clip.identity, with_seeds=with_seeds, inr_config=inr_config,
                                           seed_config=seed_config, random_seed=random_seed, entries=entries)
            if problems:
                raise ValueError(
                    f"bank {name!r} already exists but was built {'; '.join(problems)}. Set if_exists to 'rebuild' "
                    f"to replace it, or choose another file_name."
                )
            log.info("CLIP Inversion: reusing reference bank %s (%d pairs)", output, len(bank))
            return io.NodeOutput(bank)

        memory = seed_fit_bytes(inr_config, seed_config, batch_size) if with_seeds else 0
        (bundle,) = comfy_bridge.load_for_run([clip], memory)
        interrupted_before = os.path.isdir(output + comfy_bridge.PARTS_SUFFIX)
        # build_bank calls back after each finished shard (batch_size images): Cancel takes effect at the
        # next shard boundary and a rerun resumes from the shards on disk; there is no callback inside a
        # shard, so the node exposes batch_size to make Cancel quicker.
        progress = comfy_bridge.CountProgress(len(entries))
        hint = (f"out of memory building bank {name!r} with batch_size {batch_size}: lower batch_size (or the "
                "INR width in inr_settings)")
        try:
            with comfy_bridge.out_of_memory_hint(hint):
                report = build_bank(folder, output, bundle, inr_config=inr_config, seed_config=seed_config,
                                    with_seeds=with_seeds, batch_size=batch_size, random_seed=random_seed,
                                    resume=mode is IfExists.REUSE, progress=progress)
        except ValueError as exc:
            if interrupted_before and mode is IfExists.REUSE:
                raise ValueError(f"{exc} In ComfyUI: set if_exists to 'rebuild' to start over.") from exc
            raise
        finally:
            mm.soft_empty_cache()
        log.info("CLIP Inversion: %s", report.summary())
        with torch.inference_mode(False):
            return io.NodeOutput(load_bank(output))
