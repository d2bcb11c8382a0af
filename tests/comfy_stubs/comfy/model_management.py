"""Test stand-in for ``comfy.model_management``: devices, interrupts, and a model registry.

Behaviour reproduced from ComfyUI because our nodes depend on it:

* ``throw_exception_if_processing_interrupted()`` raises ``InterruptProcessingException`` once
  ``interrupt_current_processing()`` was called, and clears the flag (``POST /interrupt`` sets it).
* ``load_models_gpu([patcher, ...])`` loads ModelPatchers onto their ``load_device`` and keeps
  them in ``current_loaded_models`` so later loads can evict them; ``unload_all_models()`` /
  ``free_memory()`` detach them back to their offload device. ComfyUI does this while a
  *different* node runs, i.e. inside ``torch.inference_mode()``, so weights it moves come back
  as inference tensors; the stub copies tensors on detach to reproduce that.
* ``get_free_memory()`` reports ``FREE_MEMORY`` bytes so tests can simulate a small device.
"""

from __future__ import annotations

import threading

import torch

OOM_EXCEPTION = torch.cuda.OutOfMemoryError
FREE_MEMORY = 64 * 1024**3  # bytes the stub device pretends to have free
TORCH_DEVICE = torch.device("cpu")  # what get_torch_device() returns; tests may change it

current_loaded_models: list = []
load_calls: list = []  # (patchers, kwargs) of every load_models_gpu call, for assertions
empty_cache_calls = 0


class InterruptProcessingException(Exception):
    pass


_interrupt_lock = threading.RLock()
_interrupt = False


def interrupt_current_processing(value: bool = True) -> None:
    global _interrupt
    with _interrupt_lock:
        _interrupt = value


def processing_interrupted() -> bool:
    with _interrupt_lock:
        return _interrupt


def throw_exception_if_processing_interrupted() -> None:
    global _interrupt
    with _interrupt_lock:
        if _interrupt:
            _interrupt = False
            raise InterruptProcessingException()


def get_torch_device() -> torch.device:
    return TORCH_DEVICE


def intermediate_device() -> torch.device:
    return torch.device("cpu")


def unet_offload_device() -> torch.device:
    return torch.device("cpu")


def text_encoder_offload_device() -> torch.device:
    return torch.device("cpu")


def text_encoder_device() -> torch.device:
    return TORCH_DEVICE


def is_device_cpu(device) -> bool:
    return torch.device(device).type == "cpu"


def get_free_memory(dev=None, torch_free_too=False):
    return (FREE_MEMORY, FREE_MEMORY) if torch_free_too else FREE_MEMORY


def soft_empty_cache(force: bool = False) -> None:
    global empty_cache_calls
    empty_cache_calls += 1


def module_size(module: torch.nn.Module) -> int:
    return sum(t.nelement() * t.element_size() for t in module.state_dict().values())


def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                    force_full_load=False) -> None:
    load_calls.append((list(models), {"memory_required": memory_required, "force_full_load": force_full_load}))
    for patcher in models:
        if any(entry is patcher for entry in current_loaded_models):
            continue
        current_loaded_models[:] = [m for m in current_loaded_models if not m.is_clone(patcher)]
        patcher.load(patcher.load_device, full_load=True)
        current_loaded_models.insert(0, patcher)


def load_model_gpu(model) -> None:
    load_models_gpu([model])


def loaded_models(only_currently_used=False) -> list:
    return list(current_loaded_models)


def free_memory(memory_required, device, keep_loaded=()) -> list:
    unloaded = [m for m in current_loaded_models if m not in keep_loaded]
    for patcher in unloaded:
        patcher.detach()
    current_loaded_models[:] = [m for m in current_loaded_models if m in keep_loaded]
    return unloaded


def unload_all_models() -> None:
    free_memory(1e30, get_torch_device())


def cleanup_models_gc() -> None:
    pass


def reset_for_tests() -> None:
    """Forget loaded models and counters, clear the interrupt flag, restore the defaults."""
    global FREE_MEMORY, TORCH_DEVICE, empty_cache_calls
    current_loaded_models.clear()
    load_calls.clear()
    empty_cache_calls = 0
    FREE_MEMORY = 64 * 1024**3
    TORCH_DEVICE = torch.device("cpu")
    interrupt_current_processing(False)
