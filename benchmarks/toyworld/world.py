"""A procedural world of captioned images that the toy-world benchmark fully controls.

Why it exists: no pretrained CLIP can be downloaded here, so the benchmark trains its own CLIP on
this world and judges generated images with pixel code (`judge.py`). Everything is deterministic
from a seed (`numpy.random.Generator`), uses only numpy and PIL, and renders at any size >= 64.

A scene is one object (shape, colour, size, position, background) or two objects in a relation
("a red circle left of a blue square"). Captions name those attributes in varied wording; the
image carries much more that captions never mention (background textures, lighting gradients,
glare, object shading and outlines, small clutter blobs and scratches, blur, pixel noise), so a
CLIP trained here keeps a modality gap instead of collapsing text and image embeddings together.

Design constraints that keep the judge's job feasible:
* object colours are saturated and about 40-80 degrees apart in hue; backgrounds, textures and
  scratches are achromatic, so objects can be segmented by chroma and named by hue;
* clutter blobs are tiny (radius <= 2.2% of the image, a few pixels at 64 px) and kept away
  from the objects, which are at least 24% of the image wide;
* shapes are axis-aligned (no rotation), so a bounding-box-normalised silhouette names them.

Held-out split: `HELD_OUT_PAIRS` lists colour x shape combinations that never appear in the
training data or the reference set; benchmark prompts are drawn from them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# --------------------------------------------------------------------------------------------
# Vocabulary (canonical attribute values)
# --------------------------------------------------------------------------------------------

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "star")
COLOURS: tuple[str, ...] = ("red", "yellow", "green", "cyan", "blue", "purple")
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "center")
BACKGROUNDS: tuple[str, ...] = ("white", "gray", "black")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")

# Keys of a scene's attribute dict. `shape2`/`colour2`/`relation` belong to two-object scenes,
# `size`/`position` to one-object scenes.
ATTRIBUTE_KEYS: tuple[str, ...] = (
    "shape", "colour", "size", "position", "background", "shape2", "colour2", "relation",
)
# The values each attribute key may take.
ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES, "colour": COLOURS, "size": SIZES, "position": POSITIONS,
    "background": BACKGROUNDS, "shape2": SHAPES, "colour2": COLOURS, "relation": RELATIONS,
}

# Saturated fills, ~40-80 degrees apart in hue (red 0, yellow 50, green 128, cyan 185,
# blue 226, purple 278), so hue names them even under lighting changes and blur.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (214, 40, 40),
    "yellow": (232, 200, 36),
    "green": (46, 168, 64),
    "cyan": (28, 186, 200),
    "blue": (40, 84, 226),
    "purple": (150, 52, 206),
}
# Achromatic background grey levels (0-255).
BACKGROUND_LEVELS: dict[str, float] = {"white": 228.0, "gray": 128.0, "black": 32.0}

# Where an object's area centroid sits, as fractions of the image (x right, y down).
POSITION_ANCHORS: dict[str, tuple[float, float]] = {
    "left": (0.28, 0.5),
    "right": (0.72, 0.5),
    "top": (0.5, 0.28),
    "bottom": (0.5, 0.72),
    "center": (0.5, 0.5),
}
# Bounding-box side of an object as a fraction of the image; two-object scenes use RELATION_SIZE.
SIZE_FRACTIONS: dict[str, float] = {"small": 0.24, "large": 0.42}
RELATION_SIZE = 0.30

MIN_RENDER_SIZE = 64


def _held_out_pairs() -> frozenset[tuple[str, str]]:
    """Shape i is held out in colour i+1: one colour per shape, five (colour, shape) pairs.

    Every colour and every shape still appears in training (in other pairings), so a CLIP can
    compose the held-out pairs but has never seen them.
    """
    return frozenset(
        (COLOURS[(i + 1) % len(COLOURS)], shape) for i, shape in enumerate(SHAPES)
    )


HELD_OUT_PAIRS: frozenset[tuple[str, str]] = _held_out_pairs()

Split = Literal["train", "held_out"]
SPLITS: tuple[str, ...] = ("train", "held_out")

# --------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scene:
    """The captionable content of one image. Nuisances are not part of it: they come from the
    generator passed to `render`, so two renders of one scene differ only in what captions
    never say.

    One-object scenes set `size` and `position`; two-object scenes set `shape2`, `colour2` and
    `relation` (read as "<shape/colour> <relation> <shape2/colour2>").
    """

    shape: str
    colour: str
    background: str
    size: str | None = None
    position: str | None = None
    shape2: str | None = None
    colour2: str | None = None
    relation: str | None = None

    def __post_init__(self) -> None:
        problems = []
        for key, values in ATTRIBUTE_VALUES.items():
            value = getattr(self, key)
            if value is not None and value not in values:
                problems.append(f"{key}={value!r} is not one of {values}")
        two = (self.shape2, self.colour2, self.relation)
        one = (self.size, self.position)
        if any(v is not None for v in two):
            if any(v is None for v in two) or any(v is not None for v in one):
                problems.append("a two-object scene sets shape2, colour2 and relation, "
                                "and not size or position")
            elif self.colour2 == self.colour:
                problems.append(f"both objects are {self.colour!r}; two-object scenes use two "
                                "colours so the judge can tell the objects apart")
        elif any(v is None for v in one):
            problems.append("a one-object scene sets both size and position")
        if problems:
            raise ValueError("invalid Scene: " + "; ".join(problems))

    @property
    def is_relational(self) -> bool:
        return self.relation is not None

    def attributes(self) -> dict[str, str]:
        """The scene as a flat dict over `ATTRIBUTE_KEYS` (only the keys this scene sets)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_attributes(cls, attributes: Mapping[str, str]) -> Scene:
        unknown = sorted(set(attributes) - set(ATTRIBUTE_KEYS))
        if unknown:
            raise ValueError(f"unknown attribute keys {unknown}; allowed: {ATTRIBUTE_KEYS}")
        return cls(**attributes)


