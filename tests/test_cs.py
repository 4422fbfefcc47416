"""L1-wavelet CS by FISTA: wavelet prox, step size, convergence bound, scale invariance."""

import numpy as np
import pytest
import torch

from models.errors import CoilMismatchError, ReconInputError
from models.mri.cs import cs_objective, cs_wavelet, operator_norm, tune_cs_lambda, tune_regularization
from models.mri.fft import fft2c
from models.mri.masks import create_mask_func
from models.mri.operators import SenseOperator
from models.mri.wavelets import WaveletTransform, soft_threshold


def smooth_complex(shape, generator, smoothing=4):
    """Random complex image ``shape`` low-passed in k-space (a cheap smooth test object)."""
    noise = torch.complex(torch.randn(shape, generator=generator), torch.randn(shape, generator=generator))
    ky = torch.fft.fftfreq(shape[-2]).view(-1, 1)
    kx = torch.fft.fftfreq(shape[-1]).view(1, -1)
    window = torch.exp(-(ky ** 2 + kx ** 2) * (smoothing * 8.0) ** 2)
    return torch.fft.ifft2(torch.fft.fft2(noise) * window) * 10.0


def small_problem(seed=0, batch=2, coils=4, size=32, acceleration=3):
    """Smooth image, smooth maps normalised to sum_c |S_c|^2 = 1, random mask, 1% noise."""
    g = torch.Generator().manual_seed(seed)
    image = smooth_complex((batch, size, size), g, smoothing=2)
    maps = smooth_complex((batch, coils, size, size), g, smoothing=6)
    maps = (maps / maps.abs().pow(2).sum(dim=1, keepdim=True).sqrt()).to(torch.complex64)
    mask = create_mask_func("random", acceleration, 6)(size, g).as_kspace_mask()
    noise = torch.complex(torch.randn(maps.shape, generator=g), torch.randn(maps.shape, generator=g))
    kspace = mask * (fft2c(maps * image.unsqueeze(1)) + 0.01 * image.abs().max() * noise)
    return image.to(torch.complex64), maps, mask, kspace.to(torch.complex64)


def test_soft_threshold_complex():
    coeffs = np.array([3 + 4j, 0.3 - 0.4j, 0.0], dtype=np.complex64)
    out = soft_threshold(coeffs, 1.0)
    np.testing.assert_allclose(out, [(3 + 4j) * 0.8, 0, 0], atol=1e-6)
    assert out.dtype == np.complex64


@pytest.mark.parametrize("shape", [(2, 32, 32), (2, 30, 27)])
def test_wavelet_perfect_reconstruction_and_orthonormality(shape):
    rng = np.random.default_rng(0)
    image = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    transform = WaveletTransform("db4", levels=2)
    np.testing.assert_allclose(transform.inverse(transform.forward(image), shape), image, atol=1e-5)
    np.testing.assert_allclose(transform.shrink(image, 0.0), image, atol=1e-5)
    if shape[-1] % 4 == 0:  # no padding: Parseval holds
        energy = sum(np.sum(np.abs(band) ** 2) for band in [transform.forward(image)[0]]) + sum(
            np.sum(np.abs(band) ** 2) for bands in transform.forward(image)[1:] for band in bands)
        assert energy == pytest.approx(np.sum(np.abs(image) ** 2), rel=1e-5)


def test_shrink_is_the_l1_prox():
    """p = shrink(v, t) minimises 0.5||x - v||^2 + t ||Psi_detail x||_1: random perturbations do worse."""
    rng = np.random.default_rng(1)
    v = (rng.standard_normal((1, 16, 16)) + 1j * rng.standard_normal((1, 16, 16)))
    transform = WaveletTransform("db2", levels=2)
    t = 0.7
    p = transform.shrink(v, t)

    def cost(x):
        return 0.5 * np.sum(np.abs(x - v) ** 2) + t * transform.detail_l1(x)[0]

    base = cost(p)
    assert base < cost(v)
    for _ in range(20):
        direction = rng.standard_normal(v.shape) + 1j * rng.standard_normal(v.shape)
        assert cost(p + 1e-2 * direction) > base


def test_wavelet_rejects_biorthogonal_and_unknown():
    with pytest.raises(ReconInputError, match="orthogonal"):
        WaveletTransform("bior2.2")
    with pytest.raises(ReconInputError, match="unknown wavelet"):
        WaveletTransform("no-such-wavelet")


