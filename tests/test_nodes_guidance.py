"""Procrustes Projection, Robust Init, Blending Loss and Performance Settings, alone and feeding the
INR Optimizer (text-to-image with every bank stabiliser, end to end under inference mode)."""

from __future__ import annotations

import dataclasses
import json
import os

import node_harness
import pytest
import torch
import torch.nn.functional as F
from node_harness import TINY_CLIP_CONFIG, NodeValidationError, mm, run_node

PROMPT = "a red square on the left"


@pytest.fixture()
def text(pack_nodes):
    return run_node(pack_nodes["CLIPInversionTextTarget"], text=PROMPT, weight=1.0)[0]


@pytest.fixture()
def other_clip(pack_nodes, tiny_model):
    """A second tiny CLIP (another file, so another identity) that did not build the bank."""
    import folder_paths

    with open(os.path.join(folder_paths.models_dir, "clip_inversion", "other.json"), "w") as handle:
        json.dump(TINY_CLIP_CONFIG, handle)
    return run_node(pack_nodes["CLIPInversionLoadCLIP"], model="other.json", device="default", precision="fp32")[0]


def _encode_text(clip, prompt: str = PROMPT) -> torch.Tensor:
    with torch.inference_mode(False):
        return clip.bundle.encode_text([prompt])[0]


def _resolve(target, clip) -> torch.Tensor:
    with torch.inference_mode(False):
        vectors, _ = target.embeddings(clip.bundle)
    return vectors[0]


def _inputs(node_id: str, bank, clip, target, **overrides) -> dict:
    defaults = {
        "CLIPInversionProcrustes": {"mode": "local", "k": 3},
        "CLIPInversionRobustInit": {"batch_size": 1},
        "CLIPInversionBlendingLoss": {"beta": 0.25, "k": 3, "tau": 0.01},
    }[node_id]
    return {"bank": bank, "clip": clip, "target": target, **defaults, **overrides}


# --- Procrustes Projection --------------------------------------------------------------------------


def test_global_projection_is_the_banks_rotation_applied_to_the_prompt(pack_nodes, bank_value, inversion_clip, text):
    node = pack_nodes["CLIPInversionProcrustes"]
    projected = run_node(node, **_inputs("CLIPInversionProcrustes", bank_value, inversion_clip, text, mode="global"))[0]
    e_text = _encode_text(inversion_clip)
    expected = F.normalize(e_text @ bank_value.global_rotation.T.to(e_text), dim=-1)
    torch.testing.assert_close(_resolve(projected, inversion_clip), expected, atol=1e-5, rtol=1e-5)


def test_local_projection_moves_the_prompt_toward_its_neighbours_images(pack_nodes, bank_value, inversion_clip, text):
    node = pack_nodes["CLIPInversionProcrustes"]
    projected = run_node(node, **_inputs("CLIPInversionProcrustes", bank_value, inversion_clip, text, k=4))[0]
    vector, e_text = _resolve(projected, inversion_clip), _encode_text(inversion_clip)
    assert float(vector.norm()) == pytest.approx(1.0, abs=1e-5)
    # the projection lands nearer the bank's images than the raw text embedding does
    images = bank_value.image_embeddings
    assert float((images @ vector).max()) > float((images @ e_text).max())
    assert "procrustes-local" in str(projected)


def test_local_k_above_the_bank_size_names_the_limit(pack_nodes, bank_value, inversion_clip, text):
    with pytest.raises(ValueError, match=r"k \(16\) exceeds the 6 pairs of bank 'tiny-bank-seeds.safetensors'"):
        run_node(pack_nodes["CLIPInversionProcrustes"],
                 **_inputs("CLIPInversionProcrustes", bank_value, inversion_clip, text, k=16))
    with pytest.raises(NodeValidationError, match="Value 1 smaller than min of 2"):
        run_node(pack_nodes["CLIPInversionProcrustes"],
                 **_inputs("CLIPInversionProcrustes", bank_value, inversion_clip, text, k=1))