def single_swaps(scene: Scene) -> list[tuple[str, Scene]]:
    """(attribute key, scene) for every valid scene that differs from `scene` in exactly one
    attribute: the alternatives a caption's words must rule out."""
    swaps = []
    for key, value in scene.attributes().items():
        for other in ATTRIBUTE_VALUES[key]:
            if other != value and not (key in ("colour", "colour2") and other in (scene.colour, scene.colour2)):
                swaps.append((key, dataclasses.replace(scene, **{key: other})))
    return swaps


def is_held_out(scene: Scene) -> bool:
    """True when any object of the scene is a held-out (colour, shape) pair."""
    pairs = [(scene.colour, scene.shape)]
    if scene.is_relational:
        pairs.append((scene.colour2, scene.shape2))
    return any(p in HELD_OUT_PAIRS for p in pairs)


def sample_scene(rng: np.random.Generator, split: Split = "train",
                 relational_prob: float = 0.25) -> Scene:
    """Draw a scene uniformly over attributes, restricted to `split`.

    "train" never yields a held-out pair; "held_out" always contains at least one (the other
    object of a two-object scene may be a training pair). Sampling is by rejection, which keeps
    the distribution uniform within the split.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; use one of {SPLITS}")
    if not 0.0 <= relational_prob <= 1.0:
        raise ValueError(f"relational_prob={relational_prob} must lie in [0, 1]")
    def pick(values: tuple[str, ...]) -> str:
        return _choice(values, rng)

    while True:
        if rng.random() < relational_prob:
            colour, colour2 = (COLOURS[i] for i in rng.choice(len(COLOURS), 2, replace=False))
            scene = Scene(shape=pick(SHAPES), colour=colour, background=pick(BACKGROUNDS),
                          shape2=pick(SHAPES), colour2=colour2, relation=pick(RELATIONS))
        else:
            scene = Scene(shape=pick(SHAPES), colour=pick(COLOURS), background=pick(BACKGROUNDS),
                          size=pick(SIZES), position=pick(POSITIONS))
        if is_held_out(scene) == (split == "held_out"):
            return scene


def distinct_scenes(count: int, split: Split, rng: np.random.Generator,
                    relational_prob: float = 0.25) -> list[Scene]:
    """`count` scenes with pairwise different attributes (retrieval then has one right answer,
    and a benchmark never scores the same prompt twice)."""
    scenes: dict[Scene, None] = {}
    for _ in range(count * 1000):
        scenes[sample_scene(rng, split, relational_prob)] = None
        if len(scenes) == count:
            return list(scenes)
    raise ValueError(f"the {split!r} split has fewer than {count} distinct scenes")


# --------------------------------------------------------------------------------------------
# Shapes: silhouettes normalised to the box [-1, 1]^2 (x right, y down)
# --------------------------------------------------------------------------------------------


def _star(points: int = 5, inner: float = 0.42) -> np.ndarray:
    angles = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _cross(arm: float = 0.32) -> np.ndarray:
    a = arm
    return np.array([(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1),
                     (-a, a), (-1, a), (-1, -a), (-a, -a)], dtype=float)


def _fit_box(polygon: np.ndarray) -> np.ndarray:
    """Stretch a polygon so its bounding box is exactly [-1, 1]^2."""
    lo, hi = polygon.min(axis=0), polygon.max(axis=0)
    return (polygon - lo) / (hi - lo) * 2.0 - 1.0


def _polygon_centroid(polygon: np.ndarray) -> np.ndarray:
    """Area centroid by the shoelace formula."""
    x, y = polygon[:, 0], polygon[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    area = cross.sum() / 2.0
    return np.array([((x + xn) * cross).sum(), ((y + yn) * cross).sum()]) / (6.0 * area)


# None means an ellipse filling the box.
SHAPE_POLYGONS: dict[str, np.ndarray | None] = {
    "circle": None,
    "square": np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], dtype=float),
    "triangle": np.array([(0, -1), (1, 1), (-1, 1)], dtype=float),
    "cross": _cross(),
    "star": _fit_box(_star()),
}


def shape_centroid(shape: str) -> np.ndarray:
    """Area centroid of a shape's box-normalised silhouette (the origin for symmetric shapes)."""
    polygon = SHAPE_POLYGONS[shape]
    return np.zeros(2) if polygon is None else _polygon_centroid(polygon)


