"""Run the pack's nodes the way ComfyUI does, against the stubs in ``tests/comfy_stubs``.

What a real server does and plain pytest would not, reproduced here:

* the pack is imported as ComfyUI imports a custom node folder (the repo root loaded as a package
  from its ``__init__.py``) and its nodes come from ``comfy_entrypoint()``;
* inputs are checked like ``execution.validate_inputs`` (required inputs, INT/FLOAT/STRING/BOOLEAN
  conversion, min/max unless the node's ``validate_inputs`` names the input, then the node's own
  ``validate_inputs`` with linked inputs passed as None). Unlike ComfyUI 0.3.64, COMBO values are
  also checked against their options (newer servers do; a workflow must not rely on either);
* ``execute`` runs on a locked clone of the class (setting a class attribute raises) inside
  ``torch.inference_mode()``, after the interrupt check ComfyUI makes before every node;
* ``comfy.utils.ProgressBar`` updates reach a hook that, like the server's, raises
  ``InterruptProcessingException`` when an interrupt is pending and records every preview.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import comfy_stubs
import torch

comfy_stubs.install()
mm = importlib.import_module("comfy.model_management")
comfy_utils = importlib.import_module("comfy.utils")
folder_paths = importlib.import_module("folder_paths")
io = importlib.import_module("comfy_api.latest").io

REPO_ROOT = Path(__file__).resolve().parents[1]
PACK_NAME = "clip_inversion_pack"  # any name works; ComfyUI uses the folder path


def load_pack():
    """Import the repository root as a ComfyUI custom-node package (once per process)."""
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(
        PACK_NAME, REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[PACK_NAME]
        raise
    return module


def pack_module(name: str):
    """A module of the pack, e.g. ``pack_module("nodes.comfy_bridge")``, imported as ComfyUI would."""
    load_pack()
    return importlib.import_module(f"{PACK_NAME}.{name}")


def node_classes() -> dict[str, type]:
    """node_id -> class, obtained through ``comfy_entrypoint()`` exactly as ComfyUI does."""
    pack = load_pack()
    entry = pack.comfy_entrypoint
    extension = asyncio.run(entry()) if inspect.iscoroutinefunction(entry) else entry()
    return {cls.GET_SCHEMA().node_id: cls for cls in asyncio.run(extension.get_node_list())}


# --- progress and interrupts -------------------------------------------------------------------


@dataclass
class ProgressEvent:
    value: int
    total: int
    preview: Any
    node_id: Any


@dataclass
class ProgressRecorder:
    """The server's progress hook: checks for an interrupt, then records the update.

    ``interrupt_after = n`` makes the n-th update behave like a user pressing Cancel right then
    (``POST /interrupt``): the flag is set, and the next interrupt check raises.
    """

    events: list[ProgressEvent] = field(default_factory=list)
    interrupt_after: int | None = None

    def __call__(self, value, total, preview, node_id=None) -> None:
        mm.throw_exception_if_processing_interrupted()
        self.events.append(ProgressEvent(value, total, preview, node_id))
        if self.interrupt_after is not None and len(self.events) >= self.interrupt_after:
            mm.interrupt_current_processing(True)

    @property
    def previews(self) -> list:
        return [e.preview for e in self.events if e.preview is not None]

    def clear(self) -> None:
        self.events.clear()


def reset_comfy(base_dir: str | Path) -> ProgressRecorder:
    """Fresh folders under ``base_dir``, no loaded models, no pending interrupt, a new recorder."""
    folder_paths.reset_for_tests(str(base_dir))
    mm.reset_for_tests()
    recorder = ProgressRecorder()
    comfy_utils.set_progress_bar_global_hook(recorder)
    return recorder


# --- validation and execution ------------------------------------------------------------------


class NodeValidationError(ValueError):
    """What the server answers a /prompt with bad inputs: a list of (input, message) problems."""

    def __init__(self, node_id: str, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__(f"{node_id}: " + "; ".join(f"{name}: {message}" for name, message in errors))


def validate_node_inputs(cls, inputs: dict[str, Any], linked: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Errors ComfyUI's prompt validation would report for these inputs (``linked`` = names fed by links)."""
    linked = set(linked)
    declared = cls.INPUT_TYPES()
    validator = io.overridden(cls, "validate_inputs")
    named, takes_kwargs = [], False
    if validator is not None:
        spec = inspect.getfullargspec(validator)
        named, takes_kwargs = spec.args, spec.varkw is not None
    errors: list[tuple[str, str]] = []
    for category in ("required", "optional"):
        for name, (io_type, options) in declared.get(category, {}).items():
            if name not in inputs:
                if category == "required":
                    errors.append((name, "Required input is missing"))
                continue
            if name in linked:
                continue
            value = inputs[name]
            try:
                if io_type == "INT":
                    value = int(value)
                elif io_type == "FLOAT":
                    value = float(value)
                elif io_type == "STRING":
                    value = str(value)
                elif io_type == "BOOLEAN":
                    value = bool(value)
            except (TypeError, ValueError) as exc:
                errors.append((name, f"Failed to convert an input value to a {io_type} value: {exc}"))
                continue
            inputs[name] = value
            if name in named or takes_kwargs:
                continue
            if "min" in options and value < options["min"]:
                errors.append((name, f"Value {value} smaller than min of {options['min']}"))
            elif "max" in options and value > options["max"]:
                errors.append((name, f"Value {value} bigger than max of {options['max']}"))
            elif io_type == "COMBO" and value not in options.get("options", []):
                errors.append((name, f"Value not in list: {value!r} not in {options.get('options')}"))
    if validator is not None and not errors:
        arguments = {k: (None if k in linked else v) for k, v in inputs.items() if k in named or takes_kwargs}
        verdict = _locked_clone(cls).validate_inputs(**arguments)
        if verdict is not True:
            errors.append((", ".join(arguments) or "node", "Custom validation failed for node: " + str(verdict)))
    return errors


