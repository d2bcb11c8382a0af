"""Prompt files to image folders: batched, resumable, and shardable across processes.

The prompt list is cut into fixed batches by index (batch b holds prompts b·k … b·k + k - 1) and
batch b goes to rank b mod world_size. Image i always uses seed ``seed + i``, and the batches
never depend on how many processes run them, so a run on one process and a run on eight
produce the same files with the same pixels.

Every image is written as ``NNNNNN.png`` plus a ``NNNNNN.json`` sidecar (prompt, seed, settings,
CLIP identity, timing), each to a temporary name and renamed into place, sidecar last: a sidecar
means the image is complete. A rerun (with any number of processes) skips complete batches, so
a crash loses at most the batch in flight, and ranks never write the same file. A rerun only
resumes the same request: before any optimisation every rank checks every sidecar in the folder
against what this run would write (prompt, negative prompt, seed, settings, CLIP, bank) and all
refuse alike if one differs, so a folder never mixes images of two requests.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .bank import ReferenceBank
from .bank_guidance import BankOptions
from .clip_models import ClipBundle
from .image_io import atomic_write, save_image
from .optimise import RunConfig, StepCallback
from .tasks import text_to_image

MANIFEST = "manifest.jsonl"
SIDECAR_NAME = re.compile(r"[0-9]+\.json")  # NNNNNN.json; other JSON files in the folder are not ours
RECORD_FIELDS = {"index": int, "prompt": str, "file": str}  # what makes a JSON object a sidecar
_SHOWN_CONFLICTS = 3  # sidecars whose differences a refusal spells out (the rest are only named)
_NAMED_CONFLICTS = 20


class _Missing:
    """Stands for a key one side of a comparison lacks (a sidecar written by another version)."""

    def __repr__(self) -> str:
        return "(missing)"


_MISSING = _Missing()


@dataclass(frozen=True)
class BatchItem:
    index: int  # position in the prompt file (0-based, blank lines skipped)
    prompt: str

    @property
    def stem(self) -> str:
        return f"{self.index:06d}"


@dataclass
class BatchSummary:
    generated: int  # images written by this process
    skipped: int  # images of this process's batches that were already complete
    seconds: float


def read_prompts(path: str | os.PathLike) -> list[BatchItem]:
    """One prompt per non-empty line (UTF-8, with or without the BOM Windows editors add); lines
    starting with '#' are comments."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"prompt file {str(path)!r} is a directory; pass a text file with one prompt per line")
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {str(path)!r} not found (resolved to {path.resolve()})")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"prompt file {str(path)!r} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                         f"{exc.start}); save it as UTF-8") from exc
    lines = [line.strip() for line in text.splitlines()]
    prompts = [line for line in lines if line and not line.startswith("#")]
    if not prompts:
        raise ValueError(f"prompt file {str(path)!r} holds no prompts (one per line; '#' starts a comment)")
    return [BatchItem(i, p) for i, p in enumerate(prompts)]


def plan_batches(items: Sequence[BatchItem], batch_size: int, rank: int = 0, world_size: int = 1) -> list[list[BatchItem]]:
    """This rank's batches: fixed index ranges of ``batch_size``, dealt round-robin over ranks."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    batches = [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]
    return batches[rank::world_size]


def is_complete(out_dir: Path, item: BatchItem) -> bool:
    return (out_dir / f"{item.stem}.json").is_file() and (out_dir / f"{item.stem}.png").is_file()


def run_prompt_batches(
    clips: ClipBundle | Sequence[ClipBundle],
    items: Sequence[BatchItem],
    out_dir: str | os.PathLike,
    config: RunConfig = RunConfig(),
    *,
    seed: int = 0,
    batch_size: int = 4,
    negative_prompt: str | None = None,
    rank: int = 0,
    world_size: int = 1,
    callback: StepCallback | None = None,
    on_batch: Callable[[list[BatchItem]], None] | None = None,
    bank: ReferenceBank | None = None,
    bank_options: BankOptions = BankOptions(),
) -> BatchSummary:
    """Generate this rank's share of ``items`` into ``out_dir``, skipping complete batches.

    Raises ValueError, before optimising anything, when ``out_dir`` holds sidecars of another
    request (see :func:`check_resumable`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if world_size == 1:
        remove_stale_temporaries(out_dir)
    clip_list = [clips] if isinstance(clips, ClipBundle) else list(clips)
    shared = shared_request(config, negative_prompt, clip_list, bank, bank_options)
    check_resumable(out_dir, {item.index: item_request(item, seed, shared) for item in items})
    start, generated, skipped = time.perf_counter(), 0, 0
    for batch in plan_batches(items, batch_size, rank, world_size):
        if all(is_complete(out_dir, item) for item in batch):
            skipped += len(batch)
            continue
        began = time.perf_counter()
        result = text_to_image(clip_list, [item.prompt for item in batch], config, negative_prompt=negative_prompt,
                               seed=[seed + item.index for item in batch], callback=callback, bank=bank,
                               bank_options=bank_options)
        seconds = (time.perf_counter() - began) / len(batch)
        for item, image in zip(batch, result.images):
            if is_complete(out_dir, item):  # finished by an earlier, interrupted run of this batch
                continue
            save_image(image, out_dir / f"{item.stem}.png")
            record = {
                "index": item.index, **item_request(item, seed, shared), "file": f"{item.stem}.png",
                "seconds": round(seconds, 4), "batch_size": len(batch), "rank": rank, "world_size": world_size,
            }
            atomic_write(out_dir / f"{item.stem}.json", lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))
            generated += 1
        if on_batch is not None:
            on_batch(batch)
    return BatchSummary(generated, skipped, time.perf_counter() - start)


