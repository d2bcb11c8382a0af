"""Command line: ``python -m inversion_core generate|reconstruct|style|edit|render ...``.

A thin layer over the public API: parse arguments into a RunConfig, check the device and the output
paths, load the CLIP, call one task function, write PNGs (and optionally the INR, to re-render it at
another size with ``render``). Bad input ends in ``error: ...`` with status 2 before any slow work
where it can be seen up front; Ctrl-C ends in ``interrupted`` with status 130.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Sequence, TextIO

import torch

from . import bank_build
from ._paths import check_writable_file
from .augment import AugmentConfig
from .bank import load_bank
from .bank_guidance import add_bank_arguments, bank_options_from_args
from .cli_args import add_inr_arguments, add_model_arguments, inr_config_from_args
from .clip_models import PRECISIONS, ClipBundle, load_clip
from .devices import check_device
from .image_io import image_format, load_image, load_inr, save_image, save_inr
from .optimise import (AUTOCAST_PRECISIONS, COMPILE_MODES, InversionResult, RunConfig, StepProgress,
                       autocast_dtype)
from .schedules import SCHEDULES, ScheduleConfig
from .tasks import DEFAULT_CONTENT_WEIGHT, DEFAULT_EDIT_LR, DEFAULT_EDIT_STEPS, DEFAULT_EDIT_STRENGTH, DEFAULT_FIT_STEPS


class ProgressBar:
    """A one-line terminal progress bar per phase: ``fit`` (style/edit fit the INR to the image first)
    and ``optimise``. Each phase's rate counts from the end of the one before, so the fit's speed
    does not dilute the optimiser's. Used as a context manager, it ends a bar cut short (an error,
    Ctrl-C, an early stop) so whatever is printed next starts on its own line."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream, self.width = stream or sys.stderr, width  # sys.stderr as it is now (tests swap it)
        self.phase: str | None = None
        self.phase_start = self.last_update = time.perf_counter()
        self.line_open = False

    def __enter__(self) -> "ProgressBar":
        self.phase_start = self.last_update = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.end_line()

    def __call__(self, progress: StepProgress) -> None:
        """The optimiser's step callback."""
        self.show("optimise", progress.step, progress.total, f" loss {progress.loss:.4f}")

    def fit(self, step: int, total: int) -> None:
        """The fitting phase's callback."""
        self.show("fit", step, total)

    def show(self, phase: str, step: int, total: int, detail: str = "") -> None:
        now = time.perf_counter()
        if phase != self.phase:
            self.end_line()
            self.phase, self.phase_start = phase, self.last_update
        self.last_update = now
        rate = step / max(now - self.phase_start, 1e-9)
        bar = "#" * round(step / total * self.width)
        self.stream.write(f"\r{phase:<8} [{bar:<{self.width}}] step {step}/{total}{detail} {rate:.1f} it/s")
        self.line_open = step < total
        if not self.line_open:
            self.stream.write("\n")
        self.stream.flush()

    def end_line(self) -> None:
        if self.line_open:
            self.stream.write("\n")
            self.stream.flush()
            self.line_open = False


