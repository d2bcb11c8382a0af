"""The toy CLIP's training script and the shipped model: open_clip loads the weights strictly,
the engine loads them like any CLIP, and the model keeps a modality gap while still reading
held-out combinations."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from benchmarks.toyworld import clip_metrics, train_clip, world

SHIPPED = clip_metrics.MODEL_DIR / "toyclip.safetensors"
needs_model = pytest.mark.skipif(not SHIPPED.is_file(),
                                 reason="shipped toy CLIP missing; run python -m "
                                        "benchmarks.toyworld.train_clip")


def test_learning_rate_schedule_warms_up_then_decays_to_its_floor():
    cfg = train_clip.TrainConfig(steps=100, warmup=10, lr=1e-3, min_lr_ratio=0.1)
    rates = [train_clip.lr_at(s, cfg) for s in range(100)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in itertools.pairwise(rates[10:]))
    assert rates[-1] == pytest.approx(1e-4, rel=0.05)


def test_positives_mark_every_image_a_caption_truly_describes():
    red_circle = world.Scene(shape="circle", colour="red", background="white", size="small",
                             position="left")
    other = world.Scene(shape="circle", colour="red", background="black", size="large",
                        position="top")
    captions = [world.Caption("a red circle", {"shape": "circle", "colour": "red"}),
                world.Caption("a large red circle", {"shape": "circle", "colour": "red",
                                                     "size": "large"})]
    positive = train_clip.positives(captions, [red_circle, other])
    assert positive.tolist() == [[True, False], [True, True]]


def test_loss_with_one_positive_per_row_is_clips_loss():
    g = torch.Generator().manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1)
    logits = 100 * image @ text.T
    labels = torch.arange(6)
    expected = (torch.nn.functional.cross_entropy(logits, labels)
                + torch.nn.functional.cross_entropy(logits.T, labels)) / 2
    got = train_clip.clip_loss(image, text, 100.0, torch.eye(6, dtype=torch.bool))
    torch.testing.assert_close(got, expected)


def test_a_tiny_run_saves_a_strictly_loadable_open_clip_model(tmp_path):
    report = train_clip.main(["--steps", "2", "--batch-size", "8", "--warmup", "1", "--threads", "1",
                              "--eval-every", "0", "--eval-count", "8", "--out-dir",
                              str(tmp_path)])
    assert set(report["metrics"]) >= {"held_out/text_to_image_top1",
                                      "train/cos_text_image_matched"}
    _, _, config = clip_metrics.load_shipped(tmp_path)  # strict load inside
    assert config["model_cfg"] == train_clip.MODEL_CFG
    assert json.loads((tmp_path / "metrics.json").read_text())["train_config"]["steps"] == 2


@needs_model
def test_the_engine_loads_the_shipped_model_like_any_clip():
    from inversion_core import load_clip

    clip = load_clip(str(clip_metrics.MODEL_DIR / "toyclip.json"), weights=str(SHIPPED))
    scene = world.Scene(shape="star", colour="purple", background="white", size="large",
                        position="center")  # a held-out pair
    image = torch.from_numpy(world.render(scene, 64, 0)).permute(2, 0, 1)[None].float() / 255
    captions = [world.canonical_caption(scene),
                world.canonical_caption(world.Scene(shape="square", colour="red",
                                                    background="black", size="small",
                                                    position="left"))]
    with torch.no_grad():
        cosine = clip.encode_image(image) @ clip.encode_text(captions).T
    assert cosine[0, 0] > cosine[0, 1]


@needs_model
def test_shipped_model_keeps_a_modality_gap_and_reads_held_out_pairs():
    model, tokenizer, config = clip_metrics.load_shipped()
    pre = config["preprocess_cfg"]
    torch.set_num_threads(1)
    m = clip_metrics.measure(model, tokenizer, pre["mean"], pre["std"], count=40, seed=7)
    assert m["held_out/text_to_image_top1"] >= 0.3  # chance is 1/40
    assert m["train/cos_text_image_matched"] < 0.6
    assert m["train/cos_image_image_same_scene"] > m["train/cos_text_image_matched"] + 0.3
    np.testing.assert_array_less(m["train/cos_text_image_unmatched"],
                                 m["train/cos_text_image_matched"])
