import dataclasses

import pytest
import torch

from inversion_core import (AugmentConfig, FinerINR, INRConfig, combine_targets, invert, text_target,
                            text_to_image)


def cosine_to_text(clip, images, prompt):
    with torch.no_grad():
        return (clip.encode_image(images) @ clip.encode_text([prompt]).T).squeeze(-1)


def random_inr_images(run, seed=0):
    inr = FinerINR(run.inr, 1, generator=torch.Generator().manual_seed(seed))
    return inr(run.height, run.width).detach()


@pytest.mark.parametrize("inference_mode", [False, True], ids=["plain", "inference_mode"])
def test_text_to_image_raises_cosine_to_prompt(tiny_clip, tiny_run, inference_mode):
    prompt = "a red circle on the left"
    start = cosine_to_text(tiny_clip, random_inr_images(tiny_run, seed=0), prompt).item()  # the run's own init
    with torch.inference_mode(inference_mode):
        result = text_to_image(tiny_clip, prompt, tiny_run, seed=0)
    end = cosine_to_text(tiny_clip, result.images, prompt).item()
    # A 1-layer random CLIP cannot reach high cosines (the toy-world tests check absolute quality).
    assert end > start + 0.08, (start, end)
    assert result.history[-1]["target"] < result.history[0]["target"]
    assert not result.images.requires_grad and not result.images.is_inference()


def test_batch_members_start_as_images_run_one_by_one(tiny_clip, tiny_run):
    """Same seeds and augmentations per member; over a short run a batch stays within float noise
    of single runs (over long ones the different summation order makes them drift, see README)."""
    run = dataclasses.replace(tiny_run, steps=15)
    prompts = ["a red circle", "a blue square", "a green star"]
    batch = text_to_image(tiny_clip, prompts, run, seed=10)
    for i, prompt in enumerate(prompts):
        single = text_to_image(tiny_clip, prompt, run, seed=10 + i)
        torch.testing.assert_close(batch.images[i : i + 1], single.images, atol=1e-5, rtol=0)


def test_same_seed_same_image_other_seed_other_image(tiny_clip, tiny_run):
    run = dataclasses.replace(tiny_run, steps=5)
    a = text_to_image(tiny_clip, "a cat", run, seed=3).images
    b = text_to_image(tiny_clip, "a cat", run, seed=3).images
    c = text_to_image(tiny_clip, "a cat", run, seed=4).images
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_seeds_wrap_in_torchs_64_bit_seed_space(tiny_clip, tiny_run):
    """The top of a UI's seed range plus an image index is a seed, not an overflow error: seeds are
    taken modulo 2**64, as torch takes -1 for 2**64 - 1."""
    run = dataclasses.replace(tiny_run, steps=3)
    top = text_to_image(tiny_clip, ["a cat", "a cat"], run, seed=2**64 - 1)
    assert top.seeds == [2**64 - 1, 0]
    torch.testing.assert_close(top.images[1:], text_to_image(tiny_clip, "a cat", run, seed=0).images,
                               atol=1e-5, rtol=0)
    assert torch.equal(text_to_image(tiny_clip, "a cat", run, seed=-1).images,
                       text_to_image(tiny_clip, "a cat", run, seed=2**64 - 1).images)


def test_non_square_render_has_requested_shape(tiny_clip, tiny_run):
    run = dataclasses.replace(tiny_run, steps=2, width=48, height=24)
    result = text_to_image(tiny_clip, ["a", "b"], run)
    assert result.images.shape == (2, 3, 24, 48)
    assert result.inr.render(50, 100).shape == (2, 3, 50, 100)


def test_callback_sees_every_step_and_can_stop(tiny_clip, tiny_run):
    seen = []

    def callback(progress):
        seen.append((progress.step, progress.total, tuple(progress.images.shape)))
        return progress.step == 3

    result = invert(tiny_clip, text_target("a dog"), tiny_run, callback=callback)
    assert seen == [(s, tiny_run.steps, (1, 3, 32, 32)) for s in (1, 2, 3)]
    assert result.stopped_early and len(result.history) == 3


def test_callback_exception_aborts_the_run(tiny_clip, tiny_run):
    class Interrupted(Exception):
        pass

    def callback(progress):
        if progress.step == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        invert(tiny_clip, text_target("a dog"), tiny_run, callback=callback)


def test_negative_prompt_moves_away(tiny_clip, tiny_run):
    run = dataclasses.replace(tiny_run, steps=30)
    plain = text_to_image(tiny_clip, "a red circle", run).images
    target = combine_targets(text_target("a red circle"), text_target("a blue square", weight=-1.0))
    pushed = invert(tiny_clip, target, run).images
    assert cosine_to_text(tiny_clip, pushed, "a blue square") < cosine_to_text(tiny_clip, plain, "a blue square")


def test_ensemble_sums_one_term_per_model(tiny_clip, tiny_clip_config, tiny_run):
    from inversion_core import load_clip

    other = load_clip(tiny_clip_config, seed=1)
    result = invert([tiny_clip, other], text_target("a yellow triangle"), tiny_run)
    names = set(result.history[0])
    assert names == {f"target/{tiny_clip.identity}", f"target/{other.identity}"}
    first, last = (sum(sum(step.values()) for step in part) for part in (result.history[:5], result.history[-5:]))
    assert last < first


def test_init_continues_from_a_previous_result(tiny_clip, tiny_run):
    run = dataclasses.replace(tiny_run, steps=10)
    first = text_to_image(tiny_clip, "a house", run)
    more = invert(tiny_clip, text_target("a house"), run, init=first.inr)
    assert more.history[0]["target"] < first.history[0]["target"]


def test_init_with_other_inr_config_is_refused(tiny_clip, tiny_run):
    wrong = FinerINR(INRConfig(hidden_layers=1, width=8))
    with pytest.raises(ValueError, match="same INR settings"):
        invert(tiny_clip, text_target("x"), tiny_run, init=wrong)


def test_non_finite_loss_suggests_lower_learning_rate(tiny_clip, tiny_run):
    class Poison:
        name = "poison"

        def __call__(self, render, embeddings, clips):
            return render.mean(dim=(1, 2, 3)) * float("nan")

    with pytest.raises(ValueError, match="non-finite.*lower the learning rate"):
        invert(tiny_clip, text_target("x"), tiny_run, loss_terms=[Poison()])


def test_bad_inputs_get_clear_messages(tiny_clip, tiny_run):
    with pytest.raises(ValueError, match="prompt is empty"):
        text_to_image(tiny_clip, "   ", tiny_run)
    with pytest.raises(ValueError, match="no positive weight"):
        invert(tiny_clip, text_target("x", weight=-1), tiny_run)
    with pytest.raises(ValueError, match="steps must be in"):
        dataclasses.replace(tiny_run, steps=0)
    with pytest.raises(ValueError, match="views must be in"):
        AugmentConfig(views=0)
    with pytest.raises(ValueError, match="2 seeds for 1 images"):
        invert(tiny_clip, text_target("x"), tiny_run, seed=[1, 2])
    with pytest.raises(ValueError, match="the ensemble holds the same CLIP more than once"):
        invert([tiny_clip, tiny_clip], text_target("x"), tiny_run)


def test_loss_terms_with_clashing_names_are_refused(tiny_clip, tiny_run):
    class Term:
        name = "blend"

        def __call__(self, render, embeddings, clips):
            return render.mean(dim=(1, 2, 3))

    with pytest.raises(ValueError, match="distinct names"):
        invert(tiny_clip, text_target("x"), tiny_run, loss_terms=[Term(), Term()])