def test_operator_norm_power_iteration():
    eigenvalues = torch.tensor([[1.0, 3.0, 0.5], [2.0, 0.1, 7.0]]).view(2, 1, 3).to(torch.complex64)
    estimate = operator_norm(lambda x: eigenvalues * x, (2, 1, 3), iterations=100,
                             generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(estimate.numpy(), [3.0, 7.0], rtol=1e-4)
    # SENSE with sum_c |S_c|^2 = 1 everywhere: ||A^H A|| = 1 for any mask with one full line
    _, maps, mask, _ = small_problem()
    op = SenseOperator(maps, mask)
    estimate = operator_norm(op.normal, op.image_shape, generator=torch.Generator().manual_seed(0))
    assert torch.all(estimate <= 1.0 + 1e-4) and torch.all(estimate > 0.9)


def test_fista_obeys_beck_teboulle_bound():
    """F(x_k) - F* <= 2 L ||x_0 - x*||^2 / (k + 1)^2 (Beck & Teboulle 2009, Thm 4.4), x_0 = 0."""
    _, maps, mask, kspace = small_problem()
    options = dict(lam=2e-3, wavelet="db4", levels=2, cycle_spin=False, generator=torch.Generator().manual_seed(0))
    run = cs_wavelet(kspace, maps, mask, iterations=40, track_objective=True, **options)
    reference = cs_wavelet(kspace, maps, mask, iterations=400, **options)
    op = SenseOperator(maps, mask)
    optimum = cs_objective(reference.image, op, kspace, reference.lam_abs, WaveletTransform("db4", 2))
    distance = reference.image.abs().pow(2).sum(dim=(-2, -1)).double().numpy()
    lipschitz = run.lipschitz.double().numpy()
    history = np.array(run.objective)  # [iterations, B]
    start = cs_objective(torch.zeros_like(reference.image), op, kspace, reference.lam_abs, WaveletTransform("db4", 2))
    assert np.all(history[-1] < 0.5 * start)
    for k, value in enumerate(history, start=1):
        assert np.all(value - optimum <= 2 * lipschitz * distance / (k + 1) ** 2 + 1e-6 * optimum)
    gaps = history - optimum
    assert np.all(gaps[-1] < 0.1 * gaps[4])  # and it does not stall after a few steps


def test_unregularised_fully_sampled_recovers_the_image():
    image, maps, _, _ = small_problem()
    full = torch.ones(image.shape[-1])
    kspace = fft2c(maps * image.unsqueeze(1))
    result = cs_wavelet(kspace, maps, full, lam=0.0, iterations=3, generator=torch.Generator().manual_seed(0))
    error = (result.image - image).abs().pow(2).sum() / image.abs().pow(2).sum()
    assert float(error) < 1e-6


def test_relative_lambda_is_scale_invariant():
    _, maps, mask, kspace = small_problem(seed=3)
    results = [cs_wavelet(scale * kspace, maps, mask, lam=5e-3, iterations=30,
                          generator=torch.Generator().manual_seed(7)).image / scale for scale in (1.0, 1e3)]
    np.testing.assert_allclose(results[1].numpy(), results[0].numpy(), rtol=0, atol=1e-4 * float(results[0].abs().max()))
    # and the regulariser does something at this lam
    plain = cs_wavelet(kspace, maps, mask, lam=0.0, iterations=30, generator=torch.Generator().manual_seed(7)).image
    assert float((plain - results[0]).abs().max()) > 1e-2 * float(plain.abs().max())


def test_cycle_spinning_is_seeded():
    _, maps, mask, kspace = small_problem(seed=4, batch=1)
    run = [cs_wavelet(kspace, maps, mask, iterations=10, generator=torch.Generator().manual_seed(s)).image
           for s in (5, 5, 6)]
    assert torch.equal(run[0], run[1])
    assert not torch.equal(run[0], run[2])


def test_cs_input_errors():
    _, maps, mask, kspace = small_problem(batch=1)
    with pytest.raises(ReconInputError, match="lam"):
        cs_wavelet(kspace, maps, mask, lam=-1.0)
    with pytest.raises(CoilMismatchError):
        cs_wavelet(kspace[:, :3], maps, mask)
    with pytest.raises(ReconInputError, match="grid"):
        tune_regularization(lambda v: None, [], np.ones((4, 4)))


def test_tune_picks_the_lowest_nrmse():
    reference = np.ones((1, 8, 8))
    offsets = np.random.default_rng(0).standard_normal((1, 8, 8))
    result = tune_regularization(lambda v: reference + abs(v - 0.3) * offsets, [0.1, 0.3, 1.0], reference)
    assert result.best == 0.3
    assert result.nrmse[0.3] == pytest.approx(0.0)
    assert result.nrmse[1.0] > result.nrmse[0.1] > 0


def test_tune_cs_lambda_returns_grid_minimum():
    image, maps, mask, kspace = small_problem(seed=5, batch=1)
    lams = (1e-4, 3e-3, 0.3)
    result = tune_cs_lambda(kspace, maps, mask, image.abs(), lams=lams, iterations=30)
    assert result.best in lams
    assert result.nrmse[result.best] == min(result.nrmse.values())
    assert result.nrmse[0.3] > result.nrmse[result.best]  # heavy regularisation blurs the object
