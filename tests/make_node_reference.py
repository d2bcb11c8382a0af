"""Print the node reference (one Markdown section per node) from the node schemas:
``python tests/make_node_reference.py [node_id ...]``.

The "Nodes" section of NODES.md is this output, so it always matches the tooltips,
defaults and ranges users see. Like ComfyUI, it needs no models: file lists come from an empty
stub models folder (file inputs then show no choices).
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
MAX_DEFAULT = 30  # characters of a string default shown before "…"
MAX_SEED = 0xFFFFFFFFFFFFFFFF


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _default(options: dict) -> str:
    if "default" not in options:
        return "—"
    value = options["default"]
    text = str(value)
    return f"`{text[:MAX_DEFAULT] + '…' if len(text) > MAX_DEFAULT else text}`"


def _range(io_type: str, options: dict) -> str:
    if "options" in options:
        return ", ".join(f"`{o}`" for o in options["options"])
    if "min" in options and "max" in options:
        high = "2⁶⁴−1" if options["max"] == MAX_SEED else options["max"]
        return f"{options['min']} – {high}"
    return ""


def node_section(cls) -> str:
    schema = cls.GET_SCHEMA()
    lines = [f"### {schema.display_name} (`{schema.node_id}`)", "", f"*Category:* {schema.category}"
             + (" · *experimental*" if schema.is_experimental else ""), "", schema.description, "",
             "| input | type | default | range / choices | meaning |", "|---|---|---|---|---|"]
    for item in schema.inputs:
        options = item.as_dict()
        io_type = item.get_io_type()
        kind = "choice" if io_type == "COMBO" else io_type
        name = f"`{item.id}`" + (" (optional)" if item.optional else "")
        default = "—" if io_type not in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO") else _default(options)
        lines.append(f"| {name} | {kind} | {default} | {_range(io_type, options)} | {_cell(item.tooltip)} |")
    lines += ["", "| output | type | meaning |", "|---|---|---|"]
    for item in schema.outputs:
        lines.append(f"| `{item.display_name}` | {item.get_io_type()} | {_cell(item.tooltip)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import tempfile

    import node_harness

    with tempfile.TemporaryDirectory() as base:
        node_harness.reset_comfy(base)
        classes = node_harness.node_classes()
        for node_id in argv or list(classes):
            print(node_section(classes[node_id]))


if __name__ == "__main__":
    main(sys.argv[1:])
