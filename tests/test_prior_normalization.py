"""Intensity normalisation rule (99th percentile of the magnitude -> 1)."""

import numpy as np
import pytest
import torch

from models.errors import NonFiniteDataError, NormalizationError, ShapeError
from models.prior.normalization import (
    IntensityNormalization,
    estimate_sigma_data,
    scale_from_image,
)


def _slice(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((32, 32)) + 1j * rng.standard_normal((32, 32))) * 7.0


def test_percentile_maps_to_one():
    img = _slice()
    s = scale_from_image(img)
    assert np.percentile(np.abs(img * s), 99) == pytest.approx(1.0)
    norm = IntensityNormalization(percentile=95.0, target=0.5)
    assert np.percentile(np.abs(img * norm.scale_from_image(img)), 95) == pytest.approx(0.5)


def test_scale_covariance_and_phase_invariance_numpy_and_torch():
    img = _slice()
    s = scale_from_image(img)
    assert scale_from_image(3.0 * np.exp(1j * 0.7) * img) == pytest.approx(s / 3.0)
    assert scale_from_image(torch.from_numpy(img).to(torch.complex64)) == pytest.approx(s, rel=1e-5)


def test_errors():
    with pytest.raises(NormalizationError, match="empty"):
        scale_from_image(np.zeros((8, 8), complex))
    bad = _slice()
    bad[0, 0] = np.nan
    with pytest.raises(NonFiniteDataError):
        scale_from_image(bad)
    with pytest.raises(ShapeError):
        scale_from_image(np.ones((2, 8, 8)))


def test_description_roundtrip():
    norm = IntensityNormalization(percentile=98.0)
    d = norm.to_dict()
    assert "98th percentile" in d["description"]
    assert IntensityNormalization.from_dict(d) == norm


def test_estimate_sigma_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 2, 16, 16, generator=g) * 0.3
    assert estimate_sigma_data(x) == pytest.approx(0.3, rel=0.05)
