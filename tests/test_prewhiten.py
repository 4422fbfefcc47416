import numpy as np
import pytest

from models.errors import NonFiniteDataError, ReconInputError, ShapeError
from models.mri.prewhiten import noise_covariance, noise_scale_factor, prewhiten, whitening_matrix


def _correlated_noise(coils=8, samples=20000, seed=0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(coils, coils)) + 1j * rng.normal(size=(coils, coils))
    mix += 3 * np.eye(coils)
    white = (rng.normal(size=(coils, samples)) + 1j * rng.normal(size=(coils, samples))) / np.sqrt(2)
    return mix @ white, mix


def test_covariance_estimate_matches_mixing():
    noise, mix = _correlated_noise()
    psi = noise_covariance(noise)
    true = mix @ mix.conj().T
    assert np.linalg.norm(psi - true) / np.linalg.norm(true) < 0.03
    np.testing.assert_allclose(psi, psi.conj().T, atol=1e-10)


def test_whitened_noise_is_identity_covariance():
    noise, _ = _correlated_noise(seed=1)
    w = whitening_matrix(noise_covariance(noise))
    whitened = prewhiten(noise, w)
    cov = noise_covariance(whitened)
    np.testing.assert_allclose(cov, np.eye(8), atol=1e-4)
    assert whitened.dtype == np.complex64 and whitened.shape == noise.shape
    assert not np.allclose(noise_covariance(noise), np.eye(8), atol=0.1)  # the input really was coloured


def test_prewhiten_keeps_trailing_axes():
    noise, _ = _correlated_noise(coils=4, samples=5000)
    w = whitening_matrix(noise_covariance(noise))
    data = np.ones((4, 3, 5), dtype=np.complex64)
    out = prewhiten(data, w)
    np.testing.assert_allclose(out[:, 1, 2], (w @ data[:, 1, 2]).astype(np.complex64), rtol=1e-5)


def test_scale_factor_follows_dwell_times():
    assert noise_scale_factor(5.0, 5.0, 1.0) == pytest.approx(1.0)
    assert noise_scale_factor(10.0, 5.0, 1.0) == pytest.approx(2.0)
    assert noise_scale_factor(5.0, 5.0, 0.793) == pytest.approx(1 / 0.793)
    noise, _ = _correlated_noise(coils=3, samples=4000)
    psi = noise_covariance(noise)
    w2 = whitening_matrix(psi, scale=2.0)
    np.testing.assert_allclose(noise_covariance(prewhiten(noise, w2)), np.eye(3) / 2, atol=1e-4)


def test_bad_noise_inputs():
    with pytest.raises(ShapeError, match="coils, samples"):
        noise_covariance(np.zeros(10))
    bad = np.ones((2, 10), dtype=complex)
    bad[0, 3] = np.nan
    with pytest.raises(NonFiniteDataError, match="noise samples"):
        noise_covariance(bad)
    dead = np.zeros((2, 2), dtype=complex)
    dead[0, 0] = 1
    with pytest.raises(ReconInputError, match="not positive definite"):
        whitening_matrix(dead)
    with pytest.raises(ShapeError, match="3 coils but the noise whitener is for 2"):
        prewhiten(np.ones((3, 4)), np.eye(2))
