"""Coil sensitivity maps from the calibration (ACS) region of one slice.

Two estimators, one entry point (:func:`estimate_coil_maps`):

- **ESPIRiT** (Uecker et al., "ESPIRiT - an eigenvalue approach to
  autocalibrating parallel MRI: where SENSE meets GRAPPA", MRM 71:990, 2014).
  A calibration (block-Hankel) matrix of ``k x k`` k-space patches over the ACS
  region is decomposed by SVD; the right singular vectors above a threshold span
  the signal subspace. Transformed to image space they give, at every pixel, a
  ``C x C`` Hermitian matrix whose top eigenvector is the sensitivity vector
  and whose eigenvalue is ~1 where the data are consistent with the maps and
  drops towards 0 outside the object. The eigenvalue then sets the support:
  ``"hard"`` crop (BART ``ecalib -c``), ``"soft"`` weighting with BART's
  S-curve (``ecalib -S``) or ``"none"``.
- **Walsh** (Walsh, Gmitro, Marcellin, "Adaptive reconstruction of phased array
  MR imagery", MRM 43:682, 2000; with the power method in place of a full
  eigen-decomposition, as in Inati, Hansen, Kellman, ISMRM 2014): per-pixel
  coil covariance of windowed low-resolution coil images over a small patch,
  its dominant eigenvector, optional soft support from the eigenvalue.

Maps are ``[C, H, W]`` complex64 (``H`` readout, ``W`` phase encode, see
:mod:`models.mri.fft`), unit norm over coils wherever they are not cropped, and
phase-referenced to the first principal component of the calibration data (a
virtual body coil, as BART does), so they are smooth in space.

The default method and support (:data:`DEFAULT_METHOD`, :data:`DEFAULT_OPTIONS`)
were chosen by CG-SENSE NRMSE on simulated scans of a head with scalp; see
``benchmarks/coil_map_defaults.py`` and ``benchmarks/results/coil_map_defaults.md``.
"""

import logging
import math
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F

from models.errors import MissingCalibrationError, ReconInputError, ShapeError
from models.mri.checks import require_finite
from models.mri.fft import ifft2c
from models.mri.masks import acs_columns_from_mask

log = logging.getLogger(__name__)

# Chosen by benchmarks/coil_map_defaults.py (results/coil_map_defaults.md): on simulated
# scans with scalp, ESPIRiT with BART's hard crop 0.8 gave the lowest CG-SENSE NRMSE at
# SNR 10, 30 and 100 (it kept the whole scalp there; soft weights and lower crops let
# background noise alias into the head).
DEFAULT_METHOD = "espirit"
DEFAULT_OPTIONS = {"espirit": {"crop": 0.8, "crop_mode": "hard"}, "walsh": {}}

CROP_MODES = ("hard", "soft", "none")
MIN_WALSH_ACS = 4
_CHUNK_ELEMENTS = 1 << 22  # complex entries of per-pixel C x C matrices held at once


class CoilMaps(NamedTuple):
    """Estimated sensitivities and the per-pixel eigenvalue they came with."""

    maps: torch.Tensor  # [C, H, W] complex64
    eigenvalues: torch.Tensor  # [H, W] float32 (ESPIRiT: ~1 inside the object; Walsh: signal power)


# ----------------------------------------------------------------------------- calibration data


def detect_acs(kspace: torch.Tensor) -> Tuple[int, int]:
    """ACS columns ``(start, stop)`` of k-space ``[C, H, W]``: the contiguous run of
    non-zero phase-encode columns through the centre (see
    :func:`models.mri.masks.acs_columns_from_mask`)."""
    sampled = (kspace != 0).flatten(0, -2).any(dim=0)
    return acs_columns_from_mask(sampled.cpu())


