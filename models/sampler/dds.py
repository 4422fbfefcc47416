"""Noise-aware data consistency on the denoised estimate (DDS-style), the fast sampler.

At each EDM noise level ``t`` the denoised estimate ``x0 = D(x; t)`` is replaced by
the posterior mean of a Gaussian surrogate,

    z = argmin_z  zeta ||A z - y||^2 / sigma_y^2  +  ||z - x0||^2 / (2 v_t),

found by a few conjugate-gradient iterations from ``z = x0``, and the probability-flow
ODE of the posterior takes an Euler (DDIM) step with it: ``x_next = z + (t_next / t) (x - z)``.

- ``sigma_y^2`` is the noise variance ``E|n|^2`` of one complex k-space sample in the
  prior's intensity units: after Gadgetron's NoiseAdjust it is known from the receiver
  bandwidth (:mod:`models.mri.noise`), and the k-space scaling to the prior's units
  multiplies it by ``scale^2``. The scanner tells us the likelihood in absolute terms.
- ``v_t = t^2 sigma_data^2 / (t^2 + sigma_data^2)`` is the per-channel error variance of
  the denoiser under a Gaussian prior of variance ``sigma_data^2`` (as in PiGDM, Song et
  al. ICLR 2023): about ``t^2`` at low noise and the prior's own spread at high noise.
- ``zeta`` therefore has a meaning independent of the scanner, coils, SNR and matrix:
  1 is Bayes' rule for the surrogate; larger values trust the data more (which brings a
  single sample towards the posterior mean). It is chosen per R on validation scans
  (:mod:`models.sampler.zeta`).

For a Gaussian prior (:class:`models.sampler.denoisers.GaussianDenoiser`) with exact CG
this is the exact probability-flow ODE of the posterior, so its samples have the
closed-form posterior mean and covariance (``tests/test_dds_posterior.py``).

Why this is the default sampler, not DPS's gradient step: the proximal step cannot
diverge at any weight (the CG system is positive definite), it needs no gradient through
the network (one forward pass per step, ``torch.inference_mode``), and it converges in
few steps (Chung, Lee & Ye, ICLR 2024: 50 NFE with 5 CG iterations); measured through the
chains in ``benchmarks/results/dds_nfe_flair.md`` (deterministic steps) and ``dds_nfe_stochastic.md``.

Stochastic steps (the chains: ``eta`` 1 and ``churn``, ``benchmarks/results/tune_dds_eta.md``): fresh noise
at every step lets the prior denoise again what the data corrections put in; for a Gaussian prior
they sample the same posterior as the ODE (``tests/test_dds_posterior.py``).

Warm start (CCDF, Chung et al. CVPR 2022): with ``sigma_start`` below ``sigma_max`` the
ODE starts at ``x_init + sigma_start * noise`` (``x_init``: a CG-SENSE image), skipping
the high-noise steps.

Shapes as in :mod:`models.sampler.dps`.
"""

import logging
from typing import Optional

import torch

from models.mri.checks import require_finite
from models.mri.recon import conjugate_gradient
from models.sampler.dps import DPSResult, _complex_randn
from models.sampler.schedule import RHO, churn_gamma, edm_sigma_steps, sigma_range

log = logging.getLogger(__name__)


def denoiser_error_variance(t: float, sigma_data: float) -> float:
    """``v_t``: per-real-channel error variance of the MMSE denoiser of a Gaussian prior of std ``sigma_data``."""
    return t * t * sigma_data * sigma_data / (t * t + sigma_data * sigma_data)


def proximal_weight(t: float, sigma_data: float, noise_variance: torch.Tensor, zeta: float,
                    error_variance=None) -> torch.Tensor:
    """``gamma_t = sigma_y^2 / (2 zeta v_t)`` per slice (``noise_variance`` ``[B]``: ``E|n|^2`` per complex sample).

    ``error_variance``: optional ``t -> v_t`` measured for the denoiser (else the Gaussian surrogate).
    """
    v_t = error_variance(t) if error_variance is not None else denoiser_error_variance(t, sigma_data)
    return noise_variance / (2.0 * zeta * v_t)