# --- the request a sidecar records, and refusing to resume another one -------------------------


def shared_request(config: RunConfig, negative_prompt: str | None, clips: Sequence[ClipBundle],
                   bank: ReferenceBank | None, bank_options: BankOptions) -> dict[str, Any]:
    """The sidecar fields that determine every image's pixels alike, as JSON reads them back
    (tuples as lists), so a fresh request compares equal to a sidecar written by the same one."""
    request = {
        "negative_prompt": negative_prompt, "settings": config.to_dict(), "clip": [clip.identity for clip in clips],
        "bank": None if bank is None else {"identity": bank.clip_identity, **dataclasses.asdict(bank_options)},
    }
    return json.loads(json.dumps(request))


def item_request(item: BatchItem, seed: int, shared: dict[str, Any]) -> dict[str, Any]:
    """Everything in ``item``'s sidecar that determines its pixels (timing and sharding do not)."""
    return {"prompt": item.prompt, "seed": seed + item.index, **shared}


def check_resumable(out_dir: Path, requests: dict[int, dict[str, Any]]) -> None:
    """Refuse to resume into ``out_dir`` if any sidecar there is not what this run would write.

    ``requests`` maps every index of the prompt file (all ranks', not only this one's) to its
    request. Every sidecar counts, finished or not, and ranks only ever add sidecars that match,
    so all ranks reach the same verdict whenever they check; nothing has been optimised yet."""
    conflicts = [(sidecar.name, problem) for sidecar in sidecar_paths(out_dir)
                 if (problem := _sidecar_conflict(sidecar, requests))]
    if conflicts:
        raise ValueError(_refusal(out_dir, conflicts))


def _sidecar_conflict(sidecar: Path, requests: dict[int, dict[str, Any]]) -> str:
    """Why this run must not keep ``sidecar`` ('' when it records exactly this run's request)."""
    record = read_sidecar(sidecar)
    if record is None:
        return "not a sidecar of this command (no index, prompt and file)"
    index = int(sidecar.stem)
    if index not in requests:
        return f"image {index} is beyond this prompt file's {len(requests)} prompts"
    return "; ".join(_differences({key: record.get(key, _MISSING) for key in requests[index]}, requests[index]))


def _differences(before: Any, now: Any, name: str = "") -> list[str]:
    """'key: before X, now Y' for every leaf that differs, nested keys joined with dots."""
    if isinstance(before, dict) and isinstance(now, dict):
        keys = dict.fromkeys([*now, *before])
        return [line for key in keys for line in _differences(before.get(key, _MISSING), now.get(key, _MISSING),
                                                              f"{name}.{key}" if name else str(key))]
    return [] if before == now else [f"{name}: before {before!r}, now {now!r}"]


def _refusal(out_dir: Path, conflicts: list[tuple[str, str]]) -> str:
    shown = [f"  {name}: {problem}" for name, problem in conflicts[:_SHOWN_CONFLICTS]]
    rest = [name for name, _ in conflicts[_SHOWN_CONFLICTS:]]
    if rest:
        named = ", ".join(rest[:_NAMED_CONFLICTS]) + (", ..." if len(rest) > _NAMED_CONFLICTS else "")
        shown.append(f"  and {len(rest)} more: {named}")
    return (f"{str(out_dir)!r} already holds {len(conflicts)} image sidecar(s) from a different request, which "
            "resuming would keep next to the new images:\n" + "\n".join(shown) + "\n"
            "Use a new --out-dir, or delete those NNNNNN.json files and their NNNNNN.png images to regenerate them.")


def remove_stale_temporaries(out_dir: str | os.PathLike) -> int:
    """Delete temporary files a killed run left behind. Call it while no other rank is writing
    (the CLI does so on rank 0 before a barrier)."""
    stale = list(Path(out_dir).glob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def sidecar_paths(out_dir: str | os.PathLike) -> list[Path]:
    """The files in ``out_dir`` named like sidecars (NNNNNN.json), sorted by name."""
    return sorted(p for p in Path(out_dir).glob("*.json") if SIDECAR_NAME.fullmatch(p.name))


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The record in sidecar ``path``, or None for a JSON file that is not a sidecar (a folder may
    hold other JSON). A damaged sidecar is an error naming it: skipping it would hide an image."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"sidecar {str(path)!r} is unreadable ({exc}); delete it and its .png (batch regenerates "
                         f"both) or restore it") from exc
    if not isinstance(data, dict) or not all(isinstance(data.get(k), t) for k, t in RECORD_FIELDS.items()):
        return None
    return data


def read_records(out_dir: str | os.PathLike) -> list[dict]:
    """The sidecars of every complete image in ``out_dir``, by index."""
    out_dir = Path(out_dir)
    records = [record for record in map(read_sidecar, sidecar_paths(out_dir))
               if record is not None and (out_dir / record["file"]).is_file()]
    return sorted(records, key=lambda r: r["index"])


def write_manifest(out_dir: str | os.PathLike) -> Path:
    """``manifest.jsonl``: one line per complete image, gathered from the sidecars."""
    lines = "".join(json.dumps(record) + "\n" for record in read_records(out_dir))
    return atomic_write(Path(out_dir) / MANIFEST, lambda tmp: Path(tmp).write_text(lines, encoding="utf-8"))
