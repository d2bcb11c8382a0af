"""The reference bank: real (image, caption) pairs embedded by one CLIP, plus their seed INRs.

All three stabilisers of CLIP^-1 (D'Orazio et al., arXiv 2505.23161) draw on
this one artifact:

* Procrustes projection needs paired text/image embeddings (``nearest_pairs``);
* the blending target needs image embeddings (``nearest_images``);
* seed initialisation needs one AWP-fitted INR per image (``nearest_seeds``).

File format (ours): one ``.safetensors`` file.

Tensors
    ``image_embeddings`` (N, D) float32, ``text_embeddings`` (N, D) float32, unit-norm rows;
    optionally ``seed.weights.<l>`` (N, in, out) / ``seed.biases.<l>`` (N, 1, out) per INR layer
    l (the :class:`~inversion_core.inr.FinerINR` layout), ``seed_psnr`` (N,), and
    ``global_rotation`` (D, D), the global Procrustes map cached at build time.
Metadata (safetensors string map)
    ``format`` = "clip-inversion-bank", ``version`` = "1", ``bank`` = JSON with ``clip_identity``,
    ``embed_dim``, ``count``, ``captions``, ``sources``, ``inr_config``, ``seed_config`` (AWP γ,
    blur σ, steps, lr, fit size), ``build`` (skip counts, timings) and ``checksums`` (CRC-32 of
    every tensor's bytes, so bit rot or truncation is caught on load).

Captions and source names live in the JSON metadata while it stays small; safetensors caps the
header at 100 MB, so above :data:`_TEXT_IN_METADATA_MAX_BYTES` they are stored as UTF-8 byte
tensors (``captions_utf8`` + ``captions_offsets``) instead, which keeps million-entry banks
saveable.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from ._config import config_from_dict, config_to_dict
from .awp import SeedConfig
from .image_io import atomic_write
from .inr import FinerINR, INRConfig
from .procrustes import fit_global_procrustes
from .retrieval import DEFAULT_CHUNK_SIZE, cosine_topk

if TYPE_CHECKING:
    from .clip_models import ClipBundle

__all__ = ["ReferenceBank", "BANK_FORMAT", "BANK_VERSION", "load_bank"]

BANK_FORMAT = "clip-inversion-bank"
BANK_VERSION = "1"
_TEXT_IN_METADATA_MAX_BYTES = 32 * 1024 * 1024  # safetensors rejects headers over 100 MB
_NORM_TOLERANCE = 1e-3  # unit-norm check on load (float32 rows are normalised to ~1e-7)
_REBUILD_HINT = "rebuild it with `python -m inversion_core bank build --help`"


def _identity_of(clip: "ClipBundle | str") -> str:
    return clip if isinstance(clip, str) else clip.identity


@dataclass(eq=False)
class ReferenceBank:
    """N real (image, caption) pairs embedded by the CLIP named ``clip_identity``.

    Shapes: ``image_embeddings``/``text_embeddings`` (N, D) float32 unit-norm; ``seed_weights[l]``
    (N, in_l, out_l), ``seed_biases[l]`` (N, 1, out_l) when the bank has seeds.
    """

    image_embeddings: torch.Tensor
    text_embeddings: torch.Tensor
    captions: list[str]
    clip_identity: str
    sources: list[str] = field(default_factory=list)  # source image names, for inspection
    seed_weights: list[torch.Tensor] | None = None
    seed_biases: list[torch.Tensor] | None = None
    inr_config: INRConfig | None = None  # architecture of the seeds (None without seeds)
    seed_config: SeedConfig | None = None  # AWP γ, blur σ, ... used to fit them
    seed_psnr: torch.Tensor | None = None  # (N,) dB of each seed against its blurred image
    global_rotation: torch.Tensor | None = None  # (D, D) global Procrustes map, cached
    build_info: dict[str, Any] = field(default_factory=dict)  # skip counts, timings
    path: str | None = None  # where it was loaded from / saved to

    def __post_init__(self) -> None:
        self._validate(self.path or "<in-memory bank>")

    # --- basic properties -------------------------------------------------------------------

    def __len__(self) -> int:
        return self.image_embeddings.shape[0]

    @property
    def embed_dim(self) -> int:
        return self.image_embeddings.shape[1]

    @property
    def has_seeds(self) -> bool:
        return self.seed_weights is not None

    def __repr__(self) -> str:
        seeds = f"seeds {self.inr_config}" if self.has_seeds else "no seeds"
        return f"ReferenceBank({len(self)} pairs, D={self.embed_dim}, clip={self.clip_identity!r}, {seeds})"

    # --- validation -------------------------------------------------------------------------

    def _validate(self, where: str) -> None:
        problems = []
        img, txt = self.image_embeddings, self.text_embeddings
        if img.ndim != 2 or txt.shape != img.shape:
            problems.append(f"image_embeddings {tuple(img.shape)} and text_embeddings {tuple(txt.shape)} "
                            f"must both be (N, D)")
        else:
            N = img.shape[0]
            if N == 0:
                problems.append("the bank is empty (0 pairs)")
            if len(self.captions) != N:
                problems.append(f"{len(self.captions)} captions for {N} embeddings")
            if self.sources and len(self.sources) != N:
                problems.append(f"{len(self.sources)} source names for {N} embeddings")
            for name, e in (("image_embeddings", img), ("text_embeddings", txt)):
                if not e.is_floating_point():
                    problems.append(f"{name} must be floating point, got {e.dtype}")
                    continue
                bad = _rows_not_unit(e)
                if bad:
                    problems.append(f"{name} has {bad} row(s) that are not finite unit vectors")
            if self.has_seeds:
                problems += self._seed_problems(N)
            if self.global_rotation is not None and tuple(self.global_rotation.shape) != (img.shape[1],) * 2:
                problems.append(f"global_rotation has shape {tuple(self.global_rotation.shape)}, expected "
                                f"({img.shape[1]}, {img.shape[1]})")
        if problems:
            raise ValueError(f"invalid reference bank {where}: " + "; ".join(problems) + f". {_REBUILD_HINT}.")

    def _seed_problems(self, N: int) -> list[str]:
        if self.inr_config is None or self.seed_biases is None:
            return ["seed tensors present without an inr_config and biases"]
        cfg = self.inr_config
        sizes = [2] + [cfg.width] * (cfg.hidden_layers + 1) + [3]
        expected_w = [(N, i, o) for i, o in zip(sizes[:-1], sizes[1:])]
        expected_b = [(N, 1, o) for o in sizes[1:]]
        got_w = [tuple(w.shape) for w in self.seed_weights]
        got_b = [tuple(b.shape) for b in self.seed_biases]
        if got_w != expected_w or got_b != expected_b:
            return [(f"seed tensors do not match inr_config {cfg}: weights {got_w} (expected {expected_w}), "
                     f"biases {got_b} (expected {expected_b})")]
        return []

    def check_clip(self, clip: "ClipBundle | str") -> None:
        """Raise a ValueError naming both CLIPs unless ``clip`` is the one the bank was built with."""
        identity = _identity_of(clip)
        if identity != self.clip_identity:
            raise ValueError(
                f"reference bank {self.path or '<in-memory>'} was built with CLIP {self.clip_identity!r}, "
                f"but the CLIP in use is {identity!r}. Embeddings of different CLIP models are not "
                f"comparable: load CLIP {self.clip_identity!r}, or build a bank for {identity!r} with "
                f"`python -m inversion_core bank build`."
            )
        if not isinstance(clip, str) and clip.embed_dim != self.embed_dim:
            raise ValueError(f"reference bank {self.path or '<in-memory>'} has embedding size {self.embed_dim} "
                             f"but CLIP {identity!r} produces {clip.embed_dim}.")

    def check_inr_config(self, inr_config: INRConfig) -> None:
        """Raise unless the bank has seeds of exactly ``inr_config``'s architecture."""
        if not self.has_seeds:
            raise ValueError(f"reference bank {self.path or '<in-memory>'} has no seed INRs (it was built with "
                             f"seeds off); turn seed initialisation off or rebuild the bank with seeds.")
        if inr_config != self.inr_config:
            ours, theirs = config_to_dict(inr_config), config_to_dict(self.inr_config)
            diff = ", ".join(f"{k}: bank {theirs[k]!r} vs run {ours[k]!r}" for k in ours if ours[k] != theirs[k])
            raise ValueError(
                f"the seeds in reference bank {self.path or '<in-memory>'} were fitted with a different INR "
                f"configuration ({diff}). Use the bank's INR configuration for this run, turn seed "
                f"initialisation off, or rebuild the bank with this INR configuration."
            )

    # --- queries ----------------------------------------------------------------------------

    def nearest_pairs(self, query: torch.Tensor, k: int, *, chunk_size: int = DEFAULT_CHUNK_SIZE):
        """Pairs whose *caption* embedding is nearest the query (a text embedding, (B, D)).

        Returns (scores (B, k), indices (B, k)) by exact cosine similarity to ``text_embeddings``.
        """
        return cosine_topk(query, self.text_embeddings, k, chunk_size=chunk_size)

    def nearest_images(self, query: torch.Tensor, k: int, *, chunk_size: int = DEFAULT_CHUNK_SIZE):
        """Image embeddings nearest the query (B, D): (scores (B, k), indices (B, k))."""
        return cosine_topk(query, self.image_embeddings, k, chunk_size=chunk_size)

    def pair_embeddings(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(text (…, D), image (…, D)) embeddings of the given entries (indices any shape)."""
        flat = indices.reshape(-1).cpu()
        shape = (*indices.shape, self.embed_dim)
        return (self.text_embeddings[flat].reshape(shape).to(indices.device),
                self.image_embeddings[flat].reshape(shape).to(indices.device))

    def seed_inr(self, indices: Sequence[int] | torch.Tensor, inr_config: INRConfig, *,
                 device: torch.device | str = "cpu") -> FinerINR:
        """A FinerINR (batch len(indices)) holding copies of the given seeds; checks ``inr_config``."""
        self.check_inr_config(inr_config)
        index = torch.as_tensor(indices, dtype=torch.long).reshape(-1).cpu()
        if index.numel() == 0 or int(index.min()) < 0 or int(index.max()) >= len(self):
            raise ValueError(f"seed indices must be in 0..{len(self) - 1}, got {index.tolist()[:8]}")
        inr = FinerINR.from_tensors(self.inr_config, [w[index] for w in self.seed_weights],
                                    [b[index] for b in self.seed_biases])
        return inr.to(device)

    def nearest_seeds(self, query: torch.Tensor, inr_config: INRConfig, *, rank: Sequence[int] | None = None,
                      device: torch.device | str | None = None) -> tuple[FinerINR, torch.Tensor]:
        """The seed whose caption is nearest each query (B, D) → (FinerINR batch B, indices (B,)).

        ``rank[b]`` (default 0) picks the rank-th nearest instead, so several samples of one
        prompt can start from different seeds.
        """
        self.check_inr_config(inr_config)
        B = query.shape[0] if query.ndim == 2 else 1
        rank = [0] * B if rank is None else list(rank)
        if len(rank) != B or min(rank) < 0:
            raise ValueError(f"rank must hold {B} non-negative integers, got {rank}")
        k = min(max(rank) + 1, len(self))
        _, idx = self.nearest_pairs(query.reshape(B, -1), k)
        chosen = idx[torch.arange(B, device=idx.device), torch.tensor(rank, device=idx.device) % k]
        return self.seed_inr(chosen, inr_config, device=device or query.device), chosen

    def global_procrustes(self) -> torch.Tensor:
        """The global Procrustes map (D, D) fitted on the whole bank (cached; stored in files)."""
        if self.global_rotation is None:
            self.global_rotation = fit_global_procrustes(self.text_embeddings, self.image_embeddings)
        return self.global_rotation

    def to(self, device: torch.device | str) -> "ReferenceBank":
        """Copy with embeddings on ``device`` (seeds stay on the CPU; seed_inr moves the few it returns)."""
        return replace(self, image_embeddings=self.image_embeddings.to(device),
                       text_embeddings=self.text_embeddings.to(device))

    # --- files ------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write the bank to ``path`` (.safetensors) atomically (temporary file, then rename); returns the path."""
        from safetensors.torch import save_file

        path = Path(path)
        if path.suffix != ".safetensors":
            raise ValueError(f"bank path {str(path)!r} must end in .safetensors")
        tensors = {
            "image_embeddings": self.image_embeddings.detach().float().cpu().contiguous(),
            "text_embeddings": self.text_embeddings.detach().float().cpu().contiguous(),
        }
        if self.has_seeds:
            for l, (w, b) in enumerate(zip(self.seed_weights, self.seed_biases)):
                tensors[f"seed.weights.{l}"] = w.detach().float().cpu().contiguous()
                tensors[f"seed.biases.{l}"] = b.detach().float().cpu().contiguous()
        if self.seed_psnr is not None:
            tensors["seed_psnr"] = self.seed_psnr.detach().float().cpu().contiguous()
        if self.global_rotation is not None:
            tensors["global_rotation"] = self.global_rotation.detach().float().cpu().contiguous()
        meta: dict[str, Any] = {
            "clip_identity": self.clip_identity,
            "embed_dim": self.embed_dim,
            "count": len(self),
            "inr_config": None if self.inr_config is None else config_to_dict(self.inr_config),
            "seed_config": None if self.seed_config is None else config_to_dict(self.seed_config),
            "build": self.build_info,
        }
        text_size = sum(len(c.encode("utf-8")) for c in self.captions) + sum(len(s) for s in self.sources)
        if text_size <= _TEXT_IN_METADATA_MAX_BYTES:
            meta["captions"], meta["sources"] = list(self.captions), list(self.sources)
        else:
            meta["captions"] = meta["sources"] = "tensor"
            tensors.update(_pack_strings("captions", self.captions))
            tensors.update(_pack_strings("sources", self.sources))
        meta["checksums"] = {name: _crc(t) for name, t in tensors.items()}
        metadata = {"format": BANK_FORMAT, "version": BANK_VERSION, "bank": json.dumps(meta)}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
        self.path = str(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, clip: "ClipBundle | str | None" = None,
             verify: bool = True) -> "ReferenceBank":
        """Read a bank file; with ``clip`` also check it was built with that CLIP.

        ``verify`` recomputes the CRC-32 of every tensor (≈1 s per few GB) to catch corrupt files.
        Raises FileNotFoundError for a missing file and ValueError for a truncated, corrupt or
        foreign file, or a CLIP mismatch.
        """
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"reference bank {str(path)!r} not found (resolved to {path.resolve()}); "
                                    f"pass the path of a bank .safetensors file or {_REBUILD_HINT}.")
        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                metadata = handle.metadata() or {}
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 - safe_open is not iterable
        except Exception as exc:  # safetensors raises its own error types for bad headers/sizes
            raise ValueError(f"reference bank {str(path)!r} is truncated or corrupt ({type(exc).__name__}: "
                             f"{exc}); {_REBUILD_HINT}.") from exc
        if metadata.get("format") != BANK_FORMAT:
            raise ValueError(f"{str(path)!r} is a safetensors file but not a reference bank (metadata format "
                             f"{metadata.get('format')!r}, expected {BANK_FORMAT!r}).")
        if metadata.get("version") != BANK_VERSION:
            raise ValueError(f"reference bank {str(path)!r} has format version {metadata.get('version')!r}; this "
                             f"inversion_core reads version {BANK_VERSION!r}. {_REBUILD_HINT}.")
        try:
            meta = json.loads(metadata["bank"])
        except (KeyError, json.JSONDecodeError) as exc:
            raise ValueError(f"reference bank {str(path)!r} has corrupt metadata ({exc}); {_REBUILD_HINT}.") from exc
        if verify:
            checksums = meta.get("checksums", {})
            bad = sorted(n for n in set(tensors) | set(checksums) if n not in tensors or checksums.get(n) != _crc(tensors[n]))
            if bad:
                raise ValueError(f"reference bank {str(path)!r} is corrupt: checksum mismatch or missing tensor for "
                                 f"{bad[:5]}; {_REBUILD_HINT}.")
        try:
            captions = _unpack_strings(tensors, "captions") if meta["captions"] == "tensor" else meta["captions"]
            sources = _unpack_strings(tensors, "sources") if meta["sources"] == "tensor" else meta["sources"]
            n_layers = sum(1 for n in tensors if n.startswith("seed.weights."))
            bank = cls(
                image_embeddings=tensors["image_embeddings"],
                text_embeddings=tensors["text_embeddings"],
                captions=list(captions),
                sources=list(sources),
                clip_identity=str(meta["clip_identity"]),
                seed_weights=[tensors[f"seed.weights.{l}"] for l in range(n_layers)] if n_layers else None,
                seed_biases=[tensors[f"seed.biases.{l}"] for l in range(n_layers)] if n_layers else None,
                inr_config=None if meta.get("inr_config") is None else config_from_dict(INRConfig, meta["inr_config"]),
                seed_config=None if meta.get("seed_config") is None else config_from_dict(SeedConfig, meta["seed_config"]),
                seed_psnr=tensors.get("seed_psnr"),
                global_rotation=tensors.get("global_rotation"),
                build_info=dict(meta.get("build") or {}),
                path=str(path),
            )
        except KeyError as exc:
            raise ValueError(f"reference bank {str(path)!r} lacks entry {exc}; {_REBUILD_HINT}.") from exc
        if bank.embed_dim != meta.get("embed_dim") or len(bank) != meta.get("count"):
            raise ValueError(f"reference bank {str(path)!r}: metadata says {meta.get('count')} x {meta.get('embed_dim')} "
                             f"but the tensors are {len(bank)} x {bank.embed_dim}; {_REBUILD_HINT}.")
        if clip is not None:
            bank.check_clip(clip)
        return bank


