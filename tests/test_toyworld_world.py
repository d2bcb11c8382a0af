"""The toy world: deterministic renders, a held-out split that training never sees, captions
that name what they claim to name, and a reference-set writer that respects the split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.toyworld import world
from benchmarks.toyworld.make_reference_set import write_reference_set


def _scenes(count: int, split: str, seed: int = 0) -> list[world.Scene]:
    rng = np.random.default_rng(seed)
    return [world.sample_scene(rng, split, relational_prob=0.3) for _ in range(count)]


def test_render_is_deterministic_per_seed_and_varies_across_seeds():
    scene = world.Scene(shape="star", colour="red", background="gray", size="large",
                        position="left")
    a, b, c = world.render(scene, 64, 5), world.render(scene, 64, 5), world.render(scene, 64, 6)
    assert a.dtype == np.uint8 and a.shape == (64, 64, 3)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 1.0  # nuisances differ


def test_render_sizes():
    scene = _scenes(1, "train")[0]
    assert world.render(scene, 128, 0).shape == (128, 128, 3)
    with pytest.raises(ValueError, match="at least 64"):
        world.render(scene, 32, 0)


def test_train_split_never_contains_a_held_out_pair():
    assert not any(world.is_held_out(s) for s in _scenes(400, "train"))
    assert all(world.is_held_out(s) for s in _scenes(100, "held_out"))


def test_held_out_pairs_leave_every_colour_and_shape_in_training():
    assert len(world.HELD_OUT_PAIRS) == len(world.SHAPES)
    assert {shape for _, shape in world.HELD_OUT_PAIRS} == set(world.SHAPES)
    trained = {(c, s) for c in world.COLOURS for s in world.SHAPES} - world.HELD_OUT_PAIRS
    assert {c for c, _ in trained} == set(world.COLOURS)
    assert {s for _, s in trained} == set(world.SHAPES)


def test_scene_validation_lists_the_problem():
    with pytest.raises(ValueError, match="colour='pink'"):
        world.Scene(shape="circle", colour="pink", background="white", size="small",
                    position="left")
    with pytest.raises(ValueError, match="two colours"):
        world.Scene(shape="circle", colour="red", background="white", shape2="star",
                    colour2="red", relation="above")
    with pytest.raises(ValueError, match="sets both size and position"):
        world.Scene(shape="circle", colour="red", background="white", size="small")


def test_scene_attributes_round_trip():
    for scene in _scenes(20, "train"):
        assert world.Scene.from_attributes(scene.attributes()) == scene
    with pytest.raises(ValueError, match="unknown attribute keys"):
        world.Scene.from_attributes({"shape": "circle", "texture": "stripes"})


def test_single_swaps_change_exactly_one_attribute_to_every_other_value():
    one = world.Scene(shape="circle", colour="red", background="white", size="small", position="left")
    swaps = world.single_swaps(one)
    assert len(swaps) == sum(len(world.ATTRIBUTE_VALUES[k]) - 1 for k in one.attributes())
    for key, scene in swaps:
        changed = {k for k, v in scene.attributes().items() if v != one.attributes()[k]}
        assert changed == {key}
    two = world.Scene(shape="circle", colour="red", background="white", shape2="square",
                      colour2="blue", relation="above")
    colours = {(s.colour, s.colour2) for key, s in world.single_swaps(two) if key in ("colour", "colour2")}
    assert len(colours) == 2 * (len(world.COLOURS) - 2)  # never both objects one colour
    assert all(a != b for a, b in colours)


def test_full_captions_name_every_attribute_and_wording_varies():
    scene = world.Scene(shape="cross", colour="purple", background="black", size="small",
                        position="top")
    captions = [world.describe(scene, seed, full=True) for seed in range(40)]
    assert all(c.attributes == scene.attributes() for c in captions)
    assert len({c.text for c in captions}) >= 20
    relational = world.Scene(shape="circle", colour="red", background="white", shape2="square",
                             colour2="blue", relation="left of")
    assert world.canonical_caption(relational) == (
        "a red circle left of a blue square on a white background")


def test_partial_captions_only_claim_what_they_name():
    rng = np.random.default_rng(3)
    for scene in _scenes(50, "train"):
        caption = world.describe(scene, rng)
        assert {"shape", "colour"} <= set(caption.attributes)
        assert caption.attributes.items() <= scene.attributes().items()


def test_reference_set_layout_and_split(tmp_path):
    rows = write_reference_set(tmp_path / "refs", count=12, seed=1)
    pngs = sorted((tmp_path / "refs").glob("*.png"))
    assert [p.stem for p in pngs] == [f"{i:05d}" for i in range(12)]
    assert all(p.with_suffix(".txt").read_text().strip() for p in pngs)
    lines = (tmp_path / "refs" / "attributes.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == rows
    assert not any(world.is_held_out(world.Scene.from_attributes(r)) for r in rows)
    with pytest.raises(ValueError, match="already holds"):
        write_reference_set(tmp_path / "refs", count=2)
