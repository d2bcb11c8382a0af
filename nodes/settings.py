"""Settings nodes: INR, layer schedule, augmentation and performance settings for the optimiser and
task nodes.

Each node only builds one engine config dataclass (performance: the two RunConfig fields it sets);
leaving a settings input unconnected uses the engine's defaults (the same values these nodes
show). The engine validates every field and its message names the field, so the nodes add no
checks of their own beyond widget ranges.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from comfy_api.latest import io

from ..inversion_core import AugmentConfig, INRConfig, RunConfig, ScheduleConfig
from ..inversion_core.inr import OUTPUTS
from .common import (
    CATEGORY,
    AugmentSettingsType,
    InrSettingsType,
    PerformanceSettingsType,
    ScheduleSettingsType,
    choice,
    make_schema,
)

INR_DEFAULTS = INRConfig()
SCHEDULE_DEFAULTS = ScheduleConfig()
AUGMENT_DEFAULTS = AugmentConfig()
RUN_DEFAULTS = RunConfig()


def _fraction(name: str, default: float, tooltip: str, low: float = 0.0, high: float = 1.0) -> io.Float.Input:
    """A fraction widget; ``low``/``high`` narrow it to what the engine accepts, so ComfyUI's own
    validation refuses the rest before the run (open bounds such as (0, 1] end one step inside)."""
    return io.Float.Input(name, default=default, min=low, max=high, step=0.01, tooltip=tooltip)


class INRSettings(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return make_schema(
            node_id="CLIPInversionINRSettings",
            display_name="INR Settings",
            category=f"{CATEGORY}/settings",
            description=(
                "Shape of the image generator: a FINER sine network mapping pixel coordinates to colour. "
                "Depth and width set how much detail it can hold; omega and the first-layer bias scale set "
                "its frequency range. An INR used as init must have the same settings."
            ),
            search_aliases=["finer", "siren", "implicit neural representation", "inr"],
            inputs=[
                io.Int.Input("hidden_layers", default=INR_DEFAULTS.hidden_layers, min=1, max=16,
                             tooltip="Sine layers after the first (FINER's default 3). More = finer detail, slower."),
                io.Int.Input("width", default=INR_DEFAULTS.width, min=8, max=1024, step=8,
                             tooltip="Units per hidden layer (FINER's default 256). Memory and time grow with it."),
                io.Float.Input("omega", default=INR_DEFAULTS.omega, min=1.0, max=100.0, step=0.5,
                               tooltip="ω, the sine frequency factor (SIREN/FINER use 30). Higher = busier textures."),
                io.Float.Input("first_bias_scale", default=INR_DEFAULTS.first_bias_scale, min=0.0, max=20.0,
                               step=0.1, tooltip="k: first-layer bias drawn from U(-k, k). Larger widens the "
                               "frequency range (more high-frequency detail); 0 = plain low-frequency start."),
                io.Combo.Input("output", options=list(OUTPUTS), default=INR_DEFAULTS.output,
                               tooltip="How raw outputs are squashed to [0, 1] colours: sigmoid (smooth, default), "
                               "tanh (rescaled), clamp (hard limits, can stall at black/white)."),
            ],
            outputs=[InrSettingsType.Output(display_name="inr_settings", tooltip="INR settings for an optimiser.")],
        )

    @classmethod
    def execute(cls, hidden_layers: int, width: int, omega: float, first_bias_scale: float, output: str) -> io.NodeOutput:
        return io.NodeOutput(INRConfig(hidden_layers=hidden_layers, width=width, omega=omega,
                                       first_bias_scale=first_bias_scale, output=output))


class ScheduleSettings(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return make_schema(
            node_id="CLIPInversionScheduleSettings",
            display_name="Layer Schedule Settings",
            category=f"{CATEGORY}/settings",
            description=(
                "Shape of CLIP⁻¹'s coarse-to-fine layer schedule: each INR layer's learning rate follows a "
                "Gaussian whose peak sweeps from the first layer (layout) to the last (detail). The schedule "
                "kind and peak learning rate stay on the optimiser node; these values are ours, not the paper's."
            ),
            search_aliases=["learning rate schedule", "coarse to fine", "layer schedule"],
            inputs=[
                io.Float.Input("sigma", default=SCHEDULE_DEFAULTS.sigma, min=0.1, max=16.0, step=0.1,
                               tooltip="Width of the Gaussian, in layers. Small = one layer at a time; "
                               "large = all layers learn together (like 'flat')."),
                _fraction("sweep_end", SCHEDULE_DEFAULTS.sweep_end,
                          "Fraction of the run after which the peak stays on the last layer (0.6 = the sweep "
                          "takes the first 60% of the steps).", low=0.01),
                _fraction("floor", SCHEDULE_DEFAULTS.floor,
                          "Smallest learning-rate factor any layer gets, so no layer is frozen (0 = off-peak "
                          "layers stop learning, 1 = flat schedule)."),
                _fraction("warmup", SCHEDULE_DEFAULTS.warmup,
                          "Fraction of the run during which all rates ramp up linearly from 0 (0 = no warmup).",
                          high=0.99),
            ],
            outputs=[ScheduleSettingsType.Output(display_name="schedule_settings",
                                                 tooltip="Schedule shape for an optimiser.")],
        )

    @classmethod
    def execute(cls, sigma: float, sweep_end: float, floor: float, warmup: float) -> io.NodeOutput:
        return io.NodeOutput(ScheduleConfig(sigma=sigma, sweep_end=sweep_end, floor=floor, warmup=warmup))


class AugmentSettings(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        low, high = AUGMENT_DEFAULTS.crop_scale
        return make_schema(
            node_id="CLIPInversionAugmentSettings",
            display_name="Augmentation Settings",
            category=f"{CATEGORY}/settings",
            description=(
                "How each render is randomly cropped, sheared, colour-jittered and noised into the views CLIP "
                "sees every step. Augmentations stop the optimiser from finding adversarial pixel patterns; "
                "stronger ones give cleaner but less exact images. The number of views is set on the optimiser."
            ),
            search_aliases=["augmentation", "views", "cutouts", "jitter"],
            inputs=[
                _fraction("crop_min", low, "Smallest square crop, as a fraction of the image's short side.", low=0.01),
                _fraction("crop_max", high, "Largest square crop (1 = the whole short side). Must be >= crop_min.",
                          low=0.01),
                _fraction("translate", AUGMENT_DEFAULTS.translate,
                          "How far a crop may move within the free room (0 = always centred, 1 = anywhere)."),
                _fraction("shear", AUGMENT_DEFAULTS.shear, "Largest shear, as x shift per unit of y (0 = none)."),
                _fraction("brightness", AUGMENT_DEFAULTS.brightness,
                          "Brightness jitter: factor drawn from [1 - b, 1 + b] (0 = none)."),
                _fraction("contrast", AUGMENT_DEFAULTS.contrast, "Contrast jitter: factor from [1 - c, 1 + c]."),
                _fraction("saturation", AUGMENT_DEFAULTS.saturation, "Saturation jitter: factor from [1 - s, 1 + s]."),
                _fraction("noise", AUGMENT_DEFAULTS.noise,
                          "Largest std of Gaussian pixel noise added to a view (colours are 0..1; 0 = none)."),
            ],
            outputs=[AugmentSettingsType.Output(display_name="augment_settings",
                                                tooltip="Augmentation settings for an optimiser.")],
        )

    @classmethod
    def validate_inputs(cls, crop_min: float | None = None, crop_max: float | None = None) -> bool | str:
        for name, value in (("crop_min", crop_min), ("crop_max", crop_max)):
            if value is not None and not 0.0 < value <= 1.0:
                return f"{name} must be in (0, 1], got {value}"
        if crop_min is not None and crop_max is not None and crop_min > crop_max:
            return f"crop_min ({crop_min}) must not be larger than crop_max ({crop_max})"
        return True

    @classmethod
    def execute(cls, crop_min: float, crop_max: float, translate: float, shear: float, brightness: float,
                contrast: float, saturation: float, noise: float) -> io.NodeOutput:
        return io.NodeOutput(AugmentConfig(
            crop_scale=(crop_min, crop_max), translate=translate, shear=shear, brightness=brightness,
            contrast=contrast, saturation=saturation, noise=noise,
        ))


# --- performance ---------------------------------------------------------------------------------


class AutocastPrecision(str, Enum):
    """``precision`` combo -> RunConfig.precision (the label is the engine value)."""

    AUTO = "auto"  # bf16 on a CUDA GPU with bf16 support, fp16 on other CUDA GPUs, fp32 elsewhere
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


class CompileMode(str, Enum):
    """``compile`` combo -> RunConfig.compile (the label is the engine value)."""

    OFF = "off"
    DEFAULT = "default"
    REDUCE_OVERHEAD = "reduce-overhead"


@dataclass(frozen=True)
class PerformanceConfig:
    """The INVERSION_PERFORMANCE_SETTINGS value: how a run computes, not what it computes."""

    precision: str = RUN_DEFAULTS.precision  # RunConfig.precision: autocast dtype of the CLIP pass
    compile: str = RUN_DEFAULTS.compile  # RunConfig.compile: torch.compile mode of render + CLIP pass


PERFORMANCE_DEFAULTS = PerformanceConfig()


class PerformanceSettings(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return make_schema(
            node_id="CLIPInversionPerformanceSettings",
            display_name="Performance Settings",
            category=f"{CATEGORY}/settings",
            description=(
                "How a run computes, not what it computes: the precision of the CLIP pass (autocast) and "
                "whether the render and CLIP pass are compiled with torch.compile. Unconnected, runs use auto "
                "precision and no compilation. The choices change speed and memory, not the method; a lower "
                "precision or a compiled run gives a different image for the same seed (other rounding, "
                "which the optimisation amplifies)."
            ),
            search_aliases=["autocast", "torch.compile", "inversion speed"],
            inputs=[
                io.Combo.Input(
                    "precision", options=AutocastPrecision, default=AutocastPrecision(PERFORMANCE_DEFAULTS.precision),
                    tooltip=(
                        "Number format of the CLIP pass (the INR always computes in fp32). auto: bf16 on a "
                        "CUDA GPU (fp16 on GPUs without bf16, or the CLIP's own fp16/bf16 when Load CLIP stores "
                        "it so), fp32 on the CPU, where autocast is slower. "
                        "fp32: exact and slowest on a GPU. bf16: faster and lighter on recent GPUs, tiny "
                        "rounding differences. fp16: for older GPUs; gradients are scaled to avoid underflow."
                    ),
                ),
                io.Combo.Input(
                    "compile", options=CompileMode, default=CompileMode(PERFORMANCE_DEFAULTS.compile),
                    tooltip=(
                        "torch.compile of the render and the CLIP pass. off: no compilation (starts at once). "
                        "default: the first run waits for compilation (up to a minute), later steps and runs "
                        "are faster; pays off for long runs on a GPU. reduce-overhead: also CUDA graphs, "
                        "fastest per step, most memory. Falls back to off with a warning where compiling fails."
                    ),
                ),
            ],
            outputs=[PerformanceSettingsType.Output(display_name="performance",
                                                    tooltip="Performance settings for an optimiser or task node.")],
        )

    @classmethod
    def execute(cls, precision: str, compile: str) -> io.NodeOutput:
        return io.NodeOutput(PerformanceConfig(precision=choice(AutocastPrecision, precision, "precision").value,
                                               compile=choice(CompileMode, compile, "compile").value))
