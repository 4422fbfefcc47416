"""Coil simulation, ESPIRiT and Walsh coil maps, BART .cfl I/O (and BART agreement when installed)."""

import math
import shutil
import subprocess

import pytest
import torch

from models.errors import MissingCalibrationError, NonFiniteDataError, ReconInputError, ShapeError
from models.mri import coil_maps as cm
from models.mri.cfl import kspace_to_bart, maps_from_bart, read_cfl, write_cfl
from models.mri.coil_maps import coil_image_error, crop_weights, espirit, estimate_coil_maps, walsh
from models.mri.coil_simulation import brain_phantom, simulate_coil_maps, simulate_kspace
from models.mri.fft import fft2c, ifft2c
from models.mri.masks import acs_columns_from_mask, create_mask_func

SHAPE = (64, 64)
NUM_ACS = 24
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def make_scan(num_coils, snr, seed=0, shape=SHAPE, scale=1.0, acceleration=4):
    """Phantom, true maps and R-fold equispaced k-space with NUM_ACS ACS lines."""
    gen = torch.Generator().manual_seed(seed)
    phantom = brain_phantom(shape, scale=scale)
    maps = simulate_coil_maps(num_coils, shape, gen,
                              ring_axes=(1.08 * scale, 0.92 * scale))
    kspace = simulate_kspace(phantom.image, maps, snr=snr, generator=gen).kspace[0]
    mask = create_mask_func("equispaced", acceleration, NUM_ACS)(shape[1])
    return phantom, maps, kspace * mask.mask, mask