def _resolve_acs(kspace, acs, needed: int, method: str) -> Tuple[int, int]:
    width = kspace.shape[-1]
    if acs is None:
        start, stop = detect_acs(kspace)
    else:
        start, stop = int(acs[0]), int(acs[1])
        if not 0 <= start <= stop <= width:
            raise ShapeError(f"{method}: ACS columns [{start}, {stop}) outside the {width} phase-encode lines")
        empty = ((kspace[..., start:stop] != 0).flatten(0, -2).any(dim=0) == 0).nonzero().flatten()
        if empty.numel():
            raise MissingCalibrationError(
                f"{method}: ACS columns [{start}, {stop}) include {empty.numel()} unsampled column(s), "
                f"first at {start + int(empty[0])}")
    if stop - start < needed:
        raise MissingCalibrationError(
            f"{method}: {stop - start} fully sampled calibration (ACS) lines, at least {needed} needed")
    return start, stop


def calibration_region(kspace: torch.Tensor, acs: Tuple[int, int], calib_rows: Optional[int]) -> torch.Tensor:
    """The fully sampled block ``[C, rows, stop - start]``: ACS columns and ``calib_rows``
    centred readout rows (``None``: as many rows as ACS columns, BART's square
    ``-r`` region; capped at ``H``)."""
    start, stop = acs
    height = kspace.shape[-2]
    rows = min(height, calib_rows if calib_rows is not None else stop - start)
    first = height // 2 - rows // 2
    return kspace[..., first:first + rows, start:stop]


def principal_coil_vector(calib: torch.Tensor) -> torch.Tensor:
    """Dominant eigenvector ``[C]`` of the coil covariance of calibration data
    ``[C, ...]`` (the first virtual coil of SVD coil compression)."""
    data = calib.reshape(calib.shape[0], -1).to(torch.complex128)
    _, vectors = torch.linalg.eigh(data @ data.conj().T)
    return vectors[:, -1].to(torch.complex64)


