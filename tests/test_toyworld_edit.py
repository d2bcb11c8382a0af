"""The toy-world edit benchmark: its cases, its scoring, and a two-edit smoke run of `main`."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from benchmarks.toyworld import edit as edit_benchmark
from benchmarks.toyworld import world
from benchmarks.toyworld.clip_metrics import MODEL_DIR, from_uint8


def test_cases_change_exactly_one_attribute_alternating_colour_and_shape():
    cases = edit_benchmark.edit_cases(6, seed=1)
    assert [c.changed for c in cases] == [("colour",), ("shape",)] * 3
    for case in cases:
        source, edited = case.source.attributes(), case.edited.attributes()
        assert {k for k in source if source[k] != edited[k]} == set(case.changed)
        assert not case.source.is_relational and case.source_prompt != case.edit_prompt
    assert edit_benchmark.edit_cases(6, seed=1) == cases  # deterministic


def test_scoring_tells_a_made_edit_from_an_unchanged_image():
    cases = edit_benchmark.edit_cases(4, seed=2)
    rng = np.random.default_rng(0)
    render = lambda scenes: from_uint8(np.stack([world.render(s, 64, rng) for s in scenes]))  # noqa: E731
    made = edit_benchmark.score_edits(render([c.edited for c in cases]), cases, 1.0)
    assert made.edited == {"colour": 1.0, "shape": 1.0} and made.kept == 1.0 and made.all_right == 1.0
    unchanged = edit_benchmark.score_edits(render([c.source for c in cases]), cases, 1.0)
    assert unchanged.edited == {"colour": 0.0, "shape": 0.0} and unchanged.kept == 1.0
    assert unchanged.all_right == 0.0


@pytest.mark.skipif(not (MODEL_DIR / "toyclip.safetensors").is_file(), reason="shipped toy CLIP missing")
def test_main_edits_scores_and_writes_its_report(tmp_path):
    result = edit_benchmark.main(["--cases", "2", "--steps", "2", "--fit-steps", "2", "--threads", "1",
                                  "--out", str(tmp_path)])
    report = json.loads((tmp_path / "edit_results.json").read_text())
    assert report["score"] == json.loads(json.dumps(asdict(result)))
    assert set(result.edited) == {"colour", "shape"} and 0.0 <= result.kept <= 1.0
    assert result.seconds_per_image > 0 and (tmp_path / "edit_sheet.png").is_file()
