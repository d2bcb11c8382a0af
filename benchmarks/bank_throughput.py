"""Reference-bank costs: build throughput (embedding vs seed fitting) and query latency at scale.

Build: writes ``--images`` synthetic captioned PNGs to a temporary folder and runs the real
builder (``bank_build.build_bank``) on them, reporting images/s separately for image loading +
CLIP embedding and for AWP seed fitting (``--seed-steps``; with fewer steps than the default
the seed rate at the default step count is also given, extrapolated linearly, since every step
costs the same). Query: a random unit-norm bank of ``--entries`` rows at the CLIP's embedding
size (no seeds), timing exact chunked top-k, local/global Procrustes, the blending target and
the file round trip.

    python -m benchmarks.bank_throughput [--model ViT-B-32] [--device cpu] [--images 32]
        [--seed-steps 300] [--entries 100000] [--threads N] [--skip-build] [--skip-query]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from inversion_core import INRConfig, load_clip
from inversion_core.awp import SeedConfig
from inversion_core.bank import ReferenceBank, load_bank
from inversion_core.bank_build import build_bank
from inversion_core.blending import blend_target
from inversion_core.procrustes import DEFAULT_LOCAL_K, fit_global_procrustes, project_local
from inversion_core.retrieval import cosine_topk


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_ms(fn, device: torch.device, repeats: int) -> tuple[float, float]:
    """(best, median) wall time of fn in ms over `repeats` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return min(times), statistics.median(times)


