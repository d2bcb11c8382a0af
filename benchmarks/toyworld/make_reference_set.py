"""Write a captioned reference set from the toy world, for the engine's reference-bank features
(Procrustes projection, blending, AWP seeds).

The layout is the usual captioned-image folder: `00000.png` with its caption in `00000.txt`,
plus `attributes.jsonl` (one JSON object per image, in file order) for benchmarks that need the
ground truth. Only training-split scenes are written: held-out colour x shape pairs must stay
unseen by anything the benchmark's methods can look at. Captions name every attribute, in
varied wording.

    python -m benchmarks.toyworld.make_reference_set            # the shipped set
    python -m benchmarks.toyworld.make_reference_set --out /tmp/refs --count 64
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.toyworld import world

DEFAULT_DIR = Path(__file__).parent / "reference_set"


def write_reference_set(folder: Path, count: int = 384, seed: int = 2024, size: int = 64,
                        relational_prob: float = 0.25) -> list[dict[str, str]]:
    """Render `count` training-split scenes into `folder`; return their attribute dicts."""
    if count < 1:
        raise ValueError(f"count={count}; a reference set needs at least one image")
    folder.mkdir(parents=True, exist_ok=True)
    stale = sorted(folder.glob("*.png")) + sorted(folder.glob("*.txt"))
    if stale:
        raise ValueError(f"{folder} already holds {len(stale)} image/caption files; "
                         "pass an empty or new folder")
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        scene = world.sample_scene(rng, "train", relational_prob)
        name = f"{index:05d}"
        Image.fromarray(world.render(scene, size, rng)).save(folder / f"{name}.png", optimize=True)
        (folder / f"{name}.txt").write_text(world.caption(scene, rng, full=True) + "\n")
        rows.append(scene.attributes())
    with open(folder / "attributes.jsonl", "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a captioned toy-world reference set.")
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help="an empty or new folder")
    parser.add_argument("--count", type=int, default=384)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--size", type=int, default=64, help="pixels (>= 64)")
    args = parser.parse_args(argv)
    write_reference_set(args.out, args.count, args.seed, args.size)
    print(f"wrote {args.count} images and captions to {args.out}")


if __name__ == "__main__":
    main()