def data_consistent(operator, y: torch.Tensor, x0: torch.Tensor, gamma, iterations: int,
                    start: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``argmin_z ||A z - y||^2 + gamma ||z - x0||^2`` by ``iterations`` CG steps from ``start`` (default ``x0``).

    ``gamma``: a float or a per-slice tensor ``[B]``.
    """
    gamma = torch.as_tensor(gamma, dtype=x0.real.dtype, device=x0.device).reshape(-1, *([1] * (x0.ndim - 1)))
    rhs = operator.adjoint(y) + gamma * x0
    return conjugate_gradient(lambda v: operator.normal(v) + gamma * v, rhs, x0=x0 if start is None else start,
                              iterations=iterations)


@torch.inference_mode()
def dds_sample(denoiser, y: torch.Tensor, operator, noise_variance, *, num_steps: int, zeta: float = 1.0,
               cg_iterations: int = 5, sigma_min: Optional[float] = None, sigma_max: Optional[float] = None,
               rho: float = RHO,
               sigma_start: Optional[float] = None, x_init: Optional[torch.Tensor] = None,
               initial_noise: Optional[torch.Tensor] = None,
               carry_correction: bool = True, eta: float = 0.0, churn: float = 0.0, step_noise=None,
               generator: Optional[torch.Generator] = None, progress=None) -> DPSResult:
    """One posterior sample per slice with noise-weighted CG data consistency on each denoised estimate.

    Args:
        denoiser: ``(x complex [B,H,W], sigma [B]) -> D(x)``; its ``sigma_data`` (default 0.5) sets ``v_t``.
        y: measured k-space ``[B, C, H, W]`` in the prior's intensity units.
        operator: ``SenseOperator``-like (``forward``, ``adjoint``, ``normal``).
        noise_variance: ``E|n|^2`` per complex k-space sample in the prior's units, a float or ``[B]``.
        zeta: likelihood weight (1 = Bayes' rule for the surrogate; > 1 trusts the data more).
        num_steps: EDM noise levels (NFE = ``num_steps``).
        cg_iterations: CG iterations per step.
        sigma_start: start the ODE at this noise level from ``x_init`` (warm start); None: ``sigma_max``.
        x_init: the warm start's image ``[B, H, W]`` (required with ``sigma_start``).
        initial_noise: unit complex noise ``[B, H, W]`` to start from (else drawn from ``generator``).
        carry_correction: start each step's CG from ``x0`` plus the previous step's correction ``z - x0``
            (the correction changes slowly along the ODE, so few iterations reach the solution: at SNR 100,
            5 iterations from ``x0`` stop far from it, see benchmarks/results/tune_dds.md).
        eta: DDIM stochasticity, 0 to 1 (Song et al. 2021 in EDM's VE form): each step draws fresh noise of
            std ``eta t_next sqrt(1 - t_next^2 / t^2)`` from ``generator`` and carries the rest of ``t_next``
            along the ODE (0: the deterministic ODE; 1: ancestral sampling).
        churn: EDM's ``S_churn`` (Karras et al. 2022, Algorithm 2): before each step the noise level is raised
            from ``t`` to ``t (1 + gamma)``, ``gamma = min(churn / num_steps, sqrt(2) - 1)``, by fresh noise
            (0: off; not at the first step, which is noise already). More fresh noise than ``eta`` alone adds.
        step_noise: optional ``() -> unit complex noise`` of the image's shape for those fresh draws
            (default: drawn from ``generator``); lets a caller seed each slice and draw apart.
        Others as :func:`models.sampler.dps.dps_sample`.
    """
    require_finite("measured k-space", y)
    if not zeta > 0:
        raise ValueError(f"zeta must be > 0 for the DDS sampler, got {zeta}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be within [0, 1], got {eta}")
    if not churn >= 0.0:
        raise ValueError(f"churn must be >= 0, got {churn}")
    gamma_churn = churn_gamma(churn, num_steps)

    def fresh_noise():
        return step_noise() if step_noise is not None else _complex_randn(x.shape, generator, y.device)

    batch = y.shape[0]
    noise_variance = torch.as_tensor(noise_variance, dtype=torch.float32, device=y.device).reshape(-1)
    noise_variance = noise_variance.expand(batch) if noise_variance.numel() == 1 else noise_variance
    if noise_variance.numel() != batch or not bool((noise_variance > 0).all()):
        raise ValueError(f"noise_variance must be > 0, one value or one per slice ({batch}), got {noise_variance}")
    sigma_data = float(getattr(denoiser, "sigma_data", 0.5))
    error_variance = getattr(denoiser, "error_variance", None)
    sigma_min, sigma_max = sigma_range(denoiser, sigma_min, sigma_max)
    if sigma_start is not None:
        if x_init is None:
            raise ValueError("a warm start (sigma_start) needs x_init")
        sigma_max = min(sigma_max, float(sigma_start))
    sigmas = edm_sigma_steps(num_steps, sigma_min, sigma_max, rho).tolist()
    shape = operator.image_shape if hasattr(operator, "image_shape") else (batch,) + tuple(y.shape[-2:])
    noise = initial_noise.to(y.device) if initial_noise is not None else _complex_randn(shape, generator, y.device)
    x = noise.to(torch.complex64) * sigmas[0]
    if sigma_start is not None:
        x = x + x_init.to(y.device, torch.complex64)
    z = x
    correction = torch.zeros_like(x)  # z - x0 of the previous step: CG starts from x0 plus it
    for i, (t_cur, t_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        if gamma_churn > 0 and i > 0:  # EDM churn: raise the noise level by fresh noise, then step down
            t_hat = t_cur * (1 + gamma_churn)
            x = x + (t_hat * t_hat - t_cur * t_cur) ** 0.5 * fresh_noise()
            t_cur = t_hat
        x0 = denoiser(x, torch.full((batch,), t_cur, device=y.device))
        gamma = proximal_weight(t_cur, sigma_data, noise_variance, zeta, error_variance)
        z = data_consistent(operator, y, x0, gamma, cg_iterations,
                            start=x0 + correction if carry_correction else None)
        correction = z - x0
        if eta > 0 and t_next > 0:  # DDIM (VE form): fresh noise of std fresh_std, the rest carried
            fresh_std = eta * t_next * (1.0 - (t_next / t_cur) ** 2) ** 0.5
            x = z + (t_next ** 2 - fresh_std ** 2) ** 0.5 * (x - z) / t_cur + fresh_std * fresh_noise()
        else:
            x = z + (t_next / t_cur) * (x - z)
        if progress is not None:
            progress(i + 1, num_steps)
    return DPSResult(image=z.to(torch.complex64), nfe=num_steps, trajectory=None)
