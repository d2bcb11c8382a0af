import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

from inversion_core.image_io import atomic_write, image_format, load_image, load_inr, save_image


def test_saved_image_has_the_permissions_of_a_plain_write(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    saved = save_image(torch.rand(3, 8, 8), tmp_path / "out" / "image.png")
    assert stat.S_IMODE(os.stat(saved).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)
    assert load_image(saved).shape == (1, 3, 8, 8)


def test_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    def fail(tmp: str) -> None:
        with open(tmp, "w") as handle:
            handle.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(tmp_path / "result.png", fail)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("values, suffix", [
    (np.array([[0, 16384, 32768, 65535]], dtype=np.uint16), ".png"),  # 16-bit greyscale PNG: PIL mode I;16
    (np.array([[0, 16384, 32768, 65535]], dtype=np.int32), ".tif"),  # mode I holding 16-bit data
    (np.array([[0, 2**29, 2**30, 2**31 - 1]], dtype=np.int32), ".tif"),  # mode I over the int32 range
    (np.array([[0.0, 0.25, 0.5, 1.0]], dtype=np.float32), ".tif"),  # mode F in [0, 1]
    (np.array([[0.0, 63.75, 127.5, 255.0]], dtype=np.float32), ".tif"),  # mode F on PIL's 0..255 scale
])
def test_high_bit_depth_greyscale_is_scaled_not_clipped(values, suffix, tmp_path):
    path = tmp_path / f"grey{suffix}"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode in ("I;16", "I", "F")
    image = load_image(path)
    assert image.shape == (1, 3, 1, 4)
    torch.testing.assert_close(image[0, :, 0], torch.tensor([0.0, 0.25, 0.5, 1.0]).expand(3, 4), atol=1e-4, rtol=0)


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255  # stored landscape, white on the left
    stored = Image.fromarray(pixels)
    exif = stored.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=95)
    image = load_image(path)
    assert image.shape == (1, 3, 40, 20)  # displayed portrait
    assert image[0, :, :15].mean() > 0.9 and image[0, :, 25:].mean() < 0.1  # the left side turned to the top


def test_a_directory_is_reported_as_a_directory(tmp_path):
    with pytest.raises(IsADirectoryError, match="image .* is a directory"):
        load_image(tmp_path)
    with pytest.raises(IsADirectoryError, match="INR file .* is a directory"):
        load_inr(tmp_path)


def test_suffixes_pil_cannot_write_are_refused_before_writing(tmp_path):
    assert image_format(tmp_path / "a.jpg") == "JPEG" and image_format(tmp_path / "a") == "PNG"
    for name in ("a.txt", "a.npy", "a.xbm"):  # unknown, and known to PIL but not writable as RGB
        with pytest.raises(ValueError, match=rf"'{name[1:]}'.*use an image suffix such as \.png"):
            save_image(torch.rand(3, 8, 8), tmp_path / name)
    assert list(tmp_path.iterdir()) == []
