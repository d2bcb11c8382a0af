"""Gradient work that survives ComfyUI's ``torch.inference_mode()``.

ComfyUI runs every node under inference mode. Tensors created there (model weights from a loader
node, images from upstream nodes) cannot be saved for backward, so gradient code enables autograd
locally and swaps such tensors for normal copies once.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def autograd_enabled() -> Iterator[None]:
    """Gradients on, even inside torch.inference_mode()."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def make_autograd_ready(module: torch.nn.Module) -> None:
    """Replace inference-mode parameters and buffers of ``module`` by normal copies, in place.

    A no-op (and cheap) when the module was built outside inference mode.
    """
    with torch.inference_mode(False):
        for sub in module.modules():
            for name, param in list(sub._parameters.items()):
                if param is not None and param.is_inference():
                    sub._parameters[name] = torch.nn.Parameter(param.clone(), requires_grad=param.requires_grad)
            for name, buffer in list(sub._buffers.items()):
                if buffer is not None and buffer.is_inference():
                    sub._buffers[name] = buffer.clone()
