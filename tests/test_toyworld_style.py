"""The toy-world style-transfer benchmark: its cases, its scoring, and a two-case smoke run of `main`."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from benchmarks.toyworld import style as style_benchmark
from benchmarks.toyworld import world
from benchmarks.toyworld.clip_metrics import MODEL_DIR, from_uint8
from benchmarks.toyworld.edit import score_edits


def _render(scenes):
    rng = np.random.default_rng(0)
    return from_uint8(np.stack([world.render(s, 64, rng) for s in scenes]))


def test_style_differs_from_content_in_palette_shape_and_position():
    cases = style_benchmark.style_cases(6, seed=1)
    for case in cases:
        assert not case.content.is_relational and not case.style.is_relational
        for attribute in ("colour", "background", "shape", "position"):
            assert getattr(case.content, attribute) != getattr(case.style, attribute)
        expected = case.expected().edited
        assert (expected.colour, expected.background) == (case.style.colour, case.style.background)
        assert (expected.shape, expected.size, expected.position) == (
            case.content.shape, case.content.size, case.content.position)
    assert style_benchmark.style_cases(6, seed=1) == cases  # deterministic


def test_scoring_rewards_the_restyled_content_not_a_copy_of_either_input():
    cases = style_benchmark.style_cases(4, seed=2)
    expected = [c.expected() for c in cases]
    right = score_edits(_render([e.edited for e in expected]), expected, 1.0)
    assert right.edited == {"colour": 1.0, "background": 1.0} and right.kept == 1.0 and right.all_right == 1.0
    content = score_edits(_render([c.content for c in cases]), expected, 1.0)
    assert content.edited == {"colour": 0.0, "background": 0.0} and content.kept == 1.0
    copied_style = score_edits(_render([c.style for c in cases]), expected, 1.0)
    assert copied_style.edited == {"colour": 1.0, "background": 1.0}
    assert copied_style.kept < 0.7 and copied_style.all_right == 0.0  # shape and position are wrong


@pytest.mark.skipif(not (MODEL_DIR / "toyclip.safetensors").is_file(), reason="shipped toy CLIP missing")
def test_main_restyles_scores_and_writes_its_report(tmp_path):
    result = style_benchmark.main(["--cases", "2", "--steps", "2", "--fit-steps", "2", "--threads", "1",
                                   "--out", str(tmp_path)])
    report = json.loads((tmp_path / "style_results.json").read_text())
    assert report["score"] == json.loads(json.dumps(asdict(result)))
    assert set(result.edited) == {"colour", "background"} and 0.0 <= result.kept <= 1.0
    assert result.seconds_per_image > 0 and (tmp_path / "style_sheet.png").is_file()
