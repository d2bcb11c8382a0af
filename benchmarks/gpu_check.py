"""The prepared GPU check: prints the figures the speed targets are stated in.

400-step ViT-B/32 (random weights: speed does not depend on weight values) at 224 px and the
default views: seconds per single image in fp32 and bf16 autocast, batched throughput for
k = 1, 4, 16, the step/floor ratio, and peak memory. Meant to finish in a few minutes on one
datacenter GPU; run it through ``benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.step_overhead import measure
from inversion_core import RunConfig, load_clip, text_to_image


def timed_run(clip, batch: int, steps: int, precision: str, compile_mode: str) -> float:
    config = RunConfig(steps=steps, precision=precision, compile=compile_mode)
    prompts = [f"a watercolour of a lighthouse, variant {i}" for i in range(batch)]
    torch.cuda.synchronize()
    start = time.perf_counter()
    text_to_image(clip, prompts, config)
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--compile", default="off", choices=("off", "default", "reduce-overhead"))
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check needs a CUDA GPU")
    print(f"GPU: {torch.cuda.get_device_name()}  torch {torch.__version__}  model {args.model}  steps {args.steps}")
    clip = load_clip(args.model, device="cuda")
    timed_run(clip, 1, 10, "bf16", args.compile)  # warm-up: kernels, cuDNN autotune, tokenizer
    for precision in ("fp32", "bf16"):
        torch.cuda.reset_peak_memory_stats()
        seconds = timed_run(clip, 1, args.steps, precision, args.compile)
        print(f"single image, {precision}: {seconds:.2f} s / image  "
              f"(peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB)")
    for batch in args.batches:
        torch.cuda.reset_peak_memory_stats()
        seconds = timed_run(clip, batch, args.steps, "bf16", args.compile)
        print(f"batch {batch:3d}, bf16: {seconds:.2f} s, {batch / seconds:.2f} images/s  "
              f"(peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB)")
    for precision in ("fp32", "bf16"):
        r = measure(clip, views=RunConfig().augment.views, batch=1, inr_width=RunConfig().inr.width, repeats=10,
                    precision=precision, compile_mode=args.compile)
        print(f"step/floor ({precision}): step {r['step_s'] * 1000:.1f} ms, CLIP floor {r['floor_s'] * 1000:.1f} ms, "
              f"ratio {r['ratio']:.3f}")


if __name__ == "__main__":
    main()
