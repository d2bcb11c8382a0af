"""Blending target/loss and the bank guidance that feeds text-to-image."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inversion_core.awp import SeedConfig, fit_seeds
from inversion_core.bank import ReferenceBank
from inversion_core.bank_guidance import BankOptions, bank_clip, prepare_text_to_image
from inversion_core.blending import BlendingLoss, blend_target
from inversion_core.inr import INRConfig
from inversion_core.targets import text_target

CAPTIONS = [f"a {c} {s}" for c in ("red", "green", "blue", "yellow", "white") for s in ("circle", "square")]
SEED_INR = INRConfig(hidden_layers=2, width=32)  # the tiny_run INR, so seeds fit the run


def test_blend_target_is_softmax_weighted_and_normalised():
    g = torch.Generator().manual_seed(0)
    images = F.normalize(torch.randn(50, 8, generator=g), dim=-1)
    query = F.normalize(torch.randn(3, 8, generator=g), dim=-1)
    target, idx, weights = blend_target(query, images, k=5, tau=0.1)
    scores = query @ images.T
    expected_idx = torch.topk(scores, 5, dim=1).indices
    assert torch.equal(idx, expected_idx)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))
    expected = F.normalize((torch.softmax(torch.gather(scores, 1, idx) / 0.1, -1)[..., None] * images[idx]).sum(1), dim=-1)
    torch.testing.assert_close(target, expected)
    sharp, idx1, _ = blend_target(query, images, k=5, tau=1e-4)  # τ → 0: the nearest image itself
    torch.testing.assert_close(sharp, images[idx1[:, 0]], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="tau"):
        blend_target(query, images, k=5, tau=0.0)


def test_blending_loss_term(tiny_clip):
    target = F.normalize(torch.randn(1, tiny_clip.embed_dim), dim=-1)
    term = BlendingLoss(target, tiny_clip.identity, beta=0.5)
    embedding = F.normalize(torch.randn(2, tiny_clip.embed_dim), dim=-1).requires_grad_(True)
    value = term(torch.zeros(2, 3, 8, 8), {tiny_clip.identity: embedding}, [tiny_clip])
    assert term.name == "blend" and value.shape == (2,)
    torch.testing.assert_close(value, 0.5 * (1 - (embedding * target).sum(-1)))
    value.sum().backward()
    assert embedding.grad is not None
    with pytest.raises(ValueError, match="not among the CLIPs"):
        term(torch.zeros(2, 3, 8, 8), {"other@clip": embedding}, [])
    with pytest.raises(ValueError, match="beta"):
        BlendingLoss(target, tiny_clip.identity, beta=-1)


def test_blending_loss_built_in_inference_mode_still_backpropagates(tiny_clip):
    with torch.inference_mode():
        term = BlendingLoss(F.normalize(torch.randn(1, tiny_clip.embed_dim), dim=-1), tiny_clip.identity)
    with torch.inference_mode(False), torch.enable_grad():
        embedding = F.normalize(torch.randn(1, tiny_clip.embed_dim), dim=-1).requires_grad_(True)
        term(None, {tiny_clip.identity: embedding}, [tiny_clip]).sum().backward()
    assert embedding.grad is not None


@pytest.fixture(scope="module")
def small_bank(tiny_clip) -> ReferenceBank:
    """10 captioned random 'images' embedded by the tiny CLIP, with seeds for the tiny_run INR."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(len(CAPTIONS), 3, 32, 32, generator=g)
    with torch.no_grad():
        image_e = tiny_clip.encode_image(images)
    inr, quality = fit_seeds(images, SEED_INR, SeedConfig(steps=2, size=16, blur_sigma=1.0))
    return ReferenceBank(image_e, tiny_clip.encode_text(CAPTIONS), list(CAPTIONS), tiny_clip.identity,
                         seed_weights=[w.detach() for w in inr.weights], seed_biases=[b.detach() for b in inr.biases],
                         inr_config=SEED_INR, seed_config=SeedConfig(steps=2, size=16, blur_sigma=1.0),
                         seed_psnr=quality)