def test_projection_modes_come_from_the_engine_table(pack_nodes):
    from inversion_core.bank_guidance import PROCRUSTES_MODES

    guidance = node_harness.pack_module("nodes.guidance")
    assert {m.value for m in guidance.ProcrustesMode} <= set(PROCRUSTES_MODES)
    mode = next(i for i in pack_nodes["CLIPInversionProcrustes"].GET_SCHEMA().inputs if i.id == "mode")
    assert mode.options == ["local", "global"]


# --- mismatches ------------------------------------------------------------------------------------


@pytest.mark.parametrize("node_id", ["CLIPInversionProcrustes", "CLIPInversionRobustInit", "CLIPInversionBlendingLoss"])
def test_a_clip_that_did_not_build_the_bank_is_refused_clearly(pack_nodes, bank_value, other_clip, text, node_id):
    with pytest.raises(ValueError, match=(r"bank 'tiny-bank-seeds.safetensors' was built with CLIP "
                                          r"'tiny-clip@random-seed0', but clip is 'other@random-seed0' .*"
                                          r"connect the CLIP the bank was built with .*'Build Reference Bank'")):
        run_node(pack_nodes[node_id], **_inputs(node_id, bank_value, other_clip, text))


def test_miswired_bank_inputs_name_the_right_node(pack_nodes, bank_value, inversion_clip, text):
    with pytest.raises(ValueError, match="bank must come from a 'Load Reference Bank' or 'Build Reference Bank'"):
        run_node(pack_nodes["CLIPInversionBlendingLoss"],
                 **_inputs("CLIPInversionBlendingLoss", inversion_clip, inversion_clip, text))
    with pytest.raises(ValueError, match="target must come from a Text/Image/Combine Targets"):
        run_node(pack_nodes["CLIPInversionRobustInit"],
                 **_inputs("CLIPInversionRobustInit", bank_value, inversion_clip, bank_value))


# --- Robust Init -------------------------------------------------------------------------------------


def test_robust_init_returns_the_seeds_with_the_nearest_captions(pack_nodes, bank_value, inversion_clip, text):
    inr = run_node(pack_nodes["CLIPInversionRobustInit"],
                   **_inputs("CLIPInversionRobustInit", bank_value, inversion_clip, text, batch_size=2))[0]
    assert type(inr).__name__ == "FinerINR" and inr.batch_size == 2 and inr.config == bank_value.inr_config
    order = torch.argsort(bank_value.text_embeddings @ _encode_text(inversion_clip), descending=True)[:2]
    torch.testing.assert_close(inr.weights[0].detach(), bank_value.seed_weights[0][order])
    assert all(not p.requires_grad and not p.is_inference() for p in inr.parameters())
    assert all(p.device == mm.intermediate_device() for p in inr.parameters())


def test_robust_init_refuses_other_inr_settings_and_banks_without_seeds(pack_nodes, bank_value, inversion_clip,
                                                                         text, tiny_bank):
    node = pack_nodes["CLIPInversionRobustInit"]
    wider = run_node(pack_nodes["CLIPInversionINRSettings"], hidden_layers=1, width=32, omega=30.0,
                     first_bias_scale=1.0, output="sigmoid")[0]
    with pytest.raises(ValueError, match=r"inr_settings differ .*: width 32 \(bank 16\).*leave inr_settings unconn"):
        run_node(node, **_inputs("CLIPInversionRobustInit", bank_value, inversion_clip, text, inr_settings=wider))
    same = dataclasses.replace(wider, width=16)
    assert run_node(node, **_inputs("CLIPInversionRobustInit", bank_value, inversion_clip, text,
                                    inr_settings=same))[0].config == same
    plain = run_node(pack_nodes["CLIPInversionLoadReferenceBank"], bank="tiny-bank-plain.safetensors")[0]
    with pytest.raises(ValueError, match="has no seed INRs .* with_seeds on"):
        run_node(node, **_inputs("CLIPInversionRobustInit", plain, inversion_clip, text))


# --- Blending Loss --------------------------------------------------------------------------------


