"""How good, and how CLIP-like, a CLIP trained on the toy world is.

Three kinds of numbers:
* retrieval: text -> image top-1 / top-5 among a set of distinct scenes, on held-out
  combinations (never seen in training) and on training combinations (fresh renders);
* modality gap: mean cosine of matched text-image pairs against the cosine of two renders of
  one scene (same caption, other nuisances). A real CLIP has matched text-image ~0.3, far below
  image-image; a toy CLIP that closes this gap cannot measure Procrustes or blending;
* attribute choice (`clip_choice`): per attribute, how often a caption prefers its scene to
  every scene that differs in that attribute alone, the most any inversion of the CLIP can be
  steered toward.

`python -m benchmarks.toyworld.clip_metrics` re-measures the shipped model.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from benchmarks.toyworld import world

MODEL_DIR = Path(__file__).parent / "model"
# Clean renders per scene over which the CLIP's preference for it is taken (the benchmark's
# `above renders` and `clip_choice`): one render's textures and clutter can swing a cosine.
RENDER_DRAWS = 8


def from_uint8(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 world renders -> (B, 3, H, W) in [0, 1], what the engine's CLIP and the
    inversion methods take."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


def to_model_input(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> normalised float (B, 3, H, W), the layout open_clip expects."""
    return (from_uint8(images) - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@torch.no_grad()
def encode_texts(model: torch.nn.Module, tokenizer, texts: list[str]) -> torch.Tensor:
    """(N, D) L2-normalised text embeddings."""
    return model.encode_text(tokenizer(texts), normalize=True)


@torch.no_grad()
def encode_images(model: torch.nn.Module, images: np.ndarray, mean: Sequence[float],
                  std: Sequence[float]) -> torch.Tensor:
    """(N, D) L2-normalised image embeddings of uint8 (N, H, W, 3) images."""
    return model.encode_image(to_model_input(images, mean, std), normalize=True)


def _retrieval(text: torch.Tensor, image: torch.Tensor) -> dict[str, float]:
    """Text i should retrieve image i among all images."""
    sims = text @ image.T  # (N, N)
    ranks = (sims > sims.diag()[:, None]).sum(dim=1)
    return {"top1": float((ranks == 0).float().mean()), "top5": float((ranks < 5).float().mean())}


def _mean_off_diagonal(m: torch.Tensor) -> float:
    n = m.shape[0]
    return float((m.sum() - m.diag().sum()) / (n * n - n))


def measure(model: torch.nn.Module, tokenizer, mean: Sequence[float], std: Sequence[float],
            count: int = 100, seed: int = 1234, image_size: int = 64) -> dict[str, float]:
    """All the numbers in the README, from `count` distinct scenes per split.

    Captions are full (every attribute named) in random wording; "two renders" share a scene and
    differ in every nuisance.
    """
    model.eval()
    rng = np.random.default_rng(seed)
    out: dict[str, float] = {}
    for split in world.SPLITS:
        scenes = world.distinct_scenes(count, split, rng)
        text, text2 = (encode_texts(model, tokenizer,
                                    [world.caption(s, rng, full=True) for s in scenes])
                       for _ in range(2))
        image, image2 = (encode_images(model,
                                       np.stack([world.render(s, image_size, rng) for s in scenes]),
                                       mean, std)
                         for _ in range(2))
        for name, value in _retrieval(text, image).items():
            out[f"{split}/text_to_image_{name}"] = value
        tv = text @ image.T
        out[f"{split}/cos_text_image_matched"] = float(tv.diag().mean())
        out[f"{split}/cos_text_image_unmatched"] = _mean_off_diagonal(tv)
        out[f"{split}/cos_image_image_same_scene"] = float((image * image2).sum(-1).mean())
        out[f"{split}/cos_image_image_other_scene"] = _mean_off_diagonal(image @ image2.T)
        out[f"{split}/cos_text_text_same_scene"] = float((text * text2).sum(-1).mean())
    return out


def clip_choice(clip, attributes: Sequence[dict[str, str]], prompts: list[str], size: int, seed: int,
                draws: int = RENDER_DRAWS) -> list[dict[str, bool]]:
    """Per prompt and attribute: does the CLIP prefer the prompted scene to every scene that
    differs from it in that attribute alone? Cosines to the prompt are averaged over `draws`
    renders of each scene (the scene and its variants share each draw's nuisances).

    An inversion can only be steered toward an attribute the CLIP tells apart, so this is what
    the CLIP offers every method (the benchmark's "(CLIP choice)" row): judge accuracy well above
    it is luck, and a method below it loses something the objective did say. `clip` is the
    engine's (`load_engine_clip`)."""
    verdicts = []
    with torch.no_grad():
        text = clip.encode_text(prompts)
        for i, attrs in enumerate(attributes):
            scene = world.Scene.from_attributes(attrs)
            swaps = world.single_swaps(scene)
            scenes = [scene, *(swapped for _, swapped in swaps)]
            cosines = torch.zeros(len(scenes))
            for draw in range(draws):
                renders = np.stack([world.render(s, size, np.random.default_rng([seed, i, draw]))
                                    for s in scenes])
                cosines += (clip.encode_image(from_uint8(renders)) @ text[i]).cpu()
            rivals = {key: [] for key in attrs}
            for (key, _), cosine in zip(swaps, cosines[1:]):
                rivals[key].append(float(cosine))
            verdicts.append({key: bool(cosines[0] > max(rivals[key])) for key in attrs})
    return verdicts


def choice_by_split(clip, count: int = 48, seed: int = 1234, size: int = 64) -> dict[str, float]:
    """`clip_choice` per attribute on `count` distinct scenes of each split, canonical captions:
    how well the CLIP tells each attribute on the combinations it was trained on vs held out."""
    rng = np.random.default_rng(seed)
    out = {}
    for split in world.SPLITS:
        scenes = world.distinct_scenes(count, split, rng)
        verdicts = clip_choice(clip, [s.attributes() for s in scenes],
                               [world.canonical_caption(s) for s in scenes], size, seed)
        for key in world.ATTRIBUTE_KEYS:
            named = [v[key] for v in verdicts if key in v]
            if named:
                out[f"{split}/choice_{key}"] = float(np.mean(named))
    return out


def load_shipped(model_dir: Path = MODEL_DIR) -> tuple[torch.nn.Module, object, dict]:
    """Rebuild the shipped toy CLIP exactly as a real open_clip checkpoint is rebuilt: config
    JSON -> `open_clip.CLIP(**model_cfg)` -> strict `load_state_dict` from safetensors."""
    import open_clip
    from safetensors.torch import load_file

    config_path, weights_path = model_dir / "toyclip.json", model_dir / "toyclip.safetensors"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; run python -m benchmarks.toyworld.train_clip")
    config = json.loads(config_path.read_text())
    model = open_clip.CLIP(**config["model_cfg"])
    model.load_state_dict(load_file(weights_path), strict=True)
    tokenizer = open_clip.SimpleTokenizer(context_length=config["model_cfg"]["text_cfg"]["context_length"])
    return model.eval(), tokenizer, config


def load_engine_clip(model_dir: Path = MODEL_DIR):
    """The shipped toy CLIP as the engine loads any CLIP (`inversion_core.load_clip`, on the CPU):
    what the benchmarks invert."""
    from inversion_core import load_clip

    return load_clip(str(model_dir / "toyclip.json"), weights=str(model_dir / "toyclip.safetensors"), device="cpu")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    parser.add_argument("--count", type=int, default=100, help="distinct scenes per split")
    parser.add_argument("--choice-count", type=int, default=48,
                        help="distinct scenes per split for the attribute-choice numbers")
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    model, tokenizer, config = load_shipped(args.model_dir)
    pre = config["preprocess_cfg"]
    metrics = measure(model, tokenizer, pre["mean"], pre["std"], args.count, args.seed)
    metrics |= choice_by_split(load_engine_clip(args.model_dir), args.choice_count, args.seed)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
