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

from inversion_core.batch import plan_batches, read_prompts, read_records, run_prompt_batches
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
