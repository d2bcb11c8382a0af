"""Prompt-file batches: resumable, identical to one-by-one runs, identical across process counts."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inversion_core import batch as batch_module
from inversion_core.batch import BatchItem, plan_batches, read_prompts, read_records, run_prompt_batches, write_manifest
from inversion_core.cli import main

REPO = Path(__file__).resolve().parents[1]
PROMPTS = ["a red circle", "a blue square", "# a comment", "", "a green star", "a yellow moon", "a cat", "a dog",
           "a tree", "a boat"]
RUN_ARGS = ["--steps", "40", "--width", "16", "--height", "16", "--views", "2", "--inr-width", "16",
            "--inr-layers", "1", "--batch-size", "2", "--seed", "5", "--quiet"]


@pytest.fixture()
def prompt_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


def pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_prompt_file_skips_blanks_and_comments(prompt_file):
    items = read_prompts(prompt_file)
    assert [i.prompt for i in items][:4] == ["a red circle", "a blue square", "a green star", "a yellow moon"]
    assert [i.index for i in items] == list(range(8))


def test_prompt_file_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "notepad.txt"
    path.write_text("# my prompts\r\na red circle\r\n", encoding="utf-8-sig")  # as Windows Notepad saves
    assert [i.prompt for i in read_prompts(path)] == ["a red circle"]


def test_prompt_file_errors_name_the_file_and_the_fix(tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("a café\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt' is not UTF-8 text.*save it as UTF-8"):
        read_prompts(latin1)
    with pytest.raises(ValueError, match=r"is a directory; pass a text file"):
        read_prompts(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_prompts(tmp_path / "missing.txt")


def test_batches_are_fixed_by_index_and_dealt_round_robin(prompt_file):
    items = read_prompts(prompt_file)
    rank0 = [[i.index for i in b] for b in plan_batches(items, 2, rank=0, world_size=2)]
    rank1 = [[i.index for i in b] for b in plan_batches(items, 2, rank=1, world_size=2)]
    assert rank0 == [[0, 1], [4, 5]] and rank1 == [[2, 3], [6, 7]]


def test_batch_run_writes_sidecars_and_resumes(tiny_clip, tiny_run, prompt_file, tmp_path):
    items = read_prompts(prompt_file)[:3]
    out = tmp_path / "out"
    import dataclasses

    run = dataclasses.replace(tiny_run, steps=3)
    first = run_prompt_batches(tiny_clip, items, out, run, seed=5, batch_size=2)
    assert (first.generated, first.skipped) == (3, 0)
    records = read_records(out)
    assert [r["index"] for r in records] == [0, 1, 2]
    assert records[1]["seed"] == 6 and records[1]["prompt"] == "a blue square"
    assert records[0]["clip"] == [tiny_clip.identity] and records[0]["settings"]["steps"] == 3
    (out / "000002.json").unlink()  # as if the run died while writing the last batch
    again = run_prompt_batches(tiny_clip, items, out, run, seed=5, batch_size=2)
    assert (again.generated, again.skipped) == (1, 2)


@pytest.fixture()
def three_done(tiny_clip, tiny_run, prompt_file, tmp_path):
    """A folder holding the first three prompts at 3 steps, seed 5: (items, out_dir, run config)."""
    import dataclasses

    items, out, run = read_prompts(prompt_file)[:3], tmp_path / "done", dataclasses.replace(tiny_run, steps=3)
    assert run_prompt_batches(tiny_clip, items, out, run, seed=5, batch_size=2).generated == 3
    return items, out, run


@pytest.fixture()
def no_optimising(monkeypatch):
    """Fail the test if anything is optimised: a refusal must come before the slow work."""
    def refuse(*args, **kwargs):
        raise AssertionError("optimised before refusing")

    monkeypatch.setattr(batch_module, "text_to_image", refuse)


@pytest.mark.parametrize("change, expected", [
    ({"prompt": "a red square"}, r"000000\.json: prompt: before 'a red circle', now 'a red square'"),
    ({"seed": 99}, r"000000\.json: seed: before 5, now 99"),
    ({"steps": 4, "width": 16}, r"000000\.json: settings\.steps: before 3, now 4; settings\.width: before 32, now 16"),
    ({"negative_prompt": "blurry"}, r"negative_prompt: before None, now 'blurry'"),
])
def test_resume_refuses_another_request_before_optimising(three_done, tiny_clip, no_optimising, change, expected):
    import dataclasses

    items, out, run = three_done
    if "prompt" in change:
        items = [BatchItem(0, change["prompt"]), *items[1:]]
    run = dataclasses.replace(run, **{k: v for k, v in change.items() if k in ("steps", "width")})
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(ValueError, match=expected) as error:
        run_prompt_batches(tiny_clip, items, out, run, seed=change.get("seed", 5), batch_size=2,
                           negative_prompt=change.get("negative_prompt"))
    assert "Use a new --out-dir, or delete those" in str(error.value)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing written


def test_resume_of_the_same_request_skips_everything(three_done, tiny_clip, no_optimising):
    items, out, run = three_done
    again = run_prompt_batches(tiny_clip, items, out, run, seed=5, batch_size=2)
    assert (again.generated, again.skipped) == (0, 3)


def test_resume_refuses_images_beyond_a_shorter_prompt_file(three_done, tiny_clip, no_optimising):
    items, out, run = three_done
    with pytest.raises(ValueError, match=r"000002\.json: image 2 is beyond this prompt file's 2 prompts"):
        run_prompt_batches(tiny_clip, items[:2], out, run, seed=5, batch_size=2)


def test_every_rank_refuses_alike(three_done, tiny_clip, no_optimising):
    """Rank 1 owns only item 2, yet refuses a changed item 0 too: all ranks check every sidecar,
    so no rank starts work that another rank's refusal would leave half done."""
    items, out, run = three_done
    items = [BatchItem(0, "a red square"), *items[1:]]
    with pytest.raises(ValueError, match=r"000000\.json: prompt"):
        run_prompt_batches(tiny_clip, items, out, run, seed=5, batch_size=2, rank=1, world_size=2)


