"""Against a real ComfyUI: the pack loads, example workflows validate against the live schemas, their
pack part runs and returns images with live previews, Cancel stops a long run, bad inputs give
messages. Skipped unless COMFYUI_PATH points at a ComfyUI checkout (COMFYUI_PYTHON: its Python,
default the current one). The server runs on loopback with a temporary base directory holding
this pack (symlinked), a tiny random CLIP and an input image; nothing is downloaded.
"""

from __future__ import annotations

import io as _io
import json
import os
import sys
import time
import uuid
from pathlib import Path

import node_harness
import pytest
import workflow_tools as wt
from comfy_client import PREVIEW_IMAGE, ComfyServer
from test_workflows import EXAMPLES, FILE_INPUTS, TINY_BANK, TINY_MODEL, _load, use_test_files

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
pytestmark = [
    pytest.mark.comfyui_server,
    pytest.mark.skipif(not COMFYUI_PATH or not (Path(COMFYUI_PATH) / "main.py").is_file(),
                       reason="set COMFYUI_PATH to a ComfyUI checkout to run the real-server tests"),
]

PACK_PREFIX = "CLIPInversion"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from PIL import Image

    base = tmp_path_factory.mktemp("comfyui_base")
    (base / "custom_nodes").mkdir()
    os.symlink(node_harness.REPO_ROOT, base / "custom_nodes" / "clip_inversion", target_is_directory=True)
    (base / "models" / "clip_inversion").mkdir(parents=True)
    clip_config = base / "models" / "clip_inversion" / TINY_MODEL
    clip_config.write_text(json.dumps(node_harness.TINY_CLIP_CONFIG))
    (base / "input").mkdir()
    Image.new("RGB", (48, 40), (200, 60, 40)).save(base / "input" / "example.png")
    references = node_harness.write_reference_images(base / "input" / "references")
    (base / "models" / "clip_inversion_banks").mkdir(parents=True)
    node_harness.build_tiny_bank(base / "models" / "clip_inversion_banks" / TINY_BANK, references, clip_config)
    instance = ComfyServer(Path(COMFYUI_PATH), base, python=os.environ.get("COMFYUI_PYTHON", sys.executable))
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def live_info(server):
    return server.get("/object_info")


def _run(server, prompt: dict, timeout: float = 300.0, on_event=None) -> tuple[str, list, list, str]:
    """Queue ``prompt`` and follow the websocket until it finishes: (outcome, events, previews, prompt id)."""
    client_id = uuid.uuid4().hex
    ws = server.websocket(client_id, timeout=timeout)
    try:
        status, answer = server.queue(prompt, client_id)
        assert status == 200, answer
        prompt_id, events, previews = answer["prompt_id"], [], []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kind, message = ws.receive()
            if kind == "binary":
                previews.append(message)
                continue
            data = message.get("data", {})
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            events.append(message)
            if on_event is not None:
                on_event(message)
            if message["type"] in ("execution_success", "execution_error", "execution_interrupted"):
                return message["type"], events, previews, prompt_id
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")
    except TimeoutError:
        raise AssertionError(f"no answer from ComfyUI:\n{server.log()}")
    finally:
        ws.close()


def _history(server, prompt_id: str, timeout: float = 30.0) -> dict:
    """The prompt's history entry (ComfyUI stores it just after announcing success)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history = server.get(f"/history/{prompt_id}")
        if prompt_id in history:
            return history[prompt_id]
        time.sleep(0.2)
    raise AssertionError(f"no history for prompt {prompt_id}")


def _pack_part(prompt: dict, pack_types) -> dict:
    """The pack's nodes, the core nodes they read, and the core output nodes they feed."""
    part = wt.pack_part(prompt, pack_types)
    for node_id, node in prompt.items():
        if node["class_type"] in ("SaveImage", "PreviewImage") and any(
                isinstance(v, list) and v[0] in part and part[v[0]]["class_type"].startswith(PACK_PREFIX)
                for v in node["inputs"].values()):
            part[node_id] = node
    return use_test_files(part)


def test_pack_loads_without_import_errors(server, live_info):
    ours = {name for name in live_info if name.startswith(PACK_PREFIX)}
    assert len(ours) == 17, sorted(ours)
    assert all(live_info[n]["category"].startswith("CLIP Inversion") for n in ours)
    failed = [line for line in server.log().splitlines() if "IMPORT FAILED" in line and "clip_inversion" in line]
    assert failed == []
    assert TINY_MODEL in live_info["CLIPInversionLoadCLIP"]["input"]["required"]["model"][1]["options"]
    assert live_info["CLIPInversionLoadReferenceBank"]["input"]["required"]["bank"][1]["options"] == [TINY_BANK]
    assert live_info["CLIPInversionBuildReferenceBank"]["experimental"] is True


