"""INR Optimizer node: runs under inference mode, reports progress, stops on interrupt, uses ComfyUI's
model management, and turns bad values into readable messages."""

from __future__ import annotations

import json
import os

import node_harness
import pytest
import torch
from node_harness import (
    TINY_CLIP_CONFIG,
    NodeValidationError,
    mm,  # the stub comfy.model_management
    run_node,
)
from PIL import Image


@pytest.fixture()
def optimize(pack_nodes, inversion_clip, tiny_inr_settings):
    """Run the optimiser node on the tiny CLIP with small, fast defaults; keywords override."""
    target = run_node(pack_nodes["CLIPInversionTextTarget"], text="a red circle", weight=1.0)[0]
    node = pack_nodes["CLIPInversionOptimizer"]

    def run(**overrides):
        inputs = {"clip": inversion_clip, "target": target, "width": 32, "height": 24, "batch_size": 1, "steps": 4,
                  "seed": 0, "learning_rate": 0.005, "views": 2, "schedule": "coarse_to_fine", "fit_steps": 3,
                  "inr_settings": tiny_inr_settings}
        inputs.update(overrides)
        return run_node(node, **inputs)

    run.target = target
    return run


def test_outputs_follow_comfyui_conventions(optimize):
    images, inr = optimize(batch_size=2).args
    assert images.shape == (2, 24, 32, 3) and images.dtype == torch.float32
    assert images.device == mm.intermediate_device()
    assert not images.requires_grad and 0.0 <= images.min() and images.max() <= 1.0
    assert inr.batch_size == 2 and not any(p.requires_grad for p in inr.parameters())
    assert all(p.device == mm.intermediate_device() for p in inr.parameters())


def test_progress_every_step_with_jpeg_previews(optimize, comfy_env):
    optimize(steps=7)
    assert [e.value for e in comfy_env.events] == list(range(1, 8))
    assert {e.total for e in comfy_env.events} == {7}
    previews = [(e.value, e.preview) for e in comfy_env.events if e.preview is not None]
    assert [v for v, _ in previews] == [5, 7]  # every 5 steps and the last one
    kind, image, size = previews[-1][1]
    assert kind == "JPEG" and isinstance(image, Image.Image) and image.size == (32, 24) and size == 512


def test_previews_follow_comfyuis_preview_size(optimize, comfy_env, monkeypatch):
    from comfy.cli_args import args

    monkeypatch.setattr(args, "preview_size", 256)  # ComfyUI started with --preview-size 256
    optimize(steps=5)
    assert [e.preview[2] for e in comfy_env.events if e.preview is not None] == [256]


def test_interrupt_stops_within_one_step(optimize, comfy_env):
    comfy_env.interrupt_after = 3  # the user presses Cancel while step 3 is reported
    calls_before = mm.empty_cache_calls
    with pytest.raises(mm.InterruptProcessingException):
        optimize(steps=500)
    assert len(comfy_env.events) == 3
    assert mm.empty_cache_calls > calls_before  # memory released on the way out
    assert not mm.processing_interrupted()  # the flag was consumed, the next run can start


