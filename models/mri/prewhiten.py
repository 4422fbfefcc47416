"""Noise pre-whitening from noise-scan samples, as Gadgetron's NoiseAdjustGadget does.

The receiver noise of C coils is correlated with covariance ``Psi`` (C x C),
estimated from noise-only samples (ISMRMRD acquisitions flagged
``ACQ_IS_NOISE_MEASUREMENT``). With the Cholesky factor ``Psi = L L^H`` the
whitening matrix ``W = L^{-1}`` turns the noise into unit-variance,
uncorrelated noise in every coil (Pruessmann et al. 2001; Hansen & Kellman,
"Image reconstruction in SNR units", MRM 2015).

When the noise scan used another sampling dwell time than the imaging data,
its noise variance differs by the ratio of dwell times; and the receiver's
effective noise bandwidth (``receiver_noise_bandwidth`` < 1 in the header's
``acquisitionSystemInformation``) rescales it again. :func:`noise_scale_factor`
returns the factor Gadgetron applies for both.

Arrays are NumPy here: pre-whitening runs in the data path, before any torch
model, and acts on acquisitions ``[C, samples]``.
"""

import numpy as np

from models.errors import ReconInputError, ShapeError
from models.mri.checks import require_finite


def noise_covariance(noise: np.ndarray) -> np.ndarray:
    """Sample covariance ``Psi = N N^H / (n - 1)`` of noise ``[C, n]`` (complex), ``[C, C]``."""
    noise = np.asarray(noise)
    if noise.ndim != 2:
        raise ShapeError(f"noise samples must be [coils, samples], got shape {noise.shape}")
    if noise.shape[1] < 2:
        raise ReconInputError(f"need at least 2 noise samples per coil, got {noise.shape[1]}")
    require_finite("noise samples", noise)
    centred = noise - noise.mean(axis=1, keepdims=True)
    return (centred @ centred.conj().T) / (noise.shape[1] - 1)


def noise_scale_factor(noise_dwell_time_us: float, acquisition_dwell_time_us: float,
                       receiver_noise_bandwidth: float = 0.793) -> float:
    """Variance scale that carries noise-scan statistics to the imaging data.

    Noise variance is proportional to bandwidth, i.e. to ``1 / dwell``: the
    imaging data's variance is ``noise_dwell / acq_dwell`` times the noise scan's,
    divided by the receiver's effective noise bandwidth (Gadgetron's default 0.793).
    Returns the factor by which to multiply ``Psi``.
    """
    if noise_dwell_time_us <= 0 or acquisition_dwell_time_us <= 0 or receiver_noise_bandwidth <= 0:
        raise ReconInputError("dwell times and receiver noise bandwidth must be positive")
    return (noise_dwell_time_us / acquisition_dwell_time_us) / receiver_noise_bandwidth


def whitening_matrix(covariance: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """``W = L^{-1}`` with ``scale * Psi = L L^H``; apply as ``W @ data[C, n]``.

    Raises :class:`ReconInputError` if the covariance is not positive definite
    (e.g. a dead or duplicated coil channel).
    """
    covariance = np.asarray(covariance)
    if covariance.ndim != 2 or covariance.shape[0] != covariance.shape[1]:
        raise ShapeError(f"noise covariance must be square [C, C], got shape {covariance.shape}")
    require_finite("noise covariance", covariance)
    try:
        lower = np.linalg.cholesky(scale * covariance)
    except np.linalg.LinAlgError:
        raise ReconInputError("noise covariance is not positive definite (dead or duplicated coil channel?)") from None
    return np.linalg.solve(lower, np.eye(covariance.shape[0], dtype=lower.dtype))


def prewhiten(data: np.ndarray, whitener: np.ndarray) -> np.ndarray:
    """Apply ``whitener [C, C]`` to data whose FIRST axis is coils, ``[C, ...]``; same shape, complex64."""
    data = np.asarray(data)
    if data.shape[0] != whitener.shape[1]:
        raise ShapeError(f"data has {data.shape[0]} coils but the noise whitener is for {whitener.shape[1]}")
    require_finite("data to pre-whiten", data)
    flat = data.reshape(data.shape[0], -1)
    return (whitener @ flat).reshape(data.shape).astype(np.complex64)
