"""Test stand-in for ``comfy_api.latest.io``: V3 schema objects and the ComfyNode base class.

Reproduces, in our own words, the parts of ComfyUI's V3 API (0.3.6x) that a node pack touches:

* Input/Output classes accept the same keyword arguments as ComfyUI's (an unknown keyword is a
  ``TypeError`` here as it is there), and ``as_dict()`` emits the same keys the server publishes
  in ``/object_info`` (``tooltip``, ``min``, ``control_after_generate``, ``options`` ...).
* ``Schema`` is a dataclass with ComfyUI's fields; ``validate()`` rejects duplicate ids.
* ``ComfyNode.GET_SCHEMA()/INPUT_TYPES()/GET_NODE_INFO_V1()`` give the V1 view the server and the
  frontend use, so workflow checks run against the same description a real server would send.
* ``NodeOutput`` carries positional results plus optional ``ui``.

Newer ComfyUI releases add ``Schema.search_aliases``; the stub includes it so both spellings of a
pack's schema helper can be exercised.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch


def _pruned(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


class FolderType(str, Enum):
    input = "input"
    output = "output"
    temp = "temp"


class UploadType(str, Enum):
    image = "image_upload"
    audio = "audio_upload"
    video = "video_upload"
    model = "file_upload"


class NumberDisplay(str, Enum):
    number = "number"
    slider = "slider"


class Hidden(str, Enum):
    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"
    auth_token_comfy_org = "AUTH_TOKEN_COMFY_ORG"
    api_key_comfy_org = "API_KEY_COMFY_ORG"


# --- inputs and outputs --------------------------------------------------------------------


class _IOBase:
    Parent: type | None = None

    @property
    def io_type(self) -> str:
        return self.Parent.io_type


class Input(_IOBase):
    """A socket input (no widget)."""

    def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None,
                 lazy: bool = None, extra_dict=None, raw_link: bool = None):
        self.id = id
        self.display_name = display_name
        self.optional = optional
        self.tooltip = tooltip
        self.lazy = lazy
        self.extra_dict = extra_dict or {}
        self.raw_link = raw_link

    def as_dict(self) -> dict:
        return _pruned({
            "display_name": self.display_name,
            "optional": self.optional,
            "tooltip": self.tooltip,
            "lazy": self.lazy,
            "rawLink": self.raw_link,
        }) | _pruned(self.extra_dict)

    def get_io_type(self) -> str:
        return self.io_type


class WidgetInput(Input):
    """An input that the frontend shows as a widget (and may turn into a socket)."""

    def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None,
                 lazy: bool = None, default: Any = None, socketless: bool = None, widget_type: str = None,
                 force_input: bool = None, extra_dict=None, raw_link: bool = None):
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict, raw_link)
        self.default = default
        self.socketless = socketless
        self.widget_type = widget_type
        self.force_input = force_input

    def as_dict(self) -> dict:
        return super().as_dict() | _pruned({
            "default": self.default,
            "socketless": self.socketless,
            "widgetType": self.widget_type,
            "forceInput": self.force_input,
        })


class Output(_IOBase):
    def __init__(self, id: str = None, display_name: str = None, tooltip: str = None, is_output_list=False):
        self.id = id
        self.display_name = display_name
        self.tooltip = tooltip
        self.is_output_list = is_output_list

    def as_dict(self) -> dict:
        return _pruned({
            "display_name": self.display_name,
            "tooltip": self.tooltip,
            "is_output_list": self.is_output_list,
        })

    def get_io_type(self) -> str:
        return self.io_type


class ComfyTypeI:
    io_type: str = None
    Type = Any

    class Input(Input):
        pass


class ComfyTypeIO(ComfyTypeI):
    class Output(Output):
        pass


def comfytype(io_type: str):
    """Bind ``io_type`` to a type class and give it private Input/Output subclasses."""

    def decorate(cls):
        cls.io_type = io_type
        for name in ("Input", "Output"):
            inner = getattr(cls, name, None)
            if inner is not None:
                clone = type(inner.__name__, (inner,), {"Parent": cls, "__module__": cls.__module__})
                setattr(cls, name, clone)
        return cls

    return decorate


def Custom(io_type: str) -> type[ComfyTypeIO]:
    """A socket type of the pack's own (e.g. ``Custom("INVERSION_CLIP")``)."""

    @comfytype(io_type)
    class CustomType(ComfyTypeIO):
        pass

    return CustomType


@comfytype("BOOLEAN")
class Boolean(ComfyTypeIO):
    Type = bool

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None,
                     lazy: bool = None, default: bool = None, label_on: str = None, label_off: str = None,
                     socketless: bool = None, force_input: bool = None, extra_dict=None, raw_link: bool = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input,
                             extra_dict, raw_link)
            self.label_on = label_on
            self.label_off = label_off

        def as_dict(self) -> dict:
            return super().as_dict() | _pruned({"label_on": self.label_on, "label_off": self.label_off})