def shape_mask(shape: str, width: int, height: int, supersample: int = 4) -> np.ndarray:
    """Anti-aliased (height, width) float mask of a shape filling the whole frame (the judge's
    templates)."""
    side = max(width, height)
    mask = _draw_shape(shape, (width / 2, height / 2), (width / 2, height / 2), side,
                       supersample, centre_is_centroid=False)
    return mask[:height, :width]


def _draw_shape(shape: str, centre: tuple[float, float], half: tuple[float, float], size: int,
                supersample: int, centre_is_centroid: bool = True) -> np.ndarray:
    """Anti-aliased coverage mask (size, size) in [0, 1] of one shape.

    `centre` is in pixels; with `centre_is_centroid` it is where the shape's area centroid lands
    (what the judge measures), otherwise the centre of its bounding box.
    """
    ss = supersample
    canvas = Image.new("L", (size * ss, size * ss), 0)
    draw = ImageDraw.Draw(canvas)
    offset = shape_centroid(shape) if centre_is_centroid else np.zeros(2)
    cx = centre[0] - offset[0] * half[0]
    cy = centre[1] - offset[1] * half[1]
    polygon = SHAPE_POLYGONS[shape]
    if polygon is None:
        draw.ellipse([(cx - half[0]) * ss, (cy - half[1]) * ss,
                      (cx + half[0]) * ss - 1, (cy + half[1]) * ss - 1], fill=255)
    else:
        points = [((cx + x * half[0]) * ss, (cy + y * half[1]) * ss) for x, y in polygon]
        draw.polygon(points, fill=255)
    small = canvas.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Placed:
    """An object laid out in pixels: centroid, half extents of its box, colour name."""

    shape: str
    colour: str
    centre: tuple[float, float]
    half: tuple[float, float]