def _add_run_args(parser: argparse.ArgumentParser, steps: int, lr: float = ScheduleConfig().lr) -> None:
    run, sched, aug = RunConfig(), ScheduleConfig(), AugmentConfig()
    group = parser.add_argument_group("optimisation")
    group.add_argument("--steps", type=int, default=steps, help=f"optimisation steps (default {steps})")
    group.add_argument("--width", type=int, default=run.width, help=f"render width in pixels (default {run.width})")
    group.add_argument("--height", type=int, default=run.height, help=f"render height in pixels (default {run.height})")
    group.add_argument("--seed", type=int, default=0, help="random seed; image i of a batch uses seed + i (default 0)")
    group.add_argument("--lr", type=float, default=lr, help=f"peak learning rate (default {lr:g})")
    group.add_argument("--schedule", default=sched.kind, choices=SCHEDULES, help=f"layer schedule (default {sched.kind})")
    group.add_argument("--views", type=int, default=aug.views, help=f"augmented views per step (default {aug.views})")
    add_inr_arguments(group)
    group.add_argument("--autocast", default=run.precision, choices=AUTOCAST_PRECISIONS,
                       help="mixed precision of the CLIP pass (default auto: bf16 on CUDA, or the weights' own "
                       "fp16/bf16, fp32 on CPU)")
    group.add_argument("--compile", default=run.compile, choices=COMPILE_MODES,
                       help="torch.compile the step (reduce-overhead adds CUDA graphs); falls back to eager")
    group.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_config(args: argparse.Namespace) -> RunConfig:
    return RunConfig(
        steps=args.steps, width=args.width, height=args.height,
        inr=inr_config_from_args(args),
        schedule=ScheduleConfig(kind=args.schedule, lr=args.lr),
        augment=AugmentConfig(views=args.views), precision=args.autocast, compile=args.compile,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inversion_core", description="CLIP inversion (CLIP⁻¹): images from a frozen CLIP.")
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="text to image")
    generate.add_argument("--prompt", action="append", required=True, help="what to show; repeat for a batch")
    generate.add_argument("--negative", help="negative prompt (pushed away with weight 0.5)")
    generate.add_argument("--out", type=Path, required=True, help="output PNG; a batch writes NAME_0.png, NAME_1.png, ...")

    recon = commands.add_parser("reconstruct", help="invert an image's CLIP embedding")
    recon.add_argument("--image", type=Path, required=True, help="input image")
    recon.add_argument("--out", type=Path, required=True, help="output PNG")

    style = commands.add_parser("style", help="style transfer")
    style.add_argument("--content", type=Path, required=True, help="content image")
    source = style.add_mutually_exclusive_group(required=True)
    source.add_argument("--style", help="style prompt")
    source.add_argument("--style-image", type=Path, help="style image")
    style.add_argument("--content-weight", type=float, default=DEFAULT_CONTENT_WEIGHT,
                       help=f"weight of the layout-keeping term (default {DEFAULT_CONTENT_WEIGHT:g})")
    style.add_argument("--fit-steps", type=int, default=DEFAULT_FIT_STEPS,
                       help=f"steps fitting the INR to the content first (default {DEFAULT_FIT_STEPS})")
    style.add_argument("--out", type=Path, required=True, help="output PNG")

    edit = commands.add_parser("edit", help="text-guided edit")
    edit.add_argument("--image", type=Path, required=True, help="input image")
    edit.add_argument("--edit", required=True, help="prompt describing the edited image")
    edit.add_argument("--source", help="prompt describing the input image (edit direction = edit - source)")
    edit.add_argument("--strength", type=float, default=DEFAULT_EDIT_STRENGTH,
                      help=f"edit strength α (default {DEFAULT_EDIT_STRENGTH:g})")
    edit.add_argument("--fit-steps", type=int, default=DEFAULT_FIT_STEPS,
                      help=f"steps fitting the INR to the image first (default {DEFAULT_FIT_STEPS})")
    edit.add_argument("--out", type=Path, required=True, help="output PNG")

    default_lr = ScheduleConfig().lr
    for sub, steps, lr in ((generate, 400, default_lr), (recon, 400, default_lr), (style, 400, default_lr),
                           (edit, DEFAULT_EDIT_STEPS, DEFAULT_EDIT_LR)):
        add_model_arguments(sub)
        _add_run_args(sub, steps, lr)
        sub.add_argument("--save-inr", type=Path, help="also save the INR (.safetensors) to re-render it later")

    batch = commands.add_parser("batch", help="a prompt file to a folder of images; resumable; runs under torchrun")
    batch.add_argument("--prompts", type=Path, required=True, help="text file, one prompt per line ('#' = comment)")
    batch.add_argument("--out-dir", type=Path, required=True, help="folder for NNNNNN.png + NNNNNN.json and manifest.jsonl")
    batch.add_argument("--batch-size", type=int, default=4, help="prompts optimised together (default 4)")
    batch.add_argument("--negative", help="negative prompt for every image")
    add_model_arguments(batch)
    _add_run_args(batch, 400)

    evaluate = commands.add_parser("evaluate", help="score a folder written by batch")
    evaluate.add_argument("--dir", type=Path, required=True, help="folder written by the batch command")
    evaluate.add_argument("--judge", help="optional judge as module:function, e.g. benchmarks.toyworld.judge:judge_caption")
    add_model_arguments(evaluate)

    bank = commands.add_parser("bank", help="reference banks for Procrustes, blending and seed init")
    bank_commands = bank.add_subparsers(dest="bank_command", required=True)
    build = bank_commands.add_parser("build", help="build a bank from captioned images (resumable)")
    bank_build.add_arguments(build)
    for sub in (generate, batch):
        add_bank_arguments(sub)

    render = commands.add_parser("render", help="re-render a saved INR at any size")
    render.add_argument("--inr", type=Path, required=True, help="INR file written by --save-inr")
    render.add_argument("--width", type=int, required=True, help="output width in pixels")
    render.add_argument("--height", type=int, required=True, help="output height in pixels")
    render.add_argument("--out", type=Path, required=True, help="output PNG; a batch writes NAME_0.png, ...")
    return parser


