"""Example workflows: loadable (types, widget values, links), convertible to the API format, and the
pack's part of each one runs through the stub layer with a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import node_harness
import pytest
import torch
import workflow_tools as wt

EXAMPLES = sorted((node_harness.REPO_ROOT / "example_workflows").glob("*.json"))
FILE_INPUTS = {("CheckpointLoaderSimple", "ckpt_name"), ("LoadImage", "image"), ("CLIPInversionLoadCLIP", "model"),
               ("CLIPInversionLoadReferenceBank", "bank")}
CORE_ALLOWED = {"CheckpointLoaderSimple", "CLIPTextEncode", "VAEEncode", "VAEDecode", "KSampler", "SaveImage",
                "PreviewImage", "LoadImage"}
FAST = {  # what the test changes so a workflow runs in a second on a CPU
    "CLIPInversionOptimizer": {"steps": 2, "width": 32, "height": 32, "views": 2},
    "CLIPInversionStyleTransfer": {"steps": 2, "resolution": 32, "views": 2, "fit_steps": 2},
    "CLIPInversionEdit": {"steps": 2, "resolution": 32, "views": 2, "fit_steps": 2},
    "CLIPInversionRenderINR": {"width": 48, "height": 40},
    "CLIPInversionProcrustes": {"k": 3},  # the tiny test bank holds 6 pairs
    "CLIPInversionBlendingLoss": {"k": 3},
}
TINY_MODEL = "tiny-clip.json"  # what tests put in models/clip_inversion (see conftest.tiny_model)
TINY_BANK = "tiny-bank-seeds.safetensors"  # and in models/clip_inversion_banks (conftest.tiny_bank)


def use_test_files(part: dict) -> dict:
    """Point an example's loaders at the tiny test files and make every run fast (in place)."""
    for node in part.values():
        if node["class_type"] == "CLIPInversionLoadCLIP":
            node["inputs"]["model"] = TINY_MODEL
        if node["class_type"] == "CLIPInversionLoadReferenceBank":
            node["inputs"]["bank"] = TINY_BANK
        node["inputs"].update(FAST.get(node["class_type"], {}))
    return part


