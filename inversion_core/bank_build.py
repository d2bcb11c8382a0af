"""Building a reference bank from captioned images: embeddings in batches, AWP seeds, resumable.

Input (``read_entries``): a folder of images with same-name ``.txt`` captions (searched
recursively), a ``.csv`` with ``path`` and ``caption`` columns, or a ``.jsonl`` file of
``{"path": ..., "caption": ...}`` objects (relative paths are relative to the CSV/JSONL file).

Work is split into shards of ``batch_size`` entries. For each shard the builder reads and
centre-crops the images, embeds images and captions with the CLIP, fits one
seed INR per image to its blurred copy with AWP (:mod:`inversion_core.awp`), and writes the
shard atomically to ``<output>.parts/shard_NNNNNN.safetensors``. ``<output>.parts/manifest.json``
records the settings; a rerun with the same settings skips finished shards (resume after an
interruption), a rerun with other settings is refused with the differences listed. When every
shard is done they are concatenated into one bank file (:class:`~inversion_core.bank.ReferenceBank`)
and the parts folder is removed.

Unreadable images, missing/empty captions and malformed rows are skipped and counted, never fatal.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ._config import config_to_dict
from .awp import SeedConfig, fit_seeds
from .bank import ReferenceBank
from .cli_args import add_inr_arguments, add_model_arguments, inr_config_from_args
from .clip_models import ClipBundle
from .image_io import atomic_write, pil_to_tensor, upright_rgb
from .inr import INRConfig
from .procrustes import fit_global_procrustes

__all__ = ["IMAGE_SUFFIXES", "Entry", "BuildReport", "read_entries", "build_bank", "add_arguments", "run_from_args"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
DEFAULT_BATCH_SIZE = 32  # ours: entries per shard (one CLIP batch and one batched seed fit)
_SHARD_VERSION = 1

# (entries done, entries total) after each shard; raise in it to cancel (the shards written are kept).
ProgressCallback = Callable[[int, int], object]


@dataclass(frozen=True)
class Entry:
    path: str  # image file (absolute or relative to the working directory)
    caption: str


@dataclass
class BuildReport:
    """What a build did; ``skipped`` counts entries left out, by reason."""

    path: Path
    count: int  # pairs in the bank
    skipped: dict[str, int] = field(default_factory=dict)
    load_seconds: float = 0.0  # reading + cropping images
    embed_seconds: float = 0.0  # CLIP image + text embedding
    seed_seconds: float = 0.0  # AWP seed fitting
    shards_total: int = 0
    shards_resumed: int = 0  # shards found finished from an earlier, interrupted run
    with_seeds: bool = True  # False for an embeddings-only build (no seed time to report)

    def summary(self) -> str:
        skipped = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in sorted(self.skipped.items())) or "none"
        def rate(n: int, seconds: float) -> str:
            return f"{n / seconds:.1f}/s" if seconds > 0 else "n/a"

        seeds = (f"seeds {self.seed_seconds:.1f}s ({rate(self.count, self.seed_seconds)})" if self.with_seeds
                 else "no seeds (embeddings only)")
        return (f"bank {self.path}: {self.count} pairs; skipped: {skipped}; shards {self.shards_total} "
                f"({self.shards_resumed} resumed); load {self.load_seconds:.1f}s, embed {self.embed_seconds:.1f}s "
                f"({rate(self.count, self.load_seconds + self.embed_seconds)} images incl. loading), {seeds}")


# --- reading the source -----------------------------------------------------------------------


def read_entries(source: str | Path) -> tuple[list[Entry], Counter]:
    """(entries in a stable order, Counter of rows skipped by reason) from a folder, CSV or JSONL.

    Images are not opened here (that happens per shard, where unreadable ones are counted).
    """
    source = Path(source)
    skipped: Counter = Counter()
    if source.is_dir():
        entries = []
        for image in sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
            caption_file = image.with_suffix(".txt")
            if not caption_file.is_file():
                skipped["missing_caption"] += 1
                continue
            try:
                caption = caption_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                skipped["unreadable_caption"] += 1
                continue
            if not caption:
                skipped["empty_caption"] += 1
                continue
            entries.append(Entry(str(image), caption))
        return entries, skipped
    if not source.is_file():
        raise FileNotFoundError(f"bank source {str(source)!r} not found (resolved to {source.resolve()}); pass a "
                                f"folder of images with same-name .txt captions, a .csv or a .jsonl file.")
    suffix = source.suffix.lower()
    if suffix == ".csv":
        rows = _read_csv(source)
    elif suffix == ".jsonl":
        rows = _read_jsonl(source, skipped)
    else:
        raise ValueError(f"bank source {str(source)!r} has unsupported suffix {suffix!r}; use a folder of images with "
                         f".txt captions, a .csv (columns path, caption) or a .jsonl ({{\"path\", \"caption\"}} per line).")
    entries = []
    for path, caption in rows:
        if not path:
            skipped["bad_row"] += 1
            continue
        caption = (caption or "").strip()
        if not caption:
            skipped["empty_caption"] += 1
            continue
        resolved = Path(path) if Path(path).is_absolute() else source.parent / path
        entries.append(Entry(str(resolved), caption))
    return entries, skipped


def _read_csv(source: Path) -> list[tuple[str, str]]:
    with open(source, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "path" not in columns or "caption" not in columns:
            raise ValueError(f"CSV {str(source)!r} needs a header with columns 'path' and 'caption'; found {columns}.")
        return [(row.get("path") or "", row.get("caption") or "") for row in reader]


def _read_jsonl(source: Path, skipped: Counter) -> list[tuple[str, str]]:
    rows = []
    with open(source, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                rows.append((str(obj["path"]), str(obj.get("caption") or "")))
            except (json.JSONDecodeError, KeyError, TypeError):
                skipped["bad_row"] += 1
    return rows


def load_square_image(path: str, size: int) -> torch.Tensor:
    """(3, size, size) in [0, 1]: upright, shorter side resized to ``size`` (bicubic), centre crop
    (CLIP's preprocessing)."""
    from PIL import Image

    with Image.open(path) as image:
        image.draft("RGB", (size, size))  # JPEG: decode at reduced scale when much larger
        image = upright_rgb(image)
        w, h = image.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        image = image.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        return pil_to_tensor(image.crop((left, top, left + size, top + size)))


# --- building ---------------------------------------------------------------------------------


def read_usable_entries(source: str | os.PathLike) -> tuple[list[Entry], Counter]:
    """``read_entries``, refusing a source that yields no (image, caption) pair at all."""
    entries, skipped = read_entries(source)
    if not entries:
        raise ValueError(f"bank source {str(source)!r} holds no usable (image, caption) pairs; skipped: "
                         f"{dict(skipped) or 'nothing found'}. Each image needs a non-empty caption.")
    return entries, skipped


def entries_fingerprint(entries: Sequence[Entry]) -> str:
    """What a bank was built from: every image's path, size and modification time, and its caption.
    Recorded in the bank (``build_info``) and in an interrupted build's manifest, so a reuse or a
    resume notices an edited caption or a replaced image, not only added or removed files."""
    digest = hashlib.sha256()
    for e in entries:
        try:
            stat = os.stat(e.path)
            state = f"{stat.st_size}\t{stat.st_mtime_ns}"
        except OSError:  # a listed image that is not there: skipped as unreadable by the build
            state = "missing"
        digest.update(f"{e.path}\t{state}\t{e.caption}\n".encode())
    return digest.hexdigest()[:16]


def _parts_dir(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def request_differences(bank: ReferenceBank, clip_identity: str, *, with_seeds: bool, inr_config: INRConfig,
                        seed_config: SeedConfig, random_seed: int, entries: Sequence[Entry]) -> list[str]:
    """How an existing bank differs from what a build would make now, each as "built ..." wording
    (empty: it is that bank, and building again would only repeat the work).

    Banks record what they were built from (``entries_fingerprint``: paths, file sizes and times,
    captions; and random_seed); for a bank from before they did, the image paths are compared.
    """
    problems = []
    if bank.clip_identity != clip_identity:
        problems.append(f"with CLIP {bank.clip_identity!r} (clip is {clip_identity!r})")
    if bank.has_seeds != with_seeds:
        problems.append("with seeds" if bank.has_seeds else "without seeds")
    elif with_seeds and bank.inr_config != inr_config:
        problems.append(f"with seed INR settings {bank.inr_config} (requested {inr_config})")
    elif with_seeds and bank.seed_config != seed_config:
        problems.append(f"with seed settings {bank.seed_config} (requested {seed_config})")
    elif with_seeds and bank.build_info.get("random_seed", random_seed) != random_seed:
        problems.append(f"with random_seed {bank.build_info['random_seed']} (requested {random_seed})")
    recorded_from = bank.build_info.get("source_fingerprint")
    if recorded_from is not None:
        if recorded_from != entries_fingerprint(entries):
            problems.append(f"from other images or captions ({len(bank)} pairs; the source now holds "
                            f"{len(entries)}, or some were edited)")
        return problems
    unreadable = int(bank.build_info.get("skipped", {}).get("unreadable_image", 0))
    recorded, sources = set(bank.sources), {e.path for e in entries}
    if not recorded <= sources or len(sources - recorded) > unreadable:
        problems.append(f"from other images ({len(recorded)} pairs; the source now holds {len(sources)})")
    return problems


def build_bank(
    source: str | Path,
    output: str | Path,
    clip: ClipBundle,
    *,
    inr_config: INRConfig = INRConfig(),
    seed_config: SeedConfig = SeedConfig(),
    with_seeds: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    random_seed: int = 0,
    resume: bool = True,
    progress: bool | ProgressCallback = True,
) -> BuildReport:
    """Build a reference bank file at ``output`` (.safetensors) from ``source`` with ``clip``.

    Args:
        source: folder of images + same-name .txt captions, or a .csv / .jsonl (see module doc).
        inr_config: architecture of the seed INRs; use the INR configuration you will generate
            with (seed initialisation refuses a mismatch).
        seed_config: AWP γ, blur σ, steps, lr and fit size of the seeds.
        with_seeds: False builds embeddings only (no seed initialisation possible; fast).
        batch_size: entries per shard: one CLIP batch and one batched seed fit.
        random_seed: seed INR initialisation; entry i uses random_seed + i.
        resume: continue from ``<output>.parts`` if an earlier run with the same settings was
            interrupted; False deletes any parts and starts over.
        progress: True for a terminal progress bar, False for none, or ``fn(done, total)``.

    Returns a :class:`BuildReport` (counts, skips by reason, timings split into load/embed/seeds).
    """
    output = Path(output)
    if output.suffix != ".safetensors":
        raise ValueError(f"bank output {str(output)!r} must end in .safetensors, e.g. {output.stem}.safetensors")
    if not 1 <= batch_size <= 4096:
        raise ValueError(f"batch_size must be in 1..4096, got {batch_size}")
    entries, skipped = read_usable_entries(source)
    settings = {
        "shard_version": _SHARD_VERSION,
        "source_fingerprint": entries_fingerprint(entries),
        "entries": len(entries),
        "clip_identity": clip.identity,
        "embed_size": clip.image_size,
        "with_seeds": with_seeds,
        "inr_config": config_to_dict(inr_config) if with_seeds else None,
        "seed_config": config_to_dict(seed_config) if with_seeds else None,
        "batch_size": batch_size,
        "random_seed": random_seed,
    }
    parts = _parts_dir(output)
    if not resume and parts.exists():
        shutil.rmtree(parts)
    _start_or_check_manifest(parts, settings)

    shards = [list(range(s, min(s + batch_size, len(entries)))) for s in range(0, len(entries), batch_size)]
    report = BuildReport(path=output, count=0, shards_total=len(shards), with_seeds=with_seeds)
    bar = _make_bar(progress, len(entries))
    done = 0
    try:
        for number, members in enumerate(shards):
            shard_path = parts / f"shard_{number:06d}.safetensors"
            shard = _read_shard(shard_path)
            if shard is None:
                shard = _build_shard(entries, members, clip, inr_config, seed_config, with_seeds, random_seed)
                _write_shard(shard_path, shard)
            else:
                report.shards_resumed += 1
            for key in ("load_seconds", "embed_seconds", "seed_seconds"):
                setattr(report, key, getattr(report, key) + shard["meta"][key])
            done += len(members)
            bar(done, len(entries))
    finally:
        getattr(bar, "close", lambda: None)()

    bank = _assemble(parts, len(shards), clip, inr_config, seed_config, with_seeds, skipped, report,
                     {"source_fingerprint": settings["source_fingerprint"], "random_seed": random_seed})
    bank.save(output)
    shutil.rmtree(parts, ignore_errors=True)
    report.count = len(bank)
    report.skipped = dict(bank.build_info["skipped"])
    return report


def _start_or_check_manifest(parts: Path, settings: dict[str, Any]) -> None:
    manifest = parts / "manifest.json"
    if manifest.is_file():
        try:
            previous = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            previous = None
        if previous != settings:
            old = previous if isinstance(previous, dict) else {}
            diff = [f"{k}: before {old.get(k)!r}, now {settings[k]!r}" for k in settings if old.get(k) != settings[k]]
            raise ValueError(
                f"an interrupted bank build in {str(parts)!r} used different settings ({'; '.join(diff) or 'unreadable manifest'}). "
                f"Rerun with the same settings to resume, or start over (--restart / resume=False, or delete that folder)."
            )
        return
    parts.mkdir(parents=True, exist_ok=True)
    atomic_write(manifest, lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=1), encoding="utf-8"))


