"""ComfyUI workflows for tests: check a UI-format workflow against node schemas, convert it to the
API format ``POST /prompt`` takes, and build workflows from code.

Node schemas come in the ``GET /object_info`` layout, so the same checks run against the pack's
own classes (``node_info()``), a hand-written description of the core nodes
(``tests/data/core_object_info.json``) or a live server's ``/object_info``.

UI format (frontend, version 0.4), as far as these tools rely on it:

* ``nodes[i]``: ``id``, ``type``, ``mode`` (0 = active), ``inputs`` (sockets: ``name``, ``type``,
  ``link``; a widget turned into a socket also has ``widget: {name}``), ``outputs`` (``name``,
  ``type``, ``links``), ``widgets_values`` (positional, see :func:`widget_layout`).
* ``links[i]``: ``[id, origin_id, origin_slot, target_id, target_slot, type]``.
* Widgets are laid out in input order (required, then optional). An INT with
  ``control_after_generate`` (or named seed/noise_seed) is followed by its control value
  ("fixed"/"increment"/"decrement"/"randomize"); a combo with ``image_upload`` by the upload
  button's value ("image").
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
VIRTUAL_NODES = {"Note", "MarkdownNote"}  # frontend-only nodes, never sent to the server
CORE_OBJECT_INFO = Path(__file__).parent / "data" / "core_object_info.json"
FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft", ".json", ".png", ".jpg", ".jpeg", ".webp")


def node_info(classes: Iterable[type]) -> dict[str, dict]:
    """``/object_info`` entries for V3 node classes."""
    return {cls.GET_SCHEMA().node_id: json.loads(json.dumps(cls.GET_NODE_INFO_V1())) for cls in classes}


def core_node_info() -> dict[str, dict]:
    data = json.loads(CORE_OBJECT_INFO.read_text())
    data.pop("_comment", None)
    return data


# --- schema helpers -----------------------------------------------------------------------------


def _spec(info: dict, name: str) -> tuple[Any, dict, str]:
    for category in ("required", "optional"):
        if name in info["input"].get(category, {}):
            spec = info["input"][category][name]
            return spec[0], (spec[1] if len(spec) > 1 else {}), category
    raise KeyError(name)


def _is_widget(io_type: Any, options: dict) -> bool:
    return (isinstance(io_type, list) or io_type in WIDGET_TYPES) and not options.get("forceInput")


def _combo_options(io_type: Any, options: dict) -> list | None:
    if isinstance(io_type, list):
        return io_type
    if io_type == "COMBO":
        return options.get("options", [])
    return None


def widget_layout(info: dict) -> list[tuple[str, str]]:
    """(input name, kind) for each ``widgets_values`` slot; kind is value, control or upload."""
    layout = []
    for category in ("required", "optional"):
        for name in info["input_order"].get(category, []):
            io_type, options, _ = _spec(info, name)
            if not _is_widget(io_type, options):
                continue
            layout.append((name, "value"))
            if options.get("control_after_generate") or (io_type == "INT" and name in ("seed", "noise_seed")):
                layout.append((name, "control"))
            if options.get("image_upload"):
                layout.append((name, "upload"))
    return layout


def types_match(received: str, expected: Any) -> bool:
    """ComfyUI's link check: equal, '*' on either side, or overlapping comma-separated sets."""
    if isinstance(expected, list):
        expected = "COMBO"
    if received == expected or "*" in (received, expected):
        return True
    return bool({t.strip() for t in received.split(",")} & {t.strip() for t in str(expected).split(",")})


# --- checks -------------------------------------------------------------------------------------


def check_widget_value(io_type: Any, options: dict, value: Any, file_input: bool) -> str | None:
    """Why ``value`` does not fit the widget, or None."""
    combo = _combo_options(io_type, options)
    if combo is not None:
        if file_input and value not in combo:  # a file the user puts in place (the list is machine-specific)
            return None if isinstance(value, str) and value.lower().endswith(FILE_SUFFIXES) else f"{value!r} is not a file name"
        return None if value in combo else f"{value!r} not in {combo[:12]}{'…' if len(combo) > 12 else ''}"
    if io_type == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{value!r} is not an integer"
    elif io_type == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{value!r} is not a number"
    elif io_type == "STRING":
        return None if isinstance(value, str) else f"{value!r} is not a string"
    elif io_type == "BOOLEAN":
        return None if isinstance(value, bool) else f"{value!r} is not a boolean"
    if "min" in options and value < options["min"]:
        return f"{value} is below min {options['min']}"
    if "max" in options and value > options["max"]:
        return f"{value} is above max {options['max']}"
    return None