def _output_paths(out: Path, count: int) -> list[Path]:
    return [out] if count == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix or '.png'}") for i in range(count)]


def _checked_output_paths(args: argparse.Namespace, count: int) -> list[Path]:
    """The ``count`` image paths ``--out`` stands for, and ``--save-inr``, checked before the work
    that produces them: an image suffix PIL writes, not a directory, a writable location, and an
    INR path that is not one of the images."""
    paths = _output_paths(args.out, count)
    for path in paths:
        image_format(path, "--out")
        check_writable_file(path, "--out")
    inr_path = getattr(args, "save_inr", None)
    if inr_path is not None:
        check_writable_file(inr_path, "--save-inr")
        if any(inr_path.expanduser().resolve() == path.expanduser().resolve() for path in paths):
            raise ValueError(f"--save-inr {str(inr_path)!r} is also an output image; give the INR its own "
                             "file name, e.g. --save-inr NAME.safetensors")
    return paths


def _check_precision_pair(args: argparse.Namespace) -> None:
    """Refuse bf16 weights under fp16 autocast and the reverse: torch fails on them only after the
    model load, deep inside the first batch norm ('mixed dtype'), and every weight would be cast to
    a half type it was not stored in. fp32 weights, no autocast, or auto (which follows half
    weights) go with anything."""
    weights = PRECISIONS[args.precision]
    compute = autocast_dtype(args.autocast, torch.device(args.device), weights)
    if weights == torch.float32 or compute in (None, weights):
        return
    raise ValueError(f"--precision {args.precision} (the CLIP's weights) cannot run under --autocast "
                     f"{args.autocast}: use --autocast {args.precision}, auto or fp32 with these weights, "
                     f"or --precision fp32")


def _check_render_size(width: int, height: int) -> None:
    """``render`` accepts the sizes the optimising commands render at; RunConfig holds that range."""
    RunConfig(width=width, height=height)


def _check_args(args: argparse.Namespace) -> None:
    """Checks that need no model or file contents, made before anything slow."""
    if getattr(args, "device", None) is not None:
        check_device(args.device)
    if getattr(args, "autocast", None) is not None:
        _check_precision_pair(args)
    if args.command == "render":
        _check_render_size(args.width, args.height)
    if hasattr(args, "no_seed"):  # generate and batch: bank options need --bank
        bank_options_from_args(args)


def _write_images(images: torch.Tensor, paths: list[Path]) -> None:
    for image, path in zip(images, paths):
        save_image(image, path)
        print(path)


def _run_task(args: argparse.Namespace) -> None:
    """generate / reconstruct / style / edit: check the inputs, load the CLIP, optimise, write."""
    config = _run_config(args)  # inputs are checked before the (slow) model load
    paths = _checked_output_paths(args, len(args.prompt) if args.command == "generate" else 1)
    images = {name: load_image(getattr(args, name)) for name in ("image", "content", "style_image")
              if getattr(args, name, None) is not None}
    clip = load_clip(args.model, args.weights, device=args.device, precision=args.precision)
    progress = None if args.quiet else ProgressBar()
    with progress or contextlib.nullcontext():
        result = _optimise(args, clip, images, config, progress)
    _write_images(result.images, paths)  # the images first: a failing --save-inr must not lose them
    if args.save_inr:
        save_inr(result.inr, args.save_inr)


