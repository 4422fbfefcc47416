"""fastMRI-style metrics: hand-computed values, SSIM bounds, input handling."""

import math

import numpy as np
import pytest
import torch

from models.errors import ReconInputError, ShapeError
from models.mri.metrics import nmse, nrmse, psnr, slice_metrics, ssim

GT = np.array([[1.0, 2.0], [3.0, 4.0]])
PRED = np.array([[1.0, 2.0], [3.0, 2.0]])


def test_nmse_nrmse_hand_computed():
    # ||gt - pred||^2 = 4, ||gt||^2 = 1 + 4 + 9 + 16 = 30
    assert nmse(GT, PRED) == pytest.approx(4 / 30)
    assert nrmse(GT, PRED) == pytest.approx(math.sqrt(4 / 30))


def test_psnr_hand_computed():
    # mse = 4 / 4 = 1, data_range = gt.max() = 4 -> 10 log10(16)
    assert psnr(GT, PRED) == pytest.approx(10 * math.log10(16.0))
    assert psnr(GT, PRED, data_range=2.0) == pytest.approx(10 * math.log10(4.0))


def test_complex_inputs_use_magnitude_and_torch_equals_numpy():
    phase = np.exp(1j * np.array([[0.3, -1.0], [2.0, 0.5]]))
    assert nrmse(GT * phase, PRED * phase.conj()) == pytest.approx(nrmse(GT, PRED))
    assert nrmse(torch.from_numpy(GT), torch.from_numpy(PRED)) == pytest.approx(nrmse(GT, PRED))
    assert psnr(torch.from_numpy(GT * phase).to(torch.complex64), PRED) == pytest.approx(psnr(GT, PRED), rel=1e-6)


def test_ssim_identical_is_one_and_degrades_with_noise():
    rng = np.random.default_rng(0)
    image = rng.random((2, 32, 32))
    assert ssim(image, image) == pytest.approx(1.0)
    slightly = ssim(image, image + 0.05 * rng.standard_normal(image.shape))
    strongly = ssim(image, image + 0.3 * rng.standard_normal(image.shape))
    assert strongly < slightly < 1.0


def test_volume_metrics_are_not_slice_means():
    # fastMRI scores a volume with norms and data range over all slices, so a
    # bright slice dominates; slice_metrics scores each slice on its own.
    rng = np.random.default_rng(1)
    gt = rng.random((2, 16, 16)) + 0.5
    gt[0] *= 10.0
    pred = gt + 0.05 * rng.standard_normal(gt.shape)
    per_slice = slice_metrics(gt, pred)
    assert per_slice.nrmse.shape == (2,)
    assert per_slice.nrmse[0] == pytest.approx(nrmse(gt[0], pred[0]))
    assert per_slice.psnr[1] == pytest.approx(psnr(gt[1], pred[1]))
    assert per_slice.ssim[1] == pytest.approx(ssim(gt[1], pred[1]))
    expected = math.sqrt(np.sum((gt - pred) ** 2) / np.sum(gt ** 2))
    assert nrmse(gt, pred) == pytest.approx(expected)
    assert abs(nrmse(gt, pred) - per_slice.mean()["nrmse"]) > 1e-3
    assert set(per_slice.mean()) == {"nrmse", "psnr", "ssim"}


def test_shape_mismatch_and_bad_inputs():
    with pytest.raises(ShapeError, match="differs"):
        nrmse(np.ones((4, 4)), np.ones((4, 5)))
    with pytest.raises(ShapeError, match=r"\[H, W\]"):
        psnr(np.ones(4), np.ones(4))
    with pytest.raises(ReconInputError, match="all-zero"):
        nmse(np.zeros((3, 3)), np.ones((3, 3)))
    with pytest.raises(ReconInputError, match="NaN"):
        ssim(np.full((8, 8), np.nan), np.ones((8, 8)))
