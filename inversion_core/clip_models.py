"""Loading a frozen open_clip model pair (image tower + text tower) for inversion.

One entry point, :func:`load_clip`, resolves an architecture (an open_clip zoo name, a model
config JSON, an ``open_clip_config.json`` folder or an ``hf-hub:`` id) and weights (a local
``.safetensors``/``.bin``/``.pt``, an open_clip pretrained tag, or none for random weights) into a
:class:`ClipBundle`. Weight files are never unpickled: safetensors, or ``torch.load`` with
``weights_only=True``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ._grad import make_autograd_ready
from ._paths import existing_file

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
FOLDER_CONFIG_NAME = "open_clip_config.json"  # open_clip's Hugging Face layout: one folder per model
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(eq=False)
class ClipBundle:
    """A frozen CLIP in eval mode plus everything inversion needs to feed it.

    ``identity`` (architecture + weights fingerprint) is what banks and projections record, so
    a file built with one CLIP is never silently used with another.
    """

    model: torch.nn.Module
    tokenizer: Callable[..., torch.Tensor]
    architecture: str
    identity: str
    image_size: int
    embed_dim: int
    mean: torch.Tensor  # (1, 3, 1, 1)
    std: torch.Tensor  # (1, 3, 1, 1)
    model_config: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def to(self, device: str | torch.device) -> "ClipBundle":
        """Move the model and constants in place (used by ComfyUI's model management)."""
        self.model.to(device)
        self.mean = self.mean.to(device)
        self.std = self.std.to(device)
        return self

    def make_autograd_ready(self) -> None:
        """Swap inference-mode weights and constants for normal tensors (see ``_grad``); cheap if none."""
        make_autograd_ready(self.model)
        with torch.inference_mode(False):
            if self.mean.is_inference() or self.std.is_inference():
                self.mean, self.std = self.mean.clone(), self.std.clone()

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1], any size -> (B, D) unit-norm, differentiable w.r.t. images."""
        if images.shape[-2:] != (self.image_size, self.image_size):
            images = F.interpolate(
                images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True
            )
        x = (images - self.mean) / self.std
        features = self.model.encode_image(x.to(self.dtype))
        return F.normalize(features.float(), dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Prompts -> (N, D) unit-norm embeddings. A prompt longer than the text tower's context is
        cut there by the tokenizer, silently; a warning says so (prompts written for diffusion
        models often are that long)."""
        if isinstance(texts, str):
            texts = [texts]
        self._warn_if_cut(texts)
        tokens = self.tokenizer(list(texts)).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    def _warn_if_cut(self, texts: Sequence[str]) -> None:
        encode, context = getattr(self.tokenizer, "encode", None), getattr(self.tokenizer, "context_length", None)
        if encode is None or context is None:  # not open_clip's BPE tokenizer: its length is not ours to read
            return
        if any(len(encode(text)) + 2 > context for text in texts):  # + start and end tokens
            warnings.warn(f"a prompt is longer than this CLIP's {context - 2} tokens; CLIP reads only its start "
                          "(put what matters first)", UserWarning, stacklevel=3)


def list_architectures() -> list[str]:
    """open_clip's built-in architecture names (any of them is a valid ``architecture``)."""
    import open_clip

    return open_clip.list_models()


def list_pretrained(architecture: str | None = None) -> list[str]:
    """open_clip pretrained tags, for one architecture or as ``arch:tag`` for all."""
    import open_clip

    if architecture is None:
        return [f"{a}:{t}" for a, t in open_clip.list_pretrained()]
    return open_clip.list_pretrained_tags_by_model(architecture)


