"""The node schemas as users see them: ids, categories, descriptions, tooltips, types, loading."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

CORE_TYPES = {"CLIP", "CLIP_VISION", "CLIP_VISION_OUTPUT", "MODEL", "VAE", "CONDITIONING", "LATENT"}
EXPECTED = {
    "CLIPInversionLoadCLIP", "CLIPInversionTextTarget", "CLIPInversionImageTarget", "CLIPInversionCombineTargets",
    "CLIPInversionOptimizer", "CLIPInversionRenderINR", "CLIPInversionStyleTransfer", "CLIPInversionEdit",
    "CLIPInversionINRSettings", "CLIPInversionScheduleSettings", "CLIPInversionAugmentSettings",
    "CLIPInversionPerformanceSettings", "CLIPInversionLoadReferenceBank", "CLIPInversionBuildReferenceBank",
    "CLIPInversionProcrustes", "CLIPInversionRobustInit", "CLIPInversionBlendingLoss",
}


def test_entrypoint_lists_every_node(pack_nodes):
    assert set(pack_nodes) == EXPECTED


@pytest.mark.parametrize("node_id", sorted(EXPECTED))
def test_schema_documents_every_input(pack_nodes, node_id):
    schema = pack_nodes[node_id].GET_SCHEMA()
    assert schema.node_id.startswith("CLIPInversion")
    assert schema.category.split("/")[0] == "CLIP Inversion"
    assert schema.display_name and len(schema.description) > 40
    assert schema.search_aliases, "search_aliases help users find the node"
    for item in schema.inputs:
        assert item.tooltip and len(item.tooltip) > 15, f"{node_id}.{item.id} needs a tooltip"
    for item in schema.outputs:
        assert item.tooltip, f"{node_id} output {item.display_name} needs a tooltip"
        assert item.io_type not in CORE_TYPES - {"IMAGE"}, "our objects must not masquerade as core types"
    for item in schema.inputs:
        options = item.as_dict()
        if "options" in options and "default" in options:  # file lists (e.g. banks) have no default
            assert options["default"] in options["options"], f"{node_id}.{item.id} default not offered"
        if "min" in options and "default" in options:
            assert options["min"] <= options["default"] <= options["max"], f"{node_id}.{item.id} default out of range"


def test_custom_types_are_prefixed(pack_nodes):
    types = set()
    for cls in pack_nodes.values():
        schema = cls.GET_SCHEMA()
        types |= {i.io_type for i in schema.inputs} | {o.io_type for o in schema.outputs}
    custom = types - {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", "IMAGE"}
    assert custom and all(t.startswith("INVERSION_") for t in custom), custom
    assert not custom & CORE_TYPES


def test_seed_widgets_advance_after_each_queue(pack_nodes):
    for node_id in ("CLIPInversionOptimizer", "CLIPInversionStyleTransfer", "CLIPInversionEdit"):
        seed = next(i for i in pack_nodes[node_id].GET_SCHEMA().inputs if i.id == "seed")
        assert seed.control_after_generate is True


def test_make_schema_drops_search_aliases_for_older_comfyui(pack_nodes, monkeypatch):
    import node_harness

    common = node_harness.pack_module("nodes.common")

    @dataclasses.dataclass
    class OldSchema:  # ComfyUI 0.3.64's Schema has no search_aliases field
        node_id: str
        display_name: str = None

    monkeypatch.setattr(common.io, "Schema", OldSchema)
    schema = common.make_schema(node_id="X", display_name="x", search_aliases=["a"])
    assert schema == OldSchema(node_id="X", display_name="x")


def test_nodes_keep_no_state_on_the_class(pack_nodes):
    # ComfyUI runs execute on a locked class clone; a node caching on the class would crash there.
    for cls in pack_nodes.values():
        own = {k for k, v in vars(cls).items() if not k.startswith("__") and not isinstance(v, classmethod)}
        assert own <= {"SCHEMA", "_abc_impl"}, (cls.__name__, own)


def test_repo_root_imports_without_comfyui(tmp_path):
    """pytest and other tools import the repository root as a package: it must not need ComfyUI."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('pack', {os.path.join(root, '__init__.py')!r}, "
        f"submodule_search_locations=[{root!r}])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['pack'] = m; spec.loader.exec_module(m)\n"
        "assert callable(m.comfy_entrypoint)\n"
        "assert 'comfy' not in sys.modules and 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
