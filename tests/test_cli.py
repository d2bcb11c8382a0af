import numpy as np
import pytest
from PIL import Image

from inversion_core.cli import main

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
