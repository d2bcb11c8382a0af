"""Scoring a folder of generated images: CLIP score with a second CLIP, and an optional judge.

CLIP score = 100 · max(cos(e_image, e_prompt), 0), the usual definition, measured with a CLIP
that should differ from the one that generated the images (otherwise it scores what was
optimised). A judge is any function ``judge(image (3, H, W) in [0, 1], prompt) -> {attribute: bool}``
(or None when it cannot read the prompt), given as ``module:function`` — e.g. the toy world's
pixel judge — so the engine stays independent of any benchmark.

The report goes to ``evaluation.json`` in the scored folder; :func:`report_path` checks that it
can be written before the slow scoring starts, and :func:`save_report` writes it atomically.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Callable

import torch

from ._paths import existing_folder
from .batch import read_records
from .clip_models import ClipBundle
from .image_io import atomic_write, load_image

Judge = Callable[[torch.Tensor, str], "dict[str, bool] | None"]
REPORT = "evaluation.json"
JUDGE_SIGNATURE = ("judge(image, prompt) -> {attribute: bool} or None, with image a (3, H, W) float tensor in "
                   "[0, 1] and prompt a str")


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
    _check_judge_signature(judge, spec)
    return judge


def _check_judge_signature(judge: Callable, spec: str) -> None:
    """Refuse a function that cannot be called as judge(image, prompt) now, not as a TypeError
    from inside the scoring loop after the CLIP has been loaded."""
    try:
        signature = inspect.signature(judge)
    except (TypeError, ValueError):  # some builtins have no signature; their first call will tell
        return
    try:
        signature.bind(None, "")
    except TypeError as exc:
        raise ValueError(f"judge {spec!r} takes {signature}, which cannot be called as {JUDGE_SIGNATURE} "
                         f"({exc})") from exc


def _judge_name(judge: Judge) -> str:
    return f"{getattr(judge, '__module__', '?')}:{getattr(judge, '__qualname__', repr(judge))}"


def ask_judge(judge: Judge, image: torch.Tensor, prompt: str, source: Path) -> dict[str, bool] | None:
    """The judge's verdict on one image, or a ValueError naming the judge, the image and the
    expected signature when it fails or answers something else than a dict or None."""
    try:
        verdict = judge(image, prompt)
    except Exception as exc:  # noqa: BLE001 - any failure of user code becomes one clear error
        raise ValueError(f"judge {_judge_name(judge)!r} failed on {str(source)!r} (prompt {prompt!r}) with "
                         f"{type(exc).__name__}: {exc}. A judge is called as {JUDGE_SIGNATURE}.") from exc
    if verdict is not None and not isinstance(verdict, Mapping):
        raise ValueError(f"judge {_judge_name(judge)!r} returned {type(verdict).__name__} for {str(source)!r}; "
                         f"a judge is {JUDGE_SIGNATURE}.")
    return None if verdict is None else dict(verdict)


@torch.no_grad()
def evaluate_folder(out_dir: str | os.PathLike, clip: ClipBundle | None = None, judge: Judge | None = None) -> dict:
    """Per-image scores and their means for every complete image in ``out_dir``."""
    out_dir = existing_folder(out_dir)
    records = read_records(out_dir)
    if not records:
        raise ValueError(f"{str(out_dir)!r} holds no generated images (no NNNNNN.png + NNNNNN.json pairs)")
    rows, attribute_hits, judged = [], defaultdict(list), 0
    for record in records:
        image = load_image(out_dir / record["file"])
        row = {"index": record["index"], "prompt": record["prompt"]}
        if clip is not None:
            cosine = (clip.encode_image(image.to(clip.device)) @ clip.encode_text([record["prompt"]]).T).item()
            row["clip_score"] = 100 * max(cosine, 0.0)
        if judge is not None:
            verdict = ask_judge(judge, image[0], record["prompt"], out_dir / record["file"])
            judged += verdict is not None
            if verdict:
                row["judge"] = verdict
                for attribute, correct in verdict.items():
                    attribute_hits[attribute].append(bool(correct))
        rows.append(row)
    summary: dict = {"images": len(rows)}
    if clip is not None:
        summary["clip_model"] = clip.identity
        summary["clip_score"] = sum(r["clip_score"] for r in rows) / len(rows)
    if judge is not None:
        summary["judge"] = _judge_name(judge)
        summary["judge_read"] = judged  # images whose prompt the judge could read (it answers None otherwise)
    if attribute_hits:
        summary["judge_accuracy"] = {a: sum(h) / len(h) for a, h in sorted(attribute_hits.items())}
        summary["judge_mean_accuracy"] = sum(summary["judge_accuracy"].values()) / len(attribute_hits)
    return {"summary": summary, "images": rows}


def format_summary(summary: dict) -> str:
    """A small plain-text table of the summary."""
    lines = [f"{'images':<24}{summary['images']}"]
    if "clip_score" in summary:
        lines.append(f"{'CLIP score':<24}{summary['clip_score']:.2f}  ({summary['clip_model']})")
    if "judge_read" in summary:
        lines.append(f"{'judge: prompts read':<24}{summary['judge_read']} of {summary['images']}")
        if not summary["judge_read"]:
            lines.append(f"{'':<24}(the judge {summary['judge']} could read none of the prompts: it scores only "
                         f"prompts it knows and answers None for the others)")
    for attribute, accuracy in summary.get("judge_accuracy", {}).items():
        lines.append(f"{'judge: ' + attribute:<24}{accuracy:.1%}")
    if "judge_mean_accuracy" in summary:
        lines.append(f"{'judge: mean':<24}{summary['judge_mean_accuracy']:.1%}")
    return "\n".join(lines)


def report_path(out_dir: str | os.PathLike) -> Path:
    """Where :func:`save_report` will write, after checking that the folder exists and can be
    written, so a read-only folder is refused before scoring rather than after."""
    out_dir = existing_folder(out_dir)
    try:
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as exc:
        raise ValueError(f"cannot write {REPORT} into {str(out_dir)!r} ({exc.strerror or exc}); make the folder "
                         f"writable, or score a writable copy of it") from exc
    return out_dir / REPORT


def save_report(report: dict, path: str | os.PathLike) -> Path:
    """Write the report as JSON atomically (a failed write leaves any earlier report intact)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1), encoding="utf-8"))
