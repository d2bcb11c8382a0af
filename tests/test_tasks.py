import dataclasses

import pytest
import torch
import torch.nn.functional as F

from inversion_core import INRConfig, edit, fit_inr_to_image, image_target, reconstruct, style_transfer
from inversion_core.targets import check_pixels


def scene(height=32, width=32):
    """A small synthetic photo: a red disc left of a blue square on a green-grey ground."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    image = torch.stack([0.4 + 0 * x, 0.5 + 0 * x, 0.4 + 0 * x])
    disc = ((x + 0.45) ** 2 + y**2) < 0.12
    square = ((x - 0.45).abs() < 0.3) & (y.abs() < 0.3)
    image[:, disc] = torch.tensor([0.9, 0.1, 0.1])[:, None]
    image[:, square] = torch.tensor([0.1, 0.2, 0.9])[:, None]
    return image.unsqueeze(0)


def embed(clip, images):
    with torch.no_grad():
        return clip.encode_image(images)


def psnr(a, b):
    return 10 * torch.log10(1 / F.mse_loss(a, b))


@pytest.fixture
def invert_call(monkeypatch):
    """Stops a task at its `invert` call and records what it would optimise (config, loss_terms, ...)."""
    from inversion_core import tasks

    seen = {}

    def capture(clips, targets, config, **kwargs):
        seen.update(config=config, **kwargs)
        raise RuntimeError("captured")

    monkeypatch.setattr(tasks, "invert", capture)
    return seen


def test_fit_inr_reproduces_the_image():
    image = scene()
    inr = fit_inr_to_image(image, INRConfig(hidden_layers=2, width=64), steps=150, lr=2e-3)
    assert psnr(inr(32, 32).detach(), image) > 24


@pytest.mark.parametrize("inference_mode", [False, True], ids=["plain", "inference_mode"])
def test_reconstruction_beats_a_random_image(tiny_clip, tiny_run, inference_mode):
    image = scene()
    target = embed(tiny_clip, image)
    with torch.inference_mode(inference_mode):
        result = reconstruct(tiny_clip, image, tiny_run)
    random_image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    achieved = (embed(tiny_clip, result.images) @ target.T).item()
    baseline = (embed(tiny_clip, random_image) @ target.T).item()
    # Random tiny CLIPs map every image near one point, so compare cosine distances.
    assert (1 - achieved) < (1 - baseline) / 10, (achieved, baseline)


@pytest.mark.parametrize("inference_mode", [False, True], ids=["plain", "inference_mode"])
def test_style_transfer_moves_toward_style_and_keeps_layout(tiny_clip, tiny_run, inference_mode):
    content = scene()
    style = "a watercolour painting"
    with torch.inference_mode(inference_mode):
        result = style_transfer(tiny_clip, content, style, tiny_run, fit_steps=100)
    e_style = tiny_clip.encode_text([style])
    before = (embed(tiny_clip, content) @ e_style.T).item()
    after = (embed(tiny_clip, result.images) @ e_style.T).item()
    assert after > before + 0.05, (before, after)
    layout = F.interpolate(content, size=8, mode="area")
    kept = F.interpolate(result.images, size=8, mode="area")
    assert F.mse_loss(kept, layout) < F.mse_loss(torch.full_like(layout, 0.5), layout)


@pytest.mark.parametrize("width, height, expected", [(224, 224, 32), (448, 336, 64), (64, 64, 9)])
def test_style_content_term_compares_at_a_fixed_fraction_of_the_render(tiny_clip, invert_call, width, height,
                                                                        expected):
    """32 px at the 224-px default, and the same fraction at any other render size, so previewing
    small and rendering large keep the same balance of layout and style."""
    from inversion_core import RunConfig

    config = RunConfig(width=width, height=height, inr=INRConfig(hidden_layers=1, width=16))
    with pytest.raises(RuntimeError, match="captured"):
        style_transfer(tiny_clip, scene(height, width), "a watercolour", config, fit_steps=1)
    (content,) = invert_call["loss_terms"]
    assert (invert_call["config"].width, invert_call["config"].height) == (width, height)
    assert content.resolution == expected
    assert max(content.reference.shape[-2:]) == expected


def test_style_from_an_image(tiny_clip, tiny_run):
    style_image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    result = style_transfer(tiny_clip, scene(), style_image, dataclasses.replace(tiny_run, steps=10), fit_steps=20)
    assert result.images.shape == (1, 3, 32, 32)


@pytest.mark.parametrize("inference_mode", [False, True], ids=["plain", "inference_mode"])
def test_edit_moves_toward_the_edit_prompt(tiny_clip, tiny_run, inference_mode):
    image = scene()
    prompt = "a purple triangle"
    with torch.inference_mode(inference_mode):
        result = edit(tiny_clip, image, prompt, tiny_run, source_prompt="a red circle", fit_steps=100)
    e_edit = tiny_clip.encode_text([prompt])
    before, after = ((embed(tiny_clip, x) @ e_edit.T).item() for x in (image, result.images))
    assert after > before + 0.04, (before, after)


def test_non_square_content_keeps_its_aspect(tiny_clip, tiny_run):
    result = style_transfer(tiny_clip, scene(24, 48), "x", dataclasses.replace(tiny_run, steps=2), fit_steps=2)
    height, width = result.images.shape[-2:]
    assert width == 2 * height


def test_task_input_errors(tiny_clip, tiny_run):
    with pytest.raises(ValueError, match=r"shape \(B, 3, H, W\)"):
        reconstruct(tiny_clip, torch.rand(32, 32), tiny_run)
    with pytest.raises(ValueError, match="edit prompt is empty"):
        edit(tiny_clip, scene(), " ", tiny_run)
    with pytest.raises(ValueError, match="one content image"):
        style_transfer(tiny_clip, torch.rand(2, 3, 8, 8), "x", tiny_run)
    with pytest.raises(ValueError, match=r"images must be a float tensor in \[0, 1\], got dtype torch.uint8"):
        reconstruct(tiny_clip, (scene() * 255).to(torch.uint8), tiny_run)
    with pytest.raises(ValueError, match=r"content must hold pixels in \[0, 1\], got values up to 229.5: divide"):
        style_transfer(tiny_clip, scene() * 255, "x", tiny_run)
    with pytest.raises(ValueError, match=r"images must hold .* down to -0.8: map \[-1, 1\] pixels"):
        reconstruct(tiny_clip, scene() * 2 - 1, tiny_run)
    with pytest.raises(ValueError, match="image target holds NaN or infinite values"):
        image_target(torch.full((3, 8, 8), float("nan")))
    overshoot = scene() * 1.1 - 0.05  # a bicubic resize overshoots [0, 1] a little: clamped, not refused
    torch.testing.assert_close(check_pixels(overshoot, "image"), overshoot.clamp(0, 1))
    with pytest.raises(ValueError, match="edit strength must be a finite number, got nan"):
        edit(tiny_clip, scene(), "a blue square", tiny_run, strength=float("nan"), fit_steps=1)
    with pytest.raises(ValueError, match="content weight must be a finite number >= 0, got nan"):
        style_transfer(tiny_clip, scene(), "x", tiny_run, content_weight=float("nan"), fit_steps=1)


def test_text_to_image_explicit_init_is_the_start_even_with_a_bank(tiny_clip):
    from inversion_core import RunConfig, ScheduleConfig, text_to_image
    from inversion_core.bank import ReferenceBank
    from inversion_core.bank_guidance import BankOptions
    from inversion_core.inr import FinerINR

    config = RunConfig(steps=1, width=16, height=16, schedule=ScheduleConfig(lr=1e-7))  # barely moves
    start = FinerINR(config.inr, 1, generator=torch.Generator().manual_seed(7))
    embeddings = tiny_clip.encode_text(["a", "b", "c", "d"])
    bank = ReferenceBank(image_embeddings=embeddings, text_embeddings=embeddings, captions=list("abcd"),
                         clip_identity=tiny_clip.identity)  # no seeds: the default use_seed would refuse it
    with torch.no_grad():
        first = start(16, 16)
    options = BankOptions(procrustes_k=4, blend_k=4)  # use_seed stays on: the explicit init overrides it
    refined = text_to_image(tiny_clip, "a", config, bank=bank, bank_options=options, init=start).images
    torch.testing.assert_close(refined, first, atol=2e-3, rtol=0)
    random_start = text_to_image(tiny_clip, "a", config, bank=bank,
                                 bank_options=dataclasses.replace(options, use_seed=False)).images
    assert (random_start - first).abs().max() > 0.05


def test_edit_defaults_to_the_gentle_edit_learning_rate(tiny_clip, invert_call):
    """Without a config, edit runs DEFAULT_EDIT_STEPS at DEFAULT_EDIT_LR (a fitted INR scrambles at
    text-to-image's rate); the CLI's edit command has the same defaults, the other commands do not."""
    from inversion_core import ScheduleConfig, tasks
    from inversion_core.cli import build_parser

    with pytest.raises(RuntimeError, match="captured"):
        edit(tiny_clip, scene(), "a blue square", fit_steps=1)
    assert invert_call["config"].schedule.lr == tasks.DEFAULT_EDIT_LR < ScheduleConfig().lr
    assert invert_call["config"].steps == tasks.DEFAULT_EDIT_STEPS
    with pytest.raises(RuntimeError, match="captured"):  # a config derived from EDIT_CONFIG keeps them
        edit(tiny_clip, scene(), "a blue square", dataclasses.replace(tasks.EDIT_CONFIG, width=48), fit_steps=1)
    assert invert_call["config"].schedule.lr == tasks.DEFAULT_EDIT_LR
    parser = build_parser()
    common = ["--model", "m", "--out", "o.png"]
    assert parser.parse_args(["edit", "--image", "i.png", "--edit", "x", *common]).lr == tasks.DEFAULT_EDIT_LR
    assert parser.parse_args(["generate", "--prompt", "x", *common]).lr == ScheduleConfig().lr