def _layout(scene: Scene, size: int, rng: np.random.Generator) -> list[_Placed]:
    """Jittered positions and sizes (fractions -> pixels), kept inside the frame."""

    def place(shape: str, colour: str, anchor: tuple[float, float], side: float) -> _Placed:
        side *= rng.uniform(0.94, 1.06)
        aspect = rng.uniform(0.92, 1.08)
        hw, hh = side / 2 * aspect, side / 2 / aspect
        c = shape_centroid(shape)
        x, y = anchor
        # Keep the bounding box (which sits off the centroid for triangles and stars) in frame.
        margin = 0.015
        x = float(np.clip(x, margin + (1 + c[0]) * hw, 1 - margin - (1 - c[0]) * hw))
        y = float(np.clip(y, margin + (1 + c[1]) * hh, 1 - margin - (1 - c[1]) * hh))
        return _Placed(shape, colour, (x * size, y * size), (hw * size, hh * size))

    if not scene.is_relational:
        ax, ay = POSITION_ANCHORS[scene.position]
        jitter = rng.uniform(-0.06, 0.06, 2)
        return [place(scene.shape, scene.colour, (ax + jitter[0], ay + jitter[1]),
                      SIZE_FRACTIONS[scene.size])]
    near, far = rng.uniform(0.20, 0.34), rng.uniform(0.66, 0.80)
    across = rng.uniform(0.38, 0.62, 2)
    first_low = scene.relation in ("left of", "above")  # first object has the smaller coordinate
    a, b = (near, far) if first_low else (far, near)
    horizontal = scene.relation in ("left of", "right of")
    pa = (a, across[0]) if horizontal else (across[0], a)
    pb = (b, across[1]) if horizontal else (across[1], b)
    return [place(scene.shape, scene.colour, pa, RELATION_SIZE),
            place(scene.shape2, scene.colour2, pb, RELATION_SIZE)]


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates as fractions of the image, each (size, size)."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.meshgrid(t, t, indexing="xy")


