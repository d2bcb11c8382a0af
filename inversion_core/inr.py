"""FINER: a frequency-aware sine network used as the image generator, batched over images.

FINER (Liu et al., "FINER: Flexible spectral-bias tuning in Implicit NEural Representation by
Variable-periodic Activation Functions", CVPR 2024) replaces SIREN's sin(ω z) with
sin(ω (|z| + 1) z): the local frequency grows with |z|, so the first-layer bias range k widens the
spectrum the network can express. Coordinates in [-1, 1] go in, RGB comes out.

Every layer holds a leading batch dimension, so B independent images are B independent
networks evaluated with one batched matmul per layer (no Python loop over images). Images are
rendered at whatever (height, width) a call asks for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn as nn

from ._config import check_config
from .seeds import seed_generators

OUTPUTS = ("sigmoid", "tanh", "clamp")


@dataclass(frozen=True)
class INRConfig:
    hidden_layers: int = 3  # sine layers after the first one; FINER's default is 3 x 256
    width: int = 256  # units per hidden layer
    omega: float = 30.0  # ω, the sine frequency factor (SIREN/FINER use 30)
    first_bias_scale: float = 1.0  # k: first-layer bias ~ U(-k, k); larger = higher frequencies (ours)
    output: str = "sigmoid"  # squashing to [0, 1]: sigmoid | tanh | clamp (ours: sigmoid)

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.hidden_layers <= 16:
            problems.append(f"hidden_layers must be in 1..16, got {self.hidden_layers}")
        if not 4 <= self.width <= 4096:
            problems.append(f"width must be in 4..4096, got {self.width}")
        if not self.omega > 0:
            problems.append(f"omega must be > 0, got {self.omega}")
        if not self.first_bias_scale >= 0:
            problems.append(f"first_bias_scale must be >= 0, got {self.first_bias_scale}")
        if self.output not in OUTPUTS:
            problems.append(f"output must be one of {OUTPUTS}, got {self.output!r}")
        check_config("INRConfig", problems)

    @property
    def num_layers(self) -> int:
        """Linear layers in total: first sine layer, hidden sine layers, linear output."""
        return self.hidden_layers + 2


def finer_activation(z: torch.Tensor, omega: float) -> torch.Tensor:
    """sin(ω (|z| + 1) z) with the scale (|z| + 1) treated as a constant, as FINER's reference does."""
    return torch.sin(omega * (z.abs().detach() + 1.0) * z)


def finer_init_(weight: torch.Tensor, bias: torch.Tensor, layer: int, num_layers: int, config: INRConfig,
                generator: torch.Generator | None) -> None:
    """SIREN/FINER initialisation of one batched layer, in place.

    First layer: W ~ U(-1/in, 1/in), b ~ U(-k, k) (FINER's bias scale). Later layers:
    W ~ U(-sqrt(6/in)/ω, sqrt(6/in)/ω) and b ~ U(-1/sqrt(in), 1/sqrt(in)) (PyTorch's Linear default).
    """
    fan_in = weight.shape[-1]
    with torch.no_grad():
        if layer == 0:
            weight.uniform_(-1.0 / fan_in, 1.0 / fan_in, generator=generator)
            bias.uniform_(-config.first_bias_scale, config.first_bias_scale, generator=generator)
        else:
            bound = math.sqrt(6.0 / fan_in) / config.omega
            weight.uniform_(-bound, bound, generator=generator)
            bias.uniform_(-1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in), generator=generator)


