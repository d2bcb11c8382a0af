"""Shared helpers for the frozen config dataclasses: dict round-trips that reject unknown keys.

Every config (INR, schedule, augmentation, run) is a frozen dataclass saved as JSON next to the
weights it describes; loading one written by another version must fail loudly on a key we do
not know rather than silently drop it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

C = TypeVar("C")


def config_from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Build ``cls`` from ``data``, raising one ValueError that lists every unknown key."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} expects a JSON object (dict), got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"{cls.__name__} got unknown key(s) {unknown}; valid keys are {sorted(known)}. "
            "The file was probably written by a different version of inversion_core."
        )
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            value = data[f.name]
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-JSON dict of a config dataclass (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def check_config(name: str, problems: list[str]) -> None:
    """Raise once with every problem found while validating config ``name``."""
    if problems:
        raise ValueError(f"invalid {name}: " + "; ".join(problems))
