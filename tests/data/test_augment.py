import math

import torch

from kdscope.data.augment import Augment, _rotate_hue


def test_hue_rotation_by_a_third_turn_permutes_channels():
    """A 120-degree rotation about the grey axis maps (r, g, b) to (b, r, g) exactly."""
    x = torch.rand(4, 3, 5, 5)
    rotated = _rotate_hue(x, torch.full((4,), 2 * math.pi / 3))
    assert torch.allclose(rotated, x[:, [2, 0, 1]], atol=1e-6)


def test_hue_rotation_keeps_grey_and_brightness():
    grey = torch.rand(2, 1, 4, 4).repeat(1, 3, 1, 1)
    angle = torch.tensor([0.7, -2.0])
    assert torch.allclose(_rotate_hue(grey, angle), grey, atol=1e-6)
    x = torch.rand(2, 3, 4, 4)
    assert torch.allclose(_rotate_hue(x, angle).sum(1), x.sum(1), atol=1e-5)


def test_crop_shifts_content_and_flip_mirrors():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) / 400
    out = Augment(crop_padding=2)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for image, original in zip(out, x):
        windows = [torch.nn.functional.pad(original[None], (2,) * 4, mode="reflect")[0, :, dy : dy + 8, dx : dx + 8]
                   for dy in range(5) for dx in range(5)]
        assert any(torch.equal(image, window) for window in windows)
    flipped = Augment(flip=True)(x, torch.Generator().manual_seed(1))
    assert all(torch.equal(f, o) or torch.equal(f, o.flip(2)) for f, o in zip(flipped, x))


def test_augment_is_seeded_in_range_and_leaves_input_alone():
    x = torch.rand(16, 3, 8, 8)
    before = x.clone()
    augment = Augment.colour_jitter()
    a = augment(x, torch.Generator().manual_seed(3))
    b = augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.equal(x, before)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert not torch.equal(a, augment(x, torch.Generator().manual_seed(4)))