def test_blending_loss_is_a_term_for_the_optimizer(pack_nodes, bank_value, inversion_clip, text):
    node = pack_nodes["CLIPInversionBlendingLoss"]
    terms = run_node(node, **_inputs("CLIPInversionBlendingLoss", bank_value, inversion_clip, text, beta=0.5))[0]
    (term,) = terms
    assert term.name == "blend" and term.beta == 0.5 and term.clip_identity == inversion_clip.identity
    assert term.targets.shape == (1, 32) and not term.targets.is_inference()
    # β (1 − cos): zero at the blended target itself
    embedding = term.targets.clone()
    assert float(term({}, {inversion_clip.identity: embedding}, [])[0]) == pytest.approx(0.0, abs=1e-6)
    assert run_node(node, **_inputs("CLIPInversionBlendingLoss", bank_value, inversion_clip, text, beta=0.0))[0] == []
    with pytest.raises(ValueError, match=r"k \(7\) exceeds the 6 pairs"):
        run_node(node, **_inputs("CLIPInversionBlendingLoss", bank_value, inversion_clip, text, k=7))


# --- the optimiser with every stabiliser ---------------------------------------------------------------


@pytest.fixture()
def optimize(pack_nodes, inversion_clip):
    node = pack_nodes["CLIPInversionOptimizer"]

    def run(target, **overrides):
        inputs = {"clip": inversion_clip, "target": target, "width": 24, "height": 24, "batch_size": 2, "steps": 3,
                  "seed": 0, "learning_rate": 0.005, "views": 2, "schedule": "coarse_to_fine", "fit_steps": 1}
        inputs.update(overrides)
        return run_node(node, **inputs)

    return run


def test_text_to_image_with_procrustes_robust_init_and_blending(pack_nodes, bank_value, inversion_clip, text,
                                                              optimize, comfy_env):
    projected = run_node(pack_nodes["CLIPInversionProcrustes"],
                         **_inputs("CLIPInversionProcrustes", bank_value, inversion_clip, text))[0]
    seeds = run_node(pack_nodes["CLIPInversionRobustInit"],
                     **_inputs("CLIPInversionRobustInit", bank_value, inversion_clip, text, batch_size=2))[0]
    blend = run_node(pack_nodes["CLIPInversionBlendingLoss"],
                     **_inputs("CLIPInversionBlendingLoss", bank_value, inversion_clip, projected, beta=5.0))[0]
    comfy_env.clear()
    images, inr = optimize(projected, init_inr=seeds, loss_terms=blend).args  # inr_settings come from the seeds
    assert images.shape == (2, 24, 24, 3) and inr.config == bank_value.inr_config
    assert [e.value for e in comfy_env.events] == [1, 2, 3]
    without = optimize(projected, init_inr=seeds)[0]
    assert not torch.allclose(images, without)  # the blending term took part
    # one tiny step from the seeds: the images are still the seeds' renders
    start = optimize(projected, init_inr=seeds, loss_terms=blend, steps=1, learning_rate=0.00001)[0]
    seed_render = run_node(pack_nodes["CLIPInversionRenderINR"], inr=seeds, width=24, height=24)[0]
    torch.testing.assert_close(start, seed_render, atol=0.02, rtol=0)


def test_loss_terms_input_takes_one_term_or_a_list(pack_nodes, bank_value, inversion_clip, text, optimize):
    (term,) = run_node(pack_nodes["CLIPInversionBlendingLoss"],
                       **_inputs("CLIPInversionBlendingLoss", bank_value, inversion_clip, text))[0]
    single = optimize(text, loss_terms=term, batch_size=1)[0]
    listed = optimize(text, loss_terms=[term], batch_size=1)[0]
    torch.testing.assert_close(single, listed)
    with pytest.raises(ValueError, match=r"several terms named \['blend'\]"):
        optimize(text, loss_terms=[term, term])
    with pytest.raises(ValueError, match="loss_terms must come from a loss node"):
        optimize(text, loss_terms=bank_value)


