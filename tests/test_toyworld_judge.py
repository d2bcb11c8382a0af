"""The pixel judge reads the toy world's attributes back: >= 97% per attribute on clean renders
(nuisances included), still usable on blurred and noisy ones, and strict about its inputs."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.toyworld import judge, world


@pytest.mark.parametrize("size", [64, 128])
def test_clean_renders_are_read_right(size):
    scores = judge.accuracy(count=160, kind="clean", seed=size, size=size)
    assert set(scores) == set(world.ATTRIBUTE_KEYS)
    assert all(value >= 0.97 for value in scores.values()), scores


@pytest.mark.parametrize("kind", ["blur1", "noise15", "washed"])
def test_degraded_renders_are_mostly_read_right(kind):
    scores = judge.accuracy(count=80, kind=kind, seed=1)
    assert all(value >= 0.85 for value in scores.values()), scores


def test_accepts_float_arrays_and_pil_images():
    scene = world.Scene(shape="triangle", colour="blue", background="white", size="large",
                        position="right")
    image = world.render(scene, 64, 0)
    expected = {k: True for k in scene.attributes()}
    from PIL import Image

    assert judge.judge(image.astype(np.float32) / 255.0, scene.attributes()) == expected
    assert judge.judge(Image.fromarray(image), scene.attributes()) == expected


def test_partial_prompts_get_partial_verdicts():
    scene = world.Scene(shape="square", colour="green", background="black", size="small",
                        position="center")
    verdict = judge.judge(world.render(scene, 64, 2), {"colour": "green", "shape": "circle"})
    assert verdict == {"colour": True, "shape": False}


def test_relation_is_read_from_the_prompted_colours():
    scene = world.Scene(shape="star", colour="red", background="gray", shape2="cross",
                        colour2="cyan", relation="above")
    image = world.render(scene, 64, 4)
    assert all(judge.judge(image, scene.attributes()).values())
    swapped = dict(scene.attributes(), relation="below")
    assert judge.judge(image, swapped)["relation"] is False


def test_an_empty_image_has_no_objects():
    grey = np.full((64, 64, 3), 128, np.uint8)
    reading = judge.read_attributes(grey)
    assert reading.objects == () and reading.background == "gray"
    verdict = judge.judge(grey, {"colour": "red", "shape": "circle", "background": "gray"})
    assert verdict == {"colour": False, "shape": False, "background": True}


def test_invalid_prompts_raise_with_every_problem():
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="texture.*colour='pink'|colour='pink'.*texture"):
        judge.judge(image, {"texture": "dots", "colour": "pink"})
    with pytest.raises(ValueError, match="must name colour and colour2"):
        judge.judge(image, {"colour": "red", "relation": "above"})
    with pytest.raises(ValueError, match=r"expected \(H, W, 3\)"):
        judge.judge(np.zeros((64, 64)), {"colour": "red"})


def test_judge_caption_reads_canonical_prompts_only():
    import numpy as np
    import torch

    from benchmarks.toyworld import world
    from benchmarks.toyworld.judge import judge_caption

    scene = world.Scene("star", "purple", "gray", size="large", position="bottom")
    image = world.render(scene, 64, np.random.default_rng(0))
    tensor = torch.from_numpy(np.asarray(image)).permute(2, 0, 1).float() / 255
    verdict = judge_caption(tensor, world.canonical_caption(scene))
    assert verdict is not None and all(verdict.values()) and set(verdict) == set(scene.attributes())
    assert judge_caption(tensor, "a photo of a dog") is None
