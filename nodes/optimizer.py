"""INR Optimizer: the sampler-like node that inverts CLIP (CLIP⁻¹) into images.

Widgets become one ``RunConfig``; the run is one ``inversion_core.invert`` call (preceded by a
``fit_inr_to_image`` call when an init image is given). Extra loss terms (e.g. from 'Blending Loss')
arrive through the optional ``loss_terms`` input. The widget helpers here are shared with the
task nodes so the same setting always reads the same.
"""

from __future__ import annotations

import dataclasses

import comfy.model_management as mm
import torch
import torch.nn.functional as F
from comfy_api.latest import io

from ..inversion_core import FinerINR, RunConfig, Target, fit_inr_to_image, invert
from ..inversion_core.schedules import SCHEDULES
from . import comfy_bridge
from .common import (
    CATEGORY,
    MAX_SEED,
    MAX_SIZE,
    AugmentSettingsType,
    ClipType,
    InrSettingsType,
    InrType,
    LossType,
    PerformanceSettingsType,
    ScheduleSettingsType,
    TargetType,
    image_to_comfy,
    image_to_engine,
    make_schema,
)
from .settings import AUGMENT_DEFAULTS, INR_DEFAULTS, PERFORMANCE_DEFAULTS, SCHEDULE_DEFAULTS, PerformanceConfig

DEFAULT_STEPS = 400  # the paper's main setting
DEFAULT_FIT_STEPS = 300  # pixel-regression steps for an init image (the engine's default)


# --- widgets shared by the optimiser and the task nodes ----------------------------------------


def clip_inputs() -> list[io.Input]:
    return [ClipType.Input("clip", tooltip="CLIP to invert, from 'Load CLIP for Inversion'.")]


def ensemble_inputs() -> list[io.Input]:
    return [
        ClipType.Input("clip_2", optional=True, tooltip="Optional second CLIP: the losses of all CLIPs are summed "
                       "(an ensemble), which gives images more models agree on. Same device as clip."),
        ClipType.Input("clip_3", optional=True, tooltip="Optional third CLIP for the ensemble."),
    ]


def steps_input(default: int = DEFAULT_STEPS) -> io.Int.Input:
    return io.Int.Input("steps", default=default, min=1, max=10000,
                        tooltip="Optimisation steps. The paper uses 400; 40 already shows the idea at lower "
                        "quality. Time grows linearly.")


def seed_input() -> io.Int.Input:
    return io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True,
                        tooltip="Seeds the INR's random start and the augmentations (image i of a batch uses "
                        "seed + i). Same seed and settings = same image.")


def learning_rate_input(default: float = SCHEDULE_DEFAULTS.lr) -> io.Float.Input:
    return io.Float.Input("learning_rate", default=default, min=0.00001, max=0.1, step=0.0001,
                          round=0.00001, tooltip="Peak Adam learning rate of the INR (each layer's rate follows "
                          "the schedule). Too high gives noise or a NaN error; too low barely changes the image.")


def views_input() -> io.Int.Input:
    return io.Int.Input("views", default=AUGMENT_DEFAULTS.views, min=1, max=256,
                        tooltip="Augmented views of each render CLIP sees per step. More = cleaner, less "
                        "adversarial images, proportionally slower; 8-32 is typical.")


def schedule_input() -> io.Combo.Input:
    return io.Combo.Input("schedule", options=list(SCHEDULES), default=SCHEDULE_DEFAULTS.kind,
                          tooltip="coarse_to_fine: CLIP⁻¹'s layer schedule (layout first, detail later; the "
                          "paper's most important piece). flat: every layer at the full rate.")


def fit_steps_input(tooltip: str) -> io.Int.Input:
    return io.Int.Input("fit_steps", default=DEFAULT_FIT_STEPS, min=1, max=5000, tooltip=tooltip)