@comfytype("INT")
class Int(ComfyTypeIO):
    Type = int

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None,
                     lazy: bool = None, default: int = None, min: int = None, max: int = None, step: int = None,
                     control_after_generate: bool = None, display_mode: NumberDisplay = None,
                     socketless: bool = None, force_input: bool = None, extra_dict=None, raw_link: bool = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input,
                             extra_dict, raw_link)
            self.min, self.max, self.step = min, max, step
            self.control_after_generate = control_after_generate
            self.display_mode = display_mode

        def as_dict(self) -> dict:
            return super().as_dict() | _pruned({
                "min": self.min,
                "max": self.max,
                "step": self.step,
                "control_after_generate": self.control_after_generate,
                "display": self.display_mode.value if self.display_mode else None,
            })


@comfytype("FLOAT")
class Float(ComfyTypeIO):
    Type = float

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None,
                     lazy: bool = None, default: float = None, min: float = None, max: float = None,
                     step: float = None, round: float = None, display_mode: NumberDisplay = None,
                     socketless: bool = None, force_input: bool = None, extra_dict=None, raw_link: bool = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input,
                             extra_dict, raw_link)
            self.min, self.max, self.step, self.round = min, max, step, round
            self.display_mode = display_mode

        def as_dict(self) -> dict:
            return super().as_dict() | _pruned({
                "min": self.min,
                "max": self.max,
                "step": self.step,
                "round": self.round,
                "display": self.display_mode.value if self.display_mode else None,
            })


@comfytype("STRING")
class String(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None,
                     lazy: bool = None, multiline=False, placeholder: str = None, default: str = None,
                     dynamic_prompts: bool = None, socketless: bool = None, force_input: bool = None,
                     extra_dict=None, raw_link: bool = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input,
                             extra_dict, raw_link)
            self.multiline = multiline
            self.placeholder = placeholder
            self.dynamic_prompts = dynamic_prompts

        def as_dict(self) -> dict:
            return super().as_dict() | _pruned({
                "multiline": self.multiline,
                "placeholder": self.placeholder,
                "dynamicPrompts": self.dynamic_prompts,
            })


@comfytype("COMBO")
class Combo(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        def __init__(self, id: str, options: list | type[Enum] = None, display_name: str = None, optional=False,
                     tooltip: str = None, lazy: bool = None, default: Any = None,
                     control_after_generate: bool = None, upload: UploadType = None,
                     image_folder: FolderType = None, remote=None, socketless: bool = None,
                     extra_dict=None, raw_link: bool = None):
            if isinstance(options, type) and issubclass(options, Enum):
                options = [member.value for member in options]
            if isinstance(default, Enum):
                default = default.value
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, None,
                             extra_dict, raw_link)
            self.options = options
            self.multiselect = False
            self.control_after_generate = control_after_generate
            self.upload = upload
            self.image_folder = image_folder
            self.remote = remote

        def as_dict(self) -> dict:
            return super().as_dict() | _pruned({
                "multiselect": self.multiselect,
                "options": self.options,
                "control_after_generate": self.control_after_generate,
                **({self.upload.value: True} if self.upload is not None else {}),
                "image_folder": self.image_folder.value if self.image_folder else None,
            })


def _socket_type(io_type: str, type_hint: Any = Any):
    @comfytype(io_type)
    class SocketType(ComfyTypeIO):
        Type = type_hint

    SocketType.__name__ = io_type.title().replace("_", "")
    return SocketType


Image = _socket_type("IMAGE", torch.Tensor)
Mask = _socket_type("MASK", torch.Tensor)
Latent = _socket_type("LATENT", dict)
Conditioning = _socket_type("CONDITIONING", list)
Model = _socket_type("MODEL")
Clip = _socket_type("CLIP")
Vae = _socket_type("VAE")
ClipVision = _socket_type("CLIP_VISION")
Sigmas = _socket_type("SIGMAS", torch.Tensor)


# --- schema ----------------------------------------------------------------------------------


@dataclass
class Schema:
    """A V3 node's definition (same fields as ComfyUI's ``io.Schema``)."""

    node_id: str
    display_name: str = None
    category: str = "sd"
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    hidden: list = field(default_factory=list)
    description: str = ""
    search_aliases: list = field(default_factory=list)
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False
    enable_expand: bool = False

    def validate(self) -> None:
        """Raise once listing every duplicate input/output id, as ComfyUI does."""
        inputs = [i.id for i in self.inputs or []]
        outputs = [o.id for o in self.outputs or []]
        issues = []
        if len(set(inputs)) != len(inputs):
            issues.append(f"Input ids must be unique, but {[k for k, n in Counter(inputs).items() if n > 1]} are not.")
        if len(set(outputs)) != len(outputs):
            issues.append(f"Output ids must be unique, but {[k for k, n in Counter(outputs).items() if n > 1]} are not.")
        both = set(inputs) & set(outputs)
        if both:
            issues.append(f"Ids must be unique between inputs and outputs, but {both} are not.")
        if issues:
            raise ValueError("\n".join(issues))

    def finalize(self) -> None:
        self.inputs = self.inputs or []
        self.outputs = self.outputs or []
        self.hidden = self.hidden or []
        if self.is_output_node:
            for h in (Hidden.prompt, Hidden.extra_pnginfo):
                if h not in self.hidden:
                    self.hidden.append(h)
        for index, output in enumerate(self.outputs):
            if output.id is None:
                output.id = f"_{index}_{output.io_type}_"

    def v1_inputs(self) -> dict:
        result: dict = {"required": {}}
        for item in self.inputs:
            options = item.as_dict()
            options.pop("optional", None)
            result.setdefault("optional" if item.optional else "required", {})[item.id] = (item.get_io_type(), options)
        if self.hidden:
            result["hidden"] = {h.name: (h.value,) for h in self.hidden}
        return result