def check_ui_workflow(workflow: dict, object_info: dict[str, dict],
                      file_inputs: Iterable[tuple[str, str]] = ()) -> list[str]:
    """Every problem found in a UI-format workflow; empty when it would load and validate.

    ``file_inputs``: (class_type, input) pairs whose combo lists files of the user's machine; their
    values may be any file name, not only members of the (machine-specific) list.
    """
    file_inputs = set(file_inputs)
    problems: list[str] = []
    if workflow.get("version") != 0.4:
        problems.append(f"version is {workflow.get('version')!r}, expected 0.4")
    nodes = {n["id"]: n for n in workflow.get("nodes", [])}
    links = {link[0]: link for link in workflow.get("links", [])}
    if nodes and workflow.get("last_node_id", -1) < max(nodes):
        problems.append("last_node_id is smaller than a node id")
    if links and workflow.get("last_link_id", -1) < max(links):
        problems.append("last_link_id is smaller than a link id")

    for node in nodes.values():
        where = f"node {node['id']} ({node['type']})"
        if node["type"] in VIRTUAL_NODES:
            continue
        info = object_info.get(node["type"])
        if info is None:
            problems.append(f"{where}: unknown node type")
            continue
        if node.get("mode", 0) != 0:
            problems.append(f"{where}: mode {node.get('mode')} (muted/bypassed) is not supported in examples")
        layout = widget_layout(info)
        values = node.get("widgets_values", [])
        if len(values) != len(layout):
            problems.append(f"{where}: {len(values)} widgets_values for {len(layout)} widgets {layout}")
        for (name, kind), value in zip(layout, values):
            if kind == "control":
                if value not in CONTROL_VALUES:
                    problems.append(f"{where}: control value of {name} is {value!r}, expected one of {CONTROL_VALUES}")
                continue
            if kind == "upload":
                continue
            io_type, options, _ = _spec(info, name)
            error = check_widget_value(io_type, options, value, (node["type"], name) in file_inputs)
            if error:
                problems.append(f"{where}: widget {name}: {error}")
        socket_names = {i["name"] for i in node.get("inputs", [])}
        for slot in node.get("inputs", []):
            try:
                io_type, options, _ = _spec(info, slot["name"])
            except KeyError:
                problems.append(f"{where}: input {slot['name']!r} is not an input of this node")
                continue
            if _is_widget(io_type, options) and slot.get("widget", {}).get("name") != slot["name"] and slot.get("link") is not None:
                problems.append(f"{where}: widget input {slot['name']!r} is linked without a 'widget' entry")
            if slot.get("link") is not None and slot["link"] not in links:
                problems.append(f"{where}: input {slot['name']!r} refers to missing link {slot['link']}")
        for category in ("required",):
            for name in info["input_order"].get(category, []):
                io_type, options, _ = _spec(info, name)
                if _is_widget(io_type, options):
                    continue
                slot = next((i for i in node.get("inputs", []) if i["name"] == name), None)
                if slot is None or slot.get("link") is None:
                    problems.append(f"{where}: required input {name!r} ({io_type}) is not connected")
        for name in socket_names - {i for c in ("required", "optional") for i in info["input_order"].get(c, [])}:
            problems.append(f"{where}: unknown input {name!r}")
        # Newer ComfyUI versions append outputs (SaveImage and PreviewImage gained IMAGE in 0.26); a
        # workflow saved before lacks them and still loads and runs, so saved outputs must be a prefix.
        outputs = [o["type"] for o in node.get("outputs", [])]
        if outputs != list(info["output"])[:len(outputs)]:
            problems.append(f"{where}: outputs {outputs} are not the first outputs of the schema's {info['output']}")

    for link_id, origin, origin_slot, target, target_slot, link_type in links.values():
        where = f"link {link_id}"
        if origin not in nodes or target not in nodes:
            problems.append(f"{where}: joins missing node(s) {origin} -> {target}")
            continue
        source, sink = nodes[origin], nodes[target]
        outs = source.get("outputs", [])
        if origin_slot >= len(outs) or link_id not in (outs[origin_slot].get("links") or []):
            problems.append(f"{where}: not listed on output {origin_slot} of node {origin}")
            continue
        ins = sink.get("inputs", [])
        if target_slot >= len(ins) or ins[target_slot].get("link") != link_id:
            problems.append(f"{where}: not the link of input {target_slot} of node {target}")
            continue
        source_info, sink_info = object_info.get(source["type"]), object_info.get(sink["type"])
        if source_info is None or sink_info is None:
            continue
        produced = source_info["output"][origin_slot]
        expected, _, _ = _spec(sink_info, ins[target_slot]["name"])
        if link_type != produced:
            problems.append(f"{where}: typed {link_type!r} but the output is {produced!r}")
        if not types_match(produced, expected):
            problems.append(f"{where}: {produced} into {sink['type']}.{ins[target_slot]['name']} ({expected})")
    return problems


# --- conversion ---------------------------------------------------------------------------------