def load_clip(
    architecture: str | os.PathLike | None = None,
    weights: str | os.PathLike | None = None,
    *,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    seed: int = 0,
) -> ClipBundle:
    """Load a frozen CLIP for inversion.

    architecture: an open_clip name (``"ViT-B-32"``), a model-config ``.json`` (bare
        ``model_cfg`` or open_clip's ``{"model_cfg", "preprocess_cfg"}`` layout), a folder with
        ``open_clip_config.json``, or ``"hf-hub:org/repo"`` (online only). May be omitted when
        ``weights`` is a file whose config :func:`config_for_weights` finds.
    weights: a local weights file, an open_clip pretrained tag (online only), or None for
        random weights seeded by ``seed`` (useful for tests and speed checks).
    precision: "fp32" (default), "fp16" or "bf16" weights; fp16/bf16 only pay off on a GPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    architecture = None if architecture is None else str(architecture)
    weights = None if weights is None else str(weights)

    if architecture is not None and architecture.startswith("hf-hub:"):
        return _load_from_hub(architecture, device, precision)

    name, model_cfg, preprocess_cfg, weights = _resolve_config(architecture, weights)
    builtin = model_cfg is None
    if builtin and weights is not None and not _looks_like_path(weights):
        return _load_pretrained_tag(name, weights, device, precision)

    import open_clip

    path = None if weights is None else _weights_file(weights, list_pretrained(name) if builtin else [])
    if builtin:
        model_cfg = open_clip.get_model_config(name)
    model = _build_model(name, model_cfg, seed)
    if path is None:
        fingerprint = f"random-seed{seed}"
    else:
        _load_weights(model, path, name)
        fingerprint = _file_fingerprint(path)
    tokenizer = _make_tokenizer(name, model_cfg, builtin)
    mean = preprocess_cfg.get("mean") or model_cfg["vision_cfg"].get("image_mean") or _OPENAI_MEAN
    std = preprocess_cfg.get("std") or model_cfg["vision_cfg"].get("image_std") or _OPENAI_STD
    return _bundle(model, tokenizer, name, f"{name}@{fingerprint}", mean, std, model_cfg, device, precision)


# --- resolution of names and files ------------------------------------------------------------


def _looks_like_path(value: str) -> bool:
    return os.sep in value or "/" in value or value.lower().endswith(WEIGHT_SUFFIXES) or Path(value).exists()


def _weights_file(weights: str, tags: Sequence[str]) -> Path:
    """The local weights file ``weights`` names, checked before the model is built: a missing file,
    a folder, or a model config passed as weights each get their own message. ``tags`` are the
    architecture's open_clip pretrained tags, offered as the alternative when there are any."""
    tag_hint = f", or an open_clip pretrained tag such as {tags[0]!r} when online" if tags else ""
    path = existing_file(weights, "weights file", f". Pass the path of a .safetensors/.bin/.pt file{tag_hint}.")
    if path.suffix.lower() == ".json":
        raise ValueError(
            f"{weights!r} is a JSON model config, not weights: pass it as the architecture (--model on the "
            "command line, architecture= in Python) and the weights file as weights (--weights / weights=)"
        )
    return path


