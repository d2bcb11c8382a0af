import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inversion_core.cli import main
from inversion_core.optimise import StepProgress

TINY = ["--steps", "3", "--width", "24", "--height", "16", "--views", "2", "--inr-width", "16", "--inr-layers", "1",
        "--quiet"]


def test_generate_writes_one_png_per_prompt_and_the_inr(tiny_clip_config, tmp_path, capsys):
    out = tmp_path / "gen.png"
    inr = tmp_path / "gen.safetensors"
    assert main(["generate", "--model", str(tiny_clip_config), "--prompt", "a", "--prompt", "b",
                 "--out", str(out), "--save-inr", str(inr), *TINY]) == 0
    paths = [tmp_path / "gen_0.png", tmp_path / "gen_1.png"]
    assert capsys.readouterr().out.split() == [str(p) for p in paths]
    for path in paths:
        assert Image.open(path).size == (24, 16)
    assert main(["render", "--inr", str(inr), "--width", "60", "--height", "40", "--out", str(tmp_path / "big.png")]) == 0
    assert Image.open(tmp_path / "big_0.png").size == (60, 40)
    assert not list(tmp_path.glob(".*.tmp")), "no temporary files left behind"


@pytest.mark.parametrize("command", ["reconstruct", "style", "edit"])
def test_image_tasks_write_a_png(command, tiny_clip_config, tmp_path):
    source = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)).save(source)
    extra = {"reconstruct": ["--image", str(source)],
             "style": ["--content", str(source), "--style", "oil paint", "--fit-steps", "2"],
             "edit": ["--image", str(source), "--edit", "a cat", "--fit-steps", "2"]}[command]
    out = tmp_path / "out.png"
    assert main([command, "--model", str(tiny_clip_config), *extra, "--out", str(out), *TINY]) == 0
    assert out.is_file()


def test_bad_input_exits_with_a_message_not_a_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["generate", "--model", "ViT-B-3", "--prompt", "x", "--out", str(tmp_path / "x.png")])
    assert info.value.code == 2
    assert "unknown CLIP architecture" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reconstruct", "--model", "ViT-B-32", "--image", str(tmp_path / "missing.png"), "--out", "x.png"])
    assert "missing.png" in capsys.readouterr().err


def test_bank_build_then_generate_with_the_bank(tiny_clip_config, tmp_path):
    source = tmp_path / "refs"
    source.mkdir()
    rng = np.random.default_rng(0)
    for i, caption in enumerate(["a red circle", "a blue square", "a green star", "a yellow moon"]):
        Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)).save(source / f"{i}.png")
        (source / f"{i}.txt").write_text(caption)
    bank = tmp_path / "refs.safetensors"
    inr = ["--inr-width", "16", "--inr-layers", "1"]
    assert main(["bank", "build", "--source", str(source), "--out", str(bank), "--model", str(tiny_clip_config),
                 "--seed-steps", "3", "--seed-size", "16", "--quiet", *inr]) == 0
    assert bank.is_file()
    out = tmp_path / "banked.png"
    assert main(["generate", "--model", str(tiny_clip_config), "--prompt", "a red square", "--bank", str(bank),
                 "--procrustes-k", "3", "--blend-k", "2", "--out", str(out), *TINY]) == 0
    assert Image.open(out).size == (24, 16)


def _refuse_model_load(monkeypatch):
    """Input checks must come before the (slow) model load: loading the CLIP fails the test."""
    def load_clip(*args, **kwargs):
        raise AssertionError("the CLIP was loaded before the input was checked")

    monkeypatch.setattr("inversion_core.cli.load_clip", load_clip)