def coordinate_grid(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Pixel-centre coordinates, (H*W, 2) as (x, y) in [-1, 1]: each axis spans [-1, 1], so a render
    at another resolution samples the same continuous image."""
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height * 2 - 1
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width * 2 - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2)


class FinerINR(nn.Module):
    """B independent FINER networks mapping (x, y) to RGB; ``forward(h, w)`` renders (B, 3, h, w)."""

    def __init__(self, config: INRConfig = INRConfig(), batch_size: int = 1, *,
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.config = config
        self.batch_size = batch_size
        sizes = [2] + [config.width] * (config.hidden_layers + 1) + [3]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            weight = torch.empty(batch_size, fan_in, fan_out)  # (B, in, out): x @ W
            bias = torch.empty(batch_size, 1, fan_out)
            for b in range(batch_size):  # per-image draws, so a batch equals its members run alone
                finer_init_(weight[b], bias[b], layer, config.num_layers, config, generator)
            self.weights.append(nn.Parameter(weight.to(device)))
            self.biases.append(nn.Parameter(bias.to(device)))

    def layer_parameters(self) -> list[list[nn.Parameter]]:
        """Parameters grouped per linear layer, shallow to deep (for per-layer learning rates)."""
        return [[w, b] for w, b in zip(self.weights, self.biases)]

    def forward(self, height: int, width: int, coords: torch.Tensor | None = None) -> torch.Tensor:
        if coords is None:
            coords = coordinate_grid(height, width, self.weights[0].device)
        h = coords.unsqueeze(0).expand(self.batch_size, -1, -1)  # (B, H*W, 2)
        last = len(self.weights) - 1
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            z = torch.baddbmm(bias, h, weight)  # (B, H*W, out)
            h = z if layer == last else finer_activation(z, self.config.omega)
        rgb = self._squash(h)  # (B, H*W, 3)
        return rgb.transpose(1, 2).reshape(self.batch_size, 3, height, width)

    @torch.no_grad()
    def render(self, height: int, width: int, max_pixels: int = 1 << 18, *,
               out_device: torch.device | str | None = None,
               callback: Callable[[int, int], object] | None = None) -> torch.Tensor:
        """``forward`` without gradients, in chunks of ``max_pixels`` pixels over the whole batch
        (``max_pixels // batch_size`` coordinates each), so large renders (e.g. 4096²) need memory
        for one chunk of activations only, whatever the batch size. Same pixels as ``forward``.

        ``out_device`` (default: the INR's) receives each chunk as it is made, so a render larger
        than the accelerator's free memory can still be assembled in host memory.
        ``callback(done, total)`` after each chunk (progress; raise in it to cancel).
        """
        coords = coordinate_grid(height, width, self.weights[0].device)
        image = torch.empty(self.batch_size, 3, height * width, dtype=self.weights[0].dtype,
                            device=out_device or coords.device)
        done = 0
        for chunk in coords.split(max(1, max_pixels // self.batch_size)):
            image[..., done:done + len(chunk)] = self(1, len(chunk), coords=chunk).flatten(2)  # (B, 3, n)
            done += len(chunk)
            if callback is not None:
                callback(done, len(coords))
        return image.reshape(self.batch_size, 3, height, width)

    def _squash(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.output == "sigmoid":
            return torch.sigmoid(x)
        if self.config.output == "tanh":
            return (torch.tanh(x) + 1) / 2
        return ((x + 1) / 2).clamp(0, 1)

    @classmethod
    def from_tensors(cls, config: INRConfig, weights: Sequence[torch.Tensor],
                     biases: Sequence[torch.Tensor]) -> "FinerINR":
        """Wrap per-layer tensors ((B, in, out) weights, (B, 1, out) biases) as a new INR, copying them."""
        out = cls.__new__(cls)
        nn.Module.__init__(out)
        out.config = config
        out.batch_size = weights[0].shape[0]
        out.weights = nn.ParameterList(nn.Parameter(w.detach().clone()) for w in weights)
        out.biases = nn.ParameterList(nn.Parameter(b.detach().clone()) for b in biases)
        return out

    def select(self, indices: Sequence[int]) -> "FinerINR":
        """A new INR holding copies of the given batch members."""
        index = torch.as_tensor(list(indices), dtype=torch.long, device=self.weights[0].device)
        return FinerINR.from_tensors(self.config, [w[index] for w in self.weights], [b[index] for b in self.biases])

    @classmethod
    def seeded(cls, config: INRConfig, seeds: Sequence[int], device: torch.device | str = "cpu") -> "FinerINR":
        """One member per seed, each drawn from a CPU generator of its own seed, so a member's
        initial weights depend on its seed alone, not on its batch or device."""
        return cls.stack([cls(config, 1, generator=g) for g in seed_generators(seeds)]).to(device)

    @staticmethod
    def stack(inrs: Sequence["FinerINR"]) -> "FinerINR":
        """Concatenate the batches of several INRs with one configuration."""
        if not inrs:
            raise ValueError("FinerINR.stack needs at least one INR")
        configs = {inr.config for inr in inrs}
        if len(configs) > 1:
            raise ValueError(f"cannot stack INRs with different configs: {sorted(map(str, configs))}")
        layers = range(len(inrs[0].weights))
        return FinerINR.from_tensors(
            inrs[0].config,
            [torch.cat([inr.weights[i] for inr in inrs]) for i in layers],
            [torch.cat([inr.biases[i] for inr in inrs]) for i in layers],
        )

    def clone(self) -> "FinerINR":
        """An independent copy (also usable to leave torch.inference_mode tensors behind)."""
        return self.select(range(self.batch_size))

    def extra_repr(self) -> str:
        return f"batch_size={self.batch_size}, {self.config}"