def _locked_clone(cls) -> type:
    """A subclass whose attributes cannot be set, as ComfyUI's ``lock_class`` makes for every run."""

    class LockedMeta(type(cls)):
        def __setattr__(self, name, value):
            raise AttributeError(f"Cannot modify class attribute '{name}' on locked class '{self.__name__}'")

    return LockedMeta(cls.__name__, (cls,), {})


WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def socket_inputs(cls) -> set[str]:
    """Inputs that can only arrive through a link (no widget)."""
    declared = cls.INPUT_TYPES()
    return {name for category in ("required", "optional") for name, (io_type, _) in declared.get(category, {}).items()
            if io_type not in WIDGET_TYPES}


def run_node(cls, *, linked: Iterable[str] = (), validate: bool = True, **inputs) -> io.NodeOutput:
    """Validate like the server, then execute like the server; returns the NodeOutput.

    Socket inputs count as linked (validation sees them as None); ``linked`` adds widget inputs
    that a test feeds through a link.
    """
    schema = cls.GET_SCHEMA()
    inputs = dict(inputs)
    linked = set(linked) | (socket_inputs(cls) & set(inputs))
    if validate:
        errors = validate_node_inputs(cls, inputs, linked)
        if errors:
            raise NodeValidationError(schema.node_id, errors)
    with torch.inference_mode():
        mm.throw_exception_if_processing_interrupted()  # nodes.before_node_execution()
        result = _locked_clone(cls).execute(**inputs)
    if isinstance(result, tuple):
        result = io.NodeOutput(*result)
    if not isinstance(result, io.NodeOutput):
        raise TypeError(f"{schema.node_id}.execute returned {type(result).__name__}, not io.NodeOutput")
    if len(result.args) != len(schema.outputs):
        raise AssertionError(f"{schema.node_id} returned {len(result.args)} values for {len(schema.outputs)} outputs")
    return result


