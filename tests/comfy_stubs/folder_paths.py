"""Test stand-in for ComfyUI's ``folder_paths``: model folders keyed by name, and file lookup.

Same functions and data layout as ComfyUI's (``folder_names_and_paths[key] = ([dirs], {exts})``),
rooted in a directory chosen by ``reset_for_tests(base)`` (a pytest tmp dir) instead of the
ComfyUI checkout. ``add_model_folder_path`` behaves like ComfyUI's: a new key gets an empty
extension set, an existing key keeps its paths and gains the new one (first when is_default).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

supported_pt_extensions: set[str] = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}

folder_names_and_paths: dict[str, tuple[list[str], set[str]]] = {}
base_path = ""
models_dir = ""
output_directory = ""
temp_directory = ""
input_directory = ""


def reset_for_tests(base: str | None = None) -> None:
    """Point every folder at ``base`` (created if needed) and forget registered model folders."""
    global base_path, models_dir, output_directory, temp_directory, input_directory
    if base is None:  # the import-time default: a scratch root that goes away with the process
        base = tempfile.mkdtemp(prefix="comfy_stub_")
        atexit.register(shutil.rmtree, base, ignore_errors=True)
    base_path = base
    models_dir = os.path.join(base_path, "models")
    output_directory = os.path.join(base_path, "output")
    temp_directory = os.path.join(base_path, "temp")
    input_directory = os.path.join(base_path, "input")
    for path in (models_dir, output_directory, temp_directory, input_directory):
        os.makedirs(path, exist_ok=True)
    folder_names_and_paths.clear()
    for key in ("checkpoints", "vae", "loras", "clip_vision", "upscale_models"):
        folder_names_and_paths[key] = ([os.path.join(models_dir, key)], set(supported_pt_extensions))
    folder_names_and_paths["configs"] = ([os.path.join(models_dir, "configs")], {".yaml"})


def map_legacy(folder_name: str) -> str:
    return {"unet": "diffusion_models", "clip": "text_encoders"}.get(folder_name, folder_name)


def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
    folder_name = map_legacy(folder_name)
    if folder_name in folder_names_and_paths:
        paths, _ = folder_names_and_paths[folder_name]
        if full_folder_path in paths:
            if is_default and paths[0] != full_folder_path:
                paths.remove(full_folder_path)
                paths.insert(0, full_folder_path)
        elif is_default:
            paths.insert(0, full_folder_path)
        else:
            paths.append(full_folder_path)
    else:
        folder_names_and_paths[folder_name] = ([full_folder_path], set())


def get_folder_paths(folder_name: str) -> list[str]:
    return folder_names_and_paths[map_legacy(folder_name)][0][:]


def filter_files_extensions(files, extensions) -> list[str]:
    return sorted(f for f in files if os.path.splitext(f)[-1].lower() in extensions or len(extensions) == 0)


def get_filename_list(folder_name: str) -> list[str]:
    """Files (relative paths, '/'-separated on POSIX) under every folder of the key."""
    folders, extensions = folder_names_and_paths[map_legacy(folder_name)]
    found = set()
    for root in folders:
        if not os.path.isdir(root):
            continue
        for dirpath, subdirs, filenames in os.walk(root, followlinks=True):
            subdirs[:] = [d for d in subdirs if d != ".git"]
            found.update(os.path.relpath(os.path.join(dirpath, f), root) for f in filenames)
    return sorted(filter_files_extensions(found, extensions))


def get_full_path(folder_name: str, filename: str) -> str | None:
    folder_name = map_legacy(folder_name)
    if folder_name not in folder_names_and_paths:
        return None
    filename = os.path.relpath(os.path.join("/", filename), "/")
    for root in folder_names_and_paths[folder_name][0]:
        candidate = os.path.join(root, filename)
        if os.path.isfile(candidate):
            return candidate
    return None


def get_full_path_or_raise(folder_name: str, filename: str) -> str:
    path = get_full_path(folder_name, filename)
    if path is None:
        raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' not found.")
    return path


def get_input_directory() -> str:
    return input_directory


def get_output_directory() -> str:
    return output_directory


def get_temp_directory() -> str:
    return temp_directory


reset_for_tests()
