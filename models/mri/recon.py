"""Classical reconstructions on :class:`~models.mri.operators.SenseOperator`.

Baselines the DPS reconstruction is compared with: zero-filled with coil
combination (root-sum-of-squares or sensitivity-weighted) and CG-SENSE
(conjugate gradient on the normal equations, Pruessmann et al. 2001, with
optional Tikhonov weight). Shapes as in :mod:`models.mri.operators`.
"""

import torch

from models.mri.checks import require_finite, require_min_ndim
from models.mri.fft import ifft2c
from models.mri.operators import SenseOperator


def rss(coil_images: torch.Tensor, coil_dim: int = -3) -> torch.Tensor:
    """Root-sum-of-squares magnitude over the coil axis: ``[B, C, H, W]`` -> ``[B, H, W]`` (real)."""
    return coil_images.abs().pow(2).sum(dim=coil_dim).sqrt()


def zero_filled_rss(kspace: torch.Tensor) -> torch.Tensor:
    """Zero-filled inverse FFT of each coil, RSS-combined: ``[B, C, H, W]`` -> real ``[B, H, W]``."""
    require_min_ndim("kspace", kspace, 3, "[..., C, H, W]")
    require_finite("kspace", kspace)
    return rss(ifft2c(kspace))


#: CG-SENSE Tikhonov weight per unit of noise-to-unmeasured-signal power (:func:`tikhonov_weight`), per
#: acceleration R: the data leave more open at higher R, and the weight that serves best falls with it. Chosen
#: on validation corpora only (benchmarks/results/tune_kappa.md: within 3% of each file's best kappa on 14
#: validation scans, R 2-6, 8-32 coils, SNR 10-100). Between entries linear in R, outside clamped.
TIKHONOV_KAPPA_BY_ACCELERATION = {2.0: 0.8, 4.0: 0.8, 5.0: 0.5, 6.0: 0.3}

#: kappa when the acceleration is not known (the best single value on the same validation scans)
TIKHONOV_KAPPA = 0.6


def tikhonov_kappa(acceleration=None) -> float:
    """kappa of :func:`tikhonov_weight` for acceleration ``R`` (:data:`TIKHONOV_KAPPA` when ``None``)."""
    if acceleration is None:
        return TIKHONOV_KAPPA
    table = sorted(TIKHONOV_KAPPA_BY_ACCELERATION.items())
    r = min(max(float(acceleration), table[0][0]), table[-1][0])
    for (r0, k0), (r1, k1) in zip(table, table[1:]):
        if r <= r1:
            return k0 + (k1 - k0) * (r - r0) / (r1 - r0)
    return table[-1][1]


def zero_filled_sense(kspace: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Sensitivity-weighted (Roemer) coil combination ``sum_c conj(S_c) F^H y_c``.

    Assumes maps normalised to ``sum_c |S_c|^2 = 1`` inside the object (as ESPIRiT
    and our Walsh maps are), so no division is needed and weak-map regions are not
    amplified. Returns a complex image ``[B, H, W]``.
    """
    require_finite("kspace", kspace)
    op = SenseOperator(maps, torch.ones(kspace.shape[-1], device=kspace.device))
    return op.adjoint(kspace)


def conjugate_gradient(normal, rhs: torch.Tensor, x0: torch.Tensor = None, iterations: int = 20,
                       tolerance: float = 1e-6) -> torch.Tensor:
    """Solve ``normal(x) = rhs`` for a Hermitian positive (semi-)definite operator.

    Batched over the first axis: each slice keeps its own step sizes. Stops early
    when every slice's residual norm is below ``tolerance`` times its initial norm.
    """
    x = torch.zeros_like(rhs) if x0 is None else x0.clone()
    r = rhs - normal(x) if x0 is not None else rhs.clone()
    p = r.clone()
    axes = tuple(range(1, rhs.ndim))
    rr = (r.conj() * r).real.sum(dim=axes)
    rr0 = rr.clone()
    shape = (-1,) + (1,) * (rhs.ndim - 1)
    for _ in range(iterations):
        if bool((rr <= (tolerance ** 2) * rr0).all()):
            break
        q = normal(p)
        pq = (p.conj() * q).real.sum(dim=axes)
        alpha = torch.where(pq > 0, rr / pq.clamp_min(1e-30), torch.zeros_like(rr))
        x = x + alpha.view(shape) * p
        r = r - alpha.view(shape) * q
        rr_new = (r.conj() * r).real.sum(dim=axes)
        beta = torch.where(rr > 0, rr_new / rr.clamp_min(1e-30), torch.zeros_like(rr))
        p = r + beta.view(shape) * p
        rr = rr_new
    return x


def cg_sense(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, iterations: int = 20,
             l2_weight: float = 0.0, x0: torch.Tensor = None) -> torch.Tensor:
    """CG-SENSE: ``argmin_x ||A x - y||^2 + l2_weight ||x||^2`` by conjugate gradient.

    Args:
        kspace: measured multi-coil k-space ``[B, C, H, W]`` (zeros where not sampled).
        maps: coil sensitivities ``[B, C, H, W]``.
        mask: sampling mask broadcastable to ``[B, 1, H, W]``.
        iterations: CG iterations (early stopping acts as regularisation).
        l2_weight: Tikhonov weight, one for the stack or one per slice ``[B]``.
        x0: optional warm start ``[B, H, W]``.
    Returns:
        complex image ``[B, H, W]``.
    """
    require_finite("kspace", kspace)
    op = SenseOperator(maps, mask)
    rhs = op.adjoint(kspace)
    weight = torch.as_tensor(l2_weight, dtype=kspace.real.dtype, device=kspace.device)
    if bool((weight != 0).any()):
        weight = weight.reshape(-1, 1, 1) if weight.ndim else weight
        normal = lambda v: op.normal(v) + weight * v  # noqa: E731
    else:
        normal = op.normal
    return conjugate_gradient(normal, rhs, x0=x0, iterations=iterations)


def tikhonov_weight(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, noise_variance: float,
                    kappa: float = TIKHONOV_KAPPA) -> torch.Tensor:
    """Per-slice CG-SENSE Tikhonov weights ``[B]`` from the noise level ``E|n|^2`` of the k-space.

    ``lambda = kappa * noise_variance / P_u``, with ``P_u`` the mean power that a
    5-iteration CG-SENSE image puts into the k-space samples that were *not*
    measured: a Wiener-style noise-to-signal ratio of what the data leave open, so the
    weight follows the scan's SNR, units, acceleration and calibration (integrated ACS
    or none, partial Fourier, partial echo) without tuning. A fully sampled slice gets 0.
    """
    from models.mri.fft import fft2c

    estimate = cg_sense(kspace, maps, mask, iterations=5)
    batch, _, height, width = kspace.shape
    measured = torch.broadcast_to(torch.as_tensor(mask, device=kspace.device) > 0, (batch, 1, height, width))
    unmeasured = ~measured[:, 0]
    power = fft2c(estimate).abs().pow(2)
    weights = []
    for i in range(estimate.shape[0]):
        if not unmeasured[i].any():
            weights.append(0.0)
            continue
        weights.append(kappa * float(noise_variance) / max(float(power[i][unmeasured[i]].mean()), 1e-30))
    return torch.tensor(weights, dtype=torch.float32, device=kspace.device)
