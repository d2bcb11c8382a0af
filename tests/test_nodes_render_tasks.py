"""Render INR, Style Transfer and Text-Guided Edit nodes."""

from __future__ import annotations

import pytest
import torch
from node_harness import NodeValidationError, mm, run_node


@pytest.fixture()
def small_inr(pack_nodes, inversion_clip, tiny_inr_settings):
    target = run_node(pack_nodes["CLIPInversionTextTarget"], text="a blue square", weight=1.0)[0]
    return run_node(pack_nodes["CLIPInversionOptimizer"], clip=inversion_clip, target=target, width=24, height=24,
                    batch_size=2, steps=2, seed=0, learning_rate=0.001, views=2, schedule="flat", fit_steps=1,
                    inr_settings=tiny_inr_settings)


def test_render_matches_the_optimised_image_at_its_size(pack_nodes, small_inr):
    images, inr = small_inr.args
    same = run_node(pack_nodes["CLIPInversionRenderINR"], inr=inr, width=24, height=24)[0]
    torch.testing.assert_close(same, images, atol=1e-5, rtol=0)


def test_render_any_size_without_touching_the_input(pack_nodes, small_inr):
    _, inr = small_inr.args
    before = [p.clone() for p in inr.parameters()]
    large = run_node(pack_nodes["CLIPInversionRenderINR"], inr=inr, width=72, height=40)[0]
    assert large.shape == (2, 40, 72, 3) and large.device == mm.intermediate_device()
    assert all(torch.equal(a, b) and not b.is_inference() for a, b in zip(before, inr.parameters()))


def test_render_reports_progress_per_chunk_and_cancels(pack_nodes, small_inr, comfy_env, monkeypatch):
    import node_harness

    _, inr = small_inr.args
    whole = run_node(pack_nodes["CLIPInversionRenderINR"], inr=inr, width=40, height=24)[0]  # one chunk
    monkeypatch.setattr(node_harness.pack_module("nodes.render"), "CHUNK_PIXELS", 2 * 480)  # 480 pixels per chunk
    comfy_env.clear()
    chunked = run_node(pack_nodes["CLIPInversionRenderINR"], inr=inr, width=40, height=24)[0]
    assert [e.value for e in comfy_env.events] == [480, 960]
    torch.testing.assert_close(chunked, whole)
    comfy_env.clear()
    comfy_env.interrupt_after = 1
    with pytest.raises(mm.InterruptProcessingException):
        run_node(pack_nodes["CLIPInversionRenderINR"], inr=inr, width=80, height=48)
    assert len(comfy_env.events) == 1


def test_a_render_the_host_cannot_hold_is_refused_before_starting(pack_nodes, small_inr, comfy_env, monkeypatch):
    _, inr = small_inr.args
    monkeypatch.setattr(mm, "FREE_MEMORY", 10 * 2**20)  # 10 MiB of host memory: 2 INRs at 1024² need 48 MiB
    comfy_env.clear()
    with pytest.raises(ValueError, match=r"1024x1024 render of 2 INR\(s\) needs 48 MiB on cpu, but only 10 MiB is free: lower width/height"):
        run_node(pack_nodes["CLIPInversionRenderINR"], inr=inr, width=1024, height=1024)
    assert comfy_env.events == []
    assert run_node(pack_nodes["CLIPInversionRenderINR"], inr=inr, width=256, height=256)[0].shape == (2, 256, 256, 3)


