"""The optimisation loop: fit a batch of FINER INRs so frozen CLIP sees the targets in their renders.

Each step renders the INRs, augments every render into n views, encodes the views with each CLIP
of the ensemble, and takes one Adam step whose per-layer learning rates follow the layer schedule.
Images of a batch are independent (their own INR, targets, seeds and augmentation draws, and the
loss is a sum over images), so a batch reproduces its members run one by one.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ._grad import autograd_enabled
from ._config import check_config, config_from_dict, config_to_dict
from .augment import AugmentConfig, Augmenter
from .clip_models import ClipBundle
from .inr import FinerINR, INRConfig
from .losses import LossTerm, mean_view_embedding, target_loss
from .schedules import ScheduleConfig, layer_learning_rates
from .seeds import image_seeds, seed_generators
from .targets import Target

FINITE_CHECK_EVERY = 10  # steps between non-finite checks (each one is a host sync)
AUTOCAST_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
COMPILE_MODES = ("off", "default", "reduce-overhead")


@dataclass(frozen=True)
class RunConfig:
    steps: int = 400  # optimisation steps (the paper's main results use 400; 40 works at lower quality)
    width: int = 224  # render width in pixels
    height: int = 224  # render height in pixels
    inr: INRConfig = field(default_factory=INRConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    precision: str = "auto"  # CLIP pass: auto (bf16 on CUDA, fp16 without bf16, fp32 elsewhere) | fp32 | bf16 | fp16
    compile: str = "off"  # torch.compile of render and CLIP pass: off | default | reduce-overhead (CUDA graphs)

    def __post_init__(self) -> None:
        problems = []
        if self.precision not in AUTOCAST_PRECISIONS:
            problems.append(f"precision must be one of {AUTOCAST_PRECISIONS}, got {self.precision!r}")
        if self.compile not in COMPILE_MODES:
            problems.append(f"compile must be one of {COMPILE_MODES}, got {self.compile!r}")
        if not 1 <= self.steps <= 100_000:
            problems.append(f"steps must be in 1..100000, got {self.steps}")
        for name in ("width", "height"):
            if not 8 <= getattr(self, name) <= 8192:
                problems.append(f"{name} must be in 8..8192 pixels, got {getattr(self, name)}")
        check_config("RunConfig", problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps, "width": self.width, "height": self.height,
            "inr": config_to_dict(self.inr), "schedule": config_to_dict(self.schedule),
            "augment": config_to_dict(self.augment), "precision": self.precision, "compile": self.compile,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        nested = {"inr": INRConfig, "schedule": ScheduleConfig, "augment": AugmentConfig}
        flat = {k: v for k, v in data.items() if k not in nested}
        parts = {k: config_from_dict(c, data[k]) for k, c in nested.items() if k in data}
        return dataclasses.replace(config_from_dict(cls, flat), **parts)


@dataclass
class StepProgress:
    """What the per-step callback sees. ``images`` is the render this step optimised (detached)."""

    step: int  # 1-based
    total: int
    images: torch.Tensor  # (B, 3, H, W) in [0, 1]
    loss_tensor: torch.Tensor = field(repr=False)  # (B,) total loss per image

    @property
    def loss(self) -> float:
        """Batch-mean loss (a host sync: read it only when you display it)."""
        return float(self.loss_tensor.mean())


# Return a truthy value to stop after this step; raise to abort (ComfyUI's interrupt does).
StepCallback = Callable[[StepProgress], Any]


@dataclass
class InversionResult:
    images: torch.Tensor  # (B, 3, H, W) in [0, 1], the final render
    inr: FinerINR  # re-render at any size with inr(height, width), or pass as init to refine
    history: list[dict[str, float]]  # per step: batch-mean of every named loss term
    seeds: list[int]
    stopped_early: bool = False


def invert(
    clips: ClipBundle | Sequence[ClipBundle],
    targets: Target | Sequence[Target],
    config: RunConfig = RunConfig(),
    *,
    init: FinerINR | None = None,
    seed: int | Sequence[int] = 0,
    loss_terms: Sequence[LossTerm] = (),
    callback: StepCallback | None = None,
) -> InversionResult:
    """Optimise one INR per target so that CLIP's embedding of its augmented renders matches it.

    clips: one CLIP or an ensemble (losses summed). targets: one per image of the batch.
    init: INRs to start from (batch 1 is broadcast to every target); random FINER init otherwise.
    Works inside ``torch.inference_mode()`` (ComfyUI runs nodes that way): gradients are enabled
    locally and every input is cloned into a normal tensor first.
    """
    clips = [clips] if isinstance(clips, ClipBundle) else list(clips)
    targets = [targets] if isinstance(targets, Target) else list(targets)
    if not clips:
        raise ValueError("invert needs at least one CLIP model")
    if not targets:
        raise ValueError("invert needs at least one target")
    devices = {clip.device for clip in clips}
    if len(devices) > 1:
        raise ValueError(f"all CLIP models of an ensemble must be on one device, got {sorted(map(str, devices))}")
    repeated = sorted({c.identity for c in clips if sum(o.identity == c.identity for o in clips) > 1})
    if repeated:
        raise ValueError(f"the ensemble holds the same CLIP more than once ({', '.join(repeated)}): losses are "
                         "kept per CLIP, so pass each model once")
    device = devices.pop()
    seeds = image_seeds(seed, len(targets))
    names = [term.name for term in loss_terms]
    if len(set(names)) != len(names) or any(name.startswith("target") for name in names):
        raise ValueError(f"loss terms need distinct names that do not start with 'target', got {names}")

    with autograd_enabled():
        for clip in clips:
            clip.make_autograd_ready()
        inr = _initial_inr(init, config.inr, seeds, device)
        vectors, weights = zip(*(_stack_targets(targets, clip) for clip in clips))
        try:
            return _optimise(clips, inr, vectors, weights, config, seeds, loss_terms, callback)
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not is_out_of_memory(exc):
                raise
            raise MemoryError(
                f"out of memory on {device} optimising {len(targets)} image(s) of {config.width}x{config.height} "
                f"with {config.augment.views} views and {len(clips)} CLIP model(s). Lower the batch size, the "
                "views, or the render size (a larger final image can be re-rendered from the INR afterwards)."
            ) from exc


def _initial_inr(init: FinerINR | None, config: INRConfig, seeds: list[int], device: torch.device) -> FinerINR:
    if init is None:
        return FinerINR.seeded(config, seeds, device)
    if init.config != config:
        raise ValueError(
            f"the initial INR was made with {init.config}, but this run uses {config}; "
            "use the same INR settings as the init (or drop the init)"
        )
    if init.batch_size not in (1, len(seeds)):
        raise ValueError(f"initial INR holds {init.batch_size} images but there are {len(seeds)} targets")
    members = [0] * len(seeds) if init.batch_size == 1 else range(len(seeds))
    return init.select(members).to(device)


def _stack_targets(targets: list[Target], clip: ClipBundle) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, D) vectors and (B, T) weights, zero-padded to the longest target."""
    resolved = [target.embeddings(clip) for target in targets]
    for target, (_, w) in zip(targets, resolved):
        if not (w > 0).any():
            raise ValueError(f"target {target} has no positive weight: nothing to move toward")
    longest = max(v.shape[0] for v, _ in resolved)
    vectors = torch.zeros(len(targets), longest, clip.embed_dim, device=clip.device)
    weights = torch.zeros(len(targets), longest, device=clip.device)
    for i, (v, w) in enumerate(resolved):
        vectors[i, : v.shape[0]] = v
        weights[i, : w.shape[0]] = w
    return vectors, weights


