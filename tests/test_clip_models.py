import json
import warnings

import pytest
import torch
from safetensors.torch import save_file

from inversion_core import load_clip
from inversion_core.clip_models import _read_state_dict


def test_tiny_clip_bundle_is_frozen_and_encodes_unit_vectors(tiny_clip):
    assert tiny_clip.image_size == 32 and tiny_clip.embed_dim == 32
    assert tiny_clip.identity == "tiny-clip@random-seed0"
    assert not tiny_clip.model.training
    assert not any(p.requires_grad for p in tiny_clip.model.parameters())
    text = tiny_clip.encode_text(["a red circle", "a blue square"])
    assert text.shape == (2, 32)
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(2))
    images = torch.rand(3, 3, 50, 70, requires_grad=True)  # any size is resized inside
    embedding = tiny_clip.encode_image(images)
    assert embedding.shape == (3, 32)
    embedding.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_random_weights_depend_on_seed(tiny_clip_config):
    a, b = load_clip(tiny_clip_config, seed=0), load_clip(tiny_clip_config, seed=1)
    assert a.identity != b.identity
    assert not torch.equal(a.encode_text(["x"]), b.encode_text(["x"]))


def test_safetensors_weights_round_trip_with_sibling_config(tiny_clip, tmp_path):
    weights = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_clip.model.state_dict().items()}, str(weights))
    (tmp_path / "mine.json").write_text(json.dumps({"model_cfg": tiny_clip.model_config}))
    loaded = load_clip(weights=weights)  # config found beside the weights
    assert loaded.identity.startswith("mine@") and "random" not in loaded.identity
    torch.testing.assert_close(loaded.encode_text(["a cat"]), tiny_clip.encode_text(["a cat"]))
    assert load_clip(tmp_path / "mine.json", weights).identity == loaded.identity


def test_weights_in_a_hub_layout_folder_find_its_open_clip_config(tiny_clip, tmp_path):
    folder = tmp_path / "tiny-hub"
    folder.mkdir()
    weights = folder / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_clip.model.state_dict().items()}, str(weights))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": tiny_clip.model_config}))
    loaded = load_clip(weights=weights)  # no architecture: the folder's open_clip_config.json
    assert loaded.identity.startswith("tiny-hub@")
    torch.testing.assert_close(loaded.encode_text(["a cat"]), tiny_clip.encode_text(["a cat"]))


def test_torch_checkpoint_with_state_dict_key_and_module_prefix(tiny_clip, tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in tiny_clip.model.state_dict().items()}}, path)
    loaded = load_clip(_write_config(tmp_path, tiny_clip), path)
    torch.testing.assert_close(loaded.encode_text(["a dog"]), tiny_clip.encode_text(["a dog"]))


def _write_config(tmp_path, clip):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(clip.model_config))
    return path


def test_unknown_architecture_lists_close_names():
    with pytest.raises(ValueError, match=r"unknown CLIP architecture 'ViT-B-3'.*ViT-B-32"):
        load_clip("ViT-B-3")


def test_missing_weights_file_says_where_it_looked(tiny_clip_config, tmp_path):
    missing = tmp_path / "nothere.safetensors"
    with pytest.raises(FileNotFoundError, match="nothere.safetensors"):
        load_clip(tiny_clip_config, missing)


def test_missing_sibling_config_explains_what_to_pass(tmp_path):
    weights = tmp_path / "orphan.safetensors"
    save_file({"x": torch.zeros(1)}, str(weights))
    with pytest.raises(ValueError, match=r"orphan\.json.*architecture="):
        load_clip(weights=weights)


def test_state_dict_mismatch_names_keys_and_guesses_architecture(tiny_clip, tmp_path):
    bigger = dict(tiny_clip.model_config, vision_cfg=dict(tiny_clip.model_config["vision_cfg"], layers=2))
    config = tmp_path / "bigger.json"
    config.write_text(json.dumps(bigger))
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_clip.model.state_dict().items()}, str(weights))
    with pytest.raises(ValueError) as info:
        load_clip(config, weights)
    message = str(info.value)
    assert "missing key" in message and "visual.transformer.resblocks.1" in message
    assert "a ViT with width 32, patch 8, 1 layers" in message


