"""Prompt files to image folders: batched, resumable, and shardable across processes.

The prompt list is cut into fixed batches by index (batch b holds prompts b·k … b·k + k - 1) and
batch b goes to rank b mod world_size. Image i always uses seed ``seed + i``, and the batches
never depend on how many processes run them, so a run on one process and a run on eight
produce the same files with the same pixels.

Every image is written as ``NNNNNN.png`` plus a ``NNNNNN.json`` sidecar (prompt, seed, settings,
CLIP identity, timing), each to a temporary name and renamed into place, sidecar last: a sidecar
means the image is complete. A rerun (with any number of processes) skips complete batches, so
a crash loses at most the batch in flight, and ranks never write the same file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .bank import ReferenceBank
from .bank_guidance import BankOptions
from .clip_models import ClipBundle
from .image_io import atomic_write, save_image
from .optimise import RunConfig, StepCallback
from .tasks import text_to_image

MANIFEST = "manifest.jsonl"


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
    """One prompt per non-empty line (UTF-8); lines starting with '#' are comments."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {str(path)!r} not found (resolved to {path.resolve()})")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
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
    """Generate this rank's share of ``items`` into ``out_dir``, skipping complete batches."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if world_size == 1:
        remove_stale_temporaries(out_dir)
    clip_list = [clips] if isinstance(clips, ClipBundle) else list(clips)
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
                "index": item.index, "prompt": item.prompt, "negative_prompt": negative_prompt,
                "seed": seed + item.index, "file": f"{item.stem}.png", "settings": config.to_dict(),
                "clip": [clip.identity for clip in clip_list], "seconds": round(seconds, 4),
                "batch_size": len(batch), "rank": rank, "world_size": world_size,
                "bank": None if bank is None else {"identity": bank.clip_identity, **dataclasses.asdict(bank_options)},
            }
            atomic_write(out_dir / f"{item.stem}.json", lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))
            generated += 1
        if on_batch is not None:
            on_batch(batch)
    return BatchSummary(generated, skipped, time.perf_counter() - start)


def remove_stale_temporaries(out_dir: str | os.PathLike) -> int:
    """Delete temporary files a killed run left behind. Call it while no other rank is writing
    (the CLI does so on rank 0 before a barrier)."""
    stale = list(Path(out_dir).glob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def read_records(out_dir: str | os.PathLike) -> list[dict]:
    """The sidecars of every complete image in ``out_dir``, by index."""
    out_dir = Path(out_dir)
    records = []
    for sidecar in sorted(out_dir.glob("[0-9]*.json")):
        record = json.loads(sidecar.read_text(encoding="utf-8"))
        if (out_dir / record["file"]).is_file():
            records.append(record)
    return sorted(records, key=lambda r: r["index"])


def write_manifest(out_dir: str | os.PathLike) -> Path:
    """``manifest.jsonl``: one line per complete image, gathered from the sidecars."""
    lines = "".join(json.dumps(record) + "\n" for record in read_records(out_dir))
    return atomic_write(Path(out_dir) / MANIFEST, lambda tmp: Path(tmp).write_text(lines, encoding="utf-8"))