def _read_config_json(path: Path) -> tuple[dict, dict]:
    """(model_cfg, preprocess_cfg) from either open_clip JSON layout."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"could not read model config {str(path)!r}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"model config {str(path)!r} holds a JSON {type(data).__name__}, not an object: "
                         "use open_clip's model config format ({\"embed_dim\", \"vision_cfg\", \"text_cfg\"})")
    model_cfg = data.get("model_cfg", data)
    if not isinstance(model_cfg, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(model_cfg):
        raise ValueError(
            f"model config {str(path)!r} must hold 'embed_dim', 'vision_cfg' and 'text_cfg' "
            "(open_clip's model config format), either at the top level or under 'model_cfg'"
        )
    return model_cfg, data.get("preprocess_cfg", {})


def config_for_weights(weights: str | os.PathLike) -> str | None:
    """The ``architecture`` that describes a local weights file, or None: its same-stem ``.json``
    (``ViT-B-32.safetensors`` + ``ViT-B-32.json``), else its folder when that holds
    ``open_clip_config.json`` (how open_clip models are laid out on the Hugging Face hub)."""
    weights = Path(weights).expanduser()
    sibling = weights.with_suffix(".json")
    if sibling.is_file():
        return str(sibling)
    folder = weights.parent
    return str(folder) if (folder / FOLDER_CONFIG_NAME).is_file() else None


def _architecture_for_weights(weights: str | None) -> str:
    """The architecture when only weights were given: the config found beside the weights file."""
    if weights is None:
        raise ValueError(
            "no CLIP architecture given: pass an open_clip name such as 'ViT-B-32' or a model-config .json "
            "(--model on the command line, architecture= in Python); random weights need one too. Or pass a "
            "weights file with its config beside it (--weights / weights=)."
        )
    if not _looks_like_path(weights):
        raise ValueError(
            f"{weights!r} is not a file here, so it would be an open_clip pretrained tag, which needs an "
            "architecture: pass one such as 'ViT-B-32' (--model / architecture=), or the path of a weights file"
        )
    _weights_file(weights, [])
    architecture = config_for_weights(weights)
    if architecture is None:
        sibling = Path(weights).expanduser().with_suffix(".json")
        raise ValueError(
            f"no architecture given and no config found for the weights (looked for {str(sibling)!r} and "
            f"{FOLDER_CONFIG_NAME!r} beside them); pass the architecture, e.g. 'ViT-B-32' or a config .json "
            "(--model ViT-B-32 on the command line, architecture='ViT-B-32' in Python), or put the model's "
            "config JSON there"
        )
    return architecture


def _resolve_config(architecture: str | None, weights: str | None) -> tuple[str, dict | None, dict, str | None]:
    """Return (name, model_cfg or None for an open_clip built-in, preprocess_cfg, weights)."""
    import open_clip

    if architecture is None:
        architecture = _architecture_for_weights(weights)

    path = Path(architecture).expanduser()
    if architecture.lower().endswith(".json") or path.is_dir():
        if path.is_dir():
            config_path = path / FOLDER_CONFIG_NAME
            if weights is None:
                found = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES)
                weights = str(found[0]) if found else None
        else:
            config_path = path
        if not config_path.is_file():
            raise FileNotFoundError(f"model config {str(config_path)!r} not found (resolved to {config_path.resolve()})")
        model_cfg, preprocess_cfg = _read_config_json(config_path)
        name = path.name if path.is_dir() else path.stem
        return name, model_cfg, preprocess_cfg, weights

    name = architecture.replace("/", "-")
    if name not in open_clip.list_models():
        close = difflib.get_close_matches(name, open_clip.list_models(), n=5, cutoff=0.5)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(
            f"unknown CLIP architecture {architecture!r}.{hint} Use an open_clip name "
            "(inversion_core.list_architectures()), a model-config .json path, or 'hf-hub:org/repo'."
        )
    return name, None, {}, weights


def _build_model(name: str, model_cfg: dict, seed: int) -> torch.nn.Module:
    """Instantiate an open_clip model from its config with seeded random weights."""
    import open_clip

    cfg = json.loads(json.dumps(model_cfg))  # deep copy, open_clip mutates its input
    text_cfg = cfg.get("text_cfg", {})
    custom_text = cfg.pop("custom_text", False) or "hf_model_name" in text_cfg
    if "hf_model_name" in text_cfg:
        text_cfg["hf_model_pretrained"] = False
    model_class = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return model_class(**cfg)
        except TypeError as exc:
            raise ValueError(f"model config for {name!r} is not a valid open_clip config: {exc}") from exc


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read weights without executing pickled code."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            checkpoint = load_file(str(path), device="cpu")
        else:
            checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt/truncated files raise many different types
        raise ValueError(
            f"could not read weights file {str(path)!r} ({type(exc).__name__}: {exc}). The file is "
            "truncated, corrupt, or a pickle holding code (only safetensors or plain tensor "
            "checkpoints are accepted); download it again or convert it to .safetensors."
        ) from exc
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise ValueError(f"weights file {str(path)!r} holds no state dict")
    if all(k.startswith("module.") for k in checkpoint):
        checkpoint = {k[len("module.") :]: v for k, v in checkpoint.items()}
    return checkpoint


def _load_weights(model: torch.nn.Module, path: Path, name: str) -> None:
    state_dict = _read_state_dict(path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    if missing or unexpected or wrong_shape:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing key(s), first {missing[:3]}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected key(s), first {unexpected[:3]}")
        if wrong_shape:
            problems.append(f"{len(wrong_shape)} shape mismatch(es), first {wrong_shape[:3]}")
        guess = _guess_architecture(state_dict)
        raise ValueError(
            f"weights {str(path)!r} do not fit architecture {name!r}: " + "; ".join(problems) + ". "
            + (f"They look like {guess}; pass that architecture instead." if guess else
               "Pick the architecture these weights were trained with.")
        )
    model.load_state_dict(state_dict, strict=True)


def _guess_architecture(state_dict: dict[str, torch.Tensor]) -> str | None:
    """Name open_clip architectures whose vision tower matches the weights' shapes."""
    import open_clip

    conv = state_dict.get("visual.conv1.weight")
    if conv is None:
        return None
    width, patch = conv.shape[0], conv.shape[-1]
    layers = len({k.split(".")[3] for k in state_dict if k.startswith("visual.transformer.resblocks.")})
    embed = state_dict.get("text_projection")
    matches = []
    for arch in open_clip.list_models():
        cfg = open_clip.get_model_config(arch) or {}
        vision = cfg.get("vision_cfg", {})
        if (vision.get("width"), vision.get("patch_size"), vision.get("layers")) == (width, patch, layers):
            if embed is None or cfg.get("embed_dim") == embed.shape[-1]:
                matches.append(arch)
    description = f"a ViT with width {width}, patch {patch}, {layers} layers"
    return f"{description} ({', '.join(matches[:4])})" if matches else description