@pytest.mark.parametrize("procrustes", ["local", "global", "off"])
def test_guidance_plugs_into_invert(small_bank, tiny_clip, tiny_run, procrustes):
    from inversion_core.optimise import invert

    prompts = ["a red circle", "a red circle", "a blue square"]
    targets = [text_target(p) for p in prompts]
    options = BankOptions(procrustes=procrustes, procrustes_k=4, blend_k=3)
    guidance = prepare_text_to_image(small_bank, tiny_clip, targets, tiny_run.inr, options)
    assert len(guidance.targets) == 3 and guidance.init.batch_size == 3
    # repeated prompts start from different seeds; the first is the caption's own seed
    assert guidance.info[0]["seed_caption"] == "a red circle"
    assert guidance.info[0]["seed"] != guidance.info[1]["seed"]
    direction = guidance.targets[0].direction(tiny_clip)
    text = tiny_clip.encode_text(["a red circle"])[0]
    if procrustes == "off":
        torch.testing.assert_close(direction, text)
    else:
        assert len(guidance.info[0]) >= 4
        assert not torch.allclose(direction, text)
        torch.testing.assert_close(direction.norm(), torch.tensor(1.0))
    config = type(tiny_run)(steps=2, width=16, height=16, inr=tiny_run.inr, augment=tiny_run.augment)
    result = invert(tiny_clip, guidance.targets, config, init=guidance.init, loss_terms=guidance.loss_terms)
    assert result.images.shape == (3, 3, 16, 16)
    assert "blend" in result.history[0] and result.history[0]["blend"] > 0


def test_guidance_options_are_independent(small_bank, tiny_clip, tiny_run):
    targets = [text_target("a green square")]
    none = prepare_text_to_image(small_bank, tiny_clip, targets, tiny_run.inr,
                                 BankOptions(procrustes="off", blend_beta=0.0, use_seed=False))
    assert none.targets == targets and none.loss_terms == [] and none.init is None
    only_blend = prepare_text_to_image(small_bank, tiny_clip, targets, tiny_run.inr,
                                       BankOptions(procrustes="off", blend_beta=0.1, blend_k=2, use_seed=False))
    assert len(only_blend.loss_terms) == 1 and only_blend.init is None and only_blend.loss_terms[0].beta == 0.1


def test_guidance_errors(small_bank, tiny_clip, tiny_clip_config, tiny_run):
    from inversion_core.clip_models import load_clip

    targets = [text_target("a red circle")]
    other = load_clip(tiny_clip_config, seed=3)
    with pytest.raises(ValueError, match=rf"{other.identity}"):
        prepare_text_to_image(small_bank, other, targets, tiny_run.inr)
    assert bank_clip([other, tiny_clip], small_bank) is tiny_clip
    with pytest.raises(ValueError, match=r"procrustes_k=16 exceeds the 10 pairs"):
        prepare_text_to_image(small_bank, tiny_clip, targets, tiny_run.inr)
    with pytest.raises(ValueError, match=r"hidden_layers: bank 2 vs run 3"):
        prepare_text_to_image(small_bank, tiny_clip, targets, INRConfig(hidden_layers=3, width=32),
                              BankOptions(procrustes_k=4))
    with pytest.raises(ValueError, match=r"procrustes must be one of.*blend_tau"):
        BankOptions(procrustes="sideways", blend_tau=0)


def test_ensemble_uses_the_original_target_for_other_clips(small_bank, tiny_clip, tiny_clip_config, tiny_run):
    from inversion_core.clip_models import load_clip

    other = load_clip(tiny_clip_config, seed=4)
    guidance = prepare_text_to_image(small_bank, [other, tiny_clip], [text_target("a red circle")], tiny_run.inr,
                                     BankOptions(procrustes_k=4))
    torch.testing.assert_close(guidance.targets[0].direction(other), other.encode_text(["a red circle"])[0])


def test_cli_bank_arguments_map_to_options():
    import argparse

    from inversion_core.bank_guidance import add_bank_arguments, bank_options_from_args

    parser = argparse.ArgumentParser()
    add_bank_arguments(parser)
    assert bank_options_from_args(parser.parse_args([])) == BankOptions()
    args = parser.parse_args(["--bank", "b.safetensors", "--procrustes", "global", "--blend-beta", "0", "--no-seed"])
    assert args.bank == "b.safetensors"
    assert bank_options_from_args(args) == BankOptions(procrustes="global", blend_beta=0.0, use_seed=False)