def test_same_seed_same_image_and_batch_members_match_single_runs(optimize):
    first = optimize(seed=11, batch_size=2)[0]
    again = optimize(seed=11, batch_size=2)[0]
    alone = optimize(seed=12)[0]
    torch.testing.assert_close(first, again)
    torch.testing.assert_close(first[1:], alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(first[0], first[1])


def test_huge_seeds_are_accepted_and_wrap(optimize):
    images = optimize(seed=0xFFFFFFFFFFFFFFFF, batch_size=2)[0]
    assert images.shape[0] == 2
    torch.testing.assert_close(images[1:], optimize(seed=0)[0], atol=1e-5, rtol=1e-5)  # seed + 1 wraps to 0


def test_optimisation_moves_the_image_toward_the_target(optimize, inversion_clip):
    def similarity(images):
        with torch.inference_mode(False):
            embedding = inversion_clip.bundle.encode_image(images.movedim(-1, 1))
            vectors, _ = optimize.target.embeddings(inversion_clip.bundle)
        return float(embedding @ vectors[0])

    short = similarity(optimize(steps=1, learning_rate=0.01)[0])
    longer = similarity(optimize(steps=40, learning_rate=0.01)[0])
    assert longer > short + 0.05


def test_init_inr_is_continued_and_left_untouched(optimize):
    _, inr = optimize(steps=3).args
    before = [p.clone() for p in inr.parameters()]
    _, continued = optimize(steps=2, init_inr=inr, inr_settings=None).args  # settings come from the init
    assert all(torch.equal(a, b) for a, b in zip(before, inr.parameters()))
    assert continued is not inr and continued.config == inr.config


def test_init_image_is_fitted_first_on_the_same_progress_bar(optimize, comfy_env):
    picture = torch.rand(1, 40, 50, 3, generator=torch.Generator().manual_seed(3))
    optimize(steps=4, fit_steps=6, init_image=picture)
    assert [e.value for e in comfy_env.events] == list(range(1, 11))
    assert {e.total for e in comfy_env.events} == {10}


def test_an_init_inr_batch_other_than_batch_size_names_both_widgets(optimize):
    _, four = optimize(steps=1, batch_size=4).args
    with pytest.raises(ValueError, match="init_inr holds 4 INRs but batch_size is 2: set the same batch_size"):
        optimize(steps=1, batch_size=2, init_inr=four, inr_settings=None)
    assert optimize(steps=1, batch_size=2, init_inr=four.select([0]), inr_settings=None)[0].shape[0] == 2


def test_init_inr_and_init_image_together_are_refused(optimize):
    _, inr = optimize(steps=1).args
    with pytest.raises(ValueError, match="either init_inr or init_image"):
        optimize(init_inr=inr, init_image=torch.rand(1, 8, 8, 3))


def test_clip_is_placed_by_model_management_and_survives_eviction(optimize, inversion_clip):
    first = optimize(seed=4)[0]
    (models, options), = mm.load_calls
    assert models == [inversion_clip.patcher] and inversion_clip.patcher in mm.current_loaded_models
    # ComfyUI is asked to make room for the run's activations too, not just the weights
    assert options["memory_required"] >= 4 * 4 * 32 * 24 * 16 * 2 and options["force_full_load"]
    # Another node (e.g. a diffusion sampler) makes room: ComfyUI evicts our model while *its* node runs,
    # i.e. inside inference mode, so the weights come back as inference tensors.
    with torch.inference_mode():
        mm.unload_all_models()
    assert any(p.is_inference() for p in inversion_clip.bundle.model.parameters())
    second = optimize(seed=4)[0]
    torch.testing.assert_close(first, second)


def test_ensemble_of_two_clips(optimize, pack_nodes, inversion_clip):
    import folder_paths

    config = dict(TINY_CLIP_CONFIG, embed_dim=24)
    with open(os.path.join(folder_paths.models_dir, "clip_inversion", "other.json"), "w") as handle:
        json.dump(config, handle)
    other = run_node(pack_nodes["CLIPInversionLoadCLIP"], model="other.json", device="default", precision="fp32")[0]
    single = optimize(seed=1)[0]
    both = optimize(seed=1, clip_2=other)[0]
    assert both.shape == single.shape and not torch.allclose(both, single)


def test_a_size_the_device_cannot_hold_is_refused_before_starting(optimize, comfy_env):
    mm.FREE_MEMORY = 10 * 2**20  # a 10 MiB device
    with pytest.raises(ValueError, match=r"needs at least 512 MiB on cpu, but only 10 MiB is free. Lower width/height"):
        optimize(width=1024, height=1024)
    assert comfy_env.events == []


def test_out_of_memory_during_the_run_names_the_inputs_to_lower(optimize, monkeypatch):
    """The engine reports an OOM in the loop as a MemoryError naming the run's sizes (raised from
    the original); the node still hands ComfyUI its own OOM type, so ComfyUI adds its tips and
    unloads models."""
    engine = node_harness.pack_module("inversion_core.optimise")

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(engine, "_optimise", exhausted)
    calls_before = mm.empty_cache_calls
    with pytest.raises(mm.OOM_EXCEPTION, match="out of memory .* Lower width/height, batch_size or views"):
        optimize()
    assert mm.empty_cache_calls > calls_before


def test_accelerator_out_of_memory_is_recognised_where_comfyui_knows_it(optimize, monkeypatch):
    """Newer ComfyUI has mm.is_oom, which also knows e.g. torch.AcceleratorError OOMs: one raised
    where the engine does not wrap it (fitting the init image) is recognised; other errors pass
    through untouched."""
    def raises(message):
        def fit(*args, **kwargs):
            raise RuntimeError(message)
        return fit

    optimizer = node_harness.pack_module("nodes.optimizer")
    monkeypatch.setattr(mm, "is_oom", lambda exc: "out of memory" in str(exc), raising=False)
    monkeypatch.setattr(optimizer, "fit_inr_to_image", raises("CUDA error: out of memory"))
    with pytest.raises(mm.OOM_EXCEPTION, match="Lower width/height"):
        optimize(init_image=torch.rand(1, 8, 8, 3))
    monkeypatch.setattr(optimizer, "fit_inr_to_image", raises("shape mismatch"))
    with pytest.raises(RuntimeError, match="^shape mismatch$"):
        optimize(init_image=torch.rand(1, 8, 8, 3))


@pytest.mark.parametrize("name, value, message", [
    ("steps", 0, "Value 0 smaller than min of 1"),
    ("width", 4, "Value 4 smaller than min of 16"),
    ("schedule", "cosine", "Value not in list"),
])
def test_bad_widget_values_fail_validation(optimize, name, value, message):
    with pytest.raises(NodeValidationError, match=message):
        optimize(**{name: value})


def test_miswired_inputs_get_a_message_naming_the_right_node(optimize, inversion_clip):
    with pytest.raises(ValueError, match="'Load CLIP for Inversion'"):
        optimize(clip=optimize.target)
    with pytest.raises(ValueError, match="Text/Image/Combine Targets"):
        optimize(target=inversion_clip)