def _exit_message(argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("out, extra, message", [
    ("x.txt", [], "cannot write an image as '.txt'"),
    ("x.npy", [], "cannot write an image as '.npy'"),
    ("folder", [], "'{tmp}/folder' is a directory"),
    ("file/x.png", [], "'{tmp}/file' is a file, not a folder"),
    ("file/deeper/x.png", [], "'{tmp}/file' is a file, not a folder"),
    ("x.png", ["--save-inr", "{tmp}/x.png"], "--save-inr '{tmp}/x.png' is also an output image"),
    ("x.png", ["--save-inr", "{tmp}/folder"], "--save-inr '{tmp}/folder' is a directory"),
])
def test_unwritable_outputs_are_refused_before_the_model_load(out, extra, message, tiny_clip_config, tmp_path,
                                                              capsys, monkeypatch):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("not a folder")
    _refuse_model_load(monkeypatch)
    extra = [arg.format(tmp=tmp_path) for arg in extra]
    err = _exit_message(["generate", "--model", str(tiny_clip_config), "--prompt", "x", "--out", str(tmp_path / out),
                         *extra, *TINY], capsys)
    assert message.format(tmp=tmp_path) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"], "nothing written"


def test_each_image_of_a_batch_is_checked(tiny_clip_config, tmp_path, capsys, monkeypatch):
    (tmp_path / "gen_1.png").mkdir()
    _refuse_model_load(monkeypatch)
    err = _exit_message(["generate", "--model", str(tiny_clip_config), "--prompt", "a", "--prompt", "b",
                         "--out", str(tmp_path / "gen.png"), *TINY], capsys)
    assert "gen_1.png' is a directory" in err


def test_read_only_location_is_refused_before_the_model_load(tiny_clip_config, tmp_path, capsys, monkeypatch):
    import inversion_core._paths as paths

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.access(locked, os.W_OK):  # root may write anywhere: let os.access answer as for a user
        real_access = os.access
        monkeypatch.setattr(paths.os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    _refuse_model_load(monkeypatch)
    try:
        err = _exit_message(["reconstruct", "--model", str(tiny_clip_config), "--image", "unused.png",
                             "--out", str(locked / "new" / "x.png"), *TINY], capsys)
    finally:
        locked.chmod(0o755)
    assert f"no write permission in '{locked}'" in err


def test_a_failing_save_inr_keeps_the_image(tiny_clip_config, tmp_path, capsys, monkeypatch):
    def disk_full(inr, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr("inversion_core.cli.save_inr", disk_full)
    out = tmp_path / "kept.png"
    err = _exit_message(["generate", "--model", str(tiny_clip_config), "--prompt", "x", "--out", str(out),
                         "--save-inr", str(tmp_path / "x.safetensors"), *TINY], capsys)
    assert "No space left on device" in err
    assert Image.open(out).size == (24, 16)


@pytest.mark.parametrize("command", [
    ["generate", "--prompt", "x", "--out", "x.png"],
    ["reconstruct", "--image", "in.png", "--out", "x.png"],
    ["style", "--content", "in.png", "--style", "x", "--out", "x.png"],
    ["edit", "--image", "in.png", "--edit", "x", "--out", "x.png"],
    ["batch", "--prompts", "p.txt", "--out-dir", "out"],
    ["evaluate", "--dir", "out"],
    ["bank", "build", "--source", "refs", "--out", "bank.safetensors"],
])
@pytest.mark.parametrize("device", ["cuda:99", "nodevice"])
def test_a_missing_device_is_refused_by_every_command(command, device, tiny_clip_config, capsys, monkeypatch):
    _refuse_model_load(monkeypatch)
    monkeypatch.setattr("inversion_core.bank_build.build_bank", lambda *a, **k: pytest.fail("bank built"))
    err = _exit_message([*command, "--model", str(tiny_clip_config), "--device", device], capsys)
    assert f"'{device}'" in err and "this machine has: cpu" in err and "--device" in err


def test_check_device_names_the_device_what_there_is_and_the_fix(monkeypatch):
    import torch

    from inversion_core.devices import check_device

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"'cuda' was requested but no CUDA GPU is visible.*has: cpu\..*--device cpu"):
        check_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert check_device("cuda") == torch.device("cuda")
    assert check_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ValueError, match=r"'cuda:1' was requested but there is no cuda device 1.*has: cpu, cuda:0"):
        check_device("cuda:1")
    with pytest.raises(ValueError, match=r"'mps' was requested but this machine has no mps device"):
        check_device("mps")


@pytest.mark.parametrize("weights, autocast", [("bf16", "fp16"), ("fp16", "bf16")])
def test_half_weights_under_the_other_half_autocast_are_refused(weights, autocast, tiny_clip_config, tmp_path,
                                                                capsys, monkeypatch):
    _refuse_model_load(monkeypatch)
    err = _exit_message(["generate", "--model", str(tiny_clip_config), "--prompt", "x",
                         "--out", str(tmp_path / "x.png"), "--precision", weights, "--autocast", autocast, *TINY],
                        capsys)
    assert f"--precision {weights} (the CLIP's weights) cannot run under --autocast {autocast}" in err


def _saved_inr(tmp_path) -> Path:
    from inversion_core.image_io import save_inr
    from inversion_core.inr import FinerINR, INRConfig

    return save_inr(FinerINR.seeded(INRConfig(hidden_layers=1, width=8), [0], "cpu"), tmp_path / "inr.safetensors")


@pytest.mark.parametrize("width, height", [(0, 10), (-3, 10), (100_000, 100_000)])
def test_render_size_has_the_range_of_the_other_commands(width, height, tmp_path, capsys):
    err = _exit_message(["render", "--inr", str(_saved_inr(tmp_path)), "--width", str(width), "--height", str(height),
                         "--out", str(tmp_path / "r.png")], capsys)
    assert f"width must be in 8..8192 pixels, got {width}" in err
    assert not (tmp_path / "r.png").exists()


def test_render_refuses_a_directory_as_inr_or_out(tmp_path, capsys):
    err = _exit_message(["render", "--inr", str(tmp_path), "--width", "8", "--height", "8",
                         "--out", str(tmp_path / "r.png")], capsys)
    assert f"INR file '{tmp_path}' is a directory" in err
    err = _exit_message(["render", "--inr", str(_saved_inr(tmp_path)), "--width", "8", "--height", "8",
                         "--out", str(tmp_path)], capsys)
    assert f"--out '{tmp_path}' is a directory" in err


def _stop_after_one_step(exception: BaseException):
    """A stand-in for text_to_image that shows one step of three, then raises ``exception``."""
    def text_to_image(clip, prompts, config, *, callback=None, **kwargs):
        callback(StepProgress(1, 3, torch.zeros(1, 3, 8, 8), torch.zeros(1)))
        raise exception

    return text_to_image


@pytest.mark.parametrize("exception, code, last_line", [
    (KeyboardInterrupt(), 130, "interrupted"),
    (ValueError("the loss became non-finite"), 2, "error: the loss became non-finite"),
])
def test_interrupt_and_error_end_the_progress_line_without_a_traceback(exception, code, last_line, tiny_clip_config,
                                                                       tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("inversion_core.tasks.text_to_image", _stop_after_one_step(exception))
    argv = ["generate", "--model", str(tiny_clip_config), "--prompt", "x", "--out", str(tmp_path / "x.png"),
            *[arg for arg in TINY if arg != "--quiet"]]
    try:
        returned = main(argv)
    except SystemExit as exit_:
        returned = exit_.code
    err = capsys.readouterr().err
    assert returned == code
    assert "Traceback" not in err
    assert err.endswith(f"it/s\n{last_line}\n"), err
    assert list(tmp_path.iterdir()) == []


def test_style_shows_the_fit_phase_then_the_optimisation(tiny_clip_config, tmp_path, capsys):
    source = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)).save(source)
    assert main(["style", "--model", str(tiny_clip_config), "--content", str(source), "--style", "oil paint",
                 "--fit-steps", "2", "--out", str(tmp_path / "out.png"),
                 *[arg for arg in TINY if arg != "--quiet"]]) == 0
    lines = capsys.readouterr().err.split("\n")  # one line per phase, each redrawn with \r
    assert lines[-1] == ""
    assert [line.rsplit("\r", 1)[-1].split()[0] for line in lines[:-1]] == ["fit", "optimise"]
    assert "step 2/2" in lines[0] and "step 3/3" in lines[1] and "loss" in lines[1]


