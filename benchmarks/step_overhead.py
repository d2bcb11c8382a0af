"""Cost of one CLIP⁻¹ optimisation step against its floor, the bare CLIP image-tower pass.

The CLIP forward + backward over the B x n views is work no implementation can skip, so the
step/floor ratio measures everything we add (INR render, augmentations, loss, Adam, schedule).
For a batch of B images it also prints the throughput (images per second of optimisation)
relative to B = 1. Both are timed in one run, on the same device and views, interleaved (a floor
pass runs inside every step callback), best of ``--repeats``.

    python -m benchmarks.step_overhead [--model ViT-B-32] [--views 16] [--batch 1 4] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch

from inversion_core import AugmentConfig, INRConfig, RunConfig, invert, load_clip, text_target


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(clip, views: int, batch: int, inr_width: int, repeats: int, precision: str = "fp32",
            compile_mode: str = "off") -> dict[str, float]:
    """Best-of-``repeats`` seconds of one full step and of the bare CLIP pass on the same views."""
    config = RunConfig(steps=repeats + 2, width=clip.image_size, height=clip.image_size,
                       inr=INRConfig(width=inr_width), augment=AugmentConfig(views=views),
                       precision=precision, compile=compile_mode)
    targets = [text_target(f"a photo of a red fox in the snow, variant {i}") for i in range(batch)]
    pixels = torch.rand(batch * views, 3, clip.image_size, clip.image_size, device=clip.device)
    amp = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]

    def floor_pass() -> None:
        x = pixels.clone().requires_grad_(True)
        with torch.autocast(clip.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            embeddings = clip.encode_image(x)
        embeddings.sum().backward()

    floor_times, stamps = [], []

    def on_step(progress) -> None:
        _sync(clip.device)
        stamps.append(time.perf_counter())
        start = time.perf_counter()
        floor_pass()
        _sync(clip.device)
        floor_times.append(time.perf_counter() - start)
        stamps.append(time.perf_counter())

    floor_pass()  # warm-up
    invert(clip, targets, config, callback=on_step)
    # gaps between one callback's end and the next one's start are pure optimisation steps;
    # the first gap (warm-up, compilation) is dropped
    step_times = [stamps[i + 1] - stamps[i] for i in range(3, len(stamps) - 1, 2)]
    floor, step = min(floor_times), min(step_times)
    return {"floor_s": floor, "step_s": step, "ratio": step / floor, "images_per_s": batch / step}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32", help="open_clip architecture (random weights)")
    parser.add_argument("--views", type=int, nargs="+", default=[AugmentConfig().views])
    parser.add_argument("--batch", type=int, nargs="+", default=[1], help="images optimised together")
    parser.add_argument("--inr-width", type=int, default=INRConfig().width)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"), help="autocast of the CLIP pass")
    parser.add_argument("--compile", default="off", choices=("off", "default", "reduce-overhead"))
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args(argv)
    clip = load_clip(args.model, device=args.device)
    print(f"model={args.model} device={args.device} threads={torch.get_num_threads()} precision={args.precision} "
          f"compile={args.compile} inr_width={args.inr_width}")
    for views in args.views:
        single = None
        for batch in args.batch:
            r = measure(clip, views, batch, args.inr_width, args.repeats, args.precision, args.compile)
            single = single or (r["images_per_s"] if batch == 1 else None)
            relative = f"  throughput x{r['images_per_s'] / single:.2f} vs batch 1" if single else ""
            print(f"views={views:3d} batch={batch:3d}  clip floor {r['floor_s'] * 1000:9.1f} ms  "
                  f"full step {r['step_s'] * 1000:9.1f} ms  step/floor {r['ratio']:.3f}  "
                  f"{r['images_per_s']:.2f} img-steps/s{relative}")
            if clip.device.type == "cuda":
                print(f"    peak GPU memory {torch.cuda.max_memory_allocated(clip.device) / 2**30:.2f} GiB")
                torch.cuda.reset_peak_memory_stats(clip.device)


if __name__ == "__main__":
    main()
