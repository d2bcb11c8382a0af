"""A pixel judge: reads the toy world's attributes back from any image, with no learned model.

Why no network: the benchmark scores images that were generated through a CLIP; scoring them
with a CLIP (or anything trained) would reward fooling that model. This judge is plain,
deterministic numpy, and is written to survive what inversions look like (blur, noise, texture,
stray colour specks, washed-out colour):

1. the image is resized to 64 px (box filter, which also averages away fine noise);
2. objects are the saturated pixels (chroma = max - min of RGB >= `CHROMA_MIN`; backgrounds,
   textures and scratches in the world are achromatic), each named by its nearest palette hue;
3. per colour, the largest 8-connected region is that colour's object; regions smaller than
   `MIN_AREA` (clutter specks) or larger than half the image (a tinted background) are ignored,
   and the region is shrunk to its half-maximum chroma so blur does not swell it;
4. colour is the region's hue name; position the nearest anchor to its centroid; size its
   bounding-box side against `SIZE_THRESHOLD`; shape the best IoU between the region (holes
   filled, cropped to its box) and each shape's silhouette drawn at that box's pixel size;
   background the grey level nearest to the median of the unsaturated pixels.

`judge(image, attributes)` answers, for each attribute a prompt names, whether the image shows
it. For a one-object prompt the dominant (largest) region is the object; for a two-object
prompt each prompted colour must be among the two largest regions, and shapes and the relation
are read from the regions of the prompted colours.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter

from benchmarks.toyworld import world

JUDGE_SIZE = 64          # every image is read at this resolution
CHROMA_MIN = 40.0        # 0-255; world objects have chroma >= ~60 even when shaded and lit dimly
MIN_AREA = 20            # px at 64 px; clutter specks are <= ~10 px
MAX_AREA_FRACTION = 0.5  # a "region" covering more than this is a tinted background
SIZE_THRESHOLD = 0.33    # box side / image side: small renders <= 0.29, large >= 0.36
RELATION_MARGIN = 0.08   # centroid offset (fraction of the image) a relation needs


@dataclass(frozen=True)
class SeenObject:
    """One coloured region read from an image (coordinates as fractions of the image)."""

    colour: str
    shape: str
    size: str
    position: str
    centroid: tuple[float, float]    # (x, y)
    box_side: float                  # larger side of the bounding box
    area: int                        # pixels at JUDGE_SIZE
    shape_scores: dict[str, float]   # IoU with each shape's silhouette filling the same box


@dataclass(frozen=True)
class Reading:
    """What the judge sees: the background level and the objects, largest first."""

    background: str
    objects: tuple[SeenObject, ...]


def _to_rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    """Any PIL image or (H, W, 3) array (uint8, or float in [0, 1]) -> float (64, 64, 3) 0-255."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image array has shape {image.shape}; expected (H, W, 3)")
        if image.dtype != np.uint8:
            image = np.clip(np.rint(np.asarray(image, np.float64) * 255.0), 0, 255).astype(np.uint8)
        image = Image.fromarray(image)
    elif not isinstance(image, Image.Image):
        raise TypeError(f"image is a {type(image).__name__}; pass a PIL image or an (H, W, 3) "
                        "numpy array (uint8, or float in [0, 1])")
    image = image.convert("RGB")
    if image.size != (JUDGE_SIZE, JUDGE_SIZE):
        image = image.resize((JUDGE_SIZE, JUDGE_SIZE), Image.Resampling.BOX)
    return np.asarray(image, np.float32)


def _hue(rgb: np.ndarray) -> np.ndarray:
    """Hue in degrees [0, 360) of (..., 3) RGB (HSV hexcone formula)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx, mn = rgb.max(axis=-1), rgb.min(axis=-1)
    c = np.maximum(mx - mn, 1e-6)
    h = np.where(mx == r, (g - b) / c % 6, np.where(mx == g, (b - r) / c + 2, (r - g) / c + 4))
    return h * 60.0


_PALETTE_HUES = _hue(np.array([world.PALETTE[c] for c in world.COLOURS], np.float32))


def _colour_labels(rgb: np.ndarray) -> np.ndarray:
    """(H, W) index into world.COLOURS of each saturated pixel's nearest hue, -1 elsewhere."""
    d = np.abs(_hue(rgb)[..., None] - _PALETTE_HUES)
    d = np.minimum(d, 360.0 - d)
    labels = d.argmin(axis=-1)
    chroma = rgb.max(axis=-1) - rgb.min(axis=-1)
    return np.where(chroma >= CHROMA_MIN, labels, -1)


