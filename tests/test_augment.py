import torch

from inversion_core import AugmentConfig, Augmenter


def gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_views_shape_and_gradient():
    augment = Augmenter(AugmentConfig(views=5), output_size=16)
    images = torch.rand(2, 3, 24, 40, requires_grad=True)
    views = augment(images, gens(0, 1))
    assert views.shape == (10, 3, 16, 16)
    views.square().sum().backward()
    assert images.grad.abs().sum() > 0


def test_same_seed_same_views_other_seed_other_views():
    augment = Augmenter(AugmentConfig(views=3), output_size=16)
    images = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(augment(images, gens(7)), augment(images, gens(7)))
    assert not torch.allclose(augment(images, gens(7)), augment(images, gens(8)))


def test_batch_draws_equal_single_image_draws():
    augment = Augmenter(AugmentConfig(views=3), output_size=16)
    images = torch.rand(2, 3, 32, 32)
    batch = augment(images, gens(1, 2))
    torch.testing.assert_close(batch[3:], augment(images[1:], gens(2)))


def test_identity_config_reproduces_the_image():
    still = AugmentConfig(views=2, crop_scale=(1.0, 1.0), translate=0, shear=0, brightness=0, contrast=0,
                          saturation=0, noise=0)
    images = torch.rand(1, 3, 16, 16)
    views = Augmenter(still, output_size=16)(images, gens(0))
    torch.testing.assert_close(views, images.expand(2, -1, -1, -1), atol=1e-5, rtol=0)


def test_large_renders_are_prefiltered_not_aliased():
    """A fine checkerboard must come out near mid-grey, not as a moiré of 0s and 1s."""
    board = (torch.arange(512)[:, None] + torch.arange(512)[None, :]) % 2
    images = board.float().expand(1, 3, 512, 512).contiguous()
    still = AugmentConfig(views=1, crop_scale=(1.0, 1.0), translate=0, shear=0, brightness=0, contrast=0,
                          saturation=0, noise=0)
    views = Augmenter(still, output_size=32)(images, gens(0))
    assert (views - 0.5).abs().max() < 0.05