def test_progress_rate_is_per_phase(monkeypatch):
    import io

    from inversion_core.cli import ProgressBar

    clock = iter([0.0, 0.0, 5.0, 10.0, 10.5, 11.0])  # construction, enter, fit 1/2, fit 2/2, optimise 1/2, 2/2
    monkeypatch.setattr("inversion_core.cli.time.perf_counter", lambda: next(clock))
    stream = io.StringIO()
    with ProgressBar(stream) as bar:
        bar.fit(1, 2)
        bar.fit(2, 2)
        bar(StepProgress(1, 2, torch.zeros(1, 3, 8, 8), torch.zeros(1)))
        bar(StepProgress(2, 2, torch.zeros(1, 3, 8, 8), torch.zeros(1)))
    fit_line, optimise_line = stream.getvalue().rstrip("\n").split("\n")
    assert fit_line.endswith("step 2/2 0.2 it/s")  # 2 fit steps in 10 s
    assert optimise_line.endswith("step 2/2 loss 0.0000 2.0 it/s")  # 2 steps in the 1 s after the fit


@pytest.mark.parametrize("option", [["--procrustes", "global"], ["--blend-beta", "0.5"], ["--no-seed"]])
def test_bank_options_without_a_bank_are_refused_not_ignored(option, tiny_clip_config, tmp_path, capsys, monkeypatch):
    _refuse_model_load(monkeypatch)
    err = _exit_message(["generate", "--model", str(tiny_clip_config), "--prompt", "x", "--out",
                         str(tmp_path / "x.png"), *option, *TINY], capsys)
    assert "only apply with a reference bank: add --bank FILE" in err


def test_batch_has_no_save_inr_it_would_ignore(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["batch", "--prompts", "p.txt", "--out-dir", str(tmp_path), "--save-inr", str(tmp_path / "x.safetensors")])
    assert info.value.code == 2 and "unrecognized arguments: --save-inr" in capsys.readouterr().err
