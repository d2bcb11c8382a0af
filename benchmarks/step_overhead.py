"""Cost of one CLIP⁻¹ optimisation step against its floor, the bare CLIP image-tower pass.

The CLIP forward + backward over the n views is work no implementation can skip, so the
step/floor ratio measures everything we add (INR render, augmentations, loss, Adam, schedule).
Both are timed in one run, on the same device, same views, alternating, best-of-k.

    python -m benchmarks.step_overhead [--model ViT-B-32] [--views 16] [--device cpu] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from inversion_core import AugmentConfig, INRConfig, RunConfig, load_clip, text_target
from inversion_core.optimise import invert


def _timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def measure(model: str, views: int, device: str, repeats: int, inr_width: int) -> dict[str, float]:
    clip = load_clip(model, device=device)
    config = RunConfig(steps=repeats + 1, width=clip.image_size, height=clip.image_size,
                       inr=INRConfig(width=inr_width), augment=AugmentConfig(views=views))
    target = text_target("a photo of a red fox in the snow")
    pixels = torch.rand(views, 3, clip.image_size, clip.image_size, device=clip.device)

    def floor_pass() -> None:
        x = pixels.clone().requires_grad_(True)
        clip.encode_image(x).sum().backward()

    # Step times are the gaps between consecutive step callbacks (setup and final render excluded);
    # a floor pass runs inside each gap's neighbour callback, so both see the same machine state.
    floor_times, stamps = [], []

    def on_step(progress) -> None:
        if clip.device.type == "cuda":
            torch.cuda.synchronize(clip.device)
        stamps.append(time.perf_counter())
        floor_times.append(_timed(floor_pass, clip.device))
        stamps.append(time.perf_counter())

    floor_pass()  # warm-up
    invert(clip, target, config, callback=on_step)
    step_times = [stamps[i + 1] - stamps[i] for i in range(1, len(stamps) - 1, 2)]
    floor, step = min(floor_times), min(step_times)
    return {"floor_s": floor, "step_s": step, "ratio": step / floor}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32", help="open_clip architecture (random weights)")
    parser.add_argument("--views", type=int, nargs="+", default=[AugmentConfig().views])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--inr-width", type=int, nargs="+", default=[INRConfig().width])
    args = parser.parse_args(argv)
    print(f"model={args.model} device={args.device} threads={torch.get_num_threads()}")
    for views in args.views:
        for inr_width in args.inr_width:
            r = measure(args.model, views, args.device, args.repeats, inr_width)
            print(f"views={views:3d} inr_width={inr_width:4d}  clip floor {r['floor_s'] * 1000:8.1f} ms  "
                  f"full step {r['step_s'] * 1000:8.1f} ms  ratio {r['ratio']:.3f}")


if __name__ == "__main__":
    main()