def _file_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _make_tokenizer(name: str, model_cfg: dict, builtin: bool) -> Callable[..., torch.Tensor]:
    import open_clip

    if builtin:
        return open_clip.get_tokenizer(name)
    text_cfg = model_cfg.get("text_cfg", {})
    context_length = text_cfg.get("context_length", 77)
    if text_cfg.get("hf_tokenizer_name"):
        return open_clip.tokenizer.HFTokenizer(text_cfg["hf_tokenizer_name"], context_length=context_length)
    return open_clip.SimpleTokenizer(context_length=context_length)


def _offline_help(what: str, exc: Exception) -> ValueError:
    return ValueError(
        f"could not fetch {what} ({type(exc).__name__}: {exc}). This machine is probably offline. "
        "Download the weights elsewhere as a .safetensors file. In ComfyUI: put it in models/clip_inversion/ "
        "with its open_clip config beside it (same name, .json), press R and pick it. In Python or on the "
        "command line: pass its path as weights (--weights) and the open_clip architecture name as "
        "architecture (--model)."
    )


def _load_pretrained_tag(name: str, tag: str, device: torch.device, precision: str) -> ClipBundle:
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(name)
    if tag not in tags:
        raise ValueError(
            f"{tag!r} is neither a file nor a pretrained tag of {name!r}; its tags are {tags or 'none'}. "
            "For a local file, check the path."
        )
    try:
        model = open_clip.create_model(name, pretrained=tag, device="cpu")
    except Exception as exc:
        raise _offline_help(f"pretrained weights {name}:{tag}", exc) from exc
    pretrained_cfg = open_clip.get_pretrained_cfg(name, tag) or {}
    mean = pretrained_cfg.get("mean") or _OPENAI_MEAN
    std = pretrained_cfg.get("std") or _OPENAI_STD
    config = open_clip.get_model_config(name) or {}
    tokenizer = open_clip.get_tokenizer(name)
    return _bundle(model, tokenizer, name, f"{name}@{tag}", mean, std, config, device, precision)


def _load_from_hub(hub_id: str, device: torch.device, precision: str) -> ClipBundle:
    import open_clip

    try:
        model = open_clip.create_model(hub_id, device="cpu")
        tokenizer = open_clip.get_tokenizer(hub_id)
    except Exception as exc:
        raise _offline_help(hub_id, exc) from exc
    preprocess = getattr(model.visual, "preprocess_cfg", {}) or {}
    mean = preprocess.get("mean") or _OPENAI_MEAN
    std = preprocess.get("std") or _OPENAI_STD
    return _bundle(model, tokenizer, hub_id, hub_id, mean, std, {}, device, precision)


def _bundle(model, tokenizer, name, identity, mean, std, model_cfg, device, precision) -> ClipBundle:
    model = model.to(device=device, dtype=PRECISIONS[precision]).eval().requires_grad_(False)
    image_size = model.visual.image_size
    image_size = image_size[0] if isinstance(image_size, (tuple, list)) else int(image_size)
    embed_dim = int(model_cfg.get("embed_dim") or model.text_projection.shape[-1])
    as_tensor = lambda v: torch.tensor(v, dtype=torch.float32, device=device).view(1, 3, 1, 1)  # noqa: E731
    return ClipBundle(
        model=model,
        tokenizer=tokenizer,
        architecture=name,
        identity=identity,
        image_size=image_size,
        embed_dim=embed_dim,
        mean=as_tensor(mean),
        std=as_tensor(std),
        model_config=model_cfg,
    )
