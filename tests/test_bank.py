"""Reference bank: building (skips, resume), the file (round trip, CLIP check, corruption), queries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import inversion_core.bank as bank_module
import inversion_core.bank_build as bank_build
import inversion_core.cli as cli
from inversion_core.awp import SeedConfig, prepare_seed_targets, psnr
from inversion_core.bank import ReferenceBank, load_bank
from inversion_core.bank_build import build_bank, read_entries
from inversion_core.inr import INRConfig

SEED_INR = INRConfig(hidden_layers=1, width=16)
FAST_SEEDS = SeedConfig(gamma=0.01, steps=30, lr=3e-3, size=16, blur_sigma=1.0)
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (30, 60, 220), "yellow": (230, 220, 40)}
SHAPES = ("circle", "square")


def _write_image(path: Path, colour, shape: str, size=(40, 48)) -> None:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, (240, 240, 240))
    draw = ImageDraw.Draw(image)
    box = (8, 10, size[0] - 8, size[1] - 10)
    (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=colour)
    image.save(path)


@pytest.fixture()
def image_folder(tmp_path) -> Path:
    """8 captioned images + 1 corrupt image + 1 image without caption + 1 empty caption."""
    folder = tmp_path / "refs"
    (folder / "sub").mkdir(parents=True)
    i = 0
    for name, colour in COLOURS.items():
        for shape in SHAPES:
            where = folder / "sub" if i % 3 == 0 else folder  # captions are found recursively
            _write_image(where / f"img{i:02d}.png", colour, shape)
            (where / f"img{i:02d}.txt").write_text(f"a {name} {shape}\n", encoding="utf-8")
            i += 1
    (folder / "broken.png").write_bytes(b"\x89PNG not really an image")
    (folder / "broken.txt").write_text("a broken image")
    _write_image(folder / "nocaption.png", (0, 0, 0), "circle")
    _write_image(folder / "empty.png", (0, 0, 0), "square")
    (folder / "empty.txt").write_text("   \n")
    return folder


def _build(source, out, clip, **kwargs):
    kwargs = {"inr_config": SEED_INR, "seed_config": FAST_SEEDS, "batch_size": 3, "progress": False, **kwargs}
    return build_bank(source, out, clip, **kwargs)


# --- building -----------------------------------------------------------------------------------


def test_build_skips_and_counts_bad_entries(image_folder, tmp_path, tiny_clip):
    report = _build(image_folder, tmp_path / "bank.safetensors", tiny_clip)
    assert report.count == 8
    assert report.skipped == {"missing_caption": 1, "empty_caption": 1, "unreadable_image": 1}
    assert report.shards_total == 3 and report.shards_resumed == 0  # 9 readable-caption entries / 3
    assert report.embed_seconds > 0 and report.seed_seconds > 0
    assert not (tmp_path / "bank.safetensors.parts").exists()
    assert "8 pairs" in report.summary()
    bank = load_bank(report.path, tiny_clip)
    assert len(bank) == 8 and bank.embed_dim == tiny_clip.embed_dim
    assert sorted(bank.captions) == sorted(f"a {c} {s}" for c in COLOURS for s in SHAPES)
    torch.testing.assert_close(bank.text_embeddings, tiny_clip.encode_text(bank.captions))
    assert bank.build_info["skipped"]["unreadable_image"] == 1


def test_bank_round_trip(image_folder, tmp_path, tiny_clip):
    path = tmp_path / "bank.safetensors"
    _build(image_folder, path, tiny_clip)
    bank = load_bank(path, tiny_clip)
    again = bank.save(tmp_path / "copy.safetensors")
    copy = ReferenceBank.load(again, clip=tiny_clip.identity)
    for name in ("image_embeddings", "text_embeddings", "seed_psnr", "global_rotation"):
        assert torch.equal(getattr(copy, name), getattr(bank, name)), name
    for a, b in zip(copy.seed_weights + copy.seed_biases, bank.seed_weights + bank.seed_biases):
        assert torch.equal(a, b)
    assert copy.captions == bank.captions and copy.sources == bank.sources
    assert copy.inr_config == SEED_INR and copy.seed_config == FAST_SEEDS
    assert copy.clip_identity == tiny_clip.identity
    # metadata is readable by any safetensors tool
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        meta = json.loads(handle.metadata()["bank"])
    assert meta["count"] == 8 and meta["embed_dim"] == 32 and meta["seed_config"]["gamma"] == FAST_SEEDS.gamma
    assert meta["seed_config"]["blur_sigma"] == 1.0 and len(meta["captions"]) == 8


def test_large_caption_sets_are_stored_as_tensors(tmp_path, monkeypatch):
    monkeypatch.setattr(bank_module, "_TEXT_IN_METADATA_MAX_BYTES", 10)
    e = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    captions = ["ünïcödé caption", "", "third"]
    bank = ReferenceBank(e, e.clone(), captions, "clip@x", sources=["a.png", "b.png", "c.png"])
    copy = load_bank(bank.save(tmp_path / "b.safetensors"))
    assert copy.captions == captions and copy.sources == ["a.png", "b.png", "c.png"]
    assert copy.global_rotation is None and not copy.has_seeds


def test_resume_after_interruption_redoes_no_finished_shard(image_folder, tmp_path, tiny_clip, monkeypatch):
    out = tmp_path / "bank.safetensors"
    calls = []
    real_fit = bank_build.fit_seeds
    monkeypatch.setattr(bank_build, "fit_seeds", lambda images, *a, **k: calls.append(len(images)) or real_fit(images, *a, **k))

    class Interrupted(Exception):
        pass

    def stop_after_two_shards(done, total):
        if done >= 6:
            raise Interrupted

    with pytest.raises(Interrupted):
        _build(image_folder, out, tiny_clip, progress=stop_after_two_shards)
    parts = tmp_path / "bank.safetensors.parts"
    assert sorted(p.name for p in parts.glob("shard_*")) == ["shard_000000.safetensors", "shard_000001.safetensors"]
    assert not out.exists()
    assert len(calls) == 2
    # a leftover temporary file from a crash mid-write is ignored
    (parts / ".shard_000002.safetensors.abc.tmp").write_bytes(b"half written")

    report = _build(image_folder, out, tiny_clip)
    assert report.shards_resumed == 2 and report.count == 8
    assert len(calls) == 3  # only the last shard was fitted
    resumed = load_bank(out)
    fresh = load_bank(_build(image_folder, tmp_path / "fresh.safetensors", tiny_clip).path)
    assert resumed.captions == fresh.captions
    torch.testing.assert_close(resumed.image_embeddings, fresh.image_embeddings)
    for a, b in zip(resumed.seed_weights, fresh.seed_weights):
        torch.testing.assert_close(a, b)


def test_resume_with_other_settings_is_refused(image_folder, tmp_path, tiny_clip):
    out = tmp_path / "bank.safetensors"

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _build(image_folder, out, tiny_clip, progress=stop)
    with pytest.raises(ValueError, match=r"different settings.*batch_size: before 3, now 4.*restart"):
        _build(image_folder, out, tiny_clip, batch_size=4)
    report = _build(image_folder, out, tiny_clip, batch_size=4, resume=False)
    assert report.count == 8 and report.shards_resumed == 0


def test_csv_and_jsonl_sources(image_folder, tmp_path, tiny_clip):
    csv_path = image_folder / "pairs.csv"
    csv_path.write_text("path,caption\nimg01.png,a red square\nimg02.png,\nmissing.png,a ghost\n"
                        "broken.png,a broken image\n", encoding="utf-8")
    entries, skipped = read_entries(csv_path)
    assert [Path(e.path).name for e in entries] == ["img01.png", "missing.png", "broken.png"]
    assert skipped == {"empty_caption": 1}
    report = _build(csv_path, tmp_path / "csv.safetensors", tiny_clip, with_seeds=False)
    assert report.count == 1 and report.skipped == {"empty_caption": 1, "unreadable_image": 2}
    assert not load_bank(report.path).has_seeds
    assert report.summary().endswith("no seeds (embeddings only)")  # not a rate over 0 s of seed fitting

    jsonl = image_folder / "pairs.jsonl"
    jsonl.write_text('{"path": "img01.png", "caption": "a red square"}\nnot json\n{"caption": "no path"}\n\n'
                     f'{{"path": "{image_folder / "img02.png"}", "caption": "a green circle"}}\n', encoding="utf-8")
    entries, skipped = read_entries(jsonl)
    assert [e.caption for e in entries] == ["a red square", "a green circle"]
    assert skipped == {"bad_row": 2}


def test_source_errors(tmp_path, tiny_clip):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_entries(tmp_path / "nowhere")
    bad = tmp_path / "pairs.txt"
    bad.write_text("x")
    with pytest.raises(ValueError, match=r"unsupported suffix '.txt'"):
        read_entries(bad)
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("file,text\na.png,b\n")
    with pytest.raises(ValueError, match=r"'path' and 'caption'.*\['file', 'text'\]"):
        read_entries(csv_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no usable"):
        build_bank(tmp_path / "empty", tmp_path / "b.safetensors", tiny_clip, progress=False)
    with pytest.raises(ValueError, match=r"must end in .safetensors"):
        build_bank(tmp_path / "empty", tmp_path / "b.pt", tiny_clip, progress=False)


def test_cli_builds_a_bank(image_folder, tmp_path, tiny_clip_config, capsys):
    out = tmp_path / "cli.safetensors"
    code = cli.main(["bank", "build", "--source", str(image_folder), "--out", str(out), "--model", str(tiny_clip_config),
                            "--inr-width", "16", "--inr-layers", "1", "--seed-steps", "5", "--seed-size", "16",
                            "--blur", "1", "--batch-size", "4", "--quiet"])
    assert code == 0
    assert "8 pairs" in capsys.readouterr().out
    bank = load_bank(out)
    assert bank.inr_config == SEED_INR and bank.seed_config.steps == 5
    with pytest.raises(SystemExit):
        cli.main(["bank", "build", "--source", str(tmp_path / "none"), "--out", str(out), "--model", str(tiny_clip_config)])
    assert "not found" in capsys.readouterr().err


def test_cli_rerun_keeps_an_up_to_date_bank_and_rebuilds_a_different_one(image_folder, tmp_path, tiny_clip_config,
                                                                         capsys, monkeypatch):
    out = tmp_path / "cli.safetensors"
    command = ["bank", "build", "--source", str(image_folder), "--out", str(out), "--model", str(tiny_clip_config),
               "--inr-width", "16", "--inr-layers", "1", "--seed-steps", "2", "--seed-size", "16", "--quiet"]
    assert cli.main(command) == 0
    built = []
    real_build = bank_build.build_bank
    monkeypatch.setattr(bank_build, "build_bank", lambda *a, **k: built.append(1) or real_build(*a, **k))
    capsys.readouterr()
    assert cli.main(command) == 0  # the same request again: hours of seed fitting are not repeated
    assert built == [] and "is up to date" in capsys.readouterr().out
    assert cli.main([*command, "--seed", "3"]) == 0
    assert built == [1] and "rebuilding" in capsys.readouterr().err
    assert load_bank(out).build_info["random_seed"] == 3
    assert cli.main([*command, "--seed", "3", "--restart"]) == 0 and built == [1, 1]


# --- the file: CLIP identity and corruption -----------------------------------------------------


@pytest.fixture()
def built_bank(image_folder, tmp_path, tiny_clip) -> Path:
    return _build(image_folder, tmp_path / "bank.safetensors", tiny_clip).path


def test_loading_with_another_clip_names_both(built_bank, tiny_clip_config, tiny_clip):
    from inversion_core.clip_models import load_clip

    other = load_clip(tiny_clip_config, seed=1)
    with pytest.raises(ValueError) as info:
        load_bank(built_bank, other)
    message = str(info.value)
    assert tiny_clip.identity in message and other.identity in message and "bank build" in message


def test_truncated_and_corrupt_files_fail_cleanly(built_bank, tmp_path):
    data = built_bank.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_bank(truncated)
    header_gone = tmp_path / "tiny.safetensors"
    header_gone.write_bytes(data[:5])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_bank(header_gone)
    flipped = bytearray(data)
    flipped[-7] ^= 0xFF  # inside the last tensor's bytes
    corrupt = tmp_path / "flipped.safetensors"
    corrupt.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="checksum"):
        load_bank(corrupt)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_bank(tmp_path / "missing.safetensors")


def test_foreign_safetensors_file_is_rejected(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not a reference bank"):
        load_bank(path)


def test_invalid_in_memory_bank_lists_problems():
    e = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    with pytest.raises(ValueError, match=r"2 captions for 3.*not finite unit"):
        ReferenceBank(e, 2 * e, ["a", "b"], "clip@x")


# --- queries and seeds --------------------------------------------------------------------------


def test_nearest_queries(built_bank, tiny_clip):
    bank = load_bank(built_bank, tiny_clip)
    query = tiny_clip.encode_text(["a blue circle", "a yellow square"])
    _, idx = bank.nearest_pairs(query, 1)
    assert [bank.captions[i] for i in idx[:, 0].tolist()] == ["a blue circle", "a yellow square"]
    scores, idx = bank.nearest_images(bank.image_embeddings[3:4], 2)
    assert idx[0, 0] == 3 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    text, image = bank.pair_embeddings(idx)
    assert text.shape == image.shape == (1, 2, bank.embed_dim)


def test_nearest_seed_reproduces_its_blurred_image(built_bank, tiny_clip, image_folder):
    bank = load_bank(built_bank, tiny_clip)
    query = tiny_clip.encode_text(["a green square", "a green square"])
    inr, chosen = bank.nearest_seeds(query, SEED_INR, rank=[0, 1])
    assert inr.batch_size == 2 and chosen[0] != chosen[1]
    assert bank.captions[chosen[0]] == "a green square"
    source = bank_build.load_square_image(bank.sources[int(chosen[0])], tiny_clip.image_size)
    target = prepare_seed_targets(source[None], FAST_SEEDS)
    with torch.no_grad():
        quality = psnr(inr.select([0])(FAST_SEEDS.size, FAST_SEEDS.size), target)
    torch.testing.assert_close(quality, bank.seed_psnr[chosen[0]][None], atol=1e-3, rtol=0)


def test_seed_with_other_inr_config_fails_clearly(built_bank):
    bank = load_bank(built_bank)
    with pytest.raises(ValueError, match=r"width: bank 16 vs run 32"):
        bank.seed_inr([0], INRConfig(hidden_layers=1, width=32))
    no_seeds = ReferenceBank(bank.image_embeddings, bank.text_embeddings, bank.captions, bank.clip_identity)
    with pytest.raises(ValueError, match="no seed INRs"):
        no_seeds.seed_inr([0], SEED_INR)
    with pytest.raises(ValueError, match=r"seed indices must be in 0\.\.7"):
        bank.seed_inr([8], SEED_INR)


def test_bank_images_are_read_upright_and_high_bit_depth_scaled(tmp_path):
    """The bank's loader resizes in PIL; it must see what load_image sees: a 16-bit scan is not clipped
    to white, and a phone photo stored sideways is turned upright before the centre crop."""
    import numpy as np
    from PIL import Image

    grey16 = tmp_path / "grey16.png"
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(grey16)
    torch.testing.assert_close(bank_build.load_square_image(str(grey16), 4), torch.full((3, 4, 4), 128 / 255))

    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255  # stored landscape, white on the left; EXIF says "rotate 90° clockwise"
    stored = Image.fromarray(pixels)
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = bank_build.load_square_image(str(tmp_path / "phone.jpg"), 20)  # the centre crop of a portrait
    assert upright.mean() > 0.45 and upright[:, :8].mean() > 0.9 and upright[:, 12:].mean() < 0.1