def _optimise(clips, inr, vectors, weights, config: RunConfig, seeds, loss_terms, callback) -> InversionResult:
    device = vectors[0].device
    groups = [{"params": params, "lr": config.schedule.lr} for params in inr.layer_parameters()]
    optimizer = torch.optim.Adam(groups)
    augmenters = [Augmenter(config.augment, clip.image_size) for clip in clips]
    generators = seed_generators(seeds, device)
    amp = autocast_dtype(config.precision, device, clips[0].dtype)
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 and device.type == "cuda" else None
    render_fn = maybe_compile(inr.forward, config.compile)
    encoders = [maybe_compile(clip.encode_image, config.compile) for clip in clips]
    history: list[dict[str, torch.Tensor]] = []
    stopped_early = False
    for step in range(config.steps):
        for group, lr in zip(optimizer.param_groups, layer_learning_rates(step, config.steps, len(groups), config.schedule)):
            group["lr"] = lr
        render = render_fn(config.height, config.width)  # (B, 3, H, W), fp32: sines need it
        terms, embeddings = {}, {}
        for clip, encode, augment, target_vectors, target_weights in zip(clips, encoders, augmenters, vectors, weights):
            views = augment(render, generators)  # (B * n, 3, S, S)
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                view_embeddings = encode(views)  # (B * n, D), returned in fp32
            embedding = mean_view_embedding(view_embeddings, config.augment.views)  # (B, D)
            embeddings[clip.identity] = embedding
            name = "target" if len(clips) == 1 else f"target/{clip.identity}"
            terms[name] = target_loss(embedding, target_vectors, target_weights)
        for term in loss_terms:
            terms[term.name] = term(render, embeddings, clips)
        per_image = torch.stack(list(terms.values())).sum(0)  # (B,)
        optimizer.zero_grad(set_to_none=True)
        total = per_image.sum()  # a sum keeps the images independent
        if scaler is None:
            total.backward()
            optimizer.step()
        else:
            scaler.scale(total).backward()
            scaler.step(optimizer)
            scaler.update()
        history.append({name: value.detach().mean() for name, value in terms.items()})
        if (step + 1) % FINITE_CHECK_EVERY == 0 or step + 1 == config.steps:
            _check_finite(per_image, step, config.schedule.lr)
        if callback is not None and callback(StepProgress(step + 1, config.steps, render.detach(), per_image.detach())):
            stopped_early = step + 1 < config.steps
            break
    with torch.no_grad():
        images = inr(config.height, config.width).clamp(0, 1)
    return InversionResult(
        images=images.detach(),
        inr=inr,
        history=[{k: float(v) for k, v in entry.items()} for entry in history],
        seeds=list(seeds),
        stopped_early=stopped_early,
    )


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA raises torch.OutOfMemoryError; the CPU allocator raises a RuntimeError saying so."""
    text = str(exc)
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def autocast_dtype(precision: str, device: torch.device,
                   weights: torch.dtype = torch.float32) -> torch.dtype | None:
    """The autocast dtype of the CLIP pass, or None for plain fp32. 'auto' uses bf16 on CUDA (fp16
    on GPUs without bf16), or the weights' own half type when they are stored in one (layers that
    autocast leaves alone, e.g. batch norm, cannot mix bf16 and fp16), and fp32 on CPU, where
    autocast is slower than fp32."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        if weights in (torch.float16, torch.bfloat16):
            return weights
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def maybe_compile(fn: Callable, mode: str) -> Callable:
    """``torch.compile(fn, mode)``, falling back to ``fn`` (with a warning) where compiling fails,
    e.g. without a C++ compiler or on an unsupported platform."""
    if mode == "off":
        return fn
    compiled = torch.compile(fn, mode=mode)
    chosen: list[Callable] = []  # decided on the first call, where compile errors surface

    def call(*args, **kwargs):
        if chosen:
            return chosen[0](*args, **kwargs)
        try:
            out = compiled(*args, **kwargs)
            chosen.append(compiled)
        except Exception as exc:  # backends fail with many exception types
            warnings.warn(f"torch.compile failed ({type(exc).__name__}: {exc}); running eagerly", RuntimeWarning)
            chosen.append(fn)
            out = fn(*args, **kwargs)
        return out

    return call


def _check_finite(per_image: torch.Tensor, step: int, lr: float) -> None:
    if not torch.isfinite(per_image).all():
        raise ValueError(
            f"the loss became non-finite (NaN/inf) by step {step + 1}; lower the learning rate "
            f"(currently {lr:g}, try {lr / 3:.2g}) or the INR's omega/first_bias_scale"
        )