def settings_inputs() -> list[io.Input]:
    return [
        InrSettingsType.Input("inr_settings", optional=True,
                              tooltip="From 'INR Settings'. Unconnected: the defaults (or the init INR's settings)."),
        ScheduleSettingsType.Input("schedule_settings", optional=True,
                                   tooltip="From 'Layer Schedule Settings'. Unconnected: the defaults."),
        AugmentSettingsType.Input("augment_settings", optional=True,
                                  tooltip="From 'Augmentation Settings'. Unconnected: the defaults."),
    ]


def performance_input() -> io.Input:
    """Appended after every other input, so workflows saved before it existed keep their slots."""
    return PerformanceSettingsType.Input("performance", optional=True,
                                         tooltip="From 'Performance Settings' (autocast precision, torch.compile). "
                                         "Unconnected: auto precision, no compilation.")


def loss_terms_input() -> io.Input:
    return LossType.Input("loss_terms", optional=True,
                          tooltip="Extra loss terms added to the objective every step, e.g. from 'Blending Loss' "
                          "(pull toward real images of a reference bank). Unconnected: the target loss only.")


def outputs() -> list[io.Output]:
    return [
        io.Image.Output(display_name="images", tooltip="The optimised images, at the run's width x height."),
        InrType.Output(display_name="inr", tooltip="The optimised INRs: render them at any size with 'Render INR', "
                       "or continue from them (init_inr)."),
    ]


