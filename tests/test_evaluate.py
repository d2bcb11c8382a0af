"""evaluate: scoring a batch folder, and the errors a user meets (bad judges, stray or damaged
sidecars, unwritable folders), each naming what to fix."""

import json
import tempfile

import numpy as np
import pytest
from PIL import Image

from inversion_core.cli import main
from inversion_core.evaluate import evaluate_folder, format_summary, load_judge, report_path, save_report

TOY_JUDGE = "benchmarks.toyworld.judge:judge_caption"


def _write_image(folder, index, prompt, pixels):
    Image.fromarray(pixels).save(folder / f"{index:06d}.png")
    record = {"index": index, "prompt": prompt, "file": f"{index:06d}.png"}
    (folder / f"{index:06d}.json").write_text(json.dumps(record))


@pytest.fixture()
def toy_folder(tmp_path):
    """Two canonical toy-world scenes, as batch would have written them."""
    from benchmarks.toyworld import world

    for index, shape in enumerate(["circle", "square"]):
        scene = world.Scene(shape, "red", "white", size="large", position="left")
        _write_image(tmp_path, index, world.canonical_caption(scene), world.render(scene, 64, np.random.default_rng(0)))
    return tmp_path


def test_judge_that_reads_no_prompt_says_so(tmp_path, capsys):
    grey = np.full((16, 16, 3), 128, np.uint8)
    _write_image(tmp_path, 0, "a photo of a cat", grey)
    _write_image(tmp_path, 1, "a sunset", grey)
    assert main(["evaluate", "--dir", str(tmp_path), "--judge", TOY_JUDGE]) == 0
    out = capsys.readouterr().out
    assert "judge: prompts read     0 of 2" in out and "could read none of the prompts" in out
    assert json.loads((tmp_path / "evaluation.json").read_text())["summary"]["judge_read"] == 0


def test_judge_read_count_when_it_reads_some(toy_folder):
    _write_image(toy_folder, 2, "a photo of a cat", np.zeros((16, 16, 3), np.uint8))
    summary = evaluate_folder(toy_folder, judge=load_judge(TOY_JUDGE))["summary"]
    assert summary["judge_read"] == 2 and summary["images"] == 3
    assert "could read none" not in format_summary(summary)


def test_judge_with_the_wrong_signature_is_refused_when_loaded(tmp_path, capsys):
    expected = r"judge 'benchmarks\.toyworld\.judge:degrade' takes .*rng.*judge\(image, prompt\)"
    with pytest.raises(ValueError, match=expected):
        load_judge("benchmarks.toyworld.judge:degrade")
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--dir", str(tmp_path), "--judge", "benchmarks.toyworld.judge:degrade"])
    assert exit_info.value.code == 2 and "error: judge 'benchmarks.toyworld.judge:degrade'" in capsys.readouterr().err


def test_a_failing_judge_is_named_with_the_image_and_the_expected_signature(toy_folder):
    def crashing(image, prompt):
        raise KeyError("colour")

    with pytest.raises(ValueError, match=r"judge '.*crashing' failed on '.*000000\.png' \(prompt .*\) with "
                                         r"KeyError: 'colour'\. A judge is called as judge\(image, prompt\)"):
        evaluate_folder(toy_folder, judge=crashing)
    with pytest.raises(ValueError, match=r"returned bool for '.*000000\.png'; a judge is judge\(image, prompt\)"):
        evaluate_folder(toy_folder, judge=lambda image, prompt: True)


def test_other_json_files_in_the_folder_are_not_scored(toy_folder):
    (toy_folder / "000009.json").write_text(json.dumps({"note": "not a sidecar"}))  # was KeyError: 'file'
    (toy_folder / "config.json").write_text("{}")
    report = evaluate_folder(toy_folder, judge=load_judge(TOY_JUDGE))
    assert [row["index"] for row in report["images"]] == [0, 1]


def test_a_damaged_sidecar_is_named(toy_folder, capsys):
    (toy_folder / "000001.json").write_text('{"index": 1, "prompt": "a\x01b"}')
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--dir", str(toy_folder), "--judge", TOY_JUDGE])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "000001.json' is unreadable" in err and "Invalid control character" in err


def test_missing_folder_is_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="'.*nowhere' not found"):
        evaluate_folder(tmp_path / "nowhere", judge=load_judge(TOY_JUDGE))
    with pytest.raises(FileNotFoundError, match="'.*nowhere' not found"):
        report_path(tmp_path / "nowhere")


def test_report_path_refuses_an_unwritable_folder_before_scoring(toy_folder, monkeypatch):
    """As root chmod does not stop writes, so the folder's refusal is simulated."""
    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    with pytest.raises(ValueError, match=r"cannot write evaluation\.json into '.*' \(Permission denied\); make the "
                                         r"folder writable"):
        report_path(toy_folder)


def test_report_is_saved_atomically_next_to_the_images(toy_folder):
    before = set(toy_folder.iterdir())
    path = report_path(toy_folder)
    assert path == toy_folder / "evaluation.json" and set(toy_folder.iterdir()) == before  # the probe left nothing
    report = evaluate_folder(toy_folder, judge=load_judge(TOY_JUDGE))
    assert save_report(report, path) == path and json.loads(path.read_text()) == report
    assert set(toy_folder.iterdir()) == before | {path}


def test_cli_refuses_an_unwritable_folder_before_scoring(toy_folder, monkeypatch, capsys):
    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    def never(*args, **kwargs):
        raise AssertionError("scored before checking the folder")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    monkeypatch.setattr("inversion_core.evaluate.evaluate_folder", never)
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--dir", str(toy_folder), "--judge", TOY_JUDGE])
    assert exit_info.value.code == 2 and "cannot write evaluation.json" in capsys.readouterr().err