def test_refusal_counts_the_differing_sidecars(three_done, tiny_clip, no_optimising, monkeypatch):
    items, out, run = three_done
    monkeypatch.setattr(batch_module, "_SHOWN_CONFLICTS", 2)  # the rest are only named
    with pytest.raises(ValueError) as error:
        run_prompt_batches(tiny_clip, items, out, run, seed=6, batch_size=2)
    message = str(error.value)
    assert "holds 3 image sidecar(s) from a different request" in message
    assert "000001.json: seed: before 6, now 7" in message
    assert message.count("seed: before") == 2 and "and 1 more: 000002.json" in message


def test_sidecar_errors_name_the_file(three_done):
    _, out, _ = three_done
    (out / "notes.json").write_text("not even json")  # not named like a sidecar: ignored
    (out / "000009.json").write_text(json.dumps({"note": "someone else's"}))  # not a sidecar: skipped
    assert [r["index"] for r in read_records(out)] == [0, 1, 2]
    (out / "000001.json").write_text('{"prompt": "a\x01b"}')  # damaged: a raw control character
    with pytest.raises(ValueError, match=r"sidecar '.*000001\.json' is unreadable.*delete it and its \.png"):
        write_manifest(out)


def test_cli_refuses_to_resume_other_settings_and_skips_a_same_rerun(tiny_clip_config, tmp_path, capsys):
    prompts = tmp_path / "two.txt"
    prompts.write_text("a red circle\na blue square\n")
    common = ["batch", "--model", str(tiny_clip_config), "--prompts", str(prompts), "--out-dir", str(tmp_path / "o"),
              "--width", "16", "--height", "16", "--views", "2", "--inr-width", "16", "--inr-layers", "1", "--quiet"]
    assert main([*common, "--steps", "2"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([*common, "--steps", "3", "--seed", "99"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ")
    assert "000000.json: seed: before 0, now 99; settings.steps: before 2, now 3" in err
    assert main([*common, "--steps", "2"]) == 0
    assert "generated 0, skipped 2 complete" in capsys.readouterr().err


def test_cli_batch_then_evaluate(tiny_clip_config, prompt_file, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["batch", "--model", str(tiny_clip_config), "--prompts", str(prompt_file), "--out-dir", str(out),
                 *RUN_ARGS]) == 0
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [m["file"] for m in manifest] == [f"{i:06d}.png" for i in range(8)]
    assert main(["evaluate", "--dir", str(out), "--model", str(tiny_clip_config)]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert report["summary"]["images"] == 8
    assert all(0 <= row["clip_score"] <= 100 for row in report["images"])
    assert "CLIP score" in capsys.readouterr().out


def _torchrun(nproc, tiny_clip_config, prompt_file, out, **popen):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-port",
               str(29500 + os.getpid() % 1000 + nproc), "-m", "inversion_core", "batch", "--model", str(tiny_clip_config),
               "--prompts", str(prompt_file), "--out-dir", str(out), *RUN_ARGS]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_process_and_survive_a_kill(tiny_clip_config, prompt_file, tmp_path):
    single = tmp_path / "single"
    assert main(["batch", "--model", str(tiny_clip_config), "--prompts", str(prompt_file), "--out-dir", str(single),
                 *RUN_ARGS]) == 0

    killed = tmp_path / "multi"
    job = _torchrun(2, tiny_clip_config, prompt_file, killed, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(killed.glob("*.json")) and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)  # the whole job, mid-run
    job.wait(timeout=60)
    partial = {p.name for p in killed.glob("[0-9]*.png")}
    assert len(partial) < 8, "the kill came too late to test resuming"

    rerun = _torchrun(2, tiny_clip_config, prompt_file, killed)
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output.decode()
    assert not list(killed.glob(".*")), "no temporary or partial files left"
    assert pixels(killed).keys() == pixels(single).keys()
    for name, image in pixels(single).items():
        np.testing.assert_array_equal(pixels(killed)[name], image, err_msg=name)
    manifest = [json.loads(line) for line in (killed / "manifest.jsonl").read_text().splitlines()]
    assert sorted(m["index"] for m in manifest) == list(range(8))  # each image once
    assert {m["world_size"] for m in manifest} <= {2}


def test_evaluate_with_the_toy_world_judge(tmp_path, capsys):
    from benchmarks.toyworld import world

    scene = world.Scene("circle", "red", "white", size="large", position="left")
    prompt = world.canonical_caption(scene)
    Image.fromarray(world.render(scene, 64, np.random.default_rng(0))).save(tmp_path / "000000.png")
    (tmp_path / "000000.json").write_text(json.dumps({"index": 0, "prompt": prompt, "file": "000000.png"}))
    assert main(["evaluate", "--dir", str(tmp_path), "--judge", "benchmarks.toyworld.judge:judge_caption"]) == 0
    summary = json.loads((tmp_path / "evaluation.json").read_text())["summary"]
    assert summary["judge_mean_accuracy"] == 1.0 and set(summary["judge_accuracy"]) == set(scene.attributes())
    assert "judge: mean" in capsys.readouterr().out