def run_config(steps: int, width: int, height: int, learning_rate: float, views: int, schedule: str,
               inr_settings=None, schedule_settings=None, augment_settings=None, inr_default=None,
               performance=None) -> RunConfig:
    """One RunConfig from widgets and optional settings objects (engine defaults when absent)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {schedule!r}")
    if performance is not None and not isinstance(performance, PerformanceConfig):
        raise ValueError(f"performance must come from a 'Performance Settings' node, got {type(performance).__name__}")
    perf = performance or PERFORMANCE_DEFAULTS
    inr = inr_settings or inr_default or INR_DEFAULTS
    schedule_config = dataclasses.replace(schedule_settings or SCHEDULE_DEFAULTS, kind=schedule, lr=learning_rate)
    augment = dataclasses.replace(augment_settings or AUGMENT_DEFAULTS, views=views)
    return RunConfig(steps=steps, width=width, height=height, inr=inr, schedule=schedule_config, augment=augment,
                     precision=perf.precision, compile=perf.compile)


def loss_term_list(value) -> list:
    """The ``loss_terms`` input as a list: None -> [], one term -> [term], a list stays a list.

    The engine keys terms by ``name`` each step and refuses two of one name; the node refuses them
    first, in words that name the loss nodes to connect.
    """
    if value is None:
        return []
    terms = list(value) if isinstance(value, (list, tuple)) else [value]
    for term in terms:
        if not callable(term) or not isinstance(getattr(term, "name", None), str):
            raise ValueError(f"loss_terms must come from a loss node such as 'Blending Loss', "
                             f"got {type(term).__name__}")
    names = [term.name for term in terms]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"loss_terms holds several terms named {repeated}; connect one term of each kind")
    return terms


def node_outputs(result) -> io.NodeOutput:
    """Images and INRs on the intermediate device, detached, so no GPU memory stays held by the cache."""
    device = mm.intermediate_device()
    with torch.inference_mode(False):
        inr = result.inr.to(device).requires_grad_(False)
    return io.NodeOutput(image_to_comfy(result.images, device), inr)


def check_target(target) -> Target:
    if not isinstance(target, Target):
        raise ValueError(f"target must come from a Text/Image/Combine Targets node, got {type(target).__name__}")
    return target


# --- the node ------------------------------------------------------------------------------------


class INROptimizer(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return make_schema(
            node_id="CLIPInversionOptimizer",
            display_name="INR Optimizer (CLIP⁻¹)",
            category=CATEGORY,
            description=(
                "Generates images with CLIP alone (CLIP⁻¹, 'Implicit Inversion turns CLIP into a Decoder'): a "
                "small sine network (INR) is rendered, augmented into views, encoded by the frozen CLIP, and "
                "trained until the embedding matches the target. No diffusion model is involved. Shows a live "
                "preview; Cancel stops within one step. Connect init_inr to continue from a previous result, or "
                "init_image to start from a picture (it is fitted first). With a reference bank, connect Procrustes "
                "Projection (target), Robust Init (init_inr) and Blending Loss (loss_terms)."
            ),
            search_aliases=["clip inversion", "clip^-1", "clip decoder", "inr optimizer", "text to image"],
            inputs=[
                *clip_inputs(),
                TargetType.Input("target", tooltip="What to generate: a Text, Image or Combine Targets node."),
                io.Int.Input("width", default=224, min=16, max=MAX_SIZE, step=8,
                             tooltip="Width of the optimised render, in pixels. 224 is CLIP's own input size; "
                             "larger costs memory quadratically. The INR output renders at any size later."),
                io.Int.Input("height", default=224, min=16, max=MAX_SIZE, step=8,
                             tooltip="Height of the optimised render, in pixels (see width)."),
                io.Int.Input("batch_size", default=1, min=1, max=64,
                             tooltip="Images generated together for the same target, each with its own seed "
                             "(seed + index). Memory grows linearly."),
                steps_input(),
                seed_input(),
                learning_rate_input(),
                views_input(),
                schedule_input(),
                fit_steps_input("Steps fitting the INR to init_image before optimising (only used when "
                                "init_image is connected). More = closer start."),
                *ensemble_inputs(),
                InrType.Input("init_inr", optional=True,
                              tooltip="Start from these INRs (e.g. a previous run) instead of a random one. One INR "
                              "is shared by the whole batch; otherwise one per image. Not with init_image."),
                io.Image.Input("init_image", optional=True,
                               tooltip="Start from this picture: an INR is fitted to it (fit_steps) and then "
                               "optimised toward the target. One image, or one per batch item. Not with init_inr."),
                *settings_inputs(),
                loss_terms_input(),
                performance_input(),
            ],
            outputs=outputs(),
        )

    @classmethod
    def execute(cls, clip, target, width: int, height: int, batch_size: int, steps: int, seed: int,
                learning_rate: float, views: int, schedule: str, fit_steps: int, clip_2=None, clip_3=None,
                init_inr=None, init_image=None, inr_settings=None, schedule_settings=None,
                augment_settings=None, loss_terms=None, performance=None) -> io.NodeOutput:
        clips = comfy_bridge.as_clips([clip, clip_2, clip_3], ["clip", "clip_2", "clip_3"])
        target = check_target(target)
        terms = loss_term_list(loss_terms)
        if init_inr is not None and init_image is not None:
            raise ValueError("connect either init_inr or init_image, not both")
        if isinstance(init_inr, FinerINR) and init_inr.batch_size not in (1, batch_size):
            raise ValueError(f"init_inr holds {init_inr.batch_size} INRs but batch_size is {batch_size}: set the same "
                             "batch_size here and on the node that made init_inr (e.g. Robust Init), or give one INR "
                             "to start every image from it")
        config = run_config(steps, width, height, learning_rate, views, schedule, inr_settings, schedule_settings,
                            augment_settings, inr_default=getattr(init_inr, "config", None), performance=performance)
        pixels = None
        if init_image is not None:
            pixels = image_to_engine(init_image, "init_image")
            if pixels.shape[0] not in (1, batch_size):
                raise ValueError(f"init_image holds {pixels.shape[0]} images; give 1 or batch_size ({batch_size})")
            pixels = F.interpolate(pixels, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
        bundles = comfy_bridge.load_for_run(clips, comfy_bridge.estimated_run_bytes(config, batch_size))
        device = bundles[0].device
        progress = comfy_bridge.RunProgress(steps, fit_steps if pixels is not None else 0)
        with comfy_bridge.gradient_run(config, batch_size, device):
            init = init_inr
            if pixels is not None:
                init = fit_inr_to_image(pixels.to(device), config.inr, steps=fit_steps, seed=seed,
                                        callback=progress.fit_step)
            result = invert(bundles, [target] * batch_size, config, init=init, seed=seed, loss_terms=terms,
                            callback=progress.step)
        return node_outputs(result)
