"""The prior's measured denoising error (models.prior.error_curve)."""

import json

import numpy as np
import pytest
import torch

from models.errors import CheckpointError
from models.prior.error_curve import ErrorCurve, load_curves, measure, sidecar_path
from models.sampler.dds import denoiser_error_variance
from models.sampler.denoisers import GaussianDenoiser


def test_measured_error_of_the_exact_gaussian_denoiser_is_the_closed_form():
    std = 0.3
    g = torch.Generator().manual_seed(5)  # not the measurement's noise seed
    images = std * torch.complex(torch.randn(64, 16, 16, generator=g), torch.randn(64, 16, 16, generator=g))
    sigmas = (0.01, 0.1, 0.3, 1.0, 10.0)
    curve = measure(GaussianDenoiser(torch.zeros(1, 16, 16, dtype=torch.complex64), std), images, sigmas)
    for t, v in zip(sigmas, curve.variances):
        assert v == pytest.approx(denoiser_error_variance(t, std), rel=0.03)


def test_interpolation_is_log_log_and_extrapolates():
    curve = ErrorCurve([0.01, 1.0], [1e-4, 1e-2])  # v = 0.01 t
    assert curve(0.1) == pytest.approx(1e-3)
    assert curve(0.001) == pytest.approx(1e-5)
    assert curve(10.0) == pytest.approx(0.1)


def test_bad_curves_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="increase"):
        ErrorCurve([1.0, 0.5], [0.1, 0.2])
    with pytest.raises(CheckpointError, match="finite"):
        ErrorCurve([0.5, 1.0], [0.1, float("nan")])
    checkpoint = tmp_path / "prior.safetensors"
    assert load_curves(checkpoint) == {}
    sidecar_path(checkpoint).write_text("{not json")
    with pytest.raises(CheckpointError, match="error-curve"):
        load_curves(checkpoint)
    sidecar_path(checkpoint).write_text(json.dumps({"contrasts": {"FLAIR": {"sigmas": [0.1, 1], "variances": [1e-3, 1e-2]}}}))
    assert load_curves(checkpoint)["FLAIR"](np.sqrt(0.1)) == pytest.approx(10 ** -2.5)


def test_the_shipped_prior_carries_a_curve_per_contrast():
    from models.prior.shipped import shipped_checkpoint
    curves = load_curves(shipped_checkpoint())
    assert "FLAIR" in curves
    flair = curves["FLAIR"]
    # the network denoises better than a Gaussian prior of its sigma_data (0.5) at every level
    assert all(v < denoiser_error_variance(t, 0.5) for t, v in zip(flair.sigmas, flair.variances))


def test_the_cli_measures_a_patch_prior_with_the_chains_tiling(tmp_path, monkeypatch):
    """``python -m models.prior.error_curve`` runs a patch prior with the tiling asked for (default whole, the
    chains' patch_tiling) and records it beside the curve."""
    from models.prior import error_curve
    from models.prior.checkpoint import save_prior
    from models.prior.contrasts import ContrastVocabulary
    from models.prior.patches import AssembledDenoiser, PatchPrecond
    from models.prior.unet import UNet, unet_preset

    prior = PatchPrecond(UNet(unet_preset("tiny", 16, label_dim=1, in_channels=4)), patch_sizes=(8, 16),
                         vocabulary=ContrastVocabulary(["FLAIR"]))
    path = tmp_path / "prior.safetensors"
    save_prior(path, prior, image_size=(16, 16))
    monkeypatch.setattr(error_curve, "validation_images",
                        lambda contrast, normalization, subjects, seed: torch.randn(2, 16, 16, dtype=torch.complex64))
    used = []
    original = AssembledDenoiser.forward

    def spy(self, *args, **kwargs):
        used.append(self.tiling)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AssembledDenoiser, "forward", spy)
    for tiling in ([], ["--tiling", "shifted"]):
        error_curve.main([str(path)] + tiling)
        written = json.loads(sidecar_path(path).read_text())
        assert written["tiling"] == (tiling[-1] if tiling else "whole")
        assert set(used) == {written["tiling"]} and "FLAIR" in written["contrasts"]
        used.clear()
