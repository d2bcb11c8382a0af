"""Sweep CLIP⁻¹ engine settings on the toy world: same held-out prompts, same scoring as `run.py`.

Each named variant overrides parts of the engine's RunConfig (nested dicts for `inr`, `schedule`,
`augment`, plus `steps`); every variant is scored by the pixel judge and the toy CLIP's cosine.
This is how the defaults in README.md were checked.

    python -m benchmarks.toyworld.sweep --variants '{"base": {}, "lr3e-4": {"schedule": {"lr": 3e-4}}}'
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.toyworld import run as benchmark
from benchmarks.toyworld.clip_metrics import MODEL_DIR, load_engine_clip


def variant_config(overrides: dict, steps: int, size: int, views: int):
    """RunConfig for one variant: the benchmark's budget, then the variant's overrides."""
    from inversion_core import AugmentConfig, RunConfig

    base = RunConfig(steps=steps, width=size, height=size, augment=AugmentConfig(views=views)).to_dict()
    for key, value in overrides.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) else value
    return RunConfig.from_dict(base)


def sweep(variants: dict[str, dict], prompts: int = 8, steps: int = 150, size: int = 64, views: int = 8,
          seed: int = 0, model_dir: Path = MODEL_DIR, log=print) -> dict[str, benchmark.MethodScore]:
    from inversion_core import text_to_image

    clip = load_engine_clip(model_dir)
    chosen = benchmark.held_out_prompts(prompts, seed)
    texts, attributes = [p for p, _ in chosen], [a for _, a in chosen]
    best_render = benchmark.best_render_cosines(clip, attributes, texts, size, seed)
    scores = {}
    for name, overrides in variants.items():
        config = variant_config(overrides, steps, size, views)
        start = time.perf_counter()
        images = text_to_image(clip, texts, config, seed=seed).images
        scores[name] = benchmark.score(images, attributes, clip, texts, time.perf_counter() - start,
                                       best_render)
        cells = " ".join(f"{k}:{v:.2f}" for k, v in scores[name].accuracy.items())
        log(f"{name:20s} judge {scores[name].mean_accuracy:.3f} ± {scores[name].standard_error:.3f}  "
            f"cos {scores[name].clip_cosine:.3f}  above renders {scores[name].above_renders:.2f}  {cells}")
    return scores


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", required=True, help="JSON object: name -> RunConfig overrides")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        variants = json.loads(args.variants)
    except json.JSONDecodeError as exc:
        parser.error(f"--variants is not valid JSON: {exc}")
    sweep(variants, args.prompts, args.steps, views=args.views, seed=args.seed)


if __name__ == "__main__":
    main()