def run_api_prompt(prompt: dict, classes: dict[str, type], external: dict[str, tuple] | None = None,
                   sinks: Iterable[str] = ("SaveImage", "PreviewImage")) -> tuple[dict, dict]:
    """Execute the pack's part of an API-format prompt.

    Nodes whose class_type is in ``classes`` run through :func:`run_node`; other nodes take their
    outputs from ``external[node_id]``; ``sinks`` (output nodes of the core) are not run but the
    inputs they would receive are returned. Returns (outputs by node id, sink inputs by node id).
    """
    external = external or {}
    order = _topological_order(prompt)
    outputs: dict[str, tuple] = {}
    received: dict[str, dict] = {}
    for node_id in order:
        node = prompt[node_id]
        values, linked = {}, set()
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2:
                source, slot = str(value[0]), value[1]
                if source not in outputs:
                    raise KeyError(f"node {node_id} input {name!r} links to {source}, which produced nothing")
                values[name] = outputs[source][slot]
                linked.add(name)
            else:
                values[name] = value
        class_type = node["class_type"]
        if class_type in classes:
            outputs[node_id] = run_node(classes[class_type], linked=linked, **values).args
        elif class_type in sinks:
            received[node_id] = values
        elif node_id in external:
            outputs[node_id] = external[node_id]
        else:
            raise KeyError(f"node {node_id} ({class_type}) is not part of the pack; give its outputs in external")
    return outputs, received


def _topological_order(prompt: dict) -> list[str]:
    order, state = [], {}

    def visit(node_id: str) -> None:
        if state.get(node_id) == "done":
            return
        if state.get(node_id) == "active":
            raise ValueError(f"the prompt has a cycle through node {node_id}")
        state[node_id] = "active"
        for value in prompt[node_id]["inputs"].values():
            if isinstance(value, list) and len(value) == 2:
                visit(str(value[0]))
        state[node_id] = "done"
        order.append(node_id)

    for node_id in prompt:
        visit(node_id)
    return order


# --- tiny models --------------------------------------------------------------------------------

TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


# --- tiny reference banks -------------------------------------------------------------------------

TINY_INR = {"hidden_layers": 1, "width": 16, "omega": 30.0, "first_bias_scale": 1.0, "output": "sigmoid"}
TINY_SEEDS = {"gamma": 0.002, "steps": 3, "size": 16, "blur_sigma": 1.0}  # seconds for a handful of images
_COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220), "yellow": (230, 220, 40)}


def write_reference_images(folder: str | Path, count: int = 6, size: int = 24) -> Path:
    """``count`` PNGs (a coloured square on grey, left or right) with same-name .txt captions."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(_COLOURS)
    for i in range(count):
        colour, side = names[i % len(names)], ("left", "right")[(i // len(names)) % 2]
        image = Image.new("RGB", (size, size), (128, 128, 128))
        x0 = 2 if side == "left" else size // 2
        image.paste(_COLOURS[colour], (x0, size // 4, x0 + size // 2 - 2, 3 * size // 4))
        image.save(folder / f"{i:03d}.png")
        (folder / f"{i:03d}.txt").write_text(f"a {colour} square on the {side}\n")
    return folder


def build_tiny_bank(out: str | Path, source: str | Path, clip_config: str | Path, *, with_seeds: bool = True,
                    batch_size: int = 4) -> Path:
    """A bank of ``source`` for the tiny random CLIP of ``clip_config`` (identity tiny-clip@random-seed0 when
    the file is named tiny-clip.json), with TINY_INR seeds."""
    from inversion_core import INRConfig, load_clip
    from inversion_core.awp import SeedConfig
    from inversion_core.bank_build import build_bank

    clip = load_clip(clip_config, seed=0)
    build_bank(source, out, clip, inr_config=INRConfig(**TINY_INR), seed_config=SeedConfig(**TINY_SEEDS),
               with_seeds=with_seeds, batch_size=batch_size, progress=False)
    return Path(out)
