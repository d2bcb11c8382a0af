"""Scoring a folder of generated images: CLIP score with a second CLIP, and an optional judge.

CLIP score = 100 · max(cos(e_image, e_prompt), 0), the usual definition, measured with a CLIP
that should differ from the one that generated the images (otherwise it scores what was
optimised). A judge is any function ``judge(image (3, H, W) in [0, 1], prompt) -> {attribute: bool}``
(or None when it cannot read the prompt), given as ``module:function`` — e.g. the toy world's
pixel judge — so the engine stays independent of any benchmark.
"""

from __future__ import annotations

import importlib
import os
from collections import defaultdict
from pathlib import Path
from typing import Callable

import torch

from .batch import read_records
from .clip_models import ClipBundle
from .image_io import load_image

Judge = Callable[[torch.Tensor, str], "dict[str, bool] | None"]


def load_judge(spec: str) -> Judge:
    """Import ``module:function``."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise ValueError(f"judge must look like 'package.module:function', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"could not import judge module {module_name!r}: {exc}") from exc
    judge = getattr(module, function_name, None)
    if not callable(judge):
        raise ValueError(f"{module_name!r} has no function {function_name!r}")
    return judge


@torch.no_grad()
def evaluate_folder(out_dir: str | os.PathLike, clip: ClipBundle | None = None, judge: Judge | None = None) -> dict:
    """Per-image scores and their means for every complete image in ``out_dir``."""
    out_dir = Path(out_dir)
    records = read_records(out_dir)
    if not records:
        raise ValueError(f"{str(out_dir)!r} holds no generated images (no NNNNNN.png + NNNNNN.json pairs)")
    rows, attribute_hits = [], defaultdict(list)
    for record in records:
        image = load_image(out_dir / record["file"])
        row = {"index": record["index"], "prompt": record["prompt"]}
        if clip is not None:
            cosine = (clip.encode_image(image.to(clip.device)) @ clip.encode_text([record["prompt"]]).T).item()
            row["clip_score"] = 100 * max(cosine, 0.0)
        if judge is not None:
            verdict = judge(image[0], record["prompt"])
            if verdict:
                row["judge"] = dict(verdict)
                for attribute, correct in verdict.items():
                    attribute_hits[attribute].append(bool(correct))
        rows.append(row)
    summary: dict = {"images": len(rows)}
    if clip is not None:
        summary["clip_model"] = clip.identity
        summary["clip_score"] = sum(r["clip_score"] for r in rows) / len(rows)
    if attribute_hits:
        summary["judge_accuracy"] = {a: sum(h) / len(h) for a, h in sorted(attribute_hits.items())}
        summary["judge_mean_accuracy"] = sum(summary["judge_accuracy"].values()) / len(attribute_hits)
    return {"summary": summary, "images": rows}


def format_summary(summary: dict) -> str:
    """A small plain-text table of the summary."""
    lines = [f"{'images':<24}{summary['images']}"]
    if "clip_score" in summary:
        lines.append(f"{'CLIP score':<24}{summary['clip_score']:.2f}  ({summary['clip_model']})")
    for attribute, accuracy in summary.get("judge_accuracy", {}).items():
        lines.append(f"{'judge: ' + attribute:<24}{accuracy:.1%}")
    if "judge_mean_accuracy" in summary:
        lines.append(f"{'judge: mean':<24}{summary['judge_mean_accuracy']:.1%}")
    return "\n".join(lines)
