"""Augmentation: seeded reproducibility, identity at p = 0, label semantics."""

import math

import pytest
import torch

from models.errors import ReconInputError, ShapeError
from models.prior.augment import AUGMENT_DIM, AugmentPipe


def _images(b=8, h=32, w=48):
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, 2, h, w, generator=g)


def _com(x):
    """Centre of mass (row, col) of the magnitude of each image [B, 2, H, W]."""
    m = x.square().sum(1).sqrt()
    rows = torch.arange(x.shape[-2], dtype=x.dtype)[:, None]
    cols = torch.arange(x.shape[-1], dtype=x.dtype)[None, :]
    total = m.sum((-2, -1))
    return (m * rows).sum((-2, -1)) / total, (m * cols).sum((-2, -1)) / total


def test_reproducible_with_seed():
    pipe = AugmentPipe(p=0.5)
    x = _images()
    a, la = pipe(x, generator=torch.Generator().manual_seed(3))
    b, lb = pipe(x, generator=torch.Generator().manual_seed(3))
    c, lc = pipe(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(a, c)
    assert la.shape == (8, AUGMENT_DIM)


def test_identity_when_p_zero():
    x = _images()
    y, labels = AugmentPipe(p=0.0, phase_p=0.0)(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y, x)
    assert torch.equal(labels, torch.zeros(8, AUGMENT_DIM))


def test_phase_only_keeps_magnitude_and_is_unlabelled():
    x = _images()
    y, labels = AugmentPipe(p=0.0, phase_p=1.0)(x, generator=torch.Generator().manual_seed(0))
    zx, zy = torch.complex(x[:, 0], x[:, 1]), torch.complex(y[:, 0], y[:, 1])
    torch.testing.assert_close(zy.abs(), zx.abs())
    ratio = zy / zx  # one global unit-modulus factor per image
    assert torch.allclose(ratio, ratio[:, :1, :1].expand_as(ratio), atol=1e-4)
    assert (ratio[:, 0, 0].angle() - ratio[0, 0, 0].angle()).abs().max() > 0.1
    assert torch.equal(labels, torch.zeros(8, AUGMENT_DIM))


def test_flip_label_matches_image():
    x = _images()
    pipe = AugmentPipe(p=1.0, max_rotate_deg=0, scale_std=0, max_translate=0, phase_p=0)
    y, labels = pipe(x, generator=torch.Generator().manual_seed(1))
    flipped = labels[:, 0] == 1
    assert 0 < flipped.sum() < 8  # both outcomes occur for this seed
    assert torch.equal(y[flipped], x[flipped].flip(-1))
    assert torch.equal(y[~flipped], x[~flipped])
    assert torch.equal(labels[:, 1:], torch.zeros(8, AUGMENT_DIM - 1))


def test_translation_moves_centre_of_mass_as_labelled():
    x = torch.zeros(4, 2, 32, 48)
    x[:, 0, 12:20, 20:28] = 1.0
    pipe = AugmentPipe(p=1.0, xflip=False, max_rotate_deg=0, scale_std=0, max_translate=0.2, phase_p=0)
    y, labels = pipe(x, generator=torch.Generator().manual_seed(2))
    r0, c0 = _com(x)
    r1, c1 = _com(y)
    torch.testing.assert_close(c1 - c0, labels[:, 4] * 48, atol=0.05, rtol=0)
    torch.testing.assert_close(r1 - r0, labels[:, 5] * 32, atol=0.05, rtol=0)


def test_rotation_preserves_distance_from_centre_on_non_square_image():
    x = torch.zeros(4, 2, 32, 48)
    x[:, 0, 6:8, 31:33] = 1.0  # small spot off-centre (centre is row 15.5, col 23.5)
    pipe = AugmentPipe(p=1.0, xflip=False, max_rotate_deg=60, scale_std=0, max_translate=0, phase_p=0)
    y, labels = pipe(x, generator=torch.Generator().manual_seed(5))
    theta = torch.atan2(labels[:, 1], labels[:, 2] + 1)
    assert theta.abs().min() > math.radians(5)
    r0, c0 = _com(x)
    r1, c1 = _com(y)
    d0 = torch.hypot(r0 - 15.5, c0 - 23.5)
    d1 = torch.hypot(r1 - 15.5, c1 - 23.5)
    torch.testing.assert_close(d1, d0, atol=0.3, rtol=0)
    # rotation angle of the spot (image x right, y down) equals the labelled angle
    a0 = torch.atan2(r0 - 15.5, c0 - 23.5)
    a1 = torch.atan2(r1 - 15.5, c1 - 23.5)
    torch.testing.assert_close(a1 - a0, theta, atol=0.05, rtol=0)


def test_labels_nonzero_with_p_one_and_input_checks():
    _, labels = AugmentPipe(p=1.0)(_images(), generator=torch.Generator().manual_seed(0))
    assert (labels[:, 1:4].abs() > 0).all()
    with pytest.raises(ShapeError):
        AugmentPipe()(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ReconInputError):
        AugmentPipe(p=1.5)