def _write_images(folder: Path, count: int, size: int = 256) -> None:
    from PIL import Image, ImageDraw

    g = torch.Generator().manual_seed(0)
    colours = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
    shapes = ["circle", "square"]
    for i in range(count):
        rgb = tuple(int(v) for v in torch.randint(0, 256, (3,), generator=g))
        image = Image.new("RGB", (size + 32 * (i % 3), size), tuple(int(v) for v in torch.randint(0, 256, (3,), generator=g)))
        x0, y0 = (int(v) for v in torch.randint(0, size // 2, (2,), generator=g))
        shape = shapes[i % 2]
        (ImageDraw.Draw(image).ellipse if shape == "circle" else ImageDraw.Draw(image).rectangle)(
            (x0, y0, x0 + size // 3, y0 + size // 3), fill=rgb)
        image.save(folder / f"img{i:05d}.png")
        (folder / f"img{i:05d}.txt").write_text(f"a {colours[i % len(colours)]} {shape} on a plain background")


def bench_build(clip, images: int, seed_steps: int, batch_size: int, seeds: bool) -> None:
    seed_config = SeedConfig(steps=seed_steps)
    default_steps = SeedConfig().steps
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "refs"
        folder.mkdir()
        _write_images(folder, images)
        report = build_bank(folder, Path(tmp) / "bank.safetensors", clip, seed_config=seed_config,
                            with_seeds=seeds, batch_size=batch_size, progress=False)
        size_mb = (Path(tmp) / "bank.safetensors").stat().st_size / 2**20
    n = report.count
    print(f"build: {n} images (256 px PNG), batch {batch_size}, bank file {size_mb:.1f} MiB")
    print(f"  load+crop       {report.load_seconds:8.2f} s  {n / report.load_seconds:9.1f} images/s")
    print(f"  CLIP embedding  {report.embed_seconds:8.2f} s  {n / report.embed_seconds:9.1f} images/s "
          f"(image + caption)")
    if seeds:
        rate = n / report.seed_seconds
        cfg = seed_config
        print(f"  seed fitting    {report.seed_seconds:8.2f} s  {rate:9.3f} images/s at {cfg.steps} steps "
              f"(γ={cfg.gamma:g}, {cfg.size} px, INR {INRConfig().hidden_layers}x{INRConfig().width})")
        if cfg.steps != default_steps:
            print(f"                  extrapolated {rate * cfg.steps / default_steps:9.3f} images/s at the default "
                  f"{default_steps} steps")


def bench_query(clip, entries: int, repeats: int, tmp_dir: str | None) -> None:
    device, D = clip.device, clip.embed_dim
    g = torch.Generator().manual_seed(0)
    image_e = F.normalize(torch.randn(entries, D, generator=g), dim=-1)
    text_e = F.normalize(image_e + 0.8 * torch.randn(entries, D, generator=g), dim=-1)
    captions = [f"caption {i}" for i in range(entries)]
    start = time.perf_counter()
    bank = ReferenceBank(image_e, text_e, captions, clip.identity)  # validation pass included
    print(f"query: {entries} entries x D={D}, embeddings {2 * image_e.numel() * 4 / 2**20:.0f} MiB on the CPU; "
          f"queries on {device}")
    print(f"  bank validation           {(time.perf_counter() - start) * 1000:9.1f} ms")
    ms, _ = _best_ms(lambda: fit_global_procrustes(text_e, image_e), torch.device("cpu"), 1)
    print(f"  global Procrustes fit     {ms:9.1f} ms (once per bank; cached in the file)")
    on_device = bank.to(device)
    for B in (1, 8):
        q = F.normalize(torch.randn(B, D, generator=g), dim=-1).to(device)
        best, median = _best_ms(lambda q=q: on_device.nearest_pairs(q, DEFAULT_LOCAL_K), device, repeats)
        print(f"  top-{DEFAULT_LOCAL_K} B={B} (bank on {device})   best {best:8.2f} ms  median {median:8.2f} ms")
        best, median = _best_ms(lambda q=q: cosine_topk(q, text_e, DEFAULT_LOCAL_K), device, repeats)
        print(f"  top-{DEFAULT_LOCAL_K} B={B} (bank on cpu, streamed) best {best:8.2f} ms  median {median:8.2f} ms")

        def local(q=q):
            _, idx = on_device.nearest_pairs(q, DEFAULT_LOCAL_K)
            E_T, E_I = on_device.pair_embeddings(idx)
            return project_local(q, E_T, E_I)

        best, median = _best_ms(local, device, repeats)
        print(f"  local Procrustes B={B} (retrieval + fit) best {best:8.2f} ms  median {median:8.2f} ms")
        best, median = _best_ms(lambda q=q: blend_target(q, on_device.image_embeddings), device, repeats)
        print(f"  blending target B={B}     best {best:8.2f} ms  median {median:8.2f} ms")
    with tempfile.TemporaryDirectory(dir=tmp_dir) as tmp:
        path = Path(tmp) / "bank.safetensors"
        start = time.perf_counter()
        bank.save(path)
        saved = time.perf_counter() - start
        start = time.perf_counter()
        load_bank(path, clip)
        loaded = time.perf_counter() - start
        print(f"  file {path.stat().st_size / 2**20:.0f} MiB: save {saved:.2f} s, load+verify {loaded:.2f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32", help="open_clip architecture or config .json (random weights)")
    parser.add_argument("--weights", help="optional weights file")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=32, help="images to build a bank from")
    parser.add_argument("--batch-size", type=int, default=32, help="shard / batch size of the build")
    parser.add_argument("--seed-steps", type=int, default=SeedConfig().steps, help="seed fitting steps")
    parser.add_argument("--no-seeds", action="store_true", help="build embeddings only")
    parser.add_argument("--entries", type=int, default=100_000, help="bank size for the query benchmark")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--tmp-dir", help="where to write the query benchmark's bank file (default: system temp)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice); on a shared, "
                        "oversubscribed machine 1 thread avoids OpenMP contention stalls")
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--skip-query", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    clip = load_clip(args.model, args.weights, device=args.device)
    print(f"model={clip.identity} D={clip.embed_dim} device={clip.device} threads={torch.get_num_threads()}")
    if not args.skip_build:
        bench_build(clip, args.images, args.seed_steps, args.batch_size, not args.no_seeds)
    if not args.skip_query:
        bench_query(clip, args.entries, args.repeats, args.tmp_dir)


if __name__ == "__main__":
    main()
