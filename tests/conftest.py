"""Shared fixtures: tiny random open_clip models and small run configs (CPU, seconds per test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    """CI machines have 2 cores; tiny models run fastest single-threaded anyway."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_clip_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny-clip.json"
    path.write_text(json.dumps(TINY_CLIP_CONFIG))
    return path


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_config):
    from inversion_core import load_clip

    return load_clip(tiny_clip_config, seed=0)


@pytest.fixture()
def tiny_run():
    """A small, fast RunConfig: 32 px renders of a narrow INR seen through 4 views."""
    from inversion_core import AugmentConfig, INRConfig, RunConfig

    return RunConfig(steps=40, width=32, height=32, inr=INRConfig(hidden_layers=2, width=32),
                     augment=AugmentConfig(views=4))


# ==============================================================================================
# Node layer: ComfyUI stand-ins and the node harness (owner: node layer, see tests/node_harness.py).
# The stubs go on sys.path only when a node fixture is used, so engine tests never see them.
# ==============================================================================================
import sys as _sys  # noqa: E402

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in _sys.path:
    _sys.path.insert(0, _TESTS_DIR)  # --import-mode=importlib does not add it


@pytest.fixture()
def comfy_env(tmp_path):
    """A fresh stub ComfyUI: folders under tmp_path, no loaded models, a progress recorder."""
    import node_harness

    recorder = node_harness.reset_comfy(tmp_path / "comfyui")
    yield recorder
    import comfy.model_management as mm
    import comfy.utils

    comfy.utils.set_progress_bar_global_hook(None)
    mm.interrupt_current_processing(False)


@pytest.fixture(scope="session")
def pack_nodes() -> dict:
    """node_id -> node class, loaded through the pack's comfy_entrypoint() like ComfyUI does."""
    import node_harness

    return node_harness.node_classes()


@pytest.fixture()
def tiny_model(comfy_env, pack_nodes) -> str:
    """A tiny random open_clip config in models/clip_inversion; returns its entry in the loader's combo."""
    import folder_paths
    import node_harness

    folder = Path(folder_paths.models_dir) / "clip_inversion"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny-clip.json").write_text(json.dumps(node_harness.TINY_CLIP_CONFIG))
    return "tiny-clip.json"


@pytest.fixture()
def inversion_clip(tiny_model, pack_nodes):
    """The INVERSION_CLIP value of the tiny model, made by the loader node."""
    import node_harness

    loader = pack_nodes["CLIPInversionLoadCLIP"]
    return node_harness.run_node(loader, model=tiny_model, device="default", precision="fp32")[0]


@pytest.fixture()
def tiny_inr_settings(pack_nodes):
    """INVERSION_INR_SETTINGS for a 1-hidden-layer, 16-wide INR (fast on a CPU)."""
    import node_harness

    node = pack_nodes["CLIPInversionINRSettings"]
    return node_harness.run_node(node, hidden_layers=1, width=16, omega=30.0, first_bias_scale=1.0,
                                 output="sigmoid")[0]
@pytest.fixture(scope="session")
def reference_images(tmp_path_factory) -> Path:
    """Six captioned PNGs (a coloured square, left or right) in a folder, as a bank source."""
    import node_harness

    return node_harness.write_reference_images(tmp_path_factory.mktemp("reference_images"))


@pytest.fixture(scope="session")
def tiny_bank_files(tmp_path_factory, reference_images, tiny_clip_config) -> dict[str, Path]:
    """Bank files of the reference images for the tiny CLIP, built once: "seeds" (TINY_INR seeds) and "plain"."""
    import node_harness

    folder = tmp_path_factory.mktemp("banks")
    return {kind: node_harness.build_tiny_bank(folder / f"{kind}.safetensors", reference_images, tiny_clip_config,
                                               with_seeds=kind == "seeds")
            for kind in ("seeds", "plain")}


@pytest.fixture()
def tiny_bank(comfy_env, tiny_bank_files) -> str:
    """The tiny seeded bank copied into models/clip_inversion_banks; returns its entry in the loader's combo."""
    import shutil

    import folder_paths

    folder = Path(folder_paths.models_dir) / "clip_inversion_banks"
    folder.mkdir(parents=True, exist_ok=True)
    for kind, path in tiny_bank_files.items():
        shutil.copy(path, folder / f"tiny-bank-{kind}.safetensors")
    return "tiny-bank-seeds.safetensors"


@pytest.fixture()
def bank_value(tiny_bank, tiny_model, pack_nodes):
    """The INVERSION_BANK value of the tiny seeded bank, made by the Load Reference Bank node."""
    import node_harness

    return node_harness.run_node(pack_nodes["CLIPInversionLoadReferenceBank"], bank=tiny_bank)[0]


# ==============================================================================================
# End of the node-layer block.
# ==============================================================================================
