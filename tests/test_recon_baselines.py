"""Classical baselines on a simulated brain-like slice: CG, CG-SENSE and L1-wavelet CS.

The slice is built here (ellipses for scalp, skull gap, brain, ventricles and a
lesion, smoothed random white-matter blobs, fine texture, a smooth phase), with
eight Gaussian-profile coils around the head normalised to sum_c |S_c|^2 = 1
inside the head and zero outside, equispaced R = 4 with 24 ACS lines, and
complex Gaussian k-space noise at 1% of the image maximum. The reference image
is the noise-free object, on the same intensity scale as a SENSE recon.
"""

import shutil
import subprocess

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from models.mri.cs import cs_wavelet, tune_cs_lambda
from models.mri.fft import fft2c
from models.mri.masks import create_mask_func
from models.mri.metrics import nrmse
from models.mri.recon import cg_sense, conjugate_gradient, zero_filled_sense

SIZE = 96
COILS = 8


def _ellipse(xx, yy, cx, cy, a, b, angle=0.0):
    c, s = np.cos(angle), np.sin(angle)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def brain_slice(size=SIZE, coils=COILS, seed=0):
    """Complex brain-like image ``[H, W]``, maps ``[C, H, W]`` (complex64, numpy)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    head = _ellipse(xx, yy, 0, 0, 0.72, 0.9)
    image = np.where(head, 0.9, 0.0)  # scalp
    image[_ellipse(xx, yy, 0, 0, 0.64, 0.82)] = 0.1  # skull
    brain = _ellipse(xx, yy, 0, 0, 0.6, 0.78)
    image[brain] = 0.6  # grey matter
    image[brain & (gaussian_filter(rng.standard_normal((size, size)), 6) > 0)] = 0.45  # white matter
    texture = gaussian_filter(rng.standard_normal((size, size)), 2)
    image[brain] += 0.08 * (texture / texture.std())[brain]
    for cx, angle in ((-0.12, 0.2), (0.12, -0.2)):
        image[_ellipse(xx, yy, cx, 0.0, 0.07, 0.25, angle)] = 1.0  # ventricles
    image[_ellipse(xx, yy, 0.3, -0.3, 0.1, 0.08)] = 0.85  # lesion
    image = gaussian_filter(image, 0.6) * head * np.exp(1j * np.pi * 0.3 * (xx + 0.5 * yy))

    support = gaussian_filter(head.astype(float), 1) > 0.01
    maps = []
    for c in range(coils):
        angle = 2 * np.pi * c / coils
        distance2 = (xx - 1.1 * np.cos(angle)) ** 2 + (yy - 1.1 * np.sin(angle)) ** 2
        maps.append(np.exp(-distance2 / 0.8) * np.exp(1j * (angle + 0.5 * (xx * np.cos(angle) - yy * np.sin(angle)))))
    maps = np.array(maps)
    maps = maps / np.sqrt((np.abs(maps) ** 2).sum(0)) * support
    return image.astype(np.complex64), maps.astype(np.complex64)


@pytest.fixture(scope="module")
def problem():
    """Undersampled noisy k-space ``[1, C, H, W]``, maps, mask ``[1, 1, 1, W]`` and reference ``[1, H, W]``."""
    image, maps = brain_slice()
    image, maps = torch.from_numpy(image)[None], torch.from_numpy(maps)[None]
    mask = create_mask_func("equispaced", 4, 24)(SIZE).as_kspace_mask()
    g = torch.Generator().manual_seed(1)
    noise = torch.complex(torch.randn(maps.shape, generator=g), torch.randn(maps.shape, generator=g)) / np.sqrt(2)
    kspace = mask * (fft2c(maps * image.unsqueeze(1)) + 0.01 * float(image.abs().max()) * noise)
    return kspace.to(torch.complex64), maps, mask, image.abs()


def test_conjugate_gradient_solves_spd_system():
    g = torch.Generator().manual_seed(0)
    batch, n = 2, 20
    m = torch.complex(torch.randn(batch, n, n, generator=g, dtype=torch.float64),
                      torch.randn(batch, n, n, generator=g, dtype=torch.float64))
    matrix = m @ m.conj().transpose(-2, -1) + n * torch.eye(n, dtype=torch.complex128)  # Hermitian PD, each slice its own
    rhs = torch.complex(torch.randn(batch, n, generator=g, dtype=torch.float64),
                        torch.randn(batch, n, generator=g, dtype=torch.float64))
    apply = lambda x: (matrix @ x.unsqueeze(-1)).squeeze(-1)  # noqa: E731
    exact = torch.linalg.solve(matrix, rhs)
    solution = conjugate_gradient(apply, rhs, iterations=60, tolerance=1e-12)
    assert float((solution - exact).abs().max() / exact.abs().max()) < 1e-8
    few = conjugate_gradient(apply, rhs, iterations=3, tolerance=1e-12)
    assert float((few - exact).abs().max() / exact.abs().max()) > 1e-4  # the iterations matter
    warm = conjugate_gradient(apply, rhs, x0=exact, iterations=5, tolerance=1e-6)
    assert torch.allclose(warm, exact, rtol=0, atol=1e-10)


def test_simulated_maps_are_normalised(problem):
    _, maps, _, reference = problem
    energy = maps.abs().pow(2).sum(dim=1)
    inside = reference > 0.05
    assert torch.allclose(energy[inside], torch.ones_like(energy[inside]), atol=1e-5)


def test_cg_sense_and_cs_beat_zero_filled(problem):
    kspace, maps, mask, reference = problem
    zero_filled = nrmse(reference, zero_filled_sense(kspace, maps))
    cg = nrmse(reference, cg_sense(kspace, maps, mask, iterations=15))
    cs = nrmse(reference, cs_wavelet(kspace, maps, mask, lam=5e-4, iterations=100,
                                     generator=torch.Generator().manual_seed(0)).image)
    assert cg < 0.5 * zero_filled
    assert cs < 0.5 * zero_filled


def test_tuned_cs_beats_unregularised(problem):
    """The l1-wavelet prior helps: the tuned lam beats lam = 0 (plain least squares by FISTA)."""
    kspace, maps, mask, reference = problem
    tuned = tune_cs_lambda(kspace, maps, mask, reference, lams=(0.0, 1e-4, 4e-4, 1.5e-3), iterations=100)
    assert tuned.best > 0
    assert tuned.nrmse[tuned.best] < 0.95 * tuned.nrmse[0.0]


@pytest.mark.skipif(shutil.which("bart") is None, reason="BART not installed (apt-get install bart)")
def test_bart_cfl_and_fft_conventions_match_ours(tmp_path):
    """The .cfl helper used by the BART benchmarks and BART's unitary FFT agree with fft2c (odd size too)."""
    from models.mri.cfl import kspace_to_bart, read_cfl, write_cfl
    rng = np.random.default_rng(0)
    coils = (rng.standard_normal((3, 7, 6)) + 1j * rng.standard_normal((3, 7, 6))).astype(np.complex64)
    write_cfl(str(tmp_path / "x"), kspace_to_bart(coils))
    np.testing.assert_array_equal(read_cfl(str(tmp_path / "x")), kspace_to_bart(coils))
    subprocess.run(["bart", "fft", "-u", "3", "x", "k"], cwd=tmp_path, check=True, capture_output=True)
    expected = kspace_to_bart(fft2c(torch.from_numpy(coils)).numpy())
    np.testing.assert_allclose(read_cfl(str(tmp_path / "k")), expected, atol=1e-5)


def test_tikhonov_kappa_follows_the_acceleration_table():
    from models.mri.recon import TIKHONOV_KAPPA, TIKHONOV_KAPPA_BY_ACCELERATION, tikhonov_kappa
    table = TIKHONOV_KAPPA_BY_ACCELERATION
    assert all(tikhonov_kappa(r) == k for r, k in table.items())
    assert tikhonov_kappa(None) == TIKHONOV_KAPPA
    assert tikhonov_kappa(1.0) == table[min(table)] and tikhonov_kappa(12) == table[max(table)]
    assert min(table[5.0], table[6.0]) <= tikhonov_kappa(5.5) <= max(table[5.0], table[6.0])
    ks = [k for _, k in sorted(table.items())]
    assert ks == sorted(ks, reverse=True), "kappa must not grow with R (benchmarks/results/tune_kappa.md)"