def _smooth_noise(size: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Value noise in [-1, 1]: a random (cells x cells) grid upsampled bicubically."""
    grid = rng.uniform(0, 255, (cells, cells)).astype(np.uint8)
    up = Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(up, dtype=np.float32) / 127.5 - 1.0


def _texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean achromatic pattern in about [-1, 1]: plain, blotches, stripes, checks, dots or
    grain. Never captioned."""
    u, v = _grid(size)
    kind = rng.integers(6)
    theta = rng.uniform(0, np.pi)
    if kind == 0:
        return np.zeros((size, size), np.float32)
    if kind == 1:
        return _smooth_noise(size, int(rng.integers(3, 9)), rng)
    if kind == 2:
        freq = rng.uniform(3, 10)
        return np.sin(2 * np.pi * freq * (u * np.cos(theta) + v * np.sin(theta))
                      + rng.uniform(0, 2 * np.pi))
    if kind == 3:
        cells = rng.uniform(3, 8)
        return np.sign(np.sin(np.pi * cells * u) * np.sin(np.pi * cells * v) + 1e-6)
    if kind == 4:
        cells = rng.uniform(5, 10)
        d = np.hypot((u * cells) % 1 - 0.5, (v * cells) % 1 - 0.5)
        return np.where(d < 0.22, 1.0, -0.15).astype(np.float32)
    return rng.uniform(-1, 1, (size, size)).astype(np.float32)


def _background(scene: Scene, size: int, rng: np.random.Generator) -> np.ndarray:
    level = BACKGROUND_LEVELS[scene.background] + rng.uniform(-10, 10)
    amplitude = rng.uniform(4, 20)
    tint = rng.uniform(-4, 4, 3)  # a faint cast; stays far below object chroma
    plane = level + amplitude * _texture(size, rng)
    return plane[..., None] + tint


def _object_fill(obj: _Placed, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) fill colour of an object: palette colour with brightness jitter and a
    hue-preserving pattern (flat, shaded, striped or dotted). Never captioned."""
    base = np.array(PALETTE[obj.colour], np.float32) * rng.uniform(0.86, 1.06)
    base = base + rng.uniform(-8, 8, 3)
    u, v = _grid(size)
    kind = rng.integers(4)
    theta = rng.uniform(0, 2 * np.pi)
    if kind == 0:
        factor = np.ones((size, size), np.float32)
    elif kind == 1:
        along = (u - obj.centre[0] / size) * np.cos(theta) + (v - obj.centre[1] / size) * np.sin(theta)
        factor = np.clip(1.0 + 0.15 * along * size / max(obj.half), 0.8, 1.15)
    elif kind == 2:
        period = rng.uniform(0.05, 0.11)
        phase = (u * np.cos(theta) + v * np.sin(theta)) / period
        factor = np.where(phase % 1 < 0.5, 1.0, 0.78)
    else:
        cells = rng.uniform(10, 18)
        d = np.hypot((u * cells) % 1 - 0.5, (v * cells) % 1 - 0.5)
        factor = np.where(d < 0.2, 0.75, 1.0)
    return base * factor[..., None]


def _stamp(image: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Alpha-composite `colour` ((3,) or (H, W, 3)) over `image` in place."""
    image *= 1.0 - alpha[..., None]
    image += alpha[..., None] * colour


def _clutter(image: np.ndarray, placed: list[_Placed], size: int,
             rng: np.random.Generator) -> None:
    """Tiny blobs (any colour, palette colours included) and faint grey scratches, kept clear
    of the objects so they never merge with them. Never captioned."""
    u, v = _grid(size)
    # Boxes around each object's centroid, widened (and more upward) enough to cover triangles
    # and stars, whose bounding box sits off the centroid.
    boxes = [((p.centre[0] - p.half[0]) / size - 0.09, (p.centre[1] - p.half[1]) / size - 0.11,
              (p.centre[0] + p.half[0]) / size + 0.09, (p.centre[1] + p.half[1]) / size + 0.09)
             for p in placed]

    def clear(x: float, y: float) -> bool:
        return not any(x0 <= x <= x1 and y0 <= y <= y1 for x0, y0, x1, y1 in boxes)

    for _ in range(int(rng.integers(2, 11))):
        x, y = rng.uniform(0.03, 0.97, 2)
        if not clear(x, y):
            continue
        radius = rng.uniform(0.008, 0.022)
        alpha = np.clip((radius - np.hypot(u - x, v - y)) * size + 0.5, 0, 1)
        if rng.random() < 0.5:
            colour = np.array(PALETTE[COLOURS[int(rng.integers(len(COLOURS)))]], np.float32)
        else:
            colour = rng.uniform(0, 255, 3)
        _stamp(image, alpha, colour)
    for _ in range(int(rng.integers(0, 4))):
        (x0, y0), angle = rng.uniform(0.05, 0.95, 2), rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.08, 0.3)
        x1, y1 = x0 + length * np.cos(angle), y0 + length * np.sin(angle)
        if not (clear(x0, y0) and clear(x1, y1) and clear((x0 + x1) / 2, (y0 + y1) / 2)):
            continue
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((u - x0) * dx + (v - y0) * dy) / (dx * dx + dy * dy), 0, 1)
        dist = np.hypot(u - x0 - t * dx, v - y0 - t * dy) * size
        alpha = np.clip(0.6 - dist, 0, 1) * rng.uniform(0.3, 0.7)
        _stamp(image, alpha, np.full(3, rng.uniform(0, 255), np.float32))


