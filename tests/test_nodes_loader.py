"""Load CLIP for Inversion: model folder registration, file listing, loading, model management."""

from __future__ import annotations

import json
import os

import node_harness
import pytest
import torch
from node_harness import NodeValidationError, run_node


@pytest.fixture()
def loader(pack_nodes):
    return pack_nodes["CLIPInversionLoadCLIP"]


def _bridge():
    return node_harness.pack_module("nodes.comfy_bridge")


def test_registration_keeps_folders_from_extra_model_paths(comfy_env, tmp_path):
    import folder_paths

    user_dir = str(tmp_path / "my_models")
    folder_paths.add_model_folder_path("clip_inversion", user_dir)  # what extra_model_paths.yaml does first
    searched = _bridge().register_model_folder()
    default = os.path.join(folder_paths.models_dir, "clip_inversion")
    assert searched == [user_dir, default]
    _bridge().register_model_folder()  # idempotent
    paths, extensions = folder_paths.folder_names_and_paths["clip_inversion"]
    assert paths == [user_dir, default]
    assert {".safetensors", ".json"} <= extensions


def test_model_files_lists_loadable_entries_only(comfy_env):
    import folder_paths

    _bridge().register_model_folder()
    root = os.path.join(folder_paths.models_dir, "clip_inversion")
    config = json.dumps(node_harness.TINY_CLIP_CONFIG)
    files = {
        "a.safetensors": "", "a.json": config,  # weights + same-stem config
        "bare.json": config,  # config alone: random weights
        "wrapped.json": json.dumps({"model_cfg": node_harness.TINY_CLIP_CONFIG, "preprocess_cfg": {}}),
        "no-config.safetensors": "",  # listed; choosing it explains what is missing
        "hub/open_clip_model.safetensors": "", "hub/open_clip_config.json": config,  # Hugging Face layout
        "hub/model.safetensors": "", "hub/config.json": "{}", "hub/tokenizer.json": "{}",  # transformers copies
        "notes.txt": "", "broken.json": "{not json",
    }
    for name, text in files.items():
        os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
        with open(os.path.join(root, name), "w") as handle:
            handle.write(text)
    assert _bridge().model_files() == ["a.safetensors", "bare.json", "hub/open_clip_model.safetensors",
                                       "no-config.safetensors", "wrapped.json"]
    assert _bridge().resolve_model_file("a.safetensors") == (os.path.join(root, "a.json"), os.path.join(root, "a.safetensors"))
    assert _bridge().resolve_model_file("hub/open_clip_model.safetensors") == (
        os.path.join(root, "hub"), os.path.join(root, "hub", "open_clip_model.safetensors"))


def test_weights_without_config_get_a_message_naming_the_fix(comfy_env):
    import folder_paths

    _bridge().register_model_folder()
    open(os.path.join(folder_paths.models_dir, "clip_inversion", "lonely.safetensors"), "w").close()
    with pytest.raises(FileNotFoundError, match="lonely.json.*open_clip_config.json"):
        _bridge().resolve_model_file("lonely.safetensors")


def test_loads_a_config_with_random_weights_on_the_cpu(loader, tiny_model):
    clip = run_node(loader, model=tiny_model, device="default", precision="fp32")[0]
    assert type(clip).__name__ == "InversionClip"
    assert clip.bundle.embed_dim == 32 and clip.identity.startswith("tiny-clip@random")
    # built outside inference mode: autograd can use the weights and constants later
    assert not any(p.is_inference() for p in clip.bundle.model.parameters())
    assert not clip.bundle.std.is_inference()
    assert clip.patcher.model is clip.bundle.model
    assert clip.patcher.offload_device == torch.device("cpu")


def test_loads_weights_with_their_sibling_config(loader, tiny_model):
    import folder_paths
    from safetensors.torch import save_file

    root = os.path.join(folder_paths.models_dir, "clip_inversion")
    reference = run_node(loader, model=tiny_model, device="cpu", precision="fp32")[0]
    with torch.inference_mode(False):
        state = {k: v.contiguous() for k, v in reference.bundle.model.state_dict().items()}
    save_file(state, os.path.join(root, "mine.safetensors"))
    with open(os.path.join(root, "mine.json"), "w") as handle:
        json.dump(node_harness.TINY_CLIP_CONFIG, handle)
    schema_models = next(i for i in loader.GET_SCHEMA().inputs if i.id == "model").options
    assert "mine.safetensors" in schema_models and "mine.json" not in schema_models
    clip = run_node(loader, model="mine.safetensors", device="cpu", precision="fp32")[0]
    assert clip.identity.startswith("mine@") and "random" not in clip.identity
    assert clip.patcher.load_device == torch.device("cpu")
    # the Hugging Face layout: a folder with open_clip_config.json ({"model_cfg", "preprocess_cfg"})
    os.makedirs(os.path.join(root, "hub"))
    save_file(state, os.path.join(root, "hub", "open_clip_model.safetensors"))
    with open(os.path.join(root, "hub", "open_clip_config.json"), "w") as handle:
        json.dump({"model_cfg": node_harness.TINY_CLIP_CONFIG, "preprocess_cfg": {}}, handle)
    hub = run_node(loader, model="hub/open_clip_model.safetensors", device="cpu", precision="fp32")[0]
    assert hub.identity.startswith("hub@")
    # a bank built on the command line with --weights <that file> and no --model names the CLIP alike
    from inversion_core import load_clip

    for loaded, name in ((clip, "mine.safetensors"), (hub, "hub/open_clip_model.safetensors")):
        assert load_clip(None, weights=os.path.join(root, name)).identity == loaded.identity
    with torch.inference_mode(False):
        expected = reference.bundle.encode_text(["a dog"])
        for loaded in (clip, hub):
            torch.testing.assert_close(loaded.bundle.encode_text(["a dog"]), expected)


def test_unknown_model_is_a_validation_message_not_a_crash(loader, comfy_env):
    with pytest.raises(NodeValidationError, match="not available: put the file in one of"):
        run_node(loader, model="missing.safetensors", device="default", precision="fp32")


def test_pretrained_choices_are_offered_without_files(loader, comfy_env):
    options = next(i for i in loader.GET_SCHEMA().inputs if i.id == "model").options
    assert "open_clip/ViT-B-32/laion2b_s34b_b79k" in options