def test_examples_are_served_as_templates(server):
    templates = server.get("/workflow_templates")
    assert sorted(templates["clip_inversion"]) == sorted(p.stem for p in EXAMPLES)
    status, workflow = server.request("GET", "/api/workflow_templates/clip_inversion/text_to_image.json")
    assert status == 200 and workflow == _load(EXAMPLES[[p.stem for p in EXAMPLES].index("text_to_image")])


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_match_the_live_schemas(path, live_info):
    assert wt.check_ui_workflow(_load(path), live_info, FILE_INPUTS) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_pack_part_returns_images(server, live_info, path):
    from PIL import Image

    prompt = _pack_part(wt.ui_to_api(_load(path), live_info), [n for n in live_info if n.startswith(PACK_PREFIX)])
    outcome, events, previews, prompt_id = _run(server, prompt)
    assert outcome == "execution_success", [e for e in events if e["type"] == "execution_error"] or server.log()
    assert any(e["type"] == "progress" for e in events)
    assert previews and all(p[:4] == PREVIEW_IMAGE.to_bytes(4, "big") for p in previews)
    Image.open(_io.BytesIO(previews[-1][8:])).verify()  # 8 = event id + image type headers
    files = [image for output in _history(server, prompt_id)["outputs"].values() for image in output.get("images", [])]
    assert files
    for image in files:
        status, raw = server.request(
            "GET", f"/view?filename={image['filename']}&subfolder={image['subfolder']}&type={image['type']}")
        assert status == 200 and Image.open(_io.BytesIO(raw)).mode == "RGB"


def test_interrupt_stops_a_long_run(server, live_info):
    prompt = _pack_part(wt.ui_to_api(_load(EXAMPLES[[p.stem for p in EXAMPLES].index("text_to_image")]), live_info),
                        [n for n in live_info if n.startswith(PACK_PREFIX)])
    optimizer = next(n for n in prompt.values() if n["class_type"] == "CLIPInversionOptimizer")
    optimizer["inputs"].update(steps=10000, seed=12345)
    sent = []

    def cancel_after_progress(message):
        if message["type"] == "progress" and not sent:
            sent.append(server.request("POST", "/interrupt", {})[0])

    started = time.monotonic()
    outcome, events, _, _ = _run(server, prompt, timeout=120, on_event=cancel_after_progress)
    assert sent == [200]
    assert outcome == "execution_interrupted"
    last = max(e["data"]["value"] for e in events if e["type"] == "progress")
    assert last < 10000 and time.monotonic() - started < 60


def test_bad_inputs_are_messages_and_the_server_keeps_running(server, live_info):
    base = _pack_part(wt.ui_to_api(_load(EXAMPLES[[p.stem for p in EXAMPLES].index("text_to_image")]), live_info),
                      [n for n in live_info if n.startswith(PACK_PREFIX)])

    def with_inputs(class_type, **inputs):
        prompt = json.loads(json.dumps(base))
        next(n for n in prompt.values() if n["class_type"] == class_type)["inputs"].update(inputs)
        return prompt

    status, answer = server.queue(with_inputs("CLIPInversionOptimizer", steps=0), "bad")
    assert status == 400 and "steps" in json.dumps(answer["node_errors"])
    status, answer = server.queue(with_inputs("CLIPInversionTextTarget", text="  "), "bad")
    assert status == 400 and "text is empty" in json.dumps(answer["node_errors"])
    status, answer = server.queue(with_inputs("CLIPInversionLoadCLIP", model="nope.safetensors"), "bad")
    assert status == 400 and "not available" in json.dumps(answer["node_errors"])
    outcome, events, _, _ = _run(server, with_inputs("CLIPInversionOptimizer", width=4096, height=4096, batch_size=64))
    assert outcome == "execution_error"
    error = next(e for e in events if e["type"] == "execution_error")["data"]
    assert "Lower width/height" in error["exception_message"]
    assert server.get("/system_stats")


def test_build_reference_bank_then_robust_init(server, live_info):
    """Build Reference Bank on the server's input/references folder (relative path), its seeds through
    Robust Init into Render INR and Preview Image; the file lands in models/clip_inversion_banks."""
    prompt = {
        "1": {"class_type": "CLIPInversionLoadCLIP", "inputs": {"model": TINY_MODEL, "device": "default",
                                                                "precision": "fp32"}},
        "2": {"class_type": "CLIPInversionINRSettings", "inputs": dict(node_harness.TINY_INR)},
        "3": {"class_type": "CLIPInversionBuildReferenceBank", "inputs": {
            "clip": ["1", 0], "source": "references", "file_name": "served", "with_seeds": True, "gamma": 0.002,
            "seed_steps": 2, "blur": 1.0, "batch_size": 2, "random_seed": 0, "if_exists": "rebuild",
            "inr_settings": ["2", 0]}},
        "4": {"class_type": "CLIPInversionTextTarget", "inputs": {"text": "a red square on the left", "weight": 1.0}},
        "5": {"class_type": "CLIPInversionRobustInit", "inputs": {"bank": ["3", 0], "target": ["4", 0],
                                                                  "clip": ["1", 0], "batch_size": 2}},
        "6": {"class_type": "CLIPInversionRenderINR", "inputs": {"inr": ["5", 0], "width": 32, "height": 32}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }
    outcome, events, _, prompt_id = _run(server, prompt)
    assert outcome == "execution_success", [e for e in events if e["type"] == "execution_error"] or server.log()
    progress = [(e["data"]["value"], e["data"]["max"]) for e in events
                if e["type"] == "progress" and e["data"].get("node") == "3"]
    assert progress and progress[-1] == (6, 6)
    assert (server.base_dir / "models" / "clip_inversion_banks" / "served.safetensors").is_file()
    images = [i for o in _history(server, prompt_id)["outputs"].values() for i in o.get("images", [])]
    assert len(images) == 2