def _build_shard(entries, members, clip, inr_config, seed_config, with_seeds, random_seed) -> dict[str, Any]:
    skipped: Counter = Counter()
    t0 = time.perf_counter()
    images, kept = [], []
    for i in members:
        try:
            images.append(load_square_image(entries[i].path, clip.image_size))
            kept.append(i)
        except Exception:  # noqa: BLE001 - PIL raises many types (OSError, ValueError, DecompressionBombError, ...)
            skipped["unreadable_image"] += 1
    t1 = time.perf_counter()
    tensors: dict[str, torch.Tensor] = {}
    D = clip.embed_dim
    if kept:
        batch = torch.stack(images).to(clip.device)  # (b, 3, S, S)
        with torch.no_grad():
            tensors["image_embeddings"] = clip.encode_image(batch).float().cpu()
            tensors["text_embeddings"] = clip.encode_text([entries[i].caption for i in kept]).float().cpu()
    else:
        tensors["image_embeddings"] = tensors["text_embeddings"] = torch.zeros(0, D)
    t2 = time.perf_counter()
    if with_seeds and kept:
        inr, quality = fit_seeds(batch, inr_config, seed_config, seeds=[random_seed + i for i in kept])
        for l, (w, b) in enumerate(zip(inr.weights, inr.biases)):
            tensors[f"seed.weights.{l}"] = w.detach().cpu()
            tensors[f"seed.biases.{l}"] = b.detach().cpu()
        tensors["seed_psnr"] = quality.cpu()
    t3 = time.perf_counter()
    meta = {
        "captions": [entries[i].caption for i in kept],
        "sources": [entries[i].path for i in kept],
        "skipped": dict(skipped),
        "load_seconds": t1 - t0,
        "embed_seconds": t2 - t1,
        "seed_seconds": t3 - t2,
    }
    return {"tensors": {k: v.contiguous() for k, v in tensors.items()}, "meta": meta}


