"""The DDS sampler is the exact posterior ODE for a Gaussian prior: its samples have the closed-form posterior.

Prior ``x ~ CN(m, 2 c^2 I)`` (i.i.d. per real channel, :class:`GaussianDenoiser`), data
``y = A x + n`` with ``E|n|^2 = sigma_y^2``: the posterior is ``CN(mu, P)`` with
``P = (A^H A / sigma_y^2 + I / (2 c^2))^-1`` and ``mu = P (A^H y / sigma_y^2 + m / (2 c^2))``.
Small dense problems (6 x 6 image, 2 coils) so that ``A`` and ``P`` are explicit.
"""

import pytest
import torch

from models.mri.operators import SenseOperator
from models.sampler.dds import dds_sample, proximal_weight
from models.sampler.denoisers import GaussianDenoiser

H = W = 6
COILS = 2
PRIOR_STD = 0.7
SAMPLES = 2000


def _problem(mask_columns, noise_variance, seed=1):
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(1, COILS, H, W, dtype=torch.complex64, generator=g) * 0.6
    mask = torch.zeros(1, 1, 1, W)
    mask[..., list(mask_columns)] = 1.0
    mean = torch.randn(1, H, W, dtype=torch.complex64, generator=g) * 0.3
    operator = SenseOperator(maps, mask)
    basis = torch.eye(H * W, dtype=torch.complex64).view(H * W, H, W)
    A = torch.stack([operator.forward(b[None])[0].flatten() for b in basis], dim=1)
    truth = mean[0].flatten() + PRIOR_STD * 2 ** 0.5 * torch.randn(H * W, dtype=torch.complex64, generator=g)
    y = A @ truth + noise_variance ** 0.5 * torch.randn(A.shape[0], dtype=torch.complex64, generator=g)
    y = y * mask.expand(1, COILS, H, W).flatten()
    P = torch.linalg.inv(A.conj().T @ A / noise_variance + torch.eye(H * W) / (2 * PRIOR_STD ** 2))
    mu = P @ (A.conj().T @ y / noise_variance + mean[0].flatten() / (2 * PRIOR_STD ** 2))
    return maps, mask, mean, y.view(1, COILS, H, W), mu, P


@pytest.mark.parametrize("noise_variance, mask_columns, eta, churn", [
    (0.01, (0, 2, 3), 0.0, 0.0), (0.3, (1, 4), 0.0, 0.0), (0.05, (0, 1, 3, 5), 0.0, 0.0),
    (0.05, (0, 1, 3, 5), 0.8, 0.0), (0.3, (1, 4), 0.5, 0.0), (0.05, (0, 2, 3), 0.5, 5.0)])
def test_samples_have_the_closed_form_posterior_mean_and_covariance(noise_variance, mask_columns, eta, churn):
    """Deterministic (eta 0) and stochastic (DDIM eta > 0, EDM churn) steps all sample the posterior."""
    maps, mask, mean, y, mu, P = _problem(mask_columns, noise_variance)
    operator = SenseOperator(maps.expand(SAMPLES, -1, -1, -1), mask)
    out = dds_sample(GaussianDenoiser(mean, PRIOR_STD), y.expand(SAMPLES, -1, -1, -1), operator,
                     noise_variance=noise_variance, zeta=1.0, num_steps=150, cg_iterations=20, eta=eta, churn=churn,
                     generator=torch.Generator().manual_seed(2)).image.reshape(SAMPLES, -1)
    sample_mean = out.mean(0)
    deviation = out - sample_mean
    covariance = deviation.T @ deviation.conj() / (SAMPLES - 1)  # E[(x - mu)(x - mu)^H]
    scale = P.diagonal().real.max()
    # sampling error of the mean: sqrt(P_ii / SAMPLES) ~ 2% of sqrt(P_ii)
    assert float((sample_mean - mu).abs().max()) < 0.1 * float(scale.sqrt())
    assert float((covariance - P).abs().max()) < 0.08 * float(scale)
    ratio = covariance.diagonal().real / P.diagonal().real
    assert 0.92 < float(ratio.mean()) < 1.04  # Euler steps shrink the spread by about 1 / steps


def test_a_larger_zeta_trusts_the_data_more():
    maps, mask, mean, y, mu, P = _problem((0, 2, 3), 0.3)
    operator = SenseOperator(maps.expand(500, -1, -1, -1), mask)
    spread = []
    for zeta in (1.0, 4.0):
        out = dds_sample(GaussianDenoiser(mean, PRIOR_STD), y.expand(500, -1, -1, -1), operator,
                         noise_variance=0.3, zeta=zeta, num_steps=30, cg_iterations=20,
                         generator=torch.Generator().manual_seed(3)).image
        spread.append(float((out - out.mean(0)).abs().pow(2).mean()))
    assert spread[1] < 0.7 * spread[0]


def test_the_proximal_weight_follows_the_noise_and_the_noise_level():
    var = torch.tensor([0.1, 0.4])
    g_low, g_high = proximal_weight(0.01, 0.5, var, 1.0), proximal_weight(10.0, 0.5, var, 1.0)
    assert torch.allclose(g_low[1] / g_low[0], torch.tensor(4.0))
    assert bool((g_low > 100 * g_high).all())  # low noise level: the denoised estimate is trusted
    assert torch.allclose(proximal_weight(1.0, 0.5, var, 2.0), proximal_weight(1.0, 0.5, var, 1.0) / 2)


def test_bad_arguments_are_named():
    maps, mask, mean, y, mu, P = _problem((0, 2), 0.1)
    operator = SenseOperator(maps, mask)
    den = GaussianDenoiser(mean, PRIOR_STD)
    with pytest.raises(ValueError, match="zeta"):
        dds_sample(den, y, operator, noise_variance=0.1, zeta=0.0, num_steps=4)
    with pytest.raises(ValueError, match="noise_variance"):
        dds_sample(den, y, operator, noise_variance=-1.0, num_steps=4)
    with pytest.raises(ValueError, match="eta"):
        dds_sample(den, y, operator, noise_variance=0.1, eta=1.5, num_steps=4)
    with pytest.raises(ValueError, match="churn"):
        dds_sample(den, y, operator, noise_variance=0.1, churn=-1.0, num_steps=4)
    with pytest.raises(ValueError, match="x_init"):
        dds_sample(den, y, operator, noise_variance=0.1, sigma_start=1.0, num_steps=4)