# --- nodes -----------------------------------------------------------------------------------


class ComfyNode:
    """Base class of V3 nodes: classmethods only, executed by ComfyUI on a locked class clone.

    A plain class (no ABCMeta), as in ComfyUI, so the locked clone's metaclass can derive from type.
    """

    RELATIVE_PYTHON_MODULE = None
    SCHEMA = None
    hidden = None

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs) -> NodeOutput:
        raise NotImplementedError

    @classmethod
    def validate_inputs(cls, **kwargs) -> bool | str:
        raise NotImplementedError

    @classmethod
    def fingerprint_inputs(cls, **kwargs) -> Any:
        raise NotImplementedError

    @classmethod
    def check_lazy_status(cls, **kwargs) -> list[str]:
        return [name for name, value in kwargs.items() if value is None]

    @classmethod
    def GET_BASE_CLASS(cls):
        return ComfyNode

    @classmethod
    def VALIDATE_CLASS(cls) -> None:
        for name in ("define_schema", "execute"):
            if overridden(cls, name) is None:
                raise Exception(f"No {name} function was defined for node class {cls.__name__}.")

    @classmethod
    def FINALIZE_SCHEMA(cls) -> Schema:
        schema = cls.define_schema()
        schema.finalize()
        return schema

    @classmethod
    def GET_SCHEMA(cls) -> Schema:
        cls.VALIDATE_CLASS()
        schema = cls.FINALIZE_SCHEMA()
        schema.validate()
        cls.SCHEMA = schema
        return schema

    @classmethod
    def INPUT_TYPES(cls, include_hidden=True, return_schema=False):
        schema = cls.FINALIZE_SCHEMA()
        inputs = schema.v1_inputs()
        if not include_hidden:
            inputs.pop("hidden", None)
        return (inputs, schema) if return_schema else inputs

    @classmethod
    def GET_NODE_INFO_V1(cls) -> dict:
        """The node's entry in ``/object_info`` (V1 layout, as ComfyUI serves V3 nodes)."""
        schema = cls.GET_SCHEMA()
        inputs = schema.v1_inputs()
        return {
            "input": inputs,
            "input_order": {key: list(value) for key, value in inputs.items()},
            "output": [o.io_type for o in schema.outputs],
            "output_is_list": [o.is_output_list for o in schema.outputs],
            "output_name": [o.display_name or o.io_type for o in schema.outputs],
            "output_tooltips": [o.tooltip for o in schema.outputs],
            "name": schema.node_id,
            "display_name": schema.display_name,
            "description": schema.description,
            "python_module": cls.RELATIVE_PYTHON_MODULE or "custom_nodes",
            "category": schema.category,
            "output_node": schema.is_output_node,
            "deprecated": schema.is_deprecated,
            "experimental": schema.is_experimental,
            "api_node": schema.is_api_node,
        }

    @classmethod
    def RETURN_TYPES(cls):  # mirrors ComfyUI's attribute name
        return [o.io_type for o in cls.GET_SCHEMA().outputs]


def overridden(cls: type, name: str):
    """The subclass's own ``name`` classmethod, or None when only ComfyNode's placeholder exists."""
    base = getattr(ComfyNode, name).__func__
    for klass in cls.mro():
        if klass is ComfyNode:
            return None
        if name in klass.__dict__:
            func = getattr(cls, name).__func__
            return getattr(cls, name) if func is not base else None
    return None


class NodeOutput:
    """A node's results (positional, in output order) and optional UI payload."""

    def __init__(self, *args: Any, ui: Any = None, expand: dict = None, block_execution: str = None):
        self.args = args
        self.ui = ui
        self.expand = expand
        self.block_execution = block_execution

    @property
    def result(self):
        return self.args if self.args else None

    def __getitem__(self, index):
        return self.args[index]


__all__ = [
    "Boolean",
    "Clip",
    "ClipVision",
    "Combo",
    "ComfyNode",
    "ComfyTypeI",
    "ComfyTypeIO",
    "Conditioning",
    "Custom",
    "Float",
    "FolderType",
    "Hidden",
    "Image",
    "Input",
    "Int",
    "Latent",
    "Mask",
    "Model",
    "NodeOutput",
    "NumberDisplay",
    "Output",
    "Schema",
    "Sigmas",
    "String",
    "UploadType",
    "Vae",
    "WidgetInput",
    "comfytype",
]