def ui_to_api(workflow: dict, object_info: dict[str, dict]) -> dict[str, dict]:
    """The API-format prompt the frontend would queue for this workflow (virtual nodes dropped)."""
    links = {link[0]: link for link in workflow.get("links", [])}
    prompt: dict[str, dict] = {}
    for node in workflow["nodes"]:
        if node["type"] in VIRTUAL_NODES:
            continue
        info = object_info[node["type"]]
        inputs: dict[str, Any] = {}
        for (name, kind), value in zip(widget_layout(info), node.get("widgets_values", [])):
            if kind == "value":
                inputs[name] = value
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                _, origin, origin_slot, *_ = links[slot["link"]]
                inputs[slot["name"]] = [str(origin), origin_slot]
        prompt[str(node["id"])] = {
            "class_type": node["type"],
            "inputs": inputs,
            "_meta": {"title": node.get("title") or info.get("display_name") or node["type"]},
        }
    return prompt


def pack_part(prompt: dict, pack_types: Iterable[str]) -> dict[str, dict]:
    """The pack's nodes of an API prompt plus the core nodes they read from directly."""
    pack_types = set(pack_types)
    keep = {nid for nid, node in prompt.items() if node["class_type"] in pack_types}
    for nid in list(keep):
        for value in prompt[nid]["inputs"].values():
            if isinstance(value, list) and len(value) == 2:
                keep.add(str(value[0]))
    return {nid: copy.deepcopy(prompt[nid]) for nid in prompt if nid in keep}


# --- building workflows -------------------------------------------------------------------------


@dataclass
class WorkflowBuilder:
    """Builds a UI-format workflow from node schemas: widgets default to the schema's defaults."""

    object_info: dict[str, dict]
    nodes: list[dict] = field(default_factory=list)
    links: list[list] = field(default_factory=list)
    groups: list[dict] = field(default_factory=list)

    def add(self, node_type: str, pos: tuple[float, float], size: tuple[float, float] = (320, 200),
            title: str | None = None, widgets: dict[str, Any] | None = None, controls: dict[str, str] | None = None,
            properties: dict | None = None) -> int:
        info = self.object_info[node_type]
        widgets, controls = dict(widgets or {}), dict(controls or {})
        values = []
        for name, kind in widget_layout(info):
            if kind == "value":
                _, options, _ = _spec(info, name)
                default = options.get("default")
                if default is None:
                    combo = _combo_options(*_spec(info, name)[:2])
                    default = combo[0] if combo else None
                values.append(widgets.pop(name, default))
            elif kind == "control":
                values.append(controls.pop(name, "randomize"))
            else:
                values.append("image")
        if widgets or controls:
            raise KeyError(f"{node_type} has no widget(s) {sorted(widgets) + sorted(controls)}")
        sockets = []
        for category in ("required", "optional"):
            for name in info["input_order"].get(category, []):
                io_type, options, _ = _spec(info, name)
                if not _is_widget(io_type, options):
                    sockets.append({"name": name, "type": io_type, "link": None})
        node_id = len(self.nodes) + 1
        node = {
            "id": node_id, "type": node_type, "pos": list(pos), "size": list(size), "flags": {},
            "order": len(self.nodes), "mode": 0, "inputs": sockets,
            "outputs": [{"name": n, "type": t, "links": [], "slot_index": i}
                        for i, (n, t) in enumerate(zip(info["output_name"], info["output"]))],
            "properties": {"Node name for S&R": node_type, **(properties or {})},
            "widgets_values": values,
        }
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node_id

    def note(self, text: str, pos: tuple[float, float], size: tuple[float, float] = (420, 300),
             title: str = "Read me") -> int:
        node_id = len(self.nodes) + 1
        self.nodes.append({"id": node_id, "type": "MarkdownNote", "pos": list(pos), "size": list(size), "flags": {},
                           "order": len(self.nodes), "mode": 0, "inputs": [], "outputs": [], "title": title,
                           "properties": {}, "widgets_values": [text], "color": "#432", "bgcolor": "#653"})
        return node_id

    def link(self, origin: int, origin_slot: int, target: int, input_name: str) -> int:
        source, sink = self.nodes[origin - 1], self.nodes[target - 1]
        link_type = source["outputs"][origin_slot]["type"]
        slots = sink["inputs"]
        index = next((i for i, s in enumerate(slots) if s["name"] == input_name), None)
        if index is None:  # a widget turned into a socket
            io_type, _, _ = _spec(self.object_info[sink["type"]], input_name)
            slots.append({"name": input_name, "type": io_type, "widget": {"name": input_name}, "link": None})
            index = len(slots) - 1
        link_id = len(self.links) + 1
        slots[index]["link"] = link_id
        source["outputs"][origin_slot]["links"].append(link_id)
        self.links.append([link_id, origin, origin_slot, target, index, link_type])
        return link_id

    def group(self, title: str, bounding: tuple[float, float, float, float], color: str = "#3f789e") -> None:
        self.groups.append({"id": len(self.groups) + 1, "title": title, "bounding": list(bounding), "color": color,
                            "font_size": 24, "flags": {}})

    def workflow(self) -> dict:
        return {
            "last_node_id": len(self.nodes), "last_link_id": len(self.links),
            "nodes": self.nodes, "links": self.links, "groups": self.groups,
            "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}}, "version": 0.4,
        }
