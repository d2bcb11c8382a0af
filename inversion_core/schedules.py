"""Per-layer learning-rate schedules for the INR: coarse-to-fine (CLIP⁻¹) and flat.

CLIP⁻¹'s layer schedule gives layer l the rate lr_max · exp(-(l - μ(t))² / (2σ²)) with the peak
μ(t) sweeping from the first layer to the last: shallow layers (layout, low frequencies) learn
first, deep layers (detail) later. The paper's ablation finds it the single most important
piece. σ, the sweep shape and the floor are ours, not published values.

Everything here is a pure function of (step, total steps, layer count, config), so schedules can
be tested and plotted without a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._config import check_config

SCHEDULES = ("coarse_to_fine", "flat")


@dataclass(frozen=True)
class ScheduleConfig:
    kind: str = "coarse_to_fine"  # coarse_to_fine | flat
    lr: float = 1e-3  # lr_max, the peak Adam learning rate (ours)
    sigma: float = 1.0  # Gaussian width in layers (ours)
    sweep_end: float = 0.6  # fraction of the run after which μ stays on the last layer (ours)
    floor: float = 0.05  # minimum factor, so no layer is ever frozen (ours)
    warmup: float = 0.05  # fraction of the run with a linear ramp-up of all rates (ours)

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in SCHEDULES:
            problems.append(f"kind must be one of {SCHEDULES}, got {self.kind!r}")
        if not 0 < self.lr <= 1:
            problems.append(f"lr must be in (0, 1], got {self.lr}")
        if not self.sigma > 0:
            problems.append(f"sigma must be > 0 (layers), got {self.sigma}")
        if not 0 < self.sweep_end <= 1:
            problems.append(f"sweep_end must be in (0, 1], got {self.sweep_end}")
        if not 0 <= self.floor <= 1:
            problems.append(f"floor must be in [0, 1], got {self.floor}")
        if not 0 <= self.warmup < 1:
            problems.append(f"warmup must be in [0, 1), got {self.warmup}")
        check_config("ScheduleConfig", problems)


def sweep_position(step: int, total: int, num_layers: int, sweep_end: float) -> float:
    """μ(t): the peak layer, linear from 0 to num_layers - 1 over the first ``sweep_end`` of the run."""
    progress = step / max(total - 1, 1)
    return (num_layers - 1) * min(progress / sweep_end, 1.0)


def gaussian_layer_factor(layer: int, mu: float, sigma: float) -> float:
    """exp(-(l - μ)² / (2σ²)), the coarse-to-fine weight of one layer."""
    return math.exp(-((layer - mu) ** 2) / (2 * sigma**2))


def layer_learning_rates(step: int, total: int, num_layers: int, config: ScheduleConfig) -> list[float]:
    """Learning rate of each layer at ``step`` (0-based) of ``total``, shallow to deep."""
    ramp = min(1.0, (step + 1) / (config.warmup * total)) if config.warmup > 0 else 1.0
    if config.kind == "flat":
        return [config.lr * ramp] * num_layers
    mu = sweep_position(step, total, num_layers, config.sweep_end)
    return [
        config.lr * ramp * max(config.floor, gaussian_layer_factor(layer, mu, config.sigma))
        for layer in range(num_layers)
    ]
