import os
import stat

import pytest
import torch

from inversion_core.image_io import atomic_write, load_image, save_image


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