def _lighting(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A linear illumination gradient, an optional soft glare spot and a faint colour cast."""
    u, v = _grid(size)
    theta = rng.uniform(0, 2 * np.pi)
    strength = rng.uniform(0.0, 0.15)
    gain = 1.0 + 2 * strength * ((u - 0.5) * np.cos(theta) + (v - 0.5) * np.sin(theta))
    image = image * gain[..., None] * rng.uniform(0.96, 1.04, 3)
    if rng.random() < 0.3:
        x, y = rng.uniform(0.1, 0.9, 2)
        sigma = rng.uniform(0.1, 0.25)
        glare = rng.uniform(0.08, 0.2) * np.exp(-((u - x) ** 2 + (v - y) ** 2) / (2 * sigma ** 2))
        image = image * (1 - glare[..., None]) + 255.0 * glare[..., None]
    return image


def render(scene: Scene, size: int = 64, rng: np.random.Generator | int = 0) -> np.ndarray:
    """Render a scene to a (size, size, 3) uint8 RGB array.

    `rng` (a generator or a seed) draws every nuisance: layout jitter, textures, lighting,
    clutter, outlines, blur and noise. Geometry is in fractions of the image, so a scene looks
    the same at any size >= 64 (only finer).
    """
    if size < MIN_RENDER_SIZE:
        raise ValueError(f"size={size}: renders must be at least {MIN_RENDER_SIZE} px")
    rng = np.random.default_rng(rng) if isinstance(rng, (int, np.integer)) else rng
    placed = _layout(scene, size, rng)
    image = np.ascontiguousarray(np.broadcast_to(_background(scene, size, rng), (size, size, 3)),
                                 dtype=np.float32)
    _clutter(image, placed, size, rng)
    for obj in placed:
        alpha = _draw_shape(obj.shape, obj.centre, obj.half, size, supersample=4)
        if rng.random() < 0.3:
            # A dark grey outline just outside the silhouette (one pixel at 64 px): it changes
            # the look, not the shape, and is achromatic so it never counts as object colour.
            width = max(1, round(size / 64))
            grown = Image.fromarray((alpha * 255).astype(np.uint8)).filter(
                ImageFilter.MaxFilter(2 * width + 1))
            ring = np.clip(np.asarray(grown, np.float32) / 255.0 - alpha, 0, 1)
            _stamp(image, ring, np.full(3, rng.uniform(10, 60), np.float32))
        _stamp(image, alpha, _object_fill(obj, size, rng))
    image = _lighting(image, size, rng)
    if rng.random() < 0.25:
        radius = rng.uniform(0.3, 0.7) * size / 64
        blurred = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(radius))
        image = np.asarray(blurred, np.float32)
    image = image + rng.normal(0, rng.uniform(0, 5), image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Captions
# --------------------------------------------------------------------------------------------

_SHAPE_WORDS = {
    "circle": ("circle", "disc", "disk"),
    "square": ("square", "block"),
    "triangle": ("triangle",),
    "cross": ("cross", "plus sign"),
    "star": ("star", "five-pointed star"),
}
_COLOUR_WORDS = {
    "red": ("red",), "yellow": ("yellow",), "green": ("green",),
    "cyan": ("cyan", "turquoise"), "blue": ("blue",), "purple": ("purple", "violet"),
}
_SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")}
_POSITION_PHRASES = {
    "left": ("on the left", "at the left", "in the left half", "on the left side"),
    "right": ("on the right", "at the right", "in the right half", "on the right side"),
    "top": ("at the top", "near the top", "in the upper half", "at the top of the image"),
    "bottom": ("at the bottom", "near the bottom", "in the lower half",
               "at the bottom of the image"),
    "center": ("in the center", "in the middle", "at the centre", "in the middle of the image"),
}
_BACKGROUND_WORDS = {"white": ("white", "light"), "gray": ("gray", "grey"),
                     "black": ("black", "dark")}
_BACKGROUND_PHRASES = ("on a {} background", "against a {} backdrop", "on {}",
                       "over a {} background")
_RELATION_PHRASES = {
    "left of": ("left of", "to the left of", "on the left of"),
    "right of": ("right of", "to the right of", "on the right of"),
    "above": ("above", "higher than", "on top of"),
    "below": ("below", "under", "beneath"),
}
_INVERSE_RELATION = {"left of": "right of", "right of": "left of", "above": "below",
                     "below": "above"}
_PREFIXES = ("", "", "", "a picture of", "an image of", "a drawing of", "a photo of",
             "there is", "a render of", "showing")

# How often a training caption names each optional attribute; colour and shape always appear.
MENTION_PROB = 0.7


@dataclass(frozen=True)
class Caption:
    """A caption and the attributes it names (a subset of the scene's attributes)."""

    text: str
    attributes: dict[str, str]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _noun_phrase(colour: str, shape: str, size: str | None, rng: np.random.Generator) -> str:
    words = [] if size is None else [_choice(_SIZE_WORDS[size], rng)]
    words += [_choice(_COLOUR_WORDS[colour], rng), _choice(_SHAPE_WORDS[shape], rng)]
    return f"{_article(words[0])} {' '.join(words)}"


def _choice(options: tuple[str, ...], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def describe(scene: Scene, rng: np.random.Generator | int = 0, full: bool = False) -> Caption:
    """Caption a scene in one of many wordings (templates, synonyms, word order).

    With `full` every attribute is named; otherwise size, position and background are each
    named with probability `MENTION_PROB`, like real captions that leave things out.
    """
    rng = np.random.default_rng(rng) if isinstance(rng, (int, np.integer)) else rng

    def mention() -> bool:
        return full or rng.random() < MENTION_PROB

    named = {"shape": scene.shape, "colour": scene.colour}
    background = ""
    position_first = False  # a prefix reads badly before it ("there is at the top, ...")
    if mention():
        named["background"] = scene.background
        background = " " + _choice(_BACKGROUND_PHRASES, rng).format(
            _choice(_BACKGROUND_WORDS[scene.background], rng))
    if scene.is_relational:
        named.update(shape2=scene.shape2, colour2=scene.colour2, relation=scene.relation)
        first = _noun_phrase(scene.colour, scene.shape, None, rng)
        second = _noun_phrase(scene.colour2, scene.shape2, None, rng)
        if rng.random() < 0.5:
            body = f"{first} {_choice(_RELATION_PHRASES[scene.relation], rng)} {second}"
        else:
            inverse = _INVERSE_RELATION[scene.relation]
            body = f"{second} {_choice(_RELATION_PHRASES[inverse], rng)} {first}"
        body += background
    else:
        size = scene.size if mention() else None
        if size is not None:
            named["size"] = size
        noun = _noun_phrase(scene.colour, scene.shape, size, rng)
        position = ""
        if mention():
            named["position"] = scene.position
            position = _choice(_POSITION_PHRASES[scene.position], rng)
        order = rng.integers(3)
        if not position:
            body = noun + background
        elif order == 0:
            body = f"{noun} {position}{background}"
        elif order == 1:
            body = f"{noun}{background} {position}"
        else:
            body = f"{position}, {noun}{background}"
            position_first = True
    prefix = "" if position_first else _choice(_PREFIXES, rng)
    text = f"{prefix} {body}" if prefix else body
    return Caption(text=text, attributes=named)


def caption(scene: Scene, rng: np.random.Generator | int = 0, full: bool = False) -> str:
    """Only the text of `describe`."""
    return describe(scene, rng, full).text


def canonical_caption(scene: Scene) -> str:
    """One fixed full wording per scene, e.g. "a large red circle on the left on a white
    background" or "a red circle left of a blue square on a white background"."""
    if scene.is_relational:
        body = (f"a {scene.colour} {scene.shape} {scene.relation} "
                f"{_article(scene.colour2)} {scene.colour2} {scene.shape2}")
    else:
        where = "in the center" if scene.position == "center" else (
            f"on the {scene.position}" if scene.position in ("left", "right")
            else f"at the {scene.position}")
        body = f"a {scene.size} {scene.colour} {scene.shape} {where}"
    return f"{body} on a {scene.background} background"