def rotate_phase(maps: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Remove, per pixel, the phase of the virtual coil ``reference^H S(r)``.

    ``maps`` ``[C, H, W]``, ``reference`` ``[C]``. The virtual coil's map becomes
    real and non-negative, so maps inherit its spatial smoothness.
    """
    virtual = torch.einsum("c,chw->hw", reference.conj(), maps)
    return maps * torch.exp(-1j * torch.angle(virtual)).to(maps.dtype)


def dominant_eigenpair(matrices: torch.Tensor, squarings: int = 5):
    """Top eigenvector ``[..., C]`` and eigenvalue ``[...]`` of Hermitian PSD
    ``[..., C, C]`` matrices by repeated squaring.

    ``M <- M^2 / tr(M^2)`` ``squarings`` times gives ``G^(2^squarings)`` up to scale
    (5 squarings = 32 power iterations; BART's ``ecalib`` runs 30 orthogonal
    iterations), which is close to rank one; its column with the largest
    diagonal entry is the eigenvector. Batched ``C x C`` products only: fast on
    CPU and GPU (``torch.linalg.eigh`` on many small matrices is slow on CPU).
    Converges as ``(lambda_2 / lambda_1)^(2^squarings)``.
    """
    power = matrices / _trace(matrices).clamp_min(1e-30)[..., None, None]
    for _ in range(squarings):
        power = power @ power
        power = power / _trace(power).clamp_min(1e-30)[..., None, None]
    column = torch.diagonal(power, dim1=-2, dim2=-1).real.argmax(dim=-1)
    index = column[..., None, None].expand(power.shape[:-1] + (1,))
    vec = torch.gather(power, -1, index)
    vec = vec / torch.linalg.vector_norm(vec, dim=-2, keepdim=True).clamp_min(1e-30)
    value = (vec.conj().transpose(-1, -2) @ (matrices @ vec))[..., 0, 0].real
    return vec[..., 0], value


def _trace(matrices):
    return torch.diagonal(matrices, dim1=-2, dim2=-1).real.sum(dim=-1)


# ----------------------------------------------------------------------------- ESPIRiT


def _espirit_kernels(calib: torch.Tensor, kernel_size: int, threshold: float) -> torch.Tensor:
    """Signal-subspace kernels ``[n, C, k, k]`` (complex128) from calibration data
    ``[C, rows, cols]``. A singular vector is kept when ``s_i / s_0 > sqrt(threshold)``
    (BART's ``ecalib -t``, which thresholds squared singular values)."""
    k = kernel_size
    num_coils = calib.shape[0]
    patches = calib.to(torch.complex128).unfold(1, k, 1).unfold(2, k, 1)  # [C, py, px, k, k]
    patches = patches.permute(1, 2, 0, 3, 4).reshape(-1, num_coils * k * k)
    # SVD A = U S V^H through the smaller Gram matrix: A^H A = V S^2 V^H, or
    # A A^H = U S^2 U^H and then V = A^H U / S (BART also goes through a Gram matrix).
    wide = patches.shape[0] < patches.shape[1]
    gram = patches @ patches.conj().T if wide else patches.conj().T @ patches
    squared, vectors = torch.linalg.eigh(gram)
    squared, vectors = squared.flip(0).clamp_min(0), vectors.flip(1)
    if float(squared[0]) <= 0:
        raise MissingCalibrationError("espirit: the calibration region holds no signal")
    keep = int((squared / squared[0] > threshold).sum())
    log.debug("espirit: %d of %d singular vectors kept (threshold %g)", keep, patches.shape[1], threshold)
    right = vectors[:, :keep]
    if wide:
        right = patches.conj().T @ right / squared[:keep].sqrt()
    # Each patch (a row of A) is a combination of the rows of V^H, i.e. of conj(V[:, i]).
    return right.conj().T.reshape(keep, num_coils, k, k)


def _kernel_correlation(kernels: torch.Tensor) -> torch.Tensor:
    """``K[c, d, dy, dx] = k^-2 sum_n sum_{a - a' = delta} v_n(c, a) conj(v_n(d, a'))`` for
    ``delta`` in ``[-(k-1), k-1]^2``: the k-space convolution kernel of the ESPIRiT
    operator ``W = k^-2 sum_p R_p^H V V^H R_p``, shape ``[C, C, 2k-1, 2k-1]``."""
    k = kernels.shape[-1]
    size = 2 * k
    spectra = torch.fft.fft2(kernels, s=(size, size))  # [n, C, 2k, 2k]
    corr = torch.fft.ifft2(torch.einsum("ncxy,ndxy->cdxy", spectra, spectra.conj()))
    lags = torch.arange(-(k - 1), k, device=kernels.device) % size
    return corr[:, :, lags][:, :, :, lags] / (k * k)


def _phase_matrix(n: int, lags: int, device) -> torch.Tensor:
    """``E[r, delta] = exp(+2 pi i delta r / n)`` for centred pixel positions ``r``."""
    pos = torch.arange(n, device=device, dtype=torch.float64) - n // 2
    delta = torch.arange(-(lags // 2), lags // 2 + 1, device=device, dtype=torch.float64)
    return torch.exp(2j * math.pi * torch.outer(pos, delta) / n)


def crop_weights(eigenvalues: torch.Tensor, crop: float, crop_mode: str) -> torch.Tensor:
    """Per-pixel weight of the maps from the ESPIRiT eigenvalue ``[H, W]``.

    ``"hard"``: 1 where ``lambda > crop``, else 0 (BART ``ecalib -c``).
    ``"soft"``: BART's S-curve ``s((sqrt(lambda) - crop) / (1 - crop))`` with
    ``s(t) = (1 + 2t / (1 + t^2)) / 2`` on ``[-1, 1]`` (BART ``ecalib -S``): 0 for
    ``sqrt(lambda) <= 2 crop - 1``, 1/2 at ``sqrt(lambda) = crop``, 1 at ``lambda = 1``.
    ``"none"``: 1 everywhere.

    Soft weights below 1 where there is signal make an unregularised SENSE
    solution ``x / w`` there (noise amplified in the same ratio); they suit
    regularised reconstructions better than plain CG-SENSE.
    """
    if crop_mode == "none":
        return torch.ones_like(eigenvalues)
    if crop_mode == "hard":
        return (eigenvalues > crop).to(eigenvalues.dtype)
    if crop_mode == "soft":
        if not crop < 1:
            raise ReconInputError(f"espirit: soft crop needs crop < 1, got {crop}")
        t = ((eigenvalues.clamp_min(0).sqrt() - crop) / (1 - crop)).clamp(-1, 1)
        return 0.5 * (1 + 2 * t / (1 + t * t))
    raise ReconInputError(f"espirit: crop_mode must be one of {CROP_MODES}, got {crop_mode!r}")


def espirit(kspace: torch.Tensor, acs: Optional[Tuple[int, int]] = None, kernel_size: int = 6,
            calib_rows: Optional[int] = None, threshold: float = 0.001, crop: float = 0.8,
            crop_mode: str = "hard", rotate: bool = True, squarings: int = 5) -> CoilMaps:
    """ESPIRiT maps (one set) from one slice's k-space ``[C, H, W]``.

    Args:
        kspace: k-space ``[C, H, W]``; only the calibration block is read.
        acs: ACS columns ``(start, stop)``; ``None`` detects them from the non-zero columns.
        kernel_size: ``k`` of the ``k x k`` patches (BART default 6).
        calib_rows: readout rows of the calibration block (``None``: square, as BART).
        threshold: singular-value threshold with BART's meaning (default 0.001:
            keep ``s_i > sqrt(0.001) s_0``).
        crop: eigenvalue crop level (BART default 0.8).
        crop_mode: ``"hard"``, ``"soft"`` or ``"none"`` (see :func:`crop_weights`).
        rotate: phase-reference the maps to the first principal component.
        squarings: matrix squarings of the per-pixel eigen-decomposition (see
            :func:`dominant_eigenpair`).
    Returns:
        :class:`CoilMaps` with maps ``[C, H, W]`` and eigenvalues ``[H, W]``.
    """
    _check_kspace(kspace, "espirit")
    if kernel_size < 1:
        raise ReconInputError(f"espirit: kernel_size must be >= 1, got {kernel_size}")
    if crop_mode not in CROP_MODES:
        raise ReconInputError(f"espirit: crop_mode must be one of {CROP_MODES}, got {crop_mode!r}")
    acs = _resolve_acs(kspace, acs, kernel_size, "espirit")
    calib = calibration_region(kspace, acs, calib_rows)
    if calib.shape[-2] < kernel_size:
        raise MissingCalibrationError(
            f"espirit: {calib.shape[-2]} calibration rows are fewer than the kernel size {kernel_size}")
    num_coils, height, width = kspace.shape
    reference = principal_coil_vector(calib)
    corr = _kernel_correlation(_espirit_kernels(calib, kernel_size, threshold))  # [C, C, L, L]
    lags = corr.shape[-1]
    e_rows = _phase_matrix(height, lags, kspace.device)
    # Separable evaluation of G(r) = sum_delta K(delta) exp(2 pi i delta.r): columns first.
    partial = torch.einsum("cdpq,wq->cdpw", corr, _phase_matrix(width, lags, kspace.device))
    maps = torch.empty((height, width, num_coils), dtype=torch.complex64, device=kspace.device)
    values = torch.empty((height, width), dtype=torch.float32, device=kspace.device)
    step = max(1, _CHUNK_ELEMENTS // (width * num_coils * num_coils))
    for first in range(0, height, step):
        rows = slice(first, min(height, first + step))
        gram = torch.einsum("hp,cdpw->hwcd", e_rows[rows], partial).to(torch.complex64)
        maps[rows], values[rows] = dominant_eigenpair(gram, squarings)
    maps = maps.permute(2, 0, 1).contiguous()
    if rotate:
        maps = rotate_phase(maps, reference)
    maps = maps * crop_weights(values, crop, crop_mode)
    return CoilMaps(maps, values)


# ----------------------------------------------------------------------------- Walsh / Inati


def _hann(n: int, device) -> torch.Tensor:
    return torch.sin(math.pi * (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n) ** 2


def low_resolution_images(kspace: torch.Tensor, acs: Tuple[int, int], calib_rows: Optional[int],
                          window: bool = True) -> torch.Tensor:
    """Coil images ``[C, H, W]`` from the calibration block alone, zero-filled and
    (by default) Hann-windowed in both directions to avoid ringing."""
    calib = calibration_region(kspace, acs, calib_rows)
    if window:
        calib = calib * torch.outer(_hann(calib.shape[-2], kspace.device), _hann(calib.shape[-1], kspace.device))
    height = kspace.shape[-2]
    rows = calib.shape[-2]
    first = height // 2 - rows // 2
    padded = torch.zeros_like(kspace)
    padded[..., first:first + rows, acs[0]:acs[1]] = calib
    return ifft2c(padded)


def walsh(kspace: torch.Tensor, acs: Optional[Tuple[int, int]] = None, patch_size: int = 5,
          calib_rows: Optional[int] = None, squarings: int = 5, support: float = 0.0,
          rotate: bool = True) -> CoilMaps:
    """Walsh / Inati adaptive-combine maps from one slice's k-space ``[C, H, W]``.

    Covariance ``R(r) = sum_{r' in patch(r)} x(r') x(r')^H`` of low-resolution coil
    images and its dominant eigenvector (power method by repeated squaring, see
    :func:`dominant_eigenpair`). The eigenvector has unit norm everywhere; with
    ``support > 0`` the maps are scaled by ``sqrt(lambda / (lambda + support *
    lambda_ref))`` (``lambda_ref`` the 95th percentile of the dominant eigenvalue),
    ~1 inside the object and falling to 0 in the noise background.

    Args:
        kspace: ``[C, H, W]``.
        acs: ACS columns ``(start, stop)`` or ``None`` to detect them.
        patch_size: odd side of the square covariance patch (pixels).
        calib_rows: readout rows used for the low-resolution images (``None``: square).
        squarings: matrix squarings of the power method.
        support: relative level of the soft support (0 disables it).
        rotate: phase-reference to the first principal component of the calibration data.
    Returns:
        :class:`CoilMaps` with maps ``[C, H, W]`` and the dominant eigenvalue ``[H, W]``.
    """
    _check_kspace(kspace, "walsh")
    if patch_size < 1 or patch_size % 2 == 0:
        raise ReconInputError(f"walsh: patch_size must be odd and positive, got {patch_size}")
    if support < 0:
        raise ReconInputError(f"walsh: support must be >= 0, got {support}")
    acs = _resolve_acs(kspace, acs, MIN_WALSH_ACS, "walsh")
    calib = calibration_region(kspace, acs, calib_rows)
    images = low_resolution_images(kspace, acs, calib_rows)
    reference = principal_coil_vector(calib)
    num_coils, height, width = kspace.shape
    half = patch_size // 2
    maps = torch.empty((height, width, num_coils), dtype=torch.complex64, device=kspace.device)
    values = torch.empty((height, width), dtype=torch.float32, device=kspace.device)
    step = max(1, _CHUNK_ELEMENTS // (width * num_coils * num_coils))
    for first in range(0, height, step):
        last = min(height, first + step)
        lo, hi = max(0, first - half), min(height, last + half)
        block = images[:, lo:hi]
        outer = block.unsqueeze(1) * block.conj().unsqueeze(0)  # [C, C, h, W]
        real = torch.view_as_real(outer).permute(0, 1, 4, 2, 3).reshape(1, -1, hi - lo, width)
        real = F.avg_pool2d(real, patch_size, stride=1, padding=half, count_include_pad=False)
        cov = torch.view_as_complex(real.reshape(num_coils, num_coils, 2, hi - lo, width)
                                    .permute(0, 1, 3, 4, 2).contiguous())
        cov = cov[:, :, first - lo:last - lo].permute(2, 3, 0, 1)  # [h, W, C, C]
        maps[first:last], values[first:last] = dominant_eigenpair(cov, squarings)
    maps = maps.permute(2, 0, 1).contiguous()
    if rotate:
        maps = rotate_phase(maps, reference)
    if support > 0:
        ref = torch.quantile(values.flatten().float().cpu(), 0.95).to(values.device)
        maps = maps * torch.sqrt(values.clamp_min(0) / (values.clamp_min(0) + support * ref + 1e-30))
    return CoilMaps(maps, values)


# ----------------------------------------------------------------------------- entry point

METHODS = {"espirit": espirit, "walsh": walsh}


def _check_kspace(kspace, method):
    if not isinstance(kspace, torch.Tensor) or not kspace.is_complex():
        raise ShapeError(f"{method}: k-space must be a complex tensor [C, H, W]")
    if kspace.ndim != 3:
        raise ShapeError(f"{method}: k-space must be [C, H, W], got shape {tuple(kspace.shape)}")
    require_finite("k-space", kspace)


def estimate_coil_maps(kspace: torch.Tensor, method: Optional[str] = None,
                       acs: Optional[Tuple[int, int]] = None, **options) -> torch.Tensor:
    """Coil sensitivity maps from the ACS region, per slice.

    Args:
        kspace: ``[C, H, W]`` or ``[B, C, H, W]`` complex k-space (unsampled entries zero).
        method: ``"espirit"`` or ``"walsh"``; ``None`` uses :data:`DEFAULT_METHOD`.
        acs: ACS columns ``(start, stop)`` shared by all slices; ``None`` detects them.
        options: keyword options of :func:`espirit` or :func:`walsh`; unspecified ones
            take :data:`DEFAULT_OPTIONS` for that method, then the function defaults.
    Returns:
        maps with the shape of ``kspace`` (complex64).
    Raises:
        MissingCalibrationError: too few ACS lines; ShapeError / NonFiniteDataError on bad input.
    """
    method = DEFAULT_METHOD if method is None else method
    if method not in METHODS:
        raise ReconInputError(f"unknown coil-map method {method!r}; known: {sorted(METHODS)}")
    if not isinstance(kspace, torch.Tensor) or kspace.ndim not in (3, 4):
        shape = tuple(kspace.shape) if hasattr(kspace, "shape") else type(kspace).__name__
        raise ShapeError(f"estimate_coil_maps: k-space must be [C, H, W] or [B, C, H, W], got {shape}")
    settings = {**DEFAULT_OPTIONS.get(method, {}), **options}
    estimator = METHODS[method]
    if kspace.ndim == 3:
        return estimator(kspace, acs=acs, **settings).maps
    return torch.stack([estimator(slice_, acs=acs, **settings).maps for slice_ in kspace])


# ----------------------------------------------------------------------------- evaluation


def coil_image_error(maps: torch.Tensor, true_maps: torch.Tensor, image: torch.Tensor,
                     region: torch.Tensor) -> float:
    """Relative error of the coil images ``S x`` explained by estimated maps.

    The true coil images ``y = S_true x`` are projected per pixel onto the
    estimated maps, ``S (S^H y) / |S|^2``, i.e. the best image for those maps;
    the error ``||P y - y|| / ||y||`` over ``region`` is invariant to the maps'
    per-pixel phase and scale. Shapes ``[C, H, W]``, ``[C, H, W]``, ``[H, W]``,
    ``[H, W]`` (bool).
    """
    truth = true_maps * image
    norm2 = maps.abs().pow(2).sum(dim=0)
    coef = (maps.conj() * truth).sum(dim=0) / norm2.clamp_min(1e-12)
    fitted = torch.where(norm2 > 1e-12, coef, torch.zeros_like(coef)) * maps
    return float((fitted - truth)[:, region].norm() / truth[:, region].norm())