def _write_shard(path: Path, shard: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    metadata = {"shard": json.dumps(shard["meta"])}
    atomic_write(path, lambda tmp: save_file(shard["tensors"], tmp, metadata=metadata))


def _read_shard(path: Path) -> dict[str, Any] | None:
    """A finished shard, or None when it is missing or unreadable (then it is rebuilt)."""
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = json.loads((handle.metadata() or {})["shard"])
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 - safe_open is not iterable
    except Exception:  # noqa: BLE001 - a damaged shard is simply redone
        return None
    return {"tensors": tensors, "meta": meta}


def _assemble(parts: Path, n_shards: int, clip, inr_config, seed_config, with_seeds, skipped: Counter,
              report: BuildReport, recorded: dict[str, Any]) -> ReferenceBank:
    """The bank from the finished shards; ``recorded`` (what it was built from) joins its build_info."""
    tensors: dict[str, list[torch.Tensor]] = {}
    captions, sources = [], []
    skipped = Counter(skipped)
    for number in range(n_shards):
        shard = _read_shard(parts / f"shard_{number:06d}.safetensors")
        if shard is None:
            raise ValueError(f"bank shard {number} in {str(parts)!r} vanished or was damaged while assembling; "
                             f"rerun the same command to rebuild it.")
        captions += shard["meta"]["captions"]
        sources += shard["meta"]["sources"]
        skipped.update(shard["meta"]["skipped"])
        if shard["tensors"]["image_embeddings"].shape[0]:
            for name, t in shard["tensors"].items():
                tensors.setdefault(name, []).append(t)
    if not captions:
        raise ValueError(f"no bank entries could be used: skipped {dict(skipped)}. Check that the images are readable.")
    cat = {name: torch.cat(ts) for name, ts in tensors.items()}
    n_layers = sum(1 for n in cat if n.startswith("seed.weights."))
    image_e, text_e = cat["image_embeddings"], cat["text_embeddings"]
    return ReferenceBank(
        image_embeddings=image_e,
        text_embeddings=text_e,
        captions=captions,
        sources=sources,
        clip_identity=clip.identity,
        seed_weights=[cat[f"seed.weights.{l}"] for l in range(n_layers)] if with_seeds else None,
        seed_biases=[cat[f"seed.biases.{l}"] for l in range(n_layers)] if with_seeds else None,
        inr_config=inr_config if with_seeds else None,
        seed_config=seed_config if with_seeds else None,
        seed_psnr=cat.get("seed_psnr"),
        global_rotation=fit_global_procrustes(text_e, image_e),
        build_info={
            **recorded,
            "skipped": dict(skipped),
            "load_seconds": round(report.load_seconds, 3),
            "embed_seconds": round(report.embed_seconds, 3),
            "seed_seconds": round(report.seed_seconds, 3),
            "embed_size": clip.image_size,
        },
    )


def _make_bar(progress: bool | ProgressCallback, total: int):
    if callable(progress):
        return progress
    if not progress:
        return lambda done, total: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="img", desc="bank", file=sys.stderr)

    def update(done: int, total: int) -> None:
        bar.update(done - bar.n)

    update.close = bar.close
    return update


