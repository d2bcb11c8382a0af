"""The toy-world benchmark: every method inverts the same shipped toy CLIP, with the same step
budget, render size, views and augmentation, on held-out prompts (colour x shape pairs that
neither the CLIP's training data nor the reference set contains), and the pixel judge scores
what each image shows.

Per method it reports judge accuracy per attribute, the mean CLIP cosine between the final
image and its prompt, and wall time per image; it writes `results.json`, `results.md` and a
contact sheet (`contact_sheet.png`: one row per method, a clean world render of each prompt on
top). Above the methods, the report scores clean renders of the prompts and the CLIP's own
choice (`clip_choice`): how far the objective every method optimises can tell each attribute.

    python -m benchmarks.toyworld.run                        # full run, see README.md
    python -m benchmarks.toyworld.run --prompts 2 --steps 3 --views 2 --out /tmp/tw   # smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageDraw

from benchmarks.toyworld import baselines, judge, world
from benchmarks.toyworld.clip_metrics import MODEL_DIR, RENDER_DRAWS, clip_choice, from_uint8, load_engine_clip
from benchmarks.toyworld.make_reference_set import DEFAULT_DIR as REFERENCE_DIR

if TYPE_CHECKING:
    from inversion_core.awp import SeedConfig
    from inversion_core.bank import ReferenceBank
    from inversion_core.inr import FinerINR

# CLIP⁻¹ through the engine; the rest are `baselines.BASELINES`. The bank methods use a bank of
# `reference_set/`: "full" turns on all three stabilisers, each ablation switches one off.
BANK_METHODS: dict[str, dict] = {
    "clipinv_full": {},
    "clipinv_no_seed": {"use_seed": False},
    "clipinv_no_procrustes": {"procrustes": "off"},
    "clipinv_no_blending": {"blend_beta": 0.0},
}
ENGINE_METHODS: tuple[str, ...] = ("clipinv_plain", "clipinv_flat_schedule", *BANK_METHODS)
# No optimisation: the reference image whose caption is nearest the prompt, the image the full
# method's seed is fitted to. What the bank methods must beat for their optimisation to count.
RETRIEVAL = "retrieval"
# Rows that are not methods: clean renders of the prompts, and the CLIP's own choice (`clip_choice`).
WORLD_RENDER, CLIP_CHOICE = "(world render)", "(CLIP choice)"
METHODS: tuple[str, ...] = (*baselines.BASELINES, *ENGINE_METHODS, RETRIEVAL)
# The effects the benchmark exists to measure: (method, the method it is compared with, what differs).
COMPARISONS: tuple[tuple[str, str, str], ...] = (
    ("clipinv_plain", "pixel_tv", "INR + schedule vs free pixels"),
    ("clipinv_plain", "pyramid", "INR + schedule vs pixel pyramid"),
    ("clipinv_plain", "siren", "CLIP⁻¹'s INR + schedule vs a plain SIREN"),
    ("clipinv_plain", "clipinv_flat_schedule", "the coarse-to-fine layer schedule"),
    ("clipinv_full", "clipinv_plain", "the whole bank"),
    ("clipinv_full", "clipinv_no_seed", "the AWP seed start"),
    ("clipinv_full", "clipinv_no_procrustes", "the Procrustes projection"),
    ("clipinv_full", "clipinv_no_blending", "the blending loss"),
    ("clipinv_full", RETRIEVAL, "optimising from the seed vs returning its reference image"),
    ("clipinv_full", CLIP_CHOICE, "the full method vs what the CLIP itself tells apart"),
)


@dataclass(frozen=True)
class BenchmarkConfig:
    prompts: int = 48                # distinct held-out prompts (about half of them two-object)
    steps: int = 100                 # optimisation steps, every method
    size: int = 64                   # render size in pixels (the toy CLIP's input size)
    views: int = 8                   # augmented views per step, every method
    seed: int = 0                    # prompt draw and every method's initialisation
    methods: tuple[str, ...] = METHODS
    relational_prob: float = 0.25    # fraction of two-object prompts
    seed_steps: int = 150            # AWP seed fitting steps (bank methods), half of `bank build`'s

    def __post_init__(self) -> None:
        problems = [f"unknown method {m!r}" for m in self.methods if m not in METHODS]
        if min(self.prompts, self.steps, self.views, self.seed_steps) < 1:
            problems.append(f"prompts, steps, views and seed_steps must be >= 1, got {self.prompts}, "
                            f"{self.steps}, {self.views}, {self.seed_steps}")
        if self.size < world.MIN_RENDER_SIZE:
            problems.append(f"size must be >= {world.MIN_RENDER_SIZE}, got {self.size}")
        if problems:
            raise ValueError("invalid BenchmarkConfig: " + "; ".join(problems)
                             + f" (methods: {METHODS})")


@dataclass
class MethodScore:
    accuracy: dict[str, float]          # judge accuracy per attribute over the prompts naming it
    mean_accuracy: float                # mean over all (prompt, attribute) verdicts
    standard_error: float               # of mean_accuracy, bootstrapped over prompts
    clip_cosine: float | None           # mean cos(image embedding, prompt embedding)
    above_renders: float | None         # fraction of images the CLIP scores above every true render
    seconds_per_image: float | None
    verdicts: list[dict[str, bool]] = field(repr=False)


def summarise(verdicts: Sequence[dict[str, bool]], clip_cosine: float | None = None,
              above_renders: float | None = None, seconds_per_image: float | None = None
              ) -> MethodScore:
    """A row of the report from per-prompt verdicts (the image columns are None for a row that
    has no images of its own, such as the CLIP's choice)."""
    keys = [k for k in world.ATTRIBUTE_KEYS if any(k in v for v in verdicts)]
    accuracy = {k: float(np.mean([v[k] for v in verdicts if k in v])) for k in keys}
    return MethodScore(accuracy=accuracy, mean_accuracy=_mean_verdict(verdicts),
                       standard_error=bootstrap_standard_error(verdicts), clip_cosine=clip_cosine,
                       above_renders=above_renders, seconds_per_image=seconds_per_image,
                       verdicts=list(verdicts))


def held_out_prompts(count: int, seed: int, relational_prob: float = 0.25
                     ) -> list[tuple[str, dict[str, str]]]:
    """(canonical caption, attributes) of `count` distinct held-out scenes."""
    rng = np.random.default_rng(seed)
    scenes = world.distinct_scenes(count, "held_out", rng, relational_prob)
    return [(world.canonical_caption(s), s.attributes()) for s in scenes]


@dataclass
class SeededBank:
    """The reference set's bank plus the AWP seeds the benchmark prompts retrieve.

    `bank build` would fit a seed for all 384 reference images (about an hour on 2 CPU cores);
    only the entry nearest each prompt is ever used as a start, so the benchmark fits those,
    with the seed `bank build` gives entry i (random seed i), and no others."""

    bank: ReferenceBank  # embeddings only
    references: list[Path]  # per prompt, the image of the entry whose caption is nearest
    seeds: FinerINR | None  # their seeds; None when built without a SeedConfig

    @classmethod
    def build(cls, clip, prompts: list[str], reference_set: Path, inr_config,
              seed_config: SeedConfig | None) -> SeededBank:
        from inversion_core.awp import fit_seeds
        from inversion_core.bank import load_bank
        from inversion_core.bank_build import build_bank

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bank.safetensors"
            build_bank(reference_set, path, clip, with_seeds=False, progress=False)
            bank = load_bank(path, clip)
        _, nearest = bank.nearest_pairs(clip.encode_text(prompts), 1)  # the rule of nearest_seeds
        entries = nearest[:, 0].tolist()
        references = [reference_set / bank.sources[i] for i in entries]
        seeds = None
        if seed_config is not None:
            seeds, _ = fit_seeds(load_references(references, seed_config.size), inr_config, seed_config, seeds=entries)
        return cls(bank, references, seeds)


def load_references(paths: Sequence[Path], size: int) -> torch.Tensor:
    from inversion_core.bank_build import load_square_image

    return torch.stack([load_square_image(str(path), size) for path in paths])


def _engine_images(method: str, clip, prompts: list[str], cfg: BenchmarkConfig,
                   seeded: SeededBank | None) -> torch.Tensor:
    from inversion_core import AugmentConfig, RunConfig, ScheduleConfig, text_to_image
    from inversion_core.bank_guidance import BankOptions

    run = RunConfig(steps=cfg.steps, width=cfg.size, height=cfg.size,
                    augment=AugmentConfig(views=cfg.views))
    if method == "clipinv_plain":
        return text_to_image(clip, prompts, run, seed=cfg.seed).images
    if method == "clipinv_flat_schedule":  # ablation: no coarse-to-fine layer schedule
        flat = dataclasses.replace(run, schedule=ScheduleConfig(kind="flat"))
        return text_to_image(clip, prompts, flat, seed=cfg.seed).images
    options = BankOptions(**BANK_METHODS[method])
    init = seeded.seeds if options.use_seed else None  # the seeds the bank would give (invert copies them)
    return text_to_image(clip, prompts, run, seed=cfg.seed, bank=seeded.bank, bank_options=options,
                         init=init).images


def generate(method: str, clip, prompts: list[str], cfg: BenchmarkConfig,
             seeded: SeededBank | None = None) -> torch.Tensor:
    """(B, 3, size, size) images in [0, 1], one per prompt, by `method` (bank methods and
    retrieval need `seeded`)."""
    if method == RETRIEVAL:
        return load_references(seeded.references, cfg.size)
    if method in baselines.BASELINES:
        seeds = [cfg.seed + i for i in range(len(prompts))]
        from inversion_core import AugmentConfig

        return baselines.run_baseline(method, clip, clip.encode_text(prompts), steps=cfg.steps,
                                      size=cfg.size, augment=AugmentConfig(views=cfg.views),
                                      seeds=seeds).images
    return _engine_images(method, clip, prompts, cfg, seeded)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [0, 1] -> (B, H, W, 3) uint8, the judge's and PIL's layout."""
    return (images.detach().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def best_render_cosines(clip, attributes: Sequence[dict[str, str]], prompts: list[str], size: int,
                        seed: int, draws: int = RENDER_DRAWS) -> torch.Tensor:
    """(B,) the highest cos(render, prompt) among `draws` clean renders of each prompt's scene
    (fresh textures, clutter and lighting each): what a faithful image can expect from this CLIP.

    An image the CLIP scores above all of them, yet the judge rejects, is the CLIP being fooled,
    not the optimiser failing: no better optimiser of the CLIP objective would move toward the
    truth. The `above renders` column counts such images."""
    scenes = [world.Scene.from_attributes(a) for a in attributes]
    best = torch.full((len(scenes),), -1.0)
    with torch.no_grad():
        text = clip.encode_text(prompts)
        for draw in range(draws):
            rng = np.random.default_rng([seed, draw])
            renders = from_uint8(np.stack([world.render(s, size, rng) for s in scenes]))
            best = torch.maximum(best, (clip.encode_image(renders) * text).sum(-1).cpu())
    return best


def score(images: torch.Tensor, attributes: Sequence[dict[str, str]], clip, prompts: list[str],
          seconds: float, best_render: torch.Tensor) -> MethodScore:
    """Judge and CLIP scores of one method's images; `best_render` from `best_render_cosines`."""
    verdicts = [judge.judge(image, attrs) for image, attrs in zip(to_uint8(images), attributes)]
    with torch.no_grad():
        cosines = (clip.encode_image(images) * clip.encode_text(prompts)).sum(-1).cpu()
    return summarise(verdicts, clip_cosine=float(cosines.mean()),
                     above_renders=float((cosines > best_render).float().mean()),
                     seconds_per_image=seconds / len(prompts))


def _prompt_draws(count: int, resamples: int) -> np.ndarray:
    """Bootstrap resamples of prompt indices; one fixed generator, so every report draws alike."""
    return np.random.default_rng(0).integers(0, count, (resamples, count))


def _resampled_means(verdicts: Sequence[dict[str, bool]], draws: np.ndarray) -> np.ndarray:
    """The mean verdict of each resample of prompts (a row of `draws`)."""
    hits = np.array([sum(v.values()) for v in verdicts], dtype=float)
    counts = np.array([len(v) for v in verdicts], dtype=float)
    return hits[draws].sum(1) / counts[draws].sum(1)


def _mean_verdict(verdicts: Sequence[dict[str, bool]]) -> float:
    return float(np.mean([ok for v in verdicts for ok in v.values()]))


def bootstrap_standard_error(verdicts: Sequence[dict[str, bool]], resamples: int = 2000) -> float:
    """Standard error of the mean verdict, resampling whole prompts: one prompt's verdicts rise and
    fall together (a streaky image misses several attributes at once), so they are not independent."""
    return float(_resampled_means(verdicts, _prompt_draws(len(verdicts), resamples)).std())


def paired_difference(verdicts: Sequence[dict[str, bool]], baseline: Sequence[dict[str, bool]],
                      resamples: int = 2000) -> tuple[float, float]:
    """Mean accuracy of `verdicts` minus `baseline`'s on the same prompts, and its standard error.

    Both methods are resampled with the same prompts, so what the two rows share (a prompt that is
    hard for both) cancels and only their disagreement per prompt remains in the error; comparing
    two rows' own errors would count the prompt draw twice."""
    if len(verdicts) != len(baseline):
        raise ValueError(f"paired_difference needs the same prompts, got {len(verdicts)} and {len(baseline)}")
    draws = _prompt_draws(len(verdicts), resamples)
    differences = _resampled_means(verdicts, draws) - _resampled_means(baseline, draws)
    return _mean_verdict(verdicts) - _mean_verdict(baseline), float(differences.std())


def contact_sheet(rows: dict[str, np.ndarray], path: Path, cell: int = 96) -> None:
    """One labelled row of (B, H, W, 3) images per entry, upscaled to `cell` px."""
    label_width = 150
    count = len(next(iter(rows.values())))
    sheet = Image.new("RGB", (label_width + count * cell, len(rows) * cell), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (name, images) in enumerate(rows.items()):
        draw.text((6, r * cell + cell // 2 - 6), name, fill="black")
        for c, image in enumerate(images):
            tile = Image.fromarray(image).resize((cell, cell), Image.Resampling.NEAREST)
            sheet.paste(tile, (label_width + c * cell, r * cell))
    sheet.save(path)


def _markdown(cfg: BenchmarkConfig, scores: dict[str, MethodScore]) -> str:
    keys = [k for k in world.ATTRIBUTE_KEYS if any(k in s.accuracy for s in scores.values())]
    head = ("| method | " + " | ".join(keys)
            + " | mean ± s.e. | CLIP cos | above renders | s / image |")
    title = (f"Toy-world benchmark: {cfg.prompts} held-out prompts, {cfg.steps} steps, "
             f"{cfg.size} px, {cfg.views} views, seed {cfg.seed}. Above renders: the fraction of "
             f"images the CLIP scores above the best of {RENDER_DRAWS} clean renders of the prompt. "
             f"{CLIP_CHOICE}: the fraction of attributes where the CLIP prefers renders of the "
             f"prompted scene to renders of every scene that differs in that attribute alone.")
    lines = [title, "", head, "|" + "---|" * (len(keys) + 5)]
    for name, s in scores.items():
        cells = [f"{s.accuracy[k]:.2f}" if k in s.accuracy else "-" for k in keys]
        cells.append(f"{s.mean_accuracy:.3f} ± {s.standard_error:.3f}")
        cells += ["-" if value is None else f"{value:.{digits}f}" for value, digits in
                  ((s.clip_cosine, 3), (s.above_renders, 2), (s.seconds_per_image, 2))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    pairs = [(a, b, what) for a, b, what in COMPARISONS if a in scores and b in scores]
    if pairs:
        lines += ["", "Paired differences of the judge mean (the same prompts; ± bootstrap s.e. over prompts):",
                  "", "| comparison | what differs | difference ± s.e. |", "|---|---|---|"]
    for a, b, what in pairs:
        difference, error = paired_difference(scores[a].verdicts, scores[b].verdicts)
        lines.append(f"| {a} − {b} | {what} | {difference:+.3f} ± {error:.3f} |")
    return "\n".join(lines) + "\n"


def run_benchmark(cfg: BenchmarkConfig, out_dir: Path, model_dir: Path = MODEL_DIR,
                  reference_set: Path = REFERENCE_DIR, log=print) -> dict[str, MethodScore]:
    """Run every method of `cfg`, write results.json, results.md and contact_sheet.png."""
    clip = load_engine_clip(model_dir)
    prompts = held_out_prompts(cfg.prompts, cfg.seed, cfg.relational_prob)
    texts, attributes = [p for p, _ in prompts], [a for _, a in prompts]
    rng = np.random.default_rng(cfg.seed)
    truth = np.stack([world.render(world.Scene.from_attributes(a), cfg.size, rng)
                      for a in attributes])
    rows = {"world render": truth}
    best_render = best_render_cosines(clip, attributes, texts, cfg.size, cfg.seed)
    seeded = None
    if any(m in BANK_METHODS or m == RETRIEVAL for m in cfg.methods):
        from inversion_core import INRConfig
        from inversion_core.awp import SeedConfig

        start = time.perf_counter()
        fit = any(m in BANK_METHODS for m in cfg.methods)
        seeded = SeededBank.build(clip, texts, reference_set, INRConfig(),
                                  SeedConfig(steps=cfg.seed_steps) if fit else None)
        log(f"bank of {len(seeded.bank)} reference pairs, {len(texts) if fit else 0} seeds fitted in "
            f"{time.perf_counter() - start:.0f} s")
    scores = {}
    for method in cfg.methods:
        start = time.perf_counter()
        images = generate(method, clip, texts, cfg, seeded)
        scores[method] = score(images, attributes, clip, texts, time.perf_counter() - start,
                               best_render)
        rows[method] = to_uint8(images)
        log(f"{method:24s} mean judge accuracy {scores[method].mean_accuracy:.3f}  "
            f"CLIP cos {scores[method].clip_cosine:.3f}  "
            f"above renders {scores[method].above_renders:.2f}  "
            f"{scores[method].seconds_per_image:.2f} s/image")
    reference = score(from_uint8(truth), attributes, clip, texts, 0.0, best_render)
    choice = summarise(clip_choice(clip, attributes, texts, cfg.size, cfg.seed))
    out_dir.mkdir(parents=True, exist_ok=True)
    contact_sheet(rows, out_dir / "contact_sheet.png")
    (out_dir / "results.md").write_text(_markdown(cfg, {WORLD_RENDER: reference, CLIP_CHOICE: choice,
                                                        **scores}))
    (out_dir / "results.json").write_text(json.dumps({
        "config": asdict(cfg), "clip": clip.identity, "prompts": texts,
        "world_render": asdict(reference), "clip_choice": asdict(choice),
        "methods": {name: asdict(s) for name, s in scores.items()}}, indent=2) + "\n")
    return scores


def main(argv: list[str] | None = None) -> dict[str, MethodScore]:
    defaults = BenchmarkConfig()
    parser = argparse.ArgumentParser(description="Run the toy-world inversion benchmark.")
    parser.add_argument("--prompts", type=int, default=defaults.prompts)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--size", type=int, default=defaults.size)
    parser.add_argument("--views", type=int, default=defaults.views)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--seed-steps", type=int, default=defaults.seed_steps,
                        help="AWP seed fitting steps for the bank methods")
    parser.add_argument("--methods", nargs="+", default=list(defaults.methods),
                        help=f"any of {METHODS}")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("outputs/toyworld"))
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--reference-set", type=Path, default=REFERENCE_DIR)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = BenchmarkConfig(prompts=args.prompts, steps=args.steps, size=args.size,
                          views=args.views, seed=args.seed, methods=tuple(args.methods),
                          seed_steps=args.seed_steps)
    scores = run_benchmark(cfg, args.out, args.model_dir, args.reference_set)
    print((args.out / "results.md").read_text())
    return scores


if __name__ == "__main__":
    main()