def test_blending_for_a_clip_not_in_the_run_is_refused(pack_nodes, bank_value, inversion_clip, other_clip, text,
                                                      optimize):
    blend = run_node(pack_nodes["CLIPInversionBlendingLoss"],
                     **_inputs("CLIPInversionBlendingLoss", bank_value, inversion_clip, text))[0]
    with pytest.raises(ValueError, match="bank embedded by CLIP 'tiny-clip@random-seed0', which is not among"):
        optimize(text, clip=other_clip, loss_terms=blend)


def test_seeds_with_other_inr_settings_are_refused_by_the_optimizer(pack_nodes, bank_value, inversion_clip, text,
                                                                    optimize, tiny_inr_settings):
    seeds = run_node(pack_nodes["CLIPInversionRobustInit"],
                     **_inputs("CLIPInversionRobustInit", bank_value, inversion_clip, text))[0]
    wider = dataclasses.replace(tiny_inr_settings, width=24)
    with pytest.raises(ValueError, match="use the same INR settings as the init"):
        optimize(text, init_inr=seeds, inr_settings=wider)


# --- Performance Settings ------------------------------------------------------------------------------


def test_performance_settings_reach_the_run_config(pack_nodes, inversion_clip, text, optimize, monkeypatch):
    performance = run_node(pack_nodes["CLIPInversionPerformanceSettings"], precision="bf16",
                           compile="reduce-overhead")[0]
    assert (performance.precision, performance.compile) == ("bf16", "reduce-overhead")
    seen = []
    optimizer = node_harness.pack_module("nodes.optimizer")
    tasks = node_harness.pack_module("nodes.tasks")

    def capture(*args, **kwargs):
        config = kwargs.get("config") or args[2]  # invert(clips, targets, config) or task(clips, config=...)
        seen.append((config.precision, config.compile))
        raise RuntimeError("captured")

    monkeypatch.setattr(optimizer, "invert", capture)
    monkeypatch.setattr(tasks, "style_transfer", capture)
    monkeypatch.setattr(tasks, "edit", capture)
    with pytest.raises(RuntimeError, match="captured"):
        optimize(text, performance=performance)
    with pytest.raises(RuntimeError, match="captured"):
        optimize(text)  # unconnected: the engine defaults
    common = {"clip": inversion_clip, "resolution": 24, "steps": 1, "seed": 0, "learning_rate": 0.001, "views": 2,
              "schedule": "flat", "fit_steps": 1, "performance": performance}
    picture = torch.rand(1, 16, 16, 3)
    with pytest.raises(RuntimeError, match="captured"):
        run_node(pack_nodes["CLIPInversionStyleTransfer"], content=picture, style=text, content_weight=1.0, **common)
    with pytest.raises(RuntimeError, match="captured"):
        run_node(pack_nodes["CLIPInversionEdit"], image=picture, edit_prompt="a blue square", source_prompt="",
                 strength=1.0, **common)
    assert seen == [("bf16", "reduce-overhead"), ("auto", "off"), ("bf16", "reduce-overhead"),
                    ("bf16", "reduce-overhead")]


def test_performance_choices_come_from_the_engine_tables(pack_nodes, text, optimize):
    from inversion_core.optimise import AUTOCAST_PRECISIONS, COMPILE_MODES

    inputs = {i.id: i for i in pack_nodes["CLIPInversionPerformanceSettings"].GET_SCHEMA().inputs}
    assert inputs["precision"].options == list(AUTOCAST_PRECISIONS) and inputs["precision"].default == "auto"
    assert inputs["compile"].options == list(COMPILE_MODES) and inputs["compile"].default == "off"
    with pytest.raises(NodeValidationError, match="Value not in list"):
        run_node(pack_nodes["CLIPInversionPerformanceSettings"], precision="fp8", compile="off")
    with pytest.raises(ValueError, match="performance must come from a 'Performance Settings' node"):
        optimize(text, performance="bf16")


def test_bf16_autocast_runs_end_to_end_on_the_cpu(pack_nodes, text, optimize):
    performance = run_node(pack_nodes["CLIPInversionPerformanceSettings"], precision="bf16", compile="off")[0]
    images = optimize(text, performance=performance, batch_size=1)[0]
    assert images.shape == (1, 24, 24, 3) and torch.isfinite(images).all()