# --- command line -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``bank build``."""
    seed = SeedConfig()
    parser.add_argument("--source", type=Path, required=True,
                        help="folder of images with same-name .txt captions, or a .csv (path,caption) / .jsonl file")
    parser.add_argument("--out", type=Path, required=True, help="bank file to write (.safetensors)")
    add_model_arguments(parser, "CLIP model (the bank only works with this CLIP)")
    group = parser.add_argument_group("seeds (AWP-fitted INRs)")
    group.add_argument("--no-seeds", action="store_true", help="embeddings only: fast, but no seed initialisation")
    group.add_argument("--gamma", type=float, default=seed.gamma,
                       help=f"AWP radius relative to each layer's weight norm (0 = plain fit; default {seed.gamma:g})")
    group.add_argument("--seed-steps", type=int, default=seed.steps, help=f"fitting steps per seed (default {seed.steps})")
    group.add_argument("--seed-lr", type=float, default=seed.lr, help=f"Adam learning rate (default {seed.lr:g})")
    group.add_argument("--seed-size", type=int, default=seed.size, help=f"fitting resolution in pixels (default {seed.size})")
    group.add_argument("--blur", type=float, default=seed.blur_sigma,
                       help=f"Gaussian blur sigma in pixels at --seed-size (default {seed.blur_sigma:g})")
    add_inr_arguments(group, note="must match generation")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"images per shard / CLIP batch / batched seed fit (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the seed INRs (default 0)")
    parser.add_argument("--restart", action="store_true",
                        help="build from scratch: discard an interrupted build, rebuild an up-to-date bank")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_from_args(args: argparse.Namespace) -> BuildReport | None:
    """Run ``bank build`` from parsed arguments (configs are checked before the CLIP is loaded); an
    existing ``--out`` built from the same request is kept (None), one built otherwise is rebuilt."""
    from .clip_models import load_clip

    inr_config = inr_config_from_args(args)
    seed_config = SeedConfig(gamma=args.gamma, steps=args.seed_steps, lr=args.seed_lr, size=args.seed_size,
                             blur_sigma=args.blur)
    clip = load_clip(args.model, args.weights, device=args.device, precision=args.precision)
    if not args.restart and Path(args.out).is_file():
        bank = ReferenceBank.load(args.out)
        entries, _ = read_usable_entries(args.source)
        differences = request_differences(bank, clip.identity, with_seeds=not args.no_seeds, inr_config=inr_config,
                                          seed_config=seed_config, random_seed=args.seed, entries=entries)
        if not differences:
            print(f"bank {args.out} is up to date: built from these images with this CLIP and these settings "
                  f"({len(bank)} pairs); --restart builds it again")
            return None
        print(f"rebuilding {args.out}: it was built {'; '.join(differences)}", file=sys.stderr)
    report = build_bank(args.source, args.out, clip, inr_config=inr_config, seed_config=seed_config,
                        with_seeds=not args.no_seeds, batch_size=args.batch_size, random_seed=args.seed,
                        resume=not args.restart, progress=not args.quiet)
    print(report.summary())
    return report