@pytest.fixture(scope="module")
def object_info(pack_nodes):
    info = wt.node_info(pack_nodes.values())
    info.update(wt.core_node_info())
    return info


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_five_tasks_and_the_bank_have_examples():
    assert {p.stem for p in EXAMPLES} == {"text_to_image", "image_reconstruction", "style_transfer",
                                          "text_guided_edit", "refine_with_stable_diffusion",
                                          "text_to_image_with_bank"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_matches_the_node_schemas(path, object_info):
    workflow = _load(path)
    assert wt.check_ui_workflow(workflow, object_info, FILE_INPUTS) == []
    types = {n["type"] for n in workflow["nodes"]} - wt.VIRTUAL_NODES
    assert types - set(object_info) == set()
    assert {t for t in types if not t.startswith("CLIPInversion")} <= CORE_ALLOWED


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_names_its_model_files(path):
    workflow = _load(path)
    notes = [n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "MarkdownNote"]
    assert notes and "models/clip_inversion/" in notes[0] and "huggingface.co" in notes[0]
    files = [n["widgets_values"][0] for n in workflow["nodes"]
             if n["type"] in ("CLIPInversionLoadCLIP", "CLIPInversionLoadReferenceBank")]
    for name in files:  # every file the example loads is named in the note, with where it comes from
        assert name.startswith("open_clip/") or name.split("/")[-1] in notes[0], name
    if any(n["type"] == "CLIPInversionLoadReferenceBank" for n in workflow["nodes"]):
        assert "models/clip_inversion_banks/" in notes[0] and "python -m inversion_core bank build" in notes[0]


def test_bank_example_builds_from_the_toy_world_files():
    note = _load(node_harness.REPO_ROOT / "example_workflows" / "text_to_image_with_bank.json")["nodes"][0]
    text = note["widgets_values"][0]
    assert "python -m inversion_core bank build" in text
    for path in ("benchmarks/toyworld/reference_set", "benchmarks/toyworld/model/toyclip.safetensors",
                 "benchmarks/toyworld/model/"):
        assert path in text and (node_harness.REPO_ROOT / path).exists()  # the note names files that ship
    assert (node_harness.REPO_ROOT / "benchmarks" / "toyworld" / "model" / "toyclip.json").is_file()


def test_workflows_saved_before_the_new_optional_inputs_still_load(object_info):
    """Optional sockets added later (loss_terms, performance) add no widget values: a workflow saved
    without them still validates and converts to the same prompt."""
    for path in EXAMPLES:
        workflow = _load(path)
        expected = wt.ui_to_api(workflow, object_info)
        for node in workflow["nodes"]:
            node["inputs"] = [s for s in node.get("inputs", []) if s["name"] not in ("loss_terms", "performance")
                              or s.get("link") is not None]
        assert wt.check_ui_workflow(workflow, object_info, FILE_INPUTS) == [], path.stem
        assert wt.ui_to_api(workflow, object_info) == expected


def test_refine_example_uses_core_nodes_and_declares_the_checkpoint(object_info):
    workflow = _load(node_harness.REPO_ROOT / "example_workflows" / "refine_with_stable_diffusion.json")
    types = {n["type"] for n in workflow["nodes"]}
    assert {"CheckpointLoaderSimple", "VAEEncode", "KSampler", "VAEDecode", "SaveImage"} <= types
    checkpoint = next(n for n in workflow["nodes"] if n["type"] == "CheckpointLoaderSimple")
    (model,) = checkpoint["properties"]["models"]
    assert model["directory"] == "checkpoints" and model["name"] == checkpoint["widgets_values"][0]
    prompt = wt.ui_to_api(workflow, object_info)
    sampler = next(n for n in prompt.values() if n["class_type"] == "KSampler")
    assert 0 < sampler["inputs"]["denoise"] < 1  # img2img, not a fresh generation


def test_checker_catches_broken_workflows(object_info):
    workflow = _load(node_harness.REPO_ROOT / "example_workflows" / "text_to_image.json")
    optimizer = next(n for n in workflow["nodes"] if n["type"] == "CLIPInversionOptimizer")
    optimizer["widgets_values"][3] = 0  # steps
    link = next(link for link in workflow["links"] if link[5] == "INVERSION_TARGET")
    link[5] = "IMAGE"
    problems = wt.check_ui_workflow(workflow, object_info, FILE_INPUTS)
    assert any("widget steps: 0 is below min 1" in p for p in problems)
    assert any("typed 'IMAGE'" in p for p in problems)


def test_outputs_a_newer_comfyui_appends_are_accepted_others_are_not(object_info):
    """ComfyUI 0.26 gave SaveImage an IMAGE output: a workflow saved before (no outputs) still loads;
    an output of the wrong type, or one the node does not have, is still a problem."""
    workflow = _load(node_harness.REPO_ROOT / "example_workflows" / "text_to_image.json")
    newer = dict(object_info, SaveImage=dict(object_info["SaveImage"], output=["IMAGE"]))
    assert wt.check_ui_workflow(workflow, newer, FILE_INPUTS) == []
    save = next(n for n in workflow["nodes"] if n["type"] == "SaveImage")
    save["outputs"] = [{"name": "IMAGE", "type": "IMAGE", "links": None}]
    assert wt.check_ui_workflow(workflow, newer, FILE_INPUTS) == []
    assert any("SaveImage): outputs ['IMAGE'] are not the first outputs" in p
               for p in wt.check_ui_workflow(workflow, object_info, FILE_INPUTS))
    optimizer = next(n for n in workflow["nodes"] if n["type"] == "CLIPInversionOptimizer")
    optimizer["outputs"][0]["type"] = "LATENT"
    assert any("CLIPInversionOptimizer): outputs ['LATENT'" in p
               for p in wt.check_ui_workflow(workflow, newer, FILE_INPUTS))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_pack_part_runs_through_the_stub_layer(path, object_info, pack_nodes, tiny_model, tiny_bank,
                                                      comfy_env):
    prompt = wt.ui_to_api(_load(path), object_info)
    part = use_test_files(wt.pack_part(prompt, pack_nodes))
    external = {}
    for node_id, node in part.items():
        if node["class_type"] == "LoadImage":
            external[node_id] = (torch.rand(1, 40, 48, 3, generator=torch.Generator().manual_seed(0)),
                                 torch.zeros(1, 40, 48))
    # sinks: the core output nodes fed by pack nodes
    for node_id, node in prompt.items():
        if node["class_type"] in ("SaveImage", "PreviewImage") and any(
                isinstance(v, list) and v[0] in part and part[v[0]]["class_type"].startswith("CLIPInversion")
                for v in node["inputs"].values()):
            part[node_id] = node
    _, sinks = node_harness.run_api_prompt(part, pack_nodes, external)
    assert sinks, "every example shows or saves a pack output"
    for received in sinks.values():
        images = received["images"]
        assert images.ndim == 4 and images.shape[-1] == 3 and images.dtype == torch.float32
        assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert comfy_env.events, "the run reported progress"
