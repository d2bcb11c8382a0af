import math

import pytest
import torch

from inversion_core import FinerINR, INRConfig
from inversion_core.image_io import load_inr, save_inr
from inversion_core.inr import coordinate_grid, finer_activation

SMALL = INRConfig(hidden_layers=2, width=16)


def test_renders_any_size_including_non_square():
    inr = FinerINR(SMALL, batch_size=2, generator=torch.Generator().manual_seed(0))
    image = inr(24, 40)
    assert image.shape == (2, 3, 24, 40)
    assert image.min() >= 0 and image.max() <= 1


def test_chunked_render_equals_forward():
    inr = FinerINR(SMALL, batch_size=2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(inr.render(17, 23, max_pixels=50), inr(17, 23).detach())


def test_chunked_render_reports_progress_and_can_be_cancelled():
    inr = FinerINR(SMALL, batch_size=2, generator=torch.Generator().manual_seed(0))
    seen = []
    image = inr.render(17, 23, max_pixels=200, out_device="cpu",  # 200 pixels over a batch of 2: 100 coordinates
                       callback=lambda done, total: seen.append((done, total)))
    assert seen == [(100, 391), (200, 391), (300, 391), (391, 391)]
    torch.testing.assert_close(image, inr(17, 23).detach())

    class Cancelled(Exception):
        pass

    def cancel(done, total):
        raise Cancelled

    with pytest.raises(Cancelled):
        inr.render(17, 23, max_pixels=100, callback=cancel)


def test_batch_members_are_independent_networks():
    gens = [torch.Generator().manual_seed(s) for s in (3, 4)]
    singles = [FinerINR(SMALL, 1, generator=g) for g in gens]
    batch = FinerINR.stack(singles)
    torch.testing.assert_close(batch(8, 8)[1:], singles[1](8, 8))
    torch.testing.assert_close(batch.select([1])(8, 8), singles[1](8, 8))


def test_initialisation_follows_finer_bounds():
    config = INRConfig(hidden_layers=2, width=64, omega=30.0, first_bias_scale=5.0)
    inr = FinerINR(config, 1, generator=torch.Generator().manual_seed(0))
    first_w, first_b = inr.weights[0], inr.biases[0]
    assert first_w.abs().max() <= 1 / 2 and first_b.abs().max() <= 5.0 and first_b.abs().max() > 2.5
    bound = math.sqrt(6 / 64) / 30
    assert inr.weights[1].abs().max() <= bound and inr.weights[1].abs().max() > 0.9 * bound


def test_finer_activation_scale_is_not_differentiated():
    z = torch.tensor([0.3, -0.7], requires_grad=True)
    finer_activation(z, 2.0).sum().backward()
    expected = torch.cos(2.0 * (z.abs() + 1) * z) * 2.0 * (z.abs() + 1)
    torch.testing.assert_close(z.grad, expected.detach())


def test_coordinates_are_pixel_centres_in_unit_square():
    grid = coordinate_grid(2, 4)
    assert grid.shape == (8, 2)
    torch.testing.assert_close(grid[0], torch.tensor([-0.75, -0.5]))
    torch.testing.assert_close(grid[-1], torch.tensor([0.75, 0.5]))


def test_save_and_load_round_trip(tmp_path):
    inr = FinerINR(SMALL, 2, generator=torch.Generator().manual_seed(1))
    path = save_inr(inr, tmp_path / "inr.safetensors")
    loaded = load_inr(path)
    assert loaded.config == SMALL and loaded.batch_size == 2
    torch.testing.assert_close(loaded(9, 13), inr(9, 13))


def test_load_rejects_truncated_file(tmp_path):
    path = save_inr(FinerINR(SMALL), tmp_path / "inr.safetensors")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="truncated"):
        load_inr(path)


def test_stack_rejects_mixed_configs():
    with pytest.raises(ValueError, match="different configs"):
        FinerINR.stack([FinerINR(SMALL), FinerINR(INRConfig(hidden_layers=1, width=16))])


def test_config_lists_every_problem_at_once():
    with pytest.raises(ValueError) as info:
        INRConfig(hidden_layers=0, width=2, output="relu")
    message = str(info.value)
    assert "hidden_layers" in message and "width" in message and "output" in message
