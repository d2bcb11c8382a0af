"""A tiny slice of the toy-world benchmark (CI smoke test): every method runs on the shipped toy
CLIP, the judge scores each image, and the report files are written."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from benchmarks.toyworld import clip_metrics, run, world
from benchmarks.toyworld.clip_metrics import MODEL_DIR, from_uint8

pytestmark = pytest.mark.skipif(not (MODEL_DIR / "toyclip.safetensors").is_file(),
                                reason="shipped toy CLIP missing; run python -m "
                                       "benchmarks.toyworld.train_clip")


def test_held_out_prompts_are_distinct_and_held_out():
    prompts = run.held_out_prompts(12, seed=3)
    assert len({text for text, _ in prompts}) == 12
    assert all(world.is_held_out(world.Scene.from_attributes(a)) for _, a in prompts)


def test_every_method_runs_and_is_scored(tmp_path):
    scores = run.main(["--prompts", "2", "--steps", "2", "--views", "2", "--seed-steps", "2",
                       "--threads", "1", "--out", str(tmp_path)])
    assert list(scores) == list(run.METHODS)
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["world_render"]["mean_accuracy"] == 1.0  # clean renders of the prompts
    for name, method in report["methods"].items():
        assert set(method["accuracy"]) <= set(world.ATTRIBUTE_KEYS), name
        assert 0.0 <= method["mean_accuracy"] <= 1.0 and method["seconds_per_image"] > 0
        assert 0.0 <= method["above_renders"] <= 1.0, name
    choice = report["clip_choice"]
    assert set(choice["accuracy"]) <= set(world.ATTRIBUTE_KEYS) and choice["clip_cosine"] is None
    sheet = Image.open(tmp_path / "contact_sheet.png")
    assert sheet.size[1] == 96 * (len(run.METHODS) + 1)
    assert "| clipinv_plain |" in (tmp_path / "results.md").read_text()
    assert "| (CLIP choice) |" in (tmp_path / "results.md").read_text()


def test_above_renders_counts_images_the_clip_prefers_to_every_clean_render():
    import numpy as np

    from inversion_core import load_clip

    clip = load_clip(str(MODEL_DIR / "toyclip.json"), weights=str(MODEL_DIR / "toyclip.safetensors"))
    texts, attributes = zip(*run.held_out_prompts(3, seed=1))
    texts = list(texts)
    first = run.best_render_cosines(clip, attributes, texts, 64, seed=5, draws=1)
    best = run.best_render_cosines(clip, attributes, texts, 64, seed=5, draws=4)
    assert best.shape == (3,) and torch.all(best >= first)  # the first draw is among the four
    rng = np.random.default_rng([5, 0])  # the first draw's renders themselves
    images = from_uint8(np.stack([world.render(world.Scene.from_attributes(a), 64, rng)
                                      for a in attributes]))
    tied = run.score(images, attributes, clip, texts, 1.0, first)
    assert tied.above_renders == 0.0  # equal to the best render is not above it
    assert run.score(images, attributes, clip, texts, 1.0, first - 1e-3).above_renders == 1.0


def test_clip_choice_is_whether_the_clip_prefers_the_scene_to_each_one_attribute_change():
    clip = run.load_engine_clip(MODEL_DIR)
    texts, attributes = zip(*run.held_out_prompts(4, seed=2))
    verdicts = clip_metrics.clip_choice(clip, attributes, list(texts), 64, seed=0, draws=2)
    assert [set(v) for v in verdicts] == [set(a) for a in attributes]
    # The toy CLIP knows colours and backgrounds (README: 1.00 on the benchmark's prompts).
    assert all(v["colour"] and v["background"] for v in verdicts)

    class Blind:  # scores every image alike: a tie is no preference
        encode_text = clip.encode_text

        @staticmethod
        def encode_image(images):
            return torch.nn.functional.normalize(torch.ones(len(images), 128), dim=-1)

    blind = clip_metrics.clip_choice(Blind, attributes, list(texts), 64, seed=0, draws=1)
    assert not any(ok for v in blind for ok in v.values())


def test_choice_by_split_reports_each_attribute_on_training_and_held_out_scenes():
    choice = clip_metrics.choice_by_split(run.load_engine_clip(MODEL_DIR), count=3, seed=0)
    assert {"train/choice_shape", "held_out/choice_shape", "held_out/choice_colour"} <= set(choice)
    assert all(0.0 <= value <= 1.0 for value in choice.values())


def test_unknown_methods_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown method 'dalle'.*clipinv_plain"):
        run.BenchmarkConfig(methods=("dalle",))


def test_sweep_scores_each_variant_with_its_overrides():
    from benchmarks.toyworld.sweep import sweep, variant_config

    config = variant_config({"schedule": {"lr": 3e-4}, "steps": 5}, steps=150, size=64, views=2)
    assert config.schedule.lr == 3e-4 and config.steps == 5 and config.augment.views == 2
    assert config.schedule.kind == "coarse_to_fine"  # untouched fields keep their defaults
    lines = []
    scores = sweep({"a": {}, "flat": {"schedule": {"kind": "flat"}}}, prompts=1, steps=2, views=2, log=lines.append)
    assert set(scores) == {"a", "flat"} and len(lines) == 2
    assert all(0 <= s.mean_accuracy <= 1 for s in scores.values())


def test_standard_error_resamples_prompts_and_shrinks_with_more_of_them():
    right, wrong = {"shape": True, "colour": True}, {"shape": False, "colour": False}
    assert run.bootstrap_standard_error([right] * 6) == 0.0
    few = run.bootstrap_standard_error([right, wrong])
    many = run.bootstrap_standard_error([right, wrong] * 8)
    assert few == pytest.approx(0.5 / 2 ** 0.5, abs=0.03)  # binomial s.e. over 2 prompts, not 4 verdicts
    assert many == pytest.approx(0.5 / 16 ** 0.5, abs=0.02) and many < few


def test_paired_difference_resamples_both_methods_on_the_same_prompts():
    hard, easy = {"shape": False, "colour": False}, {"shape": True, "colour": False}
    baseline = [hard, easy] * 8  # mean 0.25, prompts of very different difficulty
    better = [{"shape": True, "colour": False}, {"shape": True, "colour": True}] * 8  # one more right on each
    difference, error = run.paired_difference(better, baseline)
    assert difference == pytest.approx(0.5)
    assert error == pytest.approx(0.0, abs=1e-12)  # better by the same amount on every prompt
    assert run.bootstrap_standard_error(baseline) > 0.05  # while each row alone swings with the draw
    assert run.paired_difference(baseline, baseline) == (0.0, 0.0)
    mixed = [hard, easy] * 7 + [easy, easy]  # one prompt better: a small, uncertain difference
    difference, error = run.paired_difference(mixed, baseline)
    assert difference == pytest.approx(1 / 32) and 0 < error < run.bootstrap_standard_error(baseline)
    with pytest.raises(ValueError, match="same prompts"):
        run.paired_difference(baseline, baseline[:-1])


def test_report_lists_the_paired_differences_of_the_methods_run():
    def method(verdicts):
        return run.MethodScore(accuracy={}, mean_accuracy=0.0, standard_error=0.0, clip_cosine=0.0,
                               above_renders=0.0, seconds_per_image=1.0, verdicts=verdicts)

    right, wrong = {"shape": True}, {"shape": False}
    scores = {"pixel_tv": method([wrong, wrong]), "clipinv_plain": method([right, wrong])}
    report = run._markdown(run.BenchmarkConfig(prompts=2), scores)
    assert "| clipinv_plain − pixel_tv | INR + schedule vs free pixels | +0.500 ± " in report
    assert "pyramid" not in report.split("Paired differences")[1]  # not run, not compared


def test_retrieval_returns_the_reference_image_whose_caption_is_nearest():
    from benchmarks.toyworld.make_reference_set import DEFAULT_DIR
    from inversion_core import INRConfig
    from inversion_core.bank_build import load_square_image

    clip = run.load_engine_clip(MODEL_DIR)
    names = ["00007", "00123"]
    captions = [(DEFAULT_DIR / f"{n}.txt").read_text().strip() for n in names]
    seeded = run.SeededBank.build(clip, captions, DEFAULT_DIR, INRConfig(), seed_config=None)
    assert seeded.seeds is None  # nothing fitted when no method starts from a seed
    assert [p.name for p in seeded.references] == [f"{n}.png" for n in names]
    images = run.generate(run.RETRIEVAL, clip, captions, run.BenchmarkConfig(size=96), seeded)
    assert images.shape == (2, 3, 96, 96)
    assert torch.equal(images[1], load_square_image(str(DEFAULT_DIR / "00123.png"), 96))
