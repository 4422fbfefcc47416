"""DPS sampler against a Gaussian prior, whose posterior is known in closed form.

With an i.i.d. complex Gaussian prior ``x0 ~ mean + std * n`` and a single-coil
operator ``A = P F`` (unitary F), the denoiser is linear and pixel-wise, so
unsampled k-space never feels the data term: there the samples must follow the
prior exactly (mean F(mean), std ``std`` per real channel), while sampled
k-space must move towards the measurement as ``zeta`` grows.
"""

import pytest
import torch

from models.errors import NonFiniteDataError
from models.mri.fft import fft2c
from models.mri.masks import create_mask_func
from models.mri.operators import SenseOperator
from models.sampler.denoisers import GaussianDenoiser
from models.sampler.dps import dps_sample
from models.sampler.schedule import edm_sigma_steps

H = W = 16
STD = 0.5


def _problem(batch=64, noise=0.01, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    mean = (torch.exp(-(xx ** 2 + yy ** 2) * 3) * (1 + 0.5j)).to(torch.complex64)
    truth = mean + STD * torch.complex(torch.randn(H, W, generator=g), torch.randn(H, W, generator=g))
    mask = create_mask_func("equispaced", 4, 4)(W).mask
    maps = torch.ones(batch, 1, H, W, dtype=torch.complex64)
    op = SenseOperator(maps, mask)
    clean = op.forward(truth.expand(batch, H, W).contiguous())
    y = clean + noise * op.mask * torch.complex(torch.randn(clean.shape, generator=g), torch.randn(clean.shape, generator=g))
    y = y[:1].expand_as(clean).contiguous()  # one measurement, many posterior draws
    return GaussianDenoiser(mean, STD), op, y, mask, mean


def test_edm_steps_are_decreasing_and_end_at_zero():
    s = edm_sigma_steps(10, 0.002, 80.0, 7.0)
    assert s.shape == (11,) and s[0] == pytest.approx(80.0) and s[-2] == pytest.approx(0.002) and s[-1] == 0
    assert torch.all(s[1:] < s[:-1])


def test_unconditional_samples_follow_the_prior():
    denoiser, op, y, _, mean = _problem(batch=256)
    out = dps_sample(denoiser, y, op, zeta=0.0, num_steps=30, generator=torch.Generator().manual_seed(1))
    assert out.image.shape == (256, H, W) and out.image.dtype == torch.complex64
    assert out.nfe == 2 * 30 - 1
    emp_mean = out.image.mean(0)
    emp_std = out.image.real.std(0).mean()
    assert (emp_mean - mean).abs().mean() < 0.1
    assert emp_std == pytest.approx(STD, rel=0.1)


# (dc_form, zeta, residual_normalised): the ODE form needs a large weight because its pull
# scales with t; the DPS step with the squared-norm gradient at zeta = 0.5 projects the
# denoised estimate onto the data (A^H A is a projection for unit single-coil maps).
DC_FORMS = [("ode", 20.0, False), ("dps", 0.5, False), ("dps", 2.0, True)]


@pytest.mark.parametrize("dc_form,zeta,normalised", DC_FORMS)
def test_unsampled_kspace_keeps_prior_statistics_and_sampled_kspace_fits_y(dc_form, zeta, normalised):
    denoiser, op, y, mask, mean = _problem(batch=256)
    out = dps_sample(denoiser, y, op, zeta=zeta, num_steps=40, dc_form=dc_form, residual_normalised=normalised,
                     generator=torch.Generator().manual_seed(2))
    k = fft2c(out.image)
    k_mean = fft2c(mean)
    unsampled = ~mask
    assert (k[..., unsampled].mean(0) - k_mean[..., unsampled]).abs().mean() < 0.1
    assert k[..., unsampled].real.std(0).mean() == pytest.approx(STD, rel=0.1)
    # sampled lines: pulled well inside the prior spread towards y
    sampled_err = (k[..., mask] - y[:, 0][..., mask]).abs().mean()
    assert sampled_err < 0.5 * STD
    assert k[..., mask].real.std(0).mean() < 0.5 * STD


@pytest.mark.parametrize("dc_form,zetas,normalised", [("ode", (0.0, 0.1, 0.5, 2.0), False),
                                                     ("dps", (0.0, 0.05, 0.15, 0.5), False)])
def test_fit_to_data_improves_as_zeta_grows(dc_form, zetas, normalised):
    denoiser, op, y, _, _ = _problem(batch=8)
    residuals = []
    for zeta in zetas:
        out = dps_sample(denoiser, y, op, zeta=zeta, num_steps=30, dc_form=dc_form, residual_normalised=normalised,
                         generator=torch.Generator().manual_seed(3))
        residuals.append(float((op.forward(out.image) - y).abs().pow(2).sum()))
    assert all(a > b for a, b in zip(residuals, residuals[1:])), residuals


def test_heun_correction_needs_no_gradient_in_dps_form():
    denoiser, op, y, _, _ = _problem(batch=1)

    calls = []

    def counting(x, sigma):
        calls.append(x.requires_grad)
        return denoiser(x, sigma)

    out = dps_sample(counting, y, op, zeta=0.5, num_steps=5, dc_form="dps")
    assert out.nfe == 9 and calls.count(True) == 5 and calls.count(False) == 4


def test_same_seed_same_image_and_trajectory():
    denoiser, op, y, _, _ = _problem(batch=2)
    a = dps_sample(denoiser, y, op, zeta=0.5, num_steps=8, generator=torch.Generator().manual_seed(5),
                   return_trajectory=True)
    b = dps_sample(denoiser, y, op, zeta=0.5, num_steps=8, generator=torch.Generator().manual_seed(5))
    c = dps_sample(denoiser, y, op, zeta=0.5, num_steps=8, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a.image, b.image)
    assert not torch.allclose(a.image, c.image)
    assert len(a.trajectory) == 8


def test_nan_kspace_is_rejected():
    denoiser, op, y, _, _ = _problem(batch=1)
    y = y.clone()
    y[0, 0, 3, 4] = float("nan")
    with pytest.raises(NonFiniteDataError, match="measured k-space"):
        dps_sample(denoiser, y, op, zeta=1.0, num_steps=4)