def _components(mask: np.ndarray) -> np.ndarray:
    """8-connected component labels of a boolean mask (0 = background), by iterated min-label
    propagation (numpy only; at 64 px it converges in a few dozen sweeps)."""
    h, w = mask.shape
    big = h * w + 1
    labels = np.where(mask, np.arange(1, h * w + 1).reshape(h, w), big)
    while True:
        padded = np.pad(labels, 1, constant_values=big)
        neighbours = np.stack([padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                               for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
        updated = np.where(mask, neighbours.min(axis=0), big)
        if np.array_equal(updated, labels):
            return np.where(mask, labels, 0)
        labels = updated


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill regions of a boolean mask's complement not connected to its border."""
    labels = _components(np.pad(~mask, 1, constant_values=True))
    return mask | (labels[1:-1, 1:-1] != labels[0, 0])


@lru_cache(maxsize=4096)
def _template(shape: str, width: int, height: int) -> np.ndarray:
    """A `shape` filling a (height, width) box, drawn at that size and thresholded at half
    coverage, so it is pixelated like the region it is compared with."""
    return world.shape_mask(shape, width, height) >= 0.5


def _shape_scores(region: np.ndarray) -> dict[str, float]:
    """IoU of the region (holes filled, cropped to its box) with each shape's template drawn to
    fill the same box."""
    ys, xs = np.nonzero(region)
    crop = _fill_holes(region[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
    h, w = crop.shape
    return {shape: float((crop & (t := _template(shape, w, h))).sum() / (crop | t).sum())
            for shape in world.SHAPES}


def _nearest_position(centroid: tuple[float, float]) -> str:
    return min(world.POSITIONS, key=lambda p: np.hypot(centroid[0] - world.POSITION_ANCHORS[p][0],
                                                       centroid[1] - world.POSITION_ANCHORS[p][1]))


def _read_object(region: np.ndarray, colour: str) -> SeenObject:
    ys, xs = np.nonzero(region)
    side = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) / JUDGE_SIZE
    centroid = ((xs.mean() + 0.5) / JUDGE_SIZE, (ys.mean() + 0.5) / JUDGE_SIZE)
    scores = _shape_scores(region)
    return SeenObject(colour=colour, shape=max(scores, key=scores.get),
                      size="small" if side < SIZE_THRESHOLD else "large",
                      position=_nearest_position(centroid), centroid=centroid,
                      box_side=float(side), area=len(xs), shape_scores=scores)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected region of a boolean mask (all False if the mask is empty)."""
    components = _components(mask)
    ids, counts = np.unique(components[components > 0], return_counts=True)
    return components == ids[counts.argmax()] if len(ids) else np.zeros_like(mask)


def _half_maximum(region: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """Shrink a region to pixels with at least half its typical chroma.

    A fixed chroma threshold puts a blurred object's edge wherever its colour fades below the
    threshold, which swells it and rounds its corners; half of its own peak is where the edge
    of a symmetrically blurred shape actually was.
    """
    peak = np.percentile(chroma[region], 90)
    return _largest_component(region & (chroma >= 0.5 * peak))


def read_attributes(image: Image.Image | np.ndarray) -> Reading:
    """Read the background and every object-sized coloured region, largest first."""
    rgb = _to_rgb(image)
    chroma = rgb.max(axis=-1) - rgb.min(axis=-1)
    labels = _colour_labels(rgb)
    objects = []
    taken = np.zeros(labels.shape, bool)
    for index, colour in enumerate(world.COLOURS):
        region = _largest_component(labels == index)
        if MIN_AREA <= region.sum() <= MAX_AREA_FRACTION * labels.size:
            objects.append(_read_object(_half_maximum(region, chroma), colour))
            taken |= region
    unsaturated = labels < 0
    pool = rgb[unsaturated] if unsaturated.mean() > 0.1 else rgb[~taken]
    luminance = float(np.median(pool @ np.array([0.299, 0.587, 0.114], np.float32)))
    background = min(world.BACKGROUNDS, key=lambda b: abs(world.BACKGROUND_LEVELS[b] - luminance))
    return Reading(background=background,
                   objects=tuple(sorted(objects, key=lambda o: o.area, reverse=True)))


def _check_prompt(attributes: Mapping[str, str]) -> None:
    allowed = world.ATTRIBUTE_VALUES
    problems = [f"unknown attribute {k!r} (allowed: {tuple(allowed)})"
                for k in attributes if k not in allowed]
    problems += [f"{k}={v!r} is not one of {allowed[k]}"
                 for k, v in attributes.items() if k in allowed and v not in allowed[k]]
    relational = any(k in attributes for k in ("shape2", "colour2", "relation"))
    if relational and not {"colour", "colour2"} <= set(attributes):
        problems.append("a two-object prompt must name colour and colour2 (the judge finds "
                        "the objects by colour)")
    if relational and {"size", "position"} & set(attributes):
        problems.append("size and position belong to one-object prompts only")
    if problems:
        raise ValueError("invalid prompt attributes: " + "; ".join(problems))


def _relation_holds(first: SeenObject, second: SeenObject, relation: str) -> bool:
    dx = second.centroid[0] - first.centroid[0]
    dy = second.centroid[1] - first.centroid[1]
    along = {"left of": dx, "right of": -dx, "above": dy, "below": -dy}[relation]
    return bool(along >= RELATION_MARGIN)


def judge(image: Image.Image | np.ndarray, attributes: Mapping[str, str]) -> dict[str, bool]:
    """For each attribute the prompt names (keys of `world.ATTRIBUTE_KEYS`), whether the image
    shows it. Missing objects make their attributes False."""
    _check_prompt(attributes)
    reading = read_attributes(image)
    verdict = {}
    if "background" in attributes:
        verdict["background"] = reading.background == attributes["background"]
    if "colour2" not in attributes:
        main = reading.objects[0] if reading.objects else None
        for key in ("colour", "shape", "size", "position"):
            if key in attributes:
                verdict[key] = main is not None and getattr(main, key) == attributes[key]
        return verdict
    top_two = {o.colour: o for o in reading.objects[:2]}
    first, second = top_two.get(attributes["colour"]), top_two.get(attributes["colour2"])
    verdict["colour"], verdict["colour2"] = first is not None, second is not None
    if "shape" in attributes:
        verdict["shape"] = first is not None and first.shape == attributes["shape"]
    if "shape2" in attributes:
        verdict["shape2"] = second is not None and second.shape == attributes["shape2"]
    if "relation" in attributes:
        verdict["relation"] = (first is not None and second is not None
                               and _relation_holds(first, second, attributes["relation"]))
    return verdict


# --------------------------------------------------------------------------------------------
# Measuring the judge itself
# --------------------------------------------------------------------------------------------

DEGRADATIONS: tuple[str, ...] = ("clean", "blur1", "blur2", "noise15", "noise30", "washed",
                                 "upscaled")


@lru_cache(maxsize=1)
def _canonical_attributes() -> dict[str, dict[str, str]]:
    """Every scene's canonical caption -> its attributes (about 10k entries, built once)."""
    table = {}
    for shape, colour, background in itertools.product(world.SHAPES, world.COLOURS, world.BACKGROUNDS):
        for size, position in itertools.product(world.SIZES, world.POSITIONS):
            scene = world.Scene(shape, colour, background, size=size, position=position)
            table[world.canonical_caption(scene)] = scene.attributes()
        for shape2, colour2, relation in itertools.product(world.SHAPES, world.COLOURS, world.RELATIONS):
            if colour2 != colour:
                scene = world.Scene(shape, colour, background, shape2=shape2, colour2=colour2, relation=relation)
                table[world.canonical_caption(scene)] = scene.attributes()
    return table


def judge_caption(image, prompt: str) -> dict[str, bool] | None:
    """``judge`` for a canonical toy-world caption, or None for any other prompt: the judge hook of
    ``python -m inversion_core evaluate --judge benchmarks.toyworld.judge:judge_caption``.
    ``image`` is a (3, H, W) float tensor in [0, 1] (the engine's layout) or an RGB array/PIL image."""
    attributes = _canonical_attributes().get(prompt.strip())
    if attributes is None:
        return None
    if hasattr(image, "permute"):  # torch tensor (3, H, W) in [0, 1]
        image = (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    return judge(image, attributes)


def degrade(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Stand-ins for what generated images do to a clean render: Gaussian blur (sigma 1 or 2 px
    at 64 px), Gaussian pixel noise (sigma 15 or 30 of 255), colours pulled 40% toward grey,
    or a bicubic 4x upscale."""
    if kind == "clean":
        return image
    if kind in ("blur1", "blur2"):
        radius = 1.0 if kind == "blur1" else 2.0
        return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))
    if kind in ("noise15", "noise30"):
        sigma = 15.0 if kind == "noise15" else 30.0
        return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)
    if kind == "washed":
        grey = image.mean(axis=-1, keepdims=True)
        return np.clip(0.6 * image + 0.4 * grey, 0, 255).astype(np.uint8)
    if kind == "upscaled":
        h, w = image.shape[:2]
        return np.asarray(Image.fromarray(image).resize((4 * w, 4 * h), Image.Resampling.BICUBIC))
    raise ValueError(f"degradation {kind!r}; use one of {DEGRADATIONS}")


def accuracy(count: int, kind: str = "clean", seed: int = 0, size: int = 64,
             relational_prob: float = 0.3) -> dict[str, float]:
    """Per-attribute accuracy of `judge` on `count` renders (half training split, half held
    out) with full attribute prompts, after the degradation `kind`."""
    rng = np.random.default_rng(seed)
    right: dict[str, int] = {}
    seen: dict[str, int] = {}
    for index in range(count):
        scene = world.sample_scene(rng, world.SPLITS[index % 2], relational_prob)
        image = degrade(world.render(scene, size, rng), kind, rng)
        for key, ok in judge(image, scene.attributes()).items():
            right[key] = right.get(key, 0) + ok
            seen[key] = seen.get(key, 0) + 1
    return {key: right[key] / seen[key] for key in seen}


def main(argv: list[str] | None = None) -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Per-attribute accuracy of the pixel judge.")
    parser.add_argument("--count", type=int, default=1000, help="renders per degradation")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    table = {kind: accuracy(args.count, kind, args.seed) for kind in DEGRADATIONS}
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
