"""The toy-world edit benchmark: does `inversion_core.edit` change what the prompt asks and keep
the rest?

Each case is a clean render of a one-object training scene and an edit of one attribute (its
colour, or its shape) to another value; the prompts are the two scenes' canonical captions
(source and edit). The judge then reads the edited image against the *edited* scene:

* edited: the changed attribute now reads as the edit prompt says;
* kept: every other attribute (the untouched half of the shape/colour pair, size, position,
  background) still reads as in the source;
* all right: both at once, per image.

Every setting is `inversion_core.edit`'s default unless given (`--lr`, `--steps`, `--strength`,
`--fit-steps`), so the table measures what a user of the Edit node or `python -m inversion_core
edit` gets. Training-split scenes are fine here: the answer is in the input image, not in the
CLIP's memory.

    python -m benchmarks.toyworld.edit --out benchmarks/toyworld/results   # see README.md
    python -m benchmarks.toyworld.edit --cases 2 --steps 2 --fit-steps 2 --out /tmp/tw   # smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from benchmarks.toyworld import judge, world
from benchmarks.toyworld.clip_metrics import MODEL_DIR, from_uint8, load_engine_clip
from benchmarks.toyworld.run import bootstrap_standard_error, contact_sheet, to_uint8

if TYPE_CHECKING:
    from inversion_core import ClipBundle, RunConfig

EDITABLE = {"colour": world.COLOURS, "shape": world.SHAPES}


@dataclass(frozen=True)
class EditCase:
    source: world.Scene
    edited: world.Scene  # what the result should show
    changed: tuple[str, ...]  # the attributes that differ (the rest must be kept)

    @property
    def source_prompt(self) -> str:
        return world.canonical_caption(self.source)

    @property
    def edit_prompt(self) -> str:
        return world.canonical_caption(self.edited)


def edit_cases(count: int, seed: int) -> list[EditCase]:
    """`count` one-object edits, colour and shape edits alternating, deterministic from `seed`."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        attribute = list(EDITABLE)[i % len(EDITABLE)]
        source = world.sample_scene(rng, "train", relational_prob=0.0)
        choices = [v for v in EDITABLE[attribute] if v != getattr(source, attribute)]
        edited = dataclasses.replace(source, **{attribute: str(rng.choice(choices))})
        cases.append(EditCase(source, edited, (attribute,)))
    return cases


@dataclass
class EditScore:
    edited: dict[str, float]    # per changed attribute: fraction of images showing the new value
    kept: float                 # fraction of untouched attributes that still read as the source
    all_right: float            # fraction of images with the change made and everything else kept
    standard_error: float       # of the mean verdict (edited and kept together), over cases
    seconds_per_image: float


def score_edits(images: torch.Tensor, cases: list[EditCase], seconds: float) -> EditScore:
    """Judge each image against its case's `edited` scene (also scores the style benchmark)."""
    verdicts = [judge.judge(image, case.edited.attributes())
                for image, case in zip(to_uint8(images), cases)]
    changed = dict.fromkeys(a for c in cases for a in c.changed)  # first-seen order
    edited = {a: float(np.mean([v[a] for v, c in zip(verdicts, cases) if a in c.changed])) for a in changed}
    kept = [ok for v, c in zip(verdicts, cases) for k, ok in v.items() if k not in c.changed]
    return EditScore(edited=edited, kept=float(np.mean(kept)),
                     all_right=float(np.mean([all(v.values()) for v in verdicts])),
                     standard_error=bootstrap_standard_error(verdicts),
                     seconds_per_image=seconds / len(cases))


def run_edits(clip, cases: list[EditCase], size: int, seed: int, **edit_options) -> tuple[torch.Tensor, torch.Tensor]:
    """(sources, edited images), both (N, 3, size, size); `edit_options` go to `inversion_core.edit`
    (config, strength, fit_steps), whose defaults hold for the rest."""
    from inversion_core import edit

    rng = np.random.default_rng(seed)
    sources = from_uint8(np.stack([world.render(c.source, size, rng) for c in cases]))
    edited = torch.cat([edit(clip, source, case.edit_prompt, source_prompt=case.source_prompt,
                             seed=seed, **edit_options).images
                        for source, case in zip(sources, cases)])
    return sources, edited


def task_parser(doc: str, cases: int, steps: int, lr: float) -> argparse.ArgumentParser:
    """The options the edit and style benchmarks share (each adds its task's own); the help text is
    the first paragraph of the module docstring `doc`."""
    from inversion_core.tasks import DEFAULT_FIT_STEPS

    parser = argparse.ArgumentParser(description=" ".join(doc.split("\n\n")[0].split()))
    parser.add_argument("--cases", type=int, default=cases)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--fit-steps", type=int, default=DEFAULT_FIT_STEPS)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("outputs/toyworld"))
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    return parser


def load_task(parser: argparse.ArgumentParser,
              argv: list[str] | None) -> tuple[argparse.Namespace, ClipBundle, RunConfig]:
    """(args, toy CLIP, RunConfig of the benchmark's steps, lr and size) from `task_parser` options."""
    from inversion_core import RunConfig, ScheduleConfig

    args = parser.parse_args(argv)
    if args.cases < 1:
        parser.error(f"--cases must be >= 1, got {args.cases}")
    torch.set_num_threads(args.threads)
    clip = load_engine_clip(args.model_dir)
    config = RunConfig(steps=args.steps, width=args.size, height=args.size,
                       schedule=ScheduleConfig(lr=args.lr))
    return args, clip, config


def main(argv: list[str] | None = None) -> EditScore:
    from inversion_core.tasks import DEFAULT_EDIT_LR, DEFAULT_EDIT_STEPS, DEFAULT_EDIT_STRENGTH

    parser = task_parser(__doc__, cases=24, steps=DEFAULT_EDIT_STEPS, lr=DEFAULT_EDIT_LR)
    parser.add_argument("--strength", type=float, default=DEFAULT_EDIT_STRENGTH)
    args, clip, config = load_task(parser, argv)
    cases = edit_cases(args.cases, args.seed)
    start = time.perf_counter()
    sources, edited = run_edits(clip, cases, args.size, args.seed, config=config, strength=args.strength,
                                fit_steps=args.fit_steps)
    result = score_edits(edited, cases, time.perf_counter() - start)
    args.out.mkdir(parents=True, exist_ok=True)
    contact_sheet({"source": to_uint8(sources), "edited": to_uint8(edited)}, args.out / "edit_sheet.png")
    settings = {k: getattr(args, k) for k in ("cases", "steps", "lr", "strength", "fit_steps", "size", "seed")}
    (args.out / "edit_results.json").write_text(json.dumps(
        {"settings": settings, "clip": clip.identity, "score": asdict(result),
         "cases": [{"source": c.source_prompt, "edit": c.edit_prompt} for c in cases]}, indent=2) + "\n")
    edits = ", ".join(f"{a} {v:.2f}" for a, v in result.edited.items())
    print(f"{args.cases} edits, lr {args.lr:g}, {args.steps} steps, strength {args.strength:g}: "
          f"edited ({edits}), kept {result.kept:.2f}, all right {result.all_right:.2f} "
          f"(s.e. of a verdict mean {result.standard_error:.3f}), {result.seconds_per_image:.1f} s/image")
    return result


if __name__ == "__main__":
    main()
