"""Load Reference Bank and Build Reference Bank: bank folder, loading, building with progress,
Cancel leaving a resumable build, reuse and rebuild of an existing file."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import node_harness
import pytest
import torch
from node_harness import TINY_INR, NodeValidationError, mm, run_node


def _bridge():
    return node_harness.pack_module("nodes.comfy_bridge")


def _bank_dir() -> Path:
    import folder_paths

    return Path(folder_paths.models_dir) / "clip_inversion_banks"


def _input_dir() -> Path:
    import folder_paths

    return Path(folder_paths.get_input_directory())


# --- folder and loading ----------------------------------------------------------------------------


def test_bank_folder_keeps_user_paths_and_lists_safetensors_only(comfy_env, tmp_path):
    import folder_paths

    user_dir = tmp_path / "shared_banks"
    user_dir.mkdir()
    (user_dir / "theirs.safetensors").write_bytes(b"")
    folder_paths.add_model_folder_path("clip_inversion_banks", str(user_dir))  # extra_model_paths.yaml
    searched = _bridge().register_bank_folder()
    assert searched == [str(user_dir), str(_bank_dir())]
    _bridge().register_bank_folder()  # idempotent
    assert folder_paths.folder_names_and_paths["clip_inversion_banks"][0] == searched
    (_bank_dir() / "sub").mkdir()
    (_bank_dir() / "sub" / "mine.safetensors").write_bytes(b"")
    (_bank_dir() / "notes.txt").write_text("")
    (_bank_dir() / "mine.safetensors.parts").mkdir()  # an interrupted build's shards folder
    (_bank_dir() / "mine.safetensors.parts" / "manifest.json").write_text("{}")
    assert _bridge().bank_files() == ["sub/mine.safetensors", "theirs.safetensors"]


@pytest.mark.parametrize("name, expected", [("my_bank", "my_bank.safetensors"),
                                            (" toy/ref.safetensors ", "toy/ref.safetensors")])
def test_bank_file_names_stay_inside_the_folder(comfy_env, name, expected):
    assert _bridge().bank_file_name(name) == expected
    for bad in ("", "../escape", "/abs/path", "a//b"):
        with pytest.raises(ValueError, match="file_name"):
            _bridge().bank_file_name(bad)


def test_load_reference_bank(pack_nodes, tiny_bank):
    node = pack_nodes["CLIPInversionLoadReferenceBank"]
    options = next(i for i in node.GET_SCHEMA().inputs if i.id == "bank").options
    assert tiny_bank in options
    bank = run_node(node, bank=tiny_bank)[0]
    assert type(bank).__name__ == "ReferenceBank" and len(bank) == 6
    assert bank.clip_identity == "tiny-clip@random-seed0" and bank.has_seeds
    assert not bank.image_embeddings.is_inference() and not bank.seed_weights[0].is_inference()
    # a rebuilt file of the same name is not served from ComfyUI's cache
    before = node.fingerprint_inputs(bank=tiny_bank)
    path = _bank_dir() / tiny_bank
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert node.fingerprint_inputs(bank=tiny_bank) != before


def test_missing_or_foreign_bank_files_get_messages(pack_nodes, tiny_bank):
    node = pack_nodes["CLIPInversionLoadReferenceBank"]
    with pytest.raises(NodeValidationError, match="not available: put the file in one of"):
        run_node(node, bank="nope.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(_bank_dir() / "weights.safetensors"))
    with pytest.raises(ValueError, match="not a reference bank"):
        run_node(node, bank="weights.safetensors")


# --- building --------------------------------------------------------------------------------------


@pytest.fixture()
def build(pack_nodes, inversion_clip, tiny_inr_settings, reference_images):
    """Run Build Reference Bank on the six reference images (input/reference_images) with tiny, fast
    settings; keywords override."""
    node = pack_nodes["CLIPInversionBuildReferenceBank"]
    shutil.copytree(reference_images, _input_dir() / "reference_images")

    def run(**overrides):
        inputs = {"clip": inversion_clip, "source": "reference_images", "file_name": "built", "with_seeds": True,
                  "gamma": 0.002, "seed_steps": 2, "blur": 1.0, "batch_size": 2, "random_seed": 0,
                  "if_exists": "reuse", "inr_settings": tiny_inr_settings}
        inputs.update(overrides)
        return run_node(node, **inputs)[0]

    return run


def _spy_shards(monkeypatch) -> list:
    """Record the shards the engine builds (as opposed to resuming them from disk)."""
    engine = node_harness.pack_module("inversion_core.bank_build")
    built, original = [], engine._build_shard

    def spy(entries, members, *args):
        built.append(list(members))
        return original(entries, members, *args)

    monkeypatch.setattr(engine, "_build_shard", spy)
    return built


def test_build_writes_the_bank_and_reports_progress_in_images(build, pack_nodes, comfy_env, inversion_clip):
    bank = build()
    assert (_bank_dir() / "built.safetensors").is_file()
    assert not (_bank_dir() / "built.safetensors.parts").exists()
    assert [(e.value, e.total) for e in comfy_env.events] == [(2, 6), (4, 6), (6, 6)]  # one update per batch
    assert len(bank) == 6 and bank.clip_identity == inversion_clip.identity
    assert dataclasses.asdict(bank.inr_config) == TINY_INR and bank.seed_config.steps == 2
    assert not bank.image_embeddings.is_inference()
    loader = pack_nodes["CLIPInversionLoadReferenceBank"]
    assert "built.safetensors" in next(i for i in loader.GET_SCHEMA().inputs if i.id == "bank").options
    assert mm.load_calls and mm.load_calls[-1][0] == [inversion_clip.patcher]  # placed by model management


def test_cancel_keeps_finished_batches_and_a_rerun_resumes(build, comfy_env, monkeypatch):
    built = _spy_shards(monkeypatch)
    comfy_env.interrupt_after = 1  # Cancel while the first batch is reported
    with pytest.raises(mm.InterruptProcessingException):
        build()
    assert len(comfy_env.events) == 1 and built == [[0, 1], [2, 3]]  # stopped at the next batch boundary
    parts = _bank_dir() / "built.safetensors.parts"
    assert sorted(p.name for p in parts.iterdir()) == ["manifest.json", "shard_000000.safetensors",
                                                        "shard_000001.safetensors"]
    assert not (_bank_dir() / "built.safetensors").exists()
    assert _bridge().bank_files() == []  # the shards of an interrupted build are not banks to load
    comfy_env.clear()
    comfy_env.interrupt_after = None
    built.clear()
    bank = build()
    assert built == [[4, 5]]  # the two finished batches were resumed, not rebuilt
    assert [e.value for e in comfy_env.events] == [2, 4, 6]
    assert len(bank) == 6 and not parts.exists()


def test_changed_settings_after_a_cancel_name_the_fix(build, comfy_env):
    comfy_env.interrupt_after = 1
    with pytest.raises(mm.InterruptProcessingException):
        build()
    comfy_env.interrupt_after = None
    with pytest.raises(ValueError, match=r"gamma.*set if_exists to 'rebuild'"):
        build(gamma=0.01)
    assert len(build(gamma=0.01, if_exists="rebuild")) == 6


def test_existing_file_is_reused_or_rebuilt(build, comfy_env, monkeypatch):
    first = build()
    built = _spy_shards(monkeypatch)
    comfy_env.clear()
    again = build()  # e.g. after a restart of ComfyUI: same request, nothing to do
    assert built == [] and comfy_env.events == []
    torch.testing.assert_close(again.image_embeddings, first.image_embeddings)
    with pytest.raises(ValueError, match=r"already exists but was built with seed settings .*'rebuild'"):
        build(blur=0.0)
    with pytest.raises(ValueError, match="already exists but was built with seeds"):
        build(with_seeds=False)
    rebuilt = build(blur=0.0, if_exists="rebuild")
    assert len(built) == 3 and rebuilt.seed_config.blur_sigma == 0.0


def test_reuse_notices_edited_captions_replaced_images_and_another_random_seed(build):
    build()
    with pytest.raises(ValueError, match=r"already exists but was built with random_seed 0 \(requested 7\)"):
        build(random_seed=7)
    caption = next((_input_dir() / "reference_images").glob("*.txt"))
    caption.write_text("an edited caption")
    with pytest.raises(ValueError, match="already exists but was built from other images or captions"):
        build()
    assert len(build(if_exists="rebuild")) == 6
    image = next((_input_dir() / "reference_images").glob("*.png"))
    image.write_bytes(image.read_bytes())  # the same name, a new file (new modification time)
    os.utime(image, ns=(1, 1))
    with pytest.raises(ValueError, match="from other images or captions"):
        build()


def test_an_empty_source_says_so_even_when_the_bank_exists(build):
    build()
    (_input_dir() / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no usable \\(image, caption\\) pairs"):
        build(source="empty")


def test_embeddings_only_and_source_relative_to_the_input_folder(build, reference_images):
    shutil.copytree(reference_images, _input_dir() / "more" / "refs")
    bank = build(source="more/refs", file_name="plain/refs", with_seeds=False, inr_settings=None)
    assert not bank.has_seeds and len(bank) == 6
    assert (_bank_dir() / "plain" / "refs.safetensors").is_file()


@pytest.mark.parametrize("inputs, message", [
    ({"source": "  "}, "source is empty"),
    ({"source": "no_such_folder"}, "source 'no_such_folder' not found in ComfyUI's input folder"),
    ({"source": "/etc"}, "source '/etc' is outside ComfyUI's input folder.*bank build"),
    ({"source": "../models"}, "source '../models' is outside ComfyUI's input folder"),
    ({"file_name": "../outside"}, "file_name '../outside' must be a name inside"),
    ({"if_exists": "append"}, "Value not in list"),
    ({"blur": 20.0}, "bigger than max"),
])
def test_bad_build_inputs_fail_validation(build, inputs, message):
    with pytest.raises(NodeValidationError, match=message):
        build(**inputs)


def test_a_folder_without_captions_is_a_clear_error(build):
    from PIL import Image

    (_input_dir() / "lonely").mkdir()
    Image.new("RGB", (8, 8)).save(_input_dir() / "lonely" / "a.png")
    with pytest.raises(ValueError, match="holds no usable.*missing_caption"):
        build(source="lonely")


def test_nothing_outside_the_input_folder_is_read(build, reference_images, tmp_path):
    """A queued prompt may not make the server read elsewhere: not through a symlink, not through a
    caption file listing outside images (anyone who can reach a ComfyUI server can queue one)."""
    os.symlink(reference_images, _input_dir() / "linked")
    with pytest.raises(NodeValidationError, match="'linked' is outside ComfyUI's input folder"):
        build(source="linked")
    listing = _input_dir() / "outside.csv"
    listing.write_text("path,caption\n" + "".join(f"{p},a square\n" for p in sorted(reference_images.glob("*.png"))))
    with pytest.raises(ValueError, match=r"lists 6 image\(s\) outside ComfyUI's input folder"):
        build(source="outside.csv")
    assert not (_bank_dir() / "built.safetensors").exists()


def test_new_images_or_a_replaced_bank_change_the_fingerprint(build, pack_nodes):
    """ComfyUI reruns a node only when its fingerprint changes; the source folder's and bank file's
    contents are part of it, so a build after adding images is not answered from the cache."""
    from PIL import Image

    node = pack_nodes["CLIPInversionBuildReferenceBank"]
    assert node.GET_SCHEMA().is_output_node  # it writes a file: queueable on its own
    fingerprint = lambda: node.fingerprint_inputs(source="reference_images", file_name="built")  # noqa: E731
    before = fingerprint()
    assert before and fingerprint() == before
    build()
    after_build = fingerprint()
    assert after_build != before  # the bank file now exists
    Image.new("RGB", (8, 8)).save(_input_dir() / "reference_images" / "new.png")
    (_input_dir() / "reference_images" / "new.txt").write_text("a new square")
    assert fingerprint() != after_build
    assert node.fingerprint_inputs(source=None, file_name="built") == ""  # a linked source: not known yet
