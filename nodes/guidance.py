"""Bank guidance nodes: CLIP⁻¹'s three text-to-image stabilisers, one node each.

* Procrustes Projection: the text target moved into the image region of the embedding space
  by an orthogonal map fitted on bank pairs (local: per prompt, on its k nearest pairs; global).
* Blending Loss: β (1 − cos(e*, e_img*)) toward a softmax-weighted mix of the bank images
  nearest the target.
* Robust Init: the AWP seed INR whose caption is nearest the prompt, as the starting INR.

Each node makes one ``prepare_text_to_image`` call with only its own stabiliser switched on, so
wired as in the ``text_to_image_with_bank`` example (seeds and projection from the text target,
blending from the projected one; Robust Init's batch_size = the optimiser's) the graph gets the
same guidance as ``text_to_image(..., bank=...)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from enum import Enum

import comfy.model_management as mm
import torch
from comfy_api.latest import io

from ..inversion_core import INRConfig, Target
from ..inversion_core.bank_guidance import BankGuidance, BankOptions, prepare_text_to_image
from ..inversion_core.blending import DEFAULT_BLEND_BETA, DEFAULT_BLEND_K, DEFAULT_BLEND_TAU
from ..inversion_core.procrustes import DEFAULT_LOCAL_K
from . import comfy_bridge
from .bank import BANK_CATEGORY, bank_label, check_bank, check_bank_clip
from .common import BankType, ClipType, InrSettingsType, InrType, LossType, TargetType, choice, make_schema
from .optimizer import check_target
from .settings import INR_DEFAULTS

MAX_K = 4096  # widget limit for neighbour counts (retrieval is exact, so only the bank size limits k)
MAX_SEEDS = 64  # the optimiser's largest batch_size
BANK_TOOLTIP = "From 'Load Reference Bank' or 'Build Reference Bank'; built with the same CLIP."


def _bank_input(tooltip: str = BANK_TOOLTIP) -> io.Input:
    return BankType.Input("bank", tooltip=tooltip)


def _clip_input() -> io.Input:
    return ClipType.Input("clip", tooltip="The CLIP you optimise with; it must be the CLIP the bank was built with.")


def _check_k(bank, k: int, input_name: str) -> None:
    if k > len(bank):
        raise ValueError(f"{input_name} ({k}) exceeds the {len(bank)} pairs of bank {bank_label(bank)}; lower "
                         f"{input_name} to at most {len(bank)} or use a larger bank")


def _guidance(bank, clip, targets: Sequence[Target], options: BankOptions,
              inr_config: INRConfig = INR_DEFAULTS) -> BankGuidance:
    """Checks, then one engine call on the CLIP's device (placed by ComfyUI), outside inference
    mode so everything returned is a normal tensor later gradient work can use."""
    (clip,) = comfy_bridge.as_clips([clip], ["clip"])
    check_bank_clip(bank, clip)
    (bundle,) = comfy_bridge.load_for_run([clip])
    with torch.inference_mode(False):
        return prepare_text_to_image(bank, [bundle], list(targets), inr_config, options)


# --- Procrustes Projection ------------------------------------------------------------------------


class ProcrustesMode(str, Enum):
    """``mode`` combo -> BankOptions.procrustes (the label is the engine value, one of PROCRUSTES_MODES;
    "off" is not offered: leave the node out instead)."""

    LOCAL = "local"  # one orthogonal map per prompt, fitted on its k nearest bank pairs
    GLOBAL = "global"  # one orthogonal map for the whole bank (fitted once, stored in the file)


class ProcrustesProjection(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return make_schema(
            node_id="CLIPInversionProcrustes",
            display_name="Procrustes Projection",
            category=BANK_CATEGORY,
            description=(
                "Moves a text target across CLIP's modality gap: text and image embeddings live in different "
                "regions, so an image optimised toward the raw text embedding chases a point no real image "
                "reaches. An orthogonal map R fitted on (caption, image) pairs of the bank maps the target to "
                "normalize(R e_text), where real images of that text lie (CLIP⁻¹; Schönemann's solution). "
                "local fits R on the prompt's k nearest pairs; global uses one R for the whole bank. The result "
                "holds for the bank's CLIP; in an ensemble the other CLIPs keep the original target."
            ),
            search_aliases=["procrustes", "modality gap", "project target", "text to image region"],
            inputs=[
                TargetType.Input("target", tooltip="The text target to project (a Text Target, or a Combine Targets "
                                 "mix with negative prompts: their combined direction is projected)."),
                _bank_input(),
                _clip_input(),
                io.Combo.Input(
                    "mode", options=ProcrustesMode, default=ProcrustesMode.LOCAL,
                    tooltip="local: a map per prompt from its k nearest bank pairs (follows the prompt's "
                    "neighbourhood; the paper's main variant). global: one map from all pairs (cheaper, coarser).",
                ),
                io.Int.Input(
                    "k", default=DEFAULT_LOCAL_K, min=2, max=MAX_K,
                    tooltip=(
                        "local only: bank pairs (nearest captions) the map is fitted on. 2 = a very local, noisy "
                        "map; larger = smoother, approaching the global map. At most the bank's size; 16 is ours."
                    ),
                ),
            ],
            outputs=[TargetType.Output(display_name="target", tooltip="The projected target, for the optimiser "
                                       "(and for Blending Loss).")],
        )

    @classmethod
    def execute(cls, target, bank, clip, mode: str, k: int) -> io.NodeOutput:
        target, bank = check_target(target), check_bank(bank)
        method = choice(ProcrustesMode, mode, "mode")
        if method is ProcrustesMode.LOCAL:
            _check_k(bank, k, "k")
        options = BankOptions(procrustes=method.value, procrustes_k=k, blend_beta=0.0, use_seed=False)
        return io.NodeOutput(_guidance(bank, clip, [target], options).targets[0])


# --- Robust Init ------------------------------------------------------------------------------------


def _seed_inr_config(bank, inr_settings) -> INRConfig:
    """The INR settings of the seeds; clear errors for a bank without seeds or other settings."""
    if not bank.has_seeds:
        raise ValueError(
            f"bank {bank_label(bank)} has no seed INRs (it was built with with_seeds off / --no-seeds). Rebuild it "
            f"with seeds ('Build Reference Bank' with with_seeds on), or leave Robust Init out (random start)."
        )
    if inr_settings is None:
        return bank.inr_config
    if not isinstance(inr_settings, INRConfig):
        raise ValueError(f"inr_settings must come from an 'INR Settings' node, got {type(inr_settings).__name__}")
    if inr_settings == bank.inr_config:
        return bank.inr_config
    ours, theirs = dataclasses.asdict(inr_settings), dataclasses.asdict(bank.inr_config)
    diff = ", ".join(f"{k} {ours[k]!r} (bank {theirs[k]!r})" for k in ours if ours[k] != theirs[k])
    raise ValueError(
        f"inr_settings differ from the INR settings the seeds of bank {bank_label(bank)} were fitted with: {diff}. "
        f"Set INR Settings to the bank's values, leave inr_settings unconnected to use them, or rebuild the bank "
        f"with these settings."
    )


class RobustInit(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return make_schema(
            node_id="CLIPInversionRobustInit",
            display_name="Robust Init",
            category=BANK_CATEGORY,
            description=(
                "The starting INR for text-to-image: the bank's seed INR whose caption is nearest the prompt "
                "(CLIP⁻¹). Seeds were fitted to blurred bank images with Adversarial Weight Perturbation, so "
                "they carry a plausible layout and survive the optimiser's large first updates better than a "
                "random start. Connect the output to the INR Optimizer's init_inr; the optimiser then uses the "
                "seeds' INR settings. Needs a bank built with seeds."
            ),
            search_aliases=["seed init", "awp", "initialisation", "init inr", "robust initialization"],
            inputs=[
                _bank_input("From 'Load Reference Bank' or 'Build Reference Bank'; built with the same CLIP and "
                            "with seeds."),
                TargetType.Input("target", tooltip="The text target (before Procrustes Projection, as CLIP⁻¹ does): "
                                 "seeds are found by caption similarity."),
                _clip_input(),
                io.Int.Input(
                    "batch_size", default=1, min=1, max=MAX_SEEDS,
                    tooltip=(
                        "Seeds returned, nearest first. 1 = every image of the optimiser's batch starts from the "
                        "nearest seed; the optimiser's batch_size = each image starts from its own (1st, 2nd, ... "
                        "nearest), so a batch does not start from one picture. Beyond the bank's size the ranks "
                        "start over at the nearest."
                    ),
                ),
                InrSettingsType.Input(
                    "inr_settings", optional=True,
                    tooltip="Optional check: the INR settings you generate with; they must equal the bank's "
                    "(the node says what differs). Unconnected: the bank's settings.",
                ),
            ],
            outputs=[InrType.Output(display_name="inr", tooltip="The seed INR(s), for the optimiser's init_inr "
                                    "(or Render INR, to look at them).")],
        )

    @classmethod
    def execute(cls, bank, target, clip, batch_size: int, inr_settings=None) -> io.NodeOutput:
        target, bank = check_target(target), check_bank(bank)
        config = _seed_inr_config(bank, inr_settings)
        options = BankOptions(procrustes="off", blend_beta=0.0, use_seed=True)
        guidance = _guidance(bank, clip, [target] * batch_size, options, config)
        with torch.inference_mode(False):
            inr = guidance.init.to(mm.intermediate_device()).requires_grad_(False)
        return io.NodeOutput(inr)


# --- Blending Loss ---------------------------------------------------------------------------------


class BlendingLossTerm(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return make_schema(
            node_id="CLIPInversionBlendingLoss",
            display_name="Blending Loss",
            category=BANK_CATEGORY,
            description=(
                "An extra loss term that anchors the image to real ones (CLIP⁻¹): the k bank images nearest "
                "the target are mixed with softmax(similarity / τ) weights into e_img*, and every step adds "
                "β (1 − cos(e*, e_img*)) for the rendered image's embedding e*. Connect it to the INR Optimizer's "
                "loss_terms. Applies to the bank's CLIP only (in an ensemble the others are not pulled)."
            ),
            search_aliases=["blending", "natural image prior", "bank loss", "anchor loss"],
            inputs=[
                _bank_input(),
                TargetType.Input("target", tooltip="The target to find neighbours for: the projected target from "
                                 "Procrustes Projection (as CLIP⁻¹ does; it lies among image embeddings), or a text "
                                 "target."),
                _clip_input(),
                io.Float.Input(
                    "beta", default=DEFAULT_BLEND_BETA, min=0.0, max=10.0, step=0.05,
                    tooltip=(
                        "β, weight of the term next to the target loss (weight 1). 0 = off (no term); 0.25 is "
                        "ours; larger = closer to the bank's images, less specific to the prompt."
                    ),
                ),
                io.Int.Input(
                    "k", default=DEFAULT_BLEND_K, min=1, max=MAX_K,
                    tooltip="Bank images mixed into e_img*, the nearest to the target. 1 = pull toward the single "
                    "nearest real image; larger = a broader average. At most the bank's size; 8 is ours.",
                ),
                io.Float.Input(
                    "tau", default=DEFAULT_BLEND_TAU, min=0.001, max=10.0, step=0.001, round=0.0001,
                    tooltip=(
                        "τ, softmax temperature on the k cosine similarities. Small (0.01, CLIP's own, ours) = the "
                        "closest images dominate; large (1 or more) = all k count about equally."
                    ),
                ),
            ],
            outputs=[LossType.Output(display_name="loss_terms", tooltip="The blending term, for the INR "
                                     "Optimizer's loss_terms (empty when beta is 0).")],
        )

    @classmethod
    def execute(cls, bank, target, clip, beta: float, k: int, tau: float) -> io.NodeOutput:
        target, bank = check_target(target), check_bank(bank)
        _check_k(bank, k, "k")
        options = BankOptions(procrustes="off", blend_beta=beta, blend_k=k, blend_tau=tau, use_seed=False)
        return io.NodeOutput(list(_guidance(bank, clip, [target], options).loss_terms))