def common_phase_error(est, true_maps, image, region):
    """Relative error of ``S x`` after phase-referencing the true maps like the estimate
    (same virtual coil) and removing one global phase."""
    acs = (SHAPE[1] // 2 - NUM_ACS // 2, SHAPE[1] // 2 + NUM_ACS // 2)
    ref = cm.principal_coil_vector(cm.calibration_region(fft2c(true_maps * image), acs, None))
    truth = cm.rotate_phase(true_maps, ref) * image
    fitted = est * image
    phase = torch.angle((fitted[:, region].conj() * truth[:, region]).sum())
    return float((fitted[:, region] * torch.exp(1j * phase) - truth[:, region]).norm()
                 / truth[:, region].norm())


# ----------------------------------------------------------------------------- simulation


def test_simulated_maps_unit_rss_seeded_and_smooth():
    a = simulate_coil_maps(12, SHAPE, torch.Generator().manual_seed(3))
    b = simulate_coil_maps(12, SHAPE, torch.Generator().manual_seed(3))
    c = simulate_coil_maps(12, SHAPE, torch.Generator().manual_seed(4))
    assert a.shape == (12,) + SHAPE and a.dtype == torch.complex64
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert torch.allclose(a.abs().pow(2).sum(0), torch.ones(SHAPE), atol=1e-5)
    # Smooth: neighbouring pixels differ by a small fraction of the map magnitude.
    assert float((a[:, 1:] - a[:, :-1]).abs().max()) < 0.25
    peak = simulate_coil_maps(12, SHAPE, torch.Generator().manual_seed(3), normalize="peak")
    assert float(peak.abs().pow(2).sum(0).sqrt().max()) == pytest.approx(1.0, abs=1e-5)
    assert float(peak.abs().pow(2).sum(0).min()) < 0.5  # physical shading kept


def test_phantom_has_bright_scalp_and_dark_skull():
    phantom = brain_phantom((96, 96))
    mag = phantom.image.abs()
    skull = phantom.support & ~phantom.scalp & (mag < 0.1)
    assert phantom.scalp.any() and skull.sum() > 50
    assert float(mag[phantom.scalp].mean()) > 10 * float(mag[skull].mean())
    assert float(mag[~phantom.support].abs().max()) == 0
    assert float(phantom.image.angle()[phantom.support].std()) > 0.05  # a real phase


def test_simulated_noise_matches_requested_snr():
    phantom = brain_phantom(SHAPE)
    maps = simulate_coil_maps(8, SHAPE)
    clean = simulate_kspace(phantom.image, maps).kspace
    noisy = simulate_kspace(phantom.image, maps, snr=20, generator=torch.Generator().manual_seed(0))
    noise = noisy.kspace - clean
    assert float(noise.abs().pow(2).mean().sqrt()) == pytest.approx(noisy.noise_std, rel=0.03)
    rss = ifft2c(clean).abs().pow(2).sum(1).sqrt()
    assert float(rss[rss > 0.1 * rss.max()].mean()) / noisy.noise_std == pytest.approx(20, rel=1e-4)


# ----------------------------------------------------------------------------- ESPIRiT internals


def test_kernel_correlation_matches_direct_image_space_gram():
    """G(r) = k^-2 sum_n w_n(r) w_n(r)^H with w_n the unnormalised inverse DFT of the
    zero-padded kernels, evaluated directly, equals the separable evaluation."""
    gen = torch.Generator().manual_seed(0)
    n, c, k, h, w = 5, 3, 4, 12, 10
    kernels = torch.randn(n, c, k, k, 2, generator=gen, dtype=torch.float64)
    kernels = torch.view_as_complex(kernels)
    padded = torch.zeros(n, c, h, w, dtype=torch.complex128)
    padded[..., 3:3 + k, 2:2 + k] = kernels
    direct_w = ifft2c(padded) * math.sqrt(h * w)
    direct = torch.einsum("nchw,ndhw->hwcd", direct_w, direct_w.conj()) / k ** 2
    corr = cm._kernel_correlation(kernels)
    lags = corr.shape[-1]
    ours = torch.einsum("hp,cdpq,wq->hwcd", cm._phase_matrix(h, lags, "cpu"), corr,
                        cm._phase_matrix(w, lags, "cpu"))
    assert torch.allclose(ours, direct, atol=1e-10)


def test_power_method_matches_eigh():
    gen = torch.Generator().manual_seed(1)
    vecs = torch.view_as_complex(torch.randn(50, 6, 6, 2, generator=gen))
    q, _ = torch.linalg.qr(vecs)
    vals = torch.tensor([1.0, 0.5, 0.3, 0.2, 0.1, 0.0])
    mats = q @ torch.diag_embed(vals.to(q.dtype)) @ q.mH
    vec, val = cm.dominant_eigenpair(mats * 1e4, squarings=6)
    val = val / 1e4
    assert torch.allclose(val, torch.ones(50), atol=1e-4)
    overlap = (q[..., 0].conj() * vec).sum(-1).abs()
    assert torch.allclose(overlap, torch.ones(50), atol=1e-4)


def test_noiseless_eigenvalue_is_one_inside_and_drops_outside_small_head():
    phantom, _, kspace, _ = make_scan(8, None, scale=0.6)
    result = espirit(kspace, crop_mode="none")
    assert float(result.eigenvalues[phantom.support].min()) > 0.98
    far = ~torch.nn.functional.max_pool2d(phantom.support[None, None].float(), 17, 1, 8)[0, 0].bool()
    assert far.sum() > 200 and float(result.eigenvalues[far].mean()) < 0.8
    unit = result.maps.abs().pow(2).sum(0)
    assert torch.allclose(unit, torch.ones_like(unit), atol=1e-3)


@pytest.mark.parametrize("method", ["espirit", "walsh"])
def test_row_chunking_does_not_change_maps(method, monkeypatch):
    _, _, kspace, _ = make_scan(8, 30)
    whole = cm.METHODS[method](kspace)
    monkeypatch.setattr(cm, "_CHUNK_ELEMENTS", 64 * 8 * 8 * 5)  # 5 rows per chunk
    chunked = cm.METHODS[method](kspace)
    assert torch.allclose(chunked.maps, whole.maps, atol=1e-5)
    assert torch.allclose(chunked.eigenvalues, whole.eigenvalues, rtol=1e-4, atol=1e-6)


def test_crop_modes():
    values = torch.linspace(0, 1, 101)
    hard = crop_weights(values, 0.8, "hard")
    soft = crop_weights(values, 0.8, "soft")
    assert torch.equal(hard, (values > 0.8).float())
    assert torch.equal(crop_weights(values, 0.8, "none"), torch.ones(101))
    assert float(soft.min()) == 0 and float(soft.max()) == pytest.approx(1.0)
    assert bool((soft[1:] >= soft[:-1]).all())
    assert float(crop_weights(torch.tensor([0.64]), 0.8, "soft")) == pytest.approx(0.5, abs=1e-5)
    assert float(crop_weights(torch.tensor([0.35]), 0.8, "soft")) == 0  # below (2c - 1)^2
    with pytest.raises(ReconInputError):
        crop_weights(values, 0.8, "medium")


def test_hard_crop_zeroes_maps_where_eigenvalue_low():
    _, _, kspace, _ = make_scan(8, 30, scale=0.6)
    result = espirit(kspace, crop=0.8, crop_mode="hard")
    norm = result.maps.abs().pow(2).sum(0)
    assert torch.all(norm[result.eigenvalues <= 0.8] == 0)
    assert torch.allclose(norm[result.eigenvalues > 0.8], torch.ones(1), atol=1e-3)
    assert bool((result.eigenvalues <= 0.8).any())


# ----------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("num_coils", [8, 16, 32])
def test_espirit_reproduces_true_maps(num_coils):
    phantom, maps, kspace, _ = make_scan(num_coils, snr=30, seed=num_coils)
    est = espirit(kspace, crop_mode="none").maps
    assert coil_image_error(est, maps, phantom.image, phantom.support) < 0.05
    assert common_phase_error(est, maps, phantom.image, phantom.support) < 0.05


@pytest.mark.parametrize("num_coils", [8, 32])
def test_walsh_reproduces_true_maps(num_coils):
    phantom, maps, kspace, _ = make_scan(num_coils, snr=30, seed=num_coils)
    est = walsh(kspace).maps
    assert coil_image_error(est, maps, phantom.image, phantom.support) < 0.05
    assert common_phase_error(est, maps, phantom.image, phantom.support) < 0.05


def test_wrong_maps_are_detected_by_the_error_measures():
    """The accuracy tests could fail: maps of another seed give a large error."""
    phantom, maps, _, _ = make_scan(8, None, seed=0)
    other = simulate_coil_maps(8, SHAPE, torch.Generator().manual_seed(99))
    assert coil_image_error(other, maps, phantom.image, phantom.support) > 0.3


def test_walsh_support_falls_outside_object():
    phantom, _, kspace, _ = make_scan(8, 30, scale=0.6)
    norm = walsh(kspace, support=0.05).maps.abs().pow(2).sum(0)
    far = ~torch.nn.functional.max_pool2d(phantom.support[None, None].float(), 9, 1, 4)[0, 0].bool()
    inner = torch.nn.functional.max_pool2d((~phantom.support)[None, None].float(), 5, 1, 2)[0, 0] == 0
    assert float(norm[inner].mean()) > 0.9
    assert float(norm[far].mean()) < 0.3


# ----------------------------------------------------------------------------- entry point


def test_entry_point_batches_and_detects_acs():
    _, _, k1, mask = make_scan(8, 30, seed=1)
    _, _, k2, _ = make_scan(8, 30, seed=2)
    batch = estimate_coil_maps(torch.stack([k1, k2]), method="espirit")
    detected = cm.detect_acs(k1)
    # The equispaced lattice touches the ACS block, so the contiguous run may be longer.
    assert detected == acs_columns_from_mask(mask.mask)
    assert detected[0] <= mask.acs_start and detected[1] >= mask.acs_start + NUM_ACS
    single = estimate_coil_maps(k2, method="espirit", acs=detected)
    assert batch.shape == (2, 8) + SHAPE
    assert torch.allclose(batch[1], single, atol=1e-6)
    explicit = estimate_coil_maps(k2, method="espirit", acs=(mask.acs_start, mask.acs_start + NUM_ACS))
    assert not torch.allclose(explicit, single, atol=1e-6)  # the acs argument is used
    default = estimate_coil_maps(k1)
    assert default.shape == (8,) + SHAPE


def test_missing_calibration_is_reported():
    _, _, kspace, mask = make_scan(8, 30)
    few = kspace.clone()
    few[..., : SHAPE[1] // 2 - 2] = 0
    few[..., SHAPE[1] // 2 + 2:] = 0
    with pytest.raises(MissingCalibrationError, match="4 fully sampled"):
        estimate_coil_maps(few, method="espirit")
    two = kspace.clone()
    two[..., : SHAPE[1] // 2 - 1] = 0
    two[..., SHAPE[1] // 2 + 1:] = 0
    with pytest.raises(MissingCalibrationError, match="2 fully sampled"):
        estimate_coil_maps(two, method="walsh")
    # An explicit ACS range that includes skipped lines.
    with pytest.raises(MissingCalibrationError, match="unsampled"):
        estimate_coil_maps(kspace, method="walsh", acs=(mask.acs_start - 3, mask.acs_start + NUM_ACS))


def test_bad_input_is_rejected():
    _, _, kspace, _ = make_scan(8, 30)
    with pytest.raises(ShapeError):
        estimate_coil_maps(kspace[0])
    with pytest.raises(ShapeError):
        estimate_coil_maps(kspace[None, None])
    with pytest.raises(ShapeError):
        estimate_coil_maps(kspace.abs())
    with pytest.raises(ShapeError):
        estimate_coil_maps(kspace, acs=(50, 70))
    bad = kspace.clone()
    bad[0, 3, 32] = float("nan")
    with pytest.raises(NonFiniteDataError):
        estimate_coil_maps(bad)
    with pytest.raises(ReconInputError, match="unknown coil-map method"):
        estimate_coil_maps(kspace, method="sake")
    with pytest.raises(ReconInputError):
        walsh(kspace, patch_size=4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("method", ["espirit", "walsh"])
def test_cpu_and_cuda_agree(method):
    phantom, _, kspace, _ = make_scan(8, 30)
    cpu = estimate_coil_maps(kspace, method=method)
    gpu = estimate_coil_maps(kspace.cuda(), method=method).cpu()
    assert gpu.device.type == "cpu"
    inside = phantom.support
    assert float((cpu - gpu)[:, inside].norm() / cpu[:, inside].norm()) < 1e-3


# ----------------------------------------------------------------------------- BART


def test_cfl_round_trip(tmp_path):
    data = torch.view_as_complex(torch.randn(3, 5, 7, 2))
    name = str(tmp_path / "x")
    write_cfl(name, kspace_to_bart(data))
    back = read_cfl(name)
    assert back.shape == (5, 7, 1, 3)
    assert torch.equal(maps_from_bart(back), data)
    with open(name + ".hdr") as header:
        assert header.read().split("\n")[1].split() == ["5", "7", "1", "3"]


@pytest.mark.skipif(shutil.which("bart") is None, reason="BART (`bart` executable) is not installed")
def test_espirit_agrees_with_bart_ecalib(tmp_path):
    phantom, _, kspace, _ = make_scan(8, 30)
    write_cfl(str(tmp_path / "k"), kspace_to_bart(kspace))
    subprocess.run(["bart", "ecalib", "-m1", str(tmp_path / "k"), str(tmp_path / "s")],
                   check=True, capture_output=True)
    theirs = maps_from_bart(read_cfl(str(tmp_path / "s")))
    ours = espirit(kspace).maps
    inside = phantom.support
    proj = lambda s: torch.einsum("chw,dhw->cdhw", s, s.conj())[:, :, inside]  # noqa: E731
    assert float((proj(ours) - proj(theirs)).norm() / proj(theirs).norm()) < 0.03