def test_render_out_of_memory_keeps_comfyuis_type_and_says_what_to_do(pack_nodes, small_inr, monkeypatch):
    _, inr = small_inr.args

    def exhausted(*args, **kwargs):
        raise mm.OOM_EXCEPTION("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(type(inr), "render", exhausted)
    with pytest.raises(mm.OOM_EXCEPTION, match="while rendering 2 INR.*closing other workflows"):
        run_node(pack_nodes["CLIPInversionRenderINR"], inr=inr, width=40, height=24)


def test_render_rejects_other_objects(pack_nodes, inversion_clip):
    with pytest.raises(ValueError, match="inr must come from"):
        run_node(pack_nodes["CLIPInversionRenderINR"], inr=inversion_clip, width=8, height=8)


def _task_inputs(inversion_clip, tiny_inr_settings, **extra):
    return dict(clip=inversion_clip, resolution=24, steps=3, seed=0, learning_rate=0.002, views=2,
                schedule="coarse_to_fine", fit_steps=4, inr_settings=tiny_inr_settings, **extra)


def test_style_transfer_keeps_aspect_and_reports_both_phases(pack_nodes, inversion_clip, tiny_inr_settings,
                                                            comfy_env):
    style = run_node(pack_nodes["CLIPInversionTextTarget"], text="an oil painting", weight=1.0)[0]
    content = torch.rand(1, 30, 60, 3, generator=torch.Generator().manual_seed(1))
    images, inr = run_node(pack_nodes["CLIPInversionStyleTransfer"], content=content, style=style,
                           content_weight=4.0, **_task_inputs(inversion_clip, tiny_inr_settings)).args
    assert images.shape[0] == 1 and images.shape[3] == 3
    assert images.shape[2] / images.shape[1] == pytest.approx(2.0, rel=0.1)  # content's aspect ratio
    assert [e.value for e in comfy_env.events] == list(range(1, 8))  # 4 fit steps + 3 optimisation steps
    assert inr.batch_size == 1


def test_style_transfer_takes_one_content_image(pack_nodes, inversion_clip, tiny_inr_settings):
    style = run_node(pack_nodes["CLIPInversionTextTarget"], text="an oil painting", weight=1.0)[0]
    with pytest.raises(ValueError, match="content must be one image, got a batch of 2"):
        run_node(pack_nodes["CLIPInversionStyleTransfer"], content=torch.rand(2, 16, 16, 3), style=style,
                 content_weight=1.0, **_task_inputs(inversion_clip, tiny_inr_settings))


def test_edit_runs_and_cancels_during_fitting(pack_nodes, inversion_clip, tiny_inr_settings, comfy_env):
    node = pack_nodes["CLIPInversionEdit"]
    image = torch.rand(1, 24, 24, 3, generator=torch.Generator().manual_seed(2))
    inputs = _task_inputs(inversion_clip, tiny_inr_settings, image=image, edit_prompt="a blue square",
                          source_prompt="", strength=1.0)
    edited = run_node(node, **inputs)[0]
    assert edited.shape == (1, 24, 24, 3)
    comfy_env.clear()
    comfy_env.interrupt_after = 2  # Cancel while the INR is still being fitted to the image
    with pytest.raises(mm.InterruptProcessingException):
        run_node(node, **dict(inputs, fit_steps=200))
    assert len(comfy_env.events) == 2


def test_edit_needs_an_edit_prompt(pack_nodes, inversion_clip, tiny_inr_settings):
    with pytest.raises(NodeValidationError, match="edit_prompt is empty"):
        run_node(pack_nodes["CLIPInversionEdit"], **_task_inputs(
            inversion_clip, tiny_inr_settings, image=torch.rand(1, 8, 8, 3), edit_prompt=" ", source_prompt="",
            strength=1.0))


def test_settings_nodes_feed_the_engine_configs(pack_nodes, comfy_env):
    schedule = run_node(pack_nodes["CLIPInversionScheduleSettings"], sigma=2.0, sweep_end=0.5, floor=0.1,
                        warmup=0.0)[0]
    augment = run_node(pack_nodes["CLIPInversionAugmentSettings"], crop_min=0.5, crop_max=0.9, translate=0.5,
                       shear=0.0, brightness=0.0, contrast=0.0, saturation=0.0, noise=0.0)[0]
    assert (schedule.sigma, schedule.sweep_end, schedule.floor, schedule.warmup) == (2.0, 0.5, 0.1, 0.0)
    assert augment.crop_scale == (0.5, 0.9) and augment.noise == 0.0
    with pytest.raises(NodeValidationError, match="crop_min .* must not be larger than crop_max"):
        run_node(pack_nodes["CLIPInversionAugmentSettings"], crop_min=0.9, crop_max=0.5, translate=0.5, shear=0.0,
                 brightness=0.0, contrast=0.0, saturation=0.0, noise=0.0)


def test_edit_widget_defaults_to_the_engine_edit_learning_rate(pack_nodes):
    from inversion_core import ScheduleConfig
    from inversion_core.tasks import DEFAULT_EDIT_LR

    def default_lr(node_id):
        inputs = {i.id: i for i in pack_nodes[node_id].GET_SCHEMA().inputs}
        return inputs["learning_rate"].as_dict()["default"]

    assert default_lr("CLIPInversionEdit") == DEFAULT_EDIT_LR
    assert default_lr("CLIPInversionOptimizer") == default_lr("CLIPInversionStyleTransfer") == ScheduleConfig().lr


@pytest.mark.parametrize("node_id", ["CLIPInversionINRSettings", "CLIPInversionScheduleSettings",
                                     "CLIPInversionAugmentSettings"])
def test_every_widget_value_the_settings_nodes_offer_is_one_the_engine_accepts(pack_nodes, node_id):
    """ComfyUI checks a widget's min/max before the run; a value inside them that the engine then
    refuses would fail only at run time, with an engine message (sweep_end 0, warmup 1, crop_min 0)."""
    node = pack_nodes[node_id]
    inputs = [i for i in node.GET_SCHEMA().inputs if getattr(i, "min", None) is not None]
    defaults = {i.id: i.default for i in node.GET_SCHEMA().inputs}
    for widget in inputs:
        for value in (widget.min, widget.max):
            values = dict(defaults, **{widget.id: value})
            if node_id.endswith("AugmentSettings"):  # keep crop_min <= crop_max, the one cross-input rule
                values["crop_max"] = max(values["crop_max"], values["crop_min"])
            run_node(node, **values)

