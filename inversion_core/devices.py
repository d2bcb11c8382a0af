"""Checking a requested torch device before any work is done on it.

torch accepts ``torch.device("cuda:1")`` on any machine and only fails on first use, deep inside
model loading, with a message that does not say which setting to change. Every command checks its
``--device`` here first, so a missing device is one line naming it, the devices this machine has
and the flag to change.
"""

from __future__ import annotations

import torch


def available_devices() -> list[torch.device]:
    """The devices this process can use: the CPU, each visible CUDA GPU, and Apple's MPS."""
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices += [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append(torch.device("mps", 0))
    return devices


def _is_available(device: torch.device, available: list[torch.device]) -> bool:
    """'cuda' (no index) means any CUDA GPU; 'cuda:1' that exact one; the CPU is always there."""
    if device.type == "cpu":
        return True
    return any(d.type == device.type and device.index in (None, d.index) for d in available)


def check_device(requested: str | torch.device) -> torch.device:
    """``requested`` as a torch.device if this machine has it, else a ValueError saying what it has."""
    available = available_devices()
    listing = ", ".join(str(d) for d in available)
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{str(requested)!r} is not a torch device (this machine has: {listing}); "
                         f"pass one of those with --device") from exc
    if _is_available(device, available):
        return device
    if device.type == "cuda" and not torch.cuda.is_available():
        reason = "no CUDA GPU is visible (no driver, a CPU-only torch, or CUDA_VISIBLE_DEVICES hides them)"
    elif any(d.type == device.type for d in available):
        reason = f"there is no {device.type} device {device.index}"
    else:
        reason = f"this machine has no {device.type} device"
    raise ValueError(f"device {str(requested)!r} was requested but {reason}; this machine has: {listing}. "
                     f"Pass one of those with --device (e.g. --device {available[-1]}).")