def load_bank(path: str | os.PathLike, clip: "ClipBundle | str | None" = None, *, verify: bool = True) -> ReferenceBank:
    """Load a reference bank file, checking it against ``clip`` when given (see ReferenceBank.load)."""
    return ReferenceBank.load(path, clip=clip, verify=verify)


# --- helpers ----------------------------------------------------------------------------------


def _rows_not_unit(e: torch.Tensor, chunk: int = 262144) -> int:
    bad = 0
    for s in range(0, e.shape[0], chunk):
        norms = e[s:s + chunk].float().norm(dim=1)
        bad += int((~torch.isfinite(norms) | ((norms - 1).abs() > _NORM_TOLERANCE)).sum())
    return bad


def _crc(t: torch.Tensor) -> int:
    return zlib.crc32(t.detach().cpu().contiguous().view(torch.uint8).numpy())


def _pack_strings(name: str, strings: Sequence[str]) -> dict[str, torch.Tensor]:
    encoded = [s.encode("utf-8") for s in strings]
    offsets = torch.zeros(len(encoded) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.tensor([len(b) for b in encoded], dtype=torch.int64), 0)
    data = torch.frombuffer(bytearray(b"".join(encoded) or b"\0"), dtype=torch.uint8).clone()
    return {f"{name}_utf8": data, f"{name}_offsets": offsets}


def _unpack_strings(tensors: dict[str, torch.Tensor], name: str) -> list[str]:
    data = tensors[f"{name}_utf8"].numpy().tobytes()
    offsets = tensors[f"{name}_offsets"].tolist()
    return [data[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:])]