def _optimise(args: argparse.Namespace, clip: ClipBundle, images: dict[str, torch.Tensor], config: RunConfig,
              progress: ProgressBar | None) -> InversionResult:
    from . import tasks

    fit_progress = None if progress is None else progress.fit
    if args.command == "generate":
        bank = load_bank(args.bank, clip) if args.bank else None
        return tasks.text_to_image(clip, args.prompt, config, negative_prompt=args.negative, seed=args.seed,
                                   callback=progress, bank=bank, bank_options=bank_options_from_args(args))
    if args.command == "reconstruct":
        return tasks.reconstruct(clip, images["image"], config, seed=args.seed, callback=progress)
    if args.command == "style":
        style = args.style if args.style is not None else images["style_image"]
        return tasks.style_transfer(clip, images["content"], style, config, content_weight=args.content_weight,
                                    fit_steps=args.fit_steps, seed=args.seed, callback=progress,
                                    fit_callback=fit_progress)
    if args.command == "edit":
        return tasks.edit(clip, images["image"], args.edit, config, source_prompt=args.source, strength=args.strength,
                          fit_steps=args.fit_steps, seed=args.seed, callback=progress, fit_callback=fit_progress)
    raise ValueError(f"unknown command {args.command!r}")


def _run_render(args: argparse.Namespace) -> None:
    inr = load_inr(args.inr)
    paths = _checked_output_paths(args, inr.batch_size)
    _write_images(inr.render(args.height, args.width), paths)


def _run_batch(args: argparse.Namespace) -> None:
    from .batch import read_prompts, remove_stale_temporaries, run_prompt_batches, write_manifest
    from .distributed import barrier, dist_env, process_group, rank_device

    config, items, env = _run_config(args), read_prompts(args.prompts), dist_env()
    device = rank_device(args.device, env)
    clip = load_clip(args.model, args.weights, device=device, precision=args.precision)
    bank = load_bank(args.bank, clip) if args.bank else None

    def report(batch) -> None:
        print(f"[rank {env.rank}/{env.world_size}] wrote {batch[0].stem}..{batch[-1].stem}", file=sys.stderr, flush=True)

    with process_group(env, device):
        if env.is_main:
            args.out_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(args.out_dir)
        barrier(env)
        summary = run_prompt_batches(clip, items, args.out_dir, config, seed=args.seed, batch_size=args.batch_size,
                                     negative_prompt=args.negative, rank=env.rank, world_size=env.world_size,
                                     on_batch=None if args.quiet else report, bank=bank,
                                     bank_options=bank_options_from_args(args))
        barrier(env)
        if env.is_main:
            print(write_manifest(args.out_dir))
    print(f"[rank {env.rank}] generated {summary.generated}, skipped {summary.skipped} complete, "
          f"{summary.seconds:.1f} s", file=sys.stderr)


def _run_evaluate(args: argparse.Namespace) -> None:
    from .evaluate import evaluate_folder, format_summary, load_judge, report_path, save_report

    path = report_path(args.dir)  # a missing or read-only folder is refused before the slow scoring
    judge = load_judge(args.judge) if args.judge else None
    clip = load_clip(args.model, args.weights, device=args.device, precision=args.precision) if (
        args.model or args.weights) else None
    if clip is None and judge is None:
        raise ValueError("evaluate needs a CLIP (--model/--weights) for CLIP scores, a --judge, or both")
    report = evaluate_folder(args.dir, clip, judge)
    print(format_summary(report["summary"]))  # shown before saving
    print(save_report(report, path))


def _run_command(args: argparse.Namespace) -> None:
    if args.command == "batch":
        _run_batch(args)
    elif args.command == "evaluate":
        _run_evaluate(args)
    elif args.command == "bank":
        bank_build.run_from_args(args)
    elif args.command == "render":
        _run_render(args)
    else:
        _run_task(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; bad input exits with ``error: ...`` and status 2, Ctrl-C with status 130
    (files are written atomically, so an interrupted run leaves no partial file)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _check_args(args)
        _run_command(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, MemoryError) as exc:
        parser.exit(2, f"error: {exc}\n")
    return 0
