"""The toy-world style-transfer benchmark: does `inversion_core.style_transfer` take the style
image's look and keep the content image's layout?

Each case is a clean render of a one-object training scene (the content) and a render of another
one-object scene (the style image) that differs in every attribute: colour, background, shape and
position (size may match). In this world the *look* of an image is its palette, i.e. the object's
colour and the background; the *content* is the object's shape, size and position. The judge reads
the result against the content scene in the style's colour on the style's background:

* edited (per styled attribute): the colour, and the background, now read as the style image's;
* kept: shape, size and position still read as the content's (an image that copies the style
  image's layout fails these);
* all right: both at once, per image.

Every setting is `inversion_core.style_transfer`'s default unless given (`--lr`, `--steps`,
`--content-weight`, `--fit-steps`), with the render at the toy CLIP's 64 px, so the table
measures what a user of the Style Transfer node or `python -m inversion_core style` gets.

    python -m benchmarks.toyworld.style --out benchmarks/toyworld/results   # see README.md
    python -m benchmarks.toyworld.style --cases 2 --steps 2 --fit-steps 2 --out /tmp/tw   # smoke
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from benchmarks.toyworld import world
from benchmarks.toyworld.clip_metrics import from_uint8
from benchmarks.toyworld.edit import EditCase, EditScore, load_task, score_edits, task_parser
from benchmarks.toyworld.run import contact_sheet, to_uint8

STYLED = ("colour", "background")  # what the style image gives; the rest is the content's


@dataclass(frozen=True)
class StyleCase:
    content: world.Scene
    style: world.Scene

    def expected(self) -> EditCase:
        """The content scene in the style's palette, as an edit of the content (for `score_edits`)."""
        styled = dataclasses.replace(self.content, **{a: getattr(self.style, a) for a in STYLED})
        return EditCase(self.content, styled, STYLED)


def style_cases(count: int, seed: int) -> list[StyleCase]:
    """`count` (content, style) pairs of one-object scenes differing in colour, background, shape
    and position, deterministic from `seed`."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        content, style = (world.sample_scene(rng, "train", relational_prob=0.0) for _ in range(2))
        if all(getattr(content, a) != getattr(style, a) for a in (*STYLED, "shape", "position")):
            cases.append(StyleCase(content, style))
    return cases


def run_styles(clip, cases: list[StyleCase], size: int, seed: int,
               **style_options) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(contents, styles, results), each (N, 3, size, size); `style_options` go to
    `inversion_core.style_transfer` (config, content_weight, fit_steps), whose defaults hold for the rest."""
    from inversion_core import style_transfer

    rng = np.random.default_rng(seed)
    contents = from_uint8(np.stack([world.render(c.content, size, rng) for c in cases]))
    styles = from_uint8(np.stack([world.render(c.style, size, rng) for c in cases]))
    results = torch.cat([style_transfer(clip, content, style, seed=seed, **style_options).images
                         for content, style in zip(contents, styles)])
    return contents, styles, results


def main(argv: list[str] | None = None) -> EditScore:
    from inversion_core import RunConfig
    from inversion_core.tasks import DEFAULT_CONTENT_WEIGHT

    default = RunConfig()
    parser = task_parser(__doc__, cases=12, steps=default.steps, lr=default.schedule.lr)
    parser.add_argument("--content-weight", type=float, default=DEFAULT_CONTENT_WEIGHT)
    args, clip, config = load_task(parser, argv)
    cases = style_cases(args.cases, args.seed)
    start = time.perf_counter()
    contents, styles, results = run_styles(clip, cases, args.size, args.seed, config=config,
                                           content_weight=args.content_weight, fit_steps=args.fit_steps)
    result = score_edits(results, [c.expected() for c in cases], time.perf_counter() - start)
    args.out.mkdir(parents=True, exist_ok=True)
    contact_sheet({"content": to_uint8(contents), "style": to_uint8(styles), "result": to_uint8(results)},
                  args.out / "style_sheet.png")
    settings = {k: getattr(args, k) for k in ("cases", "steps", "lr", "content_weight", "fit_steps", "size", "seed")}
    (args.out / "style_results.json").write_text(json.dumps(
        {"settings": settings, "clip": clip.identity, "score": asdict(result),
         "cases": [{"content": world.canonical_caption(c.content), "style": world.canonical_caption(c.style)}
                   for c in cases]}, indent=2) + "\n")
    styled = ", ".join(f"{a} {v:.2f}" for a, v in result.edited.items())
    print(f"{args.cases} style transfers, lr {args.lr:g}, {args.steps} steps, content weight "
          f"{args.content_weight:g}: styled ({styled}), layout kept {result.kept:.2f}, all right "
          f"{result.all_right:.2f} (s.e. of a verdict mean {result.standard_error:.3f}), "
          f"{result.seconds_per_image:.1f} s/image")
    return result


if __name__ == "__main__":
    main()
