"""Test stand-in for ``comfy.model_patcher.ModelPatcher`` (no weight patching, just placement).

Same constructor as ComfyUI's. Like ComfyUI's, it sets ``model.device`` when the module has no
such attribute, and moves the whole module on ``load`` / back on ``detach``. ``detach`` copies
tensors (as a move between devices would), so when ComfyUI evicts our model while another node
runs under ``torch.inference_mode()`` the weights become inference tensors, as they do on a GPU.
"""

from __future__ import annotations

import torch

from . import model_management


class ModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.size = size
        self.model = model
        if getattr(model, "device", None) is None:
            model.device = offload_device
        self.load_device = load_device
        self.offload_device = offload_device
        self.weight_inplace_update = weight_inplace_update
        self.parent = None
        self.loaded = False
        self.model_size()

    def model_size(self) -> int:
        if self.size <= 0:
            self.size = model_management.module_size(self.model)
        return self.size

    def loaded_size(self) -> int:
        return self.size if self.loaded else 0

    def current_loaded_device(self):
        return self.model.device

    def model_dtype(self):
        return next(self.model.parameters()).dtype

    def is_clone(self, other) -> bool:
        return getattr(other, "model", None) is self.model

    def clone(self) -> ModelPatcher:
        copy = ModelPatcher(self.model, self.load_device, self.offload_device, self.size, self.weight_inplace_update)
        copy.parent = self
        return copy

    def load(self, device_to=None, lowvram_model_memory=0, force_patch_weights=False, full_load=False) -> None:
        if device_to is not None:
            self.model.to(device_to)
            self.model.device = torch.device(device_to)
        self.loaded = True

    def detach(self, unpatch_all=True):
        target = torch.device(self.offload_device)
        self.model._apply(lambda t: t.to(target, copy=True))
        self.model.device = target
        self.loaded = False
        return self.model
