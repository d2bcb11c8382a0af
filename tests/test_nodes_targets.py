"""Target nodes: text, image and weighted combinations, resolved per CLIP at run time."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from node_harness import NodeValidationError, run_node


def _resolve(target, clip):
    with torch.inference_mode(False):
        return target.embeddings(clip.bundle)


def test_text_target_is_the_prompt_embedding(pack_nodes, inversion_clip):
    target = run_node(pack_nodes["CLIPInversionTextTarget"], text="  a red circle ", weight=0.5)[0]
    vectors, weights = _resolve(target, inversion_clip)
    with torch.inference_mode(False):
        expected = inversion_clip.bundle.encode_text(["a red circle"])
    torch.testing.assert_close(vectors, expected)
    assert weights.tolist() == [0.5]


def test_empty_prompt_is_refused_at_validation(pack_nodes, comfy_env):
    with pytest.raises(NodeValidationError, match="text is empty"):
        run_node(pack_nodes["CLIPInversionTextTarget"], text="   \n", weight=1.0)


def test_image_batch_becomes_one_target_sharing_the_weight(pack_nodes, inversion_clip):
    images = torch.rand(3, 20, 24, 3, generator=torch.Generator().manual_seed(0))  # ComfyUI IMAGE layout
    target = run_node(pack_nodes["CLIPInversionImageTarget"], image=images, weight=1.5)[0]
    vectors, weights = _resolve(target, inversion_clip)
    assert weights.tolist() == pytest.approx([0.5, 0.5, 0.5])
    with torch.inference_mode(False):
        expected = inversion_clip.bundle.encode_image(images.movedim(-1, 1))
    torch.testing.assert_close(vectors, F.normalize(expected, dim=-1))


def test_rgba_and_grey_images_are_accepted(pack_nodes, inversion_clip):
    node = pack_nodes["CLIPInversionImageTarget"]
    for channels in (1, 4):
        target = run_node(node, image=torch.rand(1, 16, 16, channels), weight=1.0)[0]
        assert _resolve(target, inversion_clip)[0].shape == (1, 32)


def test_negative_weight_on_a_batch_names_the_fix(pack_nodes, comfy_env):
    with pytest.raises(ValueError, match="one image per Image Target"):
        run_node(pack_nodes["CLIPInversionImageTarget"], image=torch.rand(2, 8, 8, 3), weight=-1.0)


def test_combine_scales_each_target_and_allows_negatives(pack_nodes, inversion_clip):
    text = pack_nodes["CLIPInversionTextTarget"]
    a = run_node(text, text="a cat", weight=1.0)[0]
    b = run_node(text, text="blurry", weight=0.5)[0]
    c = run_node(text, text="a dog", weight=2.0)[0]
    combine = pack_nodes["CLIPInversionCombineTargets"]
    mixed = run_node(combine, target_a=a, weight_a=2.0, target_b=b, weight_b=-1.0, weight_c=0.25, weight_d=9.0,
                     target_c=c)[0]
    _, weights = _resolve(mixed, inversion_clip)
    assert weights.tolist() == pytest.approx([2.0, -0.5, 0.5])  # weight_d ignored: target_d not connected


def test_combine_without_a_positive_term_is_refused(pack_nodes, comfy_env):
    text = pack_nodes["CLIPInversionTextTarget"]
    a = run_node(text, text="a cat", weight=1.0)[0]
    with pytest.raises(ValueError, match="positive weight"):
        run_node(pack_nodes["CLIPInversionCombineTargets"], target_a=a, weight_a=-1.0, target_b=a, weight_b=0.0,
                 weight_c=1.0, weight_d=1.0)
