"""Image-quality metrics on magnitude images, as fastMRI defines them.

Definitions follow fastMRI's ``fastmri/evaluate.py`` (Zbontar et al. 2018,
arXiv:1811.08839), computed on a volume of slices ``[S, H, W]``:

- ``nmse  = ||gt - pred||^2 / ||gt||^2`` (Frobenius norms over the whole volume),
  ``nrmse = sqrt(nmse)``;
- ``psnr  = 10 log10(data_range^2 / mean((gt - pred)^2))`` with
  ``data_range = gt.max()`` over the volume (skimage ``peak_signal_noise_ratio``);
- ``ssim``: mean over slices of skimage ``structural_similarity`` (default 7x7
  uniform window) with ``data_range = gt.max()`` over the volume.

:func:`slice_metrics` applies the same definitions to each slice on its own
(``data_range`` = that slice's max) and returns per-slice values and their mean.

Inputs may be torch tensors or numpy arrays, ``[H, W]`` or ``[S, H, W]``; complex
inputs are reduced to their magnitude. Nothing rescales ``pred`` to ``gt``
(fastMRI does not either): the two must already share one intensity scale, e.g.
both in the units of a SENSE image whose maps satisfy ``sum_c |S_c|^2 = 1``.
"""

from typing import NamedTuple

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from models.errors import ReconInputError, ShapeError
from models.mri.checks import require_finite


def _as_magnitude_volume(name: str, data) -> np.ndarray:
    """Torch/numpy, real/complex, ``[H, W]`` or ``[S, H, W]`` -> float64 magnitude ``[S, H, W]``."""
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    data = np.asarray(data)
    if np.iscomplexobj(data):
        data = np.abs(data)
    data = data.astype(np.float64, copy=False)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ShapeError(f"metrics: {name} must be [H, W] or [S, H, W], got shape {data.shape}")
    require_finite(name, data)
    return data


def _pair(gt, pred) -> tuple:
    gt = _as_magnitude_volume("gt", gt)
    pred = _as_magnitude_volume("pred", pred)
    if gt.shape != pred.shape:
        raise ShapeError(f"metrics: gt shape {gt.shape} differs from pred shape {pred.shape}")
    return gt, pred


def _data_range(gt: np.ndarray, data_range) -> float:
    value = float(gt.max()) if data_range is None else float(data_range)
    if not value > 0:
        raise ReconInputError(f"metrics: data_range must be positive (gt.max() of an all-zero reference?), got {value}")
    return value


def nmse(gt, pred) -> float:
    """Normalised mean squared error ``||gt - pred||^2 / ||gt||^2`` over the volume."""
    gt, pred = _pair(gt, pred)
    reference = np.linalg.norm(gt)
    if not reference > 0:
        raise ReconInputError("metrics: nmse is undefined for an all-zero reference")
    return float(np.linalg.norm(gt - pred) ** 2 / reference ** 2)


def nrmse(gt, pred) -> float:
    """Normalised root mean squared error ``||gt - pred|| / ||gt||`` over the volume."""
    return float(np.sqrt(nmse(gt, pred)))


def nrmse_scaled(gt, pred) -> float:
    """NRMSE after scaling ``pred`` to ``gt`` by least squares, ``a = <gt, pred> / <pred, pred>``.

    For images in other intensity units than their reference: a reconstruction of
    prewhitened k-space against a noise-free RSS image, or two readers' outputs.
    """
    gt, pred = _pair(gt, pred)
    power = float((pred * pred).sum())
    if not power > 0:
        raise ReconInputError("metrics: nrmse_scaled of an all-zero prediction")
    return nrmse(gt, pred * float((gt * pred).sum()) / power)


def psnr(gt, pred, data_range=None) -> float:
    """Peak signal-to-noise ratio in dB; ``data_range`` defaults to ``gt.max()`` over the volume."""
    gt, pred = _pair(gt, pred)
    return float(peak_signal_noise_ratio(gt, pred, data_range=_data_range(gt, data_range)))


def ssim(gt, pred, data_range=None) -> float:
    """Structural similarity, mean over slices; ``data_range`` defaults to ``gt.max()`` over the volume."""
    gt, pred = _pair(gt, pred)
    value = _data_range(gt, data_range)
    return float(np.mean([structural_similarity(g, p, data_range=value) for g, p in zip(gt, pred)]))


class SliceMetrics(NamedTuple):
    """Per-slice metrics (numpy ``[S]``), each slice scored on its own."""

    nrmse: np.ndarray
    psnr: np.ndarray
    ssim: np.ndarray

    def mean(self) -> dict:
        """Mean over slices: ``{"nrmse": .., "psnr": .., "ssim": ..}``."""
        return {name: float(np.mean(values)) for name, values in self._asdict().items()}


def slice_metrics(gt, pred) -> SliceMetrics:
    """NRMSE, PSNR and SSIM of each slice of ``[S, H, W]`` (or one ``[H, W]`` image).

    Each slice uses its own ``gt.max()`` as data range, i.e. the fastMRI
    definitions applied to a one-slice volume.
    """
    gt, pred = _pair(gt, pred)
    rows = [(nrmse(g, p), psnr(g, p), ssim(g, p)) for g, p in zip(gt, pred)]
    columns = np.array(rows, dtype=np.float64).reshape(-1, 3).T
    return SliceMetrics(*columns)