def test_corrupt_weights_fail_cleanly(tiny_clip_config, tmp_path):
    weights = tmp_path / "broken.safetensors"
    weights.write_bytes(b"\x00\x01 not a safetensors file")
    with pytest.raises(ValueError, match="truncated, corrupt"):
        load_clip(tiny_clip_config, weights)


class _Payload:
    """A pickled object: loading it would execute code, so weights_only must refuse it."""


def test_pickled_code_is_never_executed(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _Payload()}, path)
    with pytest.raises(ValueError, match="pickle holding code"):
        _read_state_dict(path)


def test_pretrained_tag_offline_says_where_to_put_the_file(monkeypatch):
    import open_clip

    def offline(*args, **kwargs):
        raise RuntimeError("Failed to download weights: no connection")

    monkeypatch.setattr(open_clip, "create_model", offline)
    with pytest.raises(ValueError, match=r"offline.*models/clip_inversion"):
        load_clip("ViT-B-32", "openai")


def test_unknown_pretrained_tag_lists_tags():
    with pytest.raises(ValueError, match=r"neither a file nor a pretrained tag.*openai"):
        load_clip("ViT-B-32", "no-such-tag")


def test_bad_precision_is_rejected(tiny_clip_config):
    with pytest.raises(ValueError, match="precision must be one of"):
        load_clip(tiny_clip_config, precision="fp8")


def test_missing_weights_without_architecture_says_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"weights file '.*nothere\.safetensors' not found"):
        load_clip(weights=tmp_path / "nothere.safetensors")


def test_a_directory_as_weights_is_reported_as_a_directory(tiny_clip_config, tmp_path):
    for architecture in (None, tiny_clip_config):
        with pytest.raises(IsADirectoryError, match=r"weights file .* is a directory, not a file"):
            load_clip(architecture, tmp_path)


def test_a_model_config_as_weights_says_where_it_belongs(tiny_clip_config):
    for architecture in (None, tiny_clip_config):
        with pytest.raises(ValueError, match=r"is a JSON model config, not weights: pass it as the architecture "
                                             r"\(--model") as info:
            load_clip(architecture, tiny_clip_config)
        assert "weights_only" not in str(info.value)


def test_a_config_that_is_not_an_object_is_refused(tmp_path):
    config = tmp_path / "list.json"
    config.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"'.*list\.json' holds a JSON list, not an object"):
        load_clip(config)


def test_no_architecture_and_no_weights_names_flag_and_argument():
    with pytest.raises(ValueError, match=r"no CLIP architecture given.*--model.*architecture=.*random weights"):
        load_clip()


def test_a_tag_without_architecture_asks_for_the_architecture():
    with pytest.raises(ValueError, match=r"'openai' is not a file here.*pretrained tag.*needs an architecture"):
        load_clip(weights="openai")


def test_missing_weights_offer_a_pretrained_tag_only_where_there_are_tags(tiny_clip_config, tmp_path):
    missing = tmp_path / "nothere.safetensors"
    with pytest.raises(FileNotFoundError) as info:
        load_clip(tiny_clip_config, missing)  # a custom config: no pretrained tags
    assert "pretrained tag" not in str(info.value) and "<none" not in str(info.value)
    with pytest.raises(FileNotFoundError, match=r"pretrained tag such as 'openai'"):
        load_clip("ViT-B-32", missing)


def test_a_prompt_longer_than_the_context_is_reported_not_silently_cut(tiny_clip):
    context = tiny_clip.tokenizer.context_length
    long_prompt = " ".join(["red"] * context)
    with pytest.warns(UserWarning, match=f"longer than this CLIP's {context - 2} tokens"):
        tiny_clip.encode_text(["a cat", long_prompt])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_clip.encode_text(["a cat", " ".join(["red"] * (context - 2))])  # exactly fills it: no warning
