"""Diffusion Posterior Sampling on the EDM probability-flow ODE.

Solves, from ``sigma_max`` down to 0 on EDM's time steps (``sigma(t) = t``),

    dx/dt = (x - D(x; t)) / t  +  t * zeta * grad_x || A D(x; t) - y ||^2

i.e. the prior's probability-flow ODE ``dx = -t * score(x; t) dt`` with the
score of the posterior, where the likelihood score is approximated through the
denoised estimate ``x0 = D(x; t)`` as in DPS (Chung et al., ICLR 2023). Heun's
second-order method integrates it (Karras et al. 2022, Algorithm 1); the
gradient goes through the network by autograd, and one denoiser evaluation
serves both the prior term and the data-consistency gradient at each point.

With ``residual_normalised=True`` the data-consistency gradient is divided by
``||A D(x) - y||`` per slice, DPS's step-size rule that makes ``zeta`` less
dependent on the noise level and intensity of ``y``.

Shapes: image ``x`` complex ``[B, H, W]``; ``y`` and the operator as in
:mod:`models.mri.operators`. Randomness only in the initial noise (and churn),
drawn from the ``generator``.
"""

import logging
from typing import NamedTuple, Optional

import torch

from models.mri.checks import require_finite
from models.sampler.schedule import edm_sigma_steps

log = logging.getLogger(__name__)


class DPSResult(NamedTuple):
    """Output of :func:`dps_sample`."""

    image: torch.Tensor  # complex [B, H, W], the final denoised estimate
    nfe: int  # number of denoiser evaluations
    trajectory: Optional[list]  # per-step denoised estimates (detached, CPU) if asked for


def _complex_randn(shape, generator, device):
    real = torch.randn(shape, generator=generator, device=generator.device if generator is not None else device)
    imag = torch.randn(shape, generator=generator, device=generator.device if generator is not None else device)
    return torch.complex(real, imag).to(device)


def _denoise_with_dc_gradient(denoiser, operator, y, x, sigma, zeta, residual_normalised):
    """One denoiser evaluation: returns ``(D(x), dc_grad)`` with ``dc_grad`` the
    (optionally residual-normalised) gradient of ``||A D(x) - y||^2`` w.r.t. ``x``."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(zeta > 0)
        denoised = denoiser(x, sigma)
        if zeta <= 0:
            return denoised.detach(), torch.zeros_like(x)
        residual = operator.forward(denoised) - y
        per_slice = residual.abs().pow(2).flatten(1).sum(dim=1)
        grad, = torch.autograd.grad(per_slice.sum(), x)
    if residual_normalised:
        grad = grad / per_slice.detach().sqrt().clamp_min(1e-12).view(-1, 1, 1)
    return denoised.detach(), grad


def dps_sample(denoiser, y: torch.Tensor, operator, zeta: float, num_steps: int = 50,
               sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
               residual_normalised: bool = False, s_churn: float = 0.0,
               generator: Optional[torch.Generator] = None, x_init: Optional[torch.Tensor] = None,
               return_trajectory: bool = False, progress=None) -> DPSResult:
    """Draw one posterior sample per slice with DPS on the EDM ODE (Heun).

    Args:
        denoiser: ``(x complex [B,H,W], sigma [B]) -> D(x)``, see :mod:`models.sampler.denoisers`.
        y: measured k-space ``[B, C, H, W]`` in the prior's intensity scale.
        operator: ``SenseOperator``-like with ``forward`` (image -> k-space).
        zeta: data-consistency weight (0 = unconditional sampling from the prior).
        num_steps: number of EDM noise levels (NFE = 2 * num_steps - 1).
        sigma_min, sigma_max, rho: EDM discretisation; clamped to the denoiser's range.
        residual_normalised: divide the gradient by the residual norm (DPS step rule).
        s_churn: EDM stochasticity (0 = deterministic ODE).
        generator: seeds the initial noise (and churn).
        x_init: optional starting point instead of ``sigma_max`` noise.
        return_trajectory: keep the denoised estimate of every step.
        progress: optional callable ``(step, num_steps)`` for progress reporting.
    Returns:
        :class:`DPSResult` with the final image ``[B, H, W]`` (complex64).
    """
    require_finite("measured k-space", y)
    if zeta < 0:
        raise ValueError(f"zeta must be >= 0, got {zeta}")
    device = y.device
    sigma_min = max(sigma_min, getattr(denoiser, "sigma_min", 0.0))
    sigma_max = min(sigma_max, getattr(denoiser, "sigma_max", float("inf")))
    sigmas = edm_sigma_steps(num_steps, sigma_min, sigma_max, rho).tolist()
    batch = y.shape[0]
    image_shape = (batch,) + tuple(y.shape[-2:])
    x = (x_init.to(device) if x_init is not None
         else _complex_randn(image_shape, generator, device) * sigmas[0]).to(torch.complex64)
    gamma_max = min(s_churn / num_steps, 2 ** 0.5 - 1)
    nfe, trajectory = 0, [] if return_trajectory else None
    denoised = x
    for i, (t_cur, t_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        if gamma_max > 0:  # EDM churn: raise the noise level a little, then solve down
            t_hat = t_cur * (1 + gamma_max)
            x = x + (t_hat ** 2 - t_cur ** 2) ** 0.5 * _complex_randn(image_shape, generator, device)
            t_cur = t_hat
        sigma = torch.full((batch,), t_cur, device=device)
        denoised, grad = _denoise_with_dc_gradient(denoiser, operator, y, x, sigma, zeta, residual_normalised)
        nfe += 1
        d_cur = (x - denoised) / t_cur + t_cur * zeta * grad
        x_next = x + (t_next - t_cur) * d_cur
        if t_next > 0:  # Heun correction
            sigma = torch.full((batch,), t_next, device=device)
            denoised_next, grad_next = _denoise_with_dc_gradient(
                denoiser, operator, y, x_next, sigma, zeta, residual_normalised)
            nfe += 1
            d_next = (x_next - denoised_next) / t_next + t_next * zeta * grad_next
            x_next = x + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_next)
            denoised = denoised_next
        x = x_next.detach()
        if return_trajectory:
            trajectory.append(denoised.cpu())
        if progress is not None:
            progress(i + 1, num_steps)
    return DPSResult(image=x.to(torch.complex64), nfe=nfe, trajectory=trajectory)
