"""Diffusion Posterior Sampling on the EDM probability-flow ODE.

The prior's probability-flow ODE ``dx/dt = (x - D(x; t)) / t`` (``sigma(t) = t``,
Karras et al. 2022) is integrated from ``sigma_max`` to 0 with Heun's method on
EDM's time steps, and the data term ``||A D(x; t) - y||`` pulls every step
towards the measurement, with the likelihood approximated through the denoised
estimate ``x0 = D(x; t)`` as in DPS (Chung et al., ICLR 2023). The gradient goes
through the network by autograd, and one denoiser evaluation serves both the
prior term and the data-consistency gradient at each point.

Two forms of the data term (``dc_form``):

- ``"dps"`` (default): after each ODE step, ``x <- x - zeta * grad_x ||A D(x) - y||^2``
  (DPS's Algorithm 1 step). The pull is the same at every noise level, so the
  final image fits the data. With unit-norm coil maps ``A^H A`` is a projection,
  so ``zeta = 0.5`` projects the denoised estimate onto the data where the
  network's Jacobian is the identity: ``zeta`` is a fraction, independent of the
  intensity scale. ``residual_normalised=True`` uses the gradient of ``||r||``
  instead (the DPS paper's ``zeta / ||r||`` rule; then ``zeta`` is a step length
  in image-norm units).
- ``"ode"``: the data term inside the ODE, ``dx/dt = (x - D)/t + t * zeta *
  grad_x ||A D(x) - y||^2``, i.e. ``dx = -t [score + likelihood score] dt``. Its
  pull vanishes as ``t -> 0`` and explicit integration limits ``zeta``; kept for
  comparison (the benchmark reports both).

Shapes: image ``x`` complex ``[B, H, W]``; ``y`` and the operator as in
:mod:`models.mri.operators`. Randomness only in the initial noise (and churn),
drawn from the ``generator``.
"""

import logging
from typing import NamedTuple, Optional

import torch

from models.mri.checks import require_finite
from models.sampler.schedule import RHO, churn_gamma, edm_sigma_steps, sigma_range

log = logging.getLogger(__name__)


class DPSResult(NamedTuple):
    """Output of :func:`dps_sample`."""

    image: torch.Tensor  # complex [B, H, W], the final denoised estimate
    nfe: int  # number of denoiser evaluations
    trajectory: Optional[list]  # per-step denoised estimates (detached, CPU) if asked for
    residuals: Optional[torch.Tensor] = None  # [steps, B] ||A D(x) - y|| per step (zeta > 0 only)


#: a slice whose final data residual is this many times its smallest along the trajectory has
#: diverged: a stable DPS run ends at its minimum residual, a diverging one well above it (with the
#: shipped prior on validation slices, 1.45x or more past the stability limit of zeta).
DIVERGENCE_FACTOR = 1.25


def diverged_slices(residuals: Optional[torch.Tensor], factor: float = DIVERGENCE_FACTOR) -> torch.Tensor:
    """Per-slice flags ``[B]``: the data residual ended ``factor`` times above its minimum, or not finite.

    Why: the explicit DPS step is stable only for zeta below about 1 (module doc of
    :mod:`models.sampler.zeta`); beyond it the sampled lines oscillate with a growing
    amplitude in the last, low-noise steps, and the image is garbage although every
    number is finite. A stable run's residual falls (or flattens) to the end.
    """
    if residuals is None or residuals.numel() == 0:
        return torch.zeros(0, dtype=torch.bool)
    final = residuals[-1]
    smallest = torch.nan_to_num(residuals, nan=float("inf")).min(dim=0).values
    return ~torch.isfinite(final) | (final > factor * smallest)


def _complex_randn(shape, generator, device):
    real = torch.randn(shape, generator=generator, device=generator.device if generator is not None else device)
    imag = torch.randn(shape, generator=generator, device=generator.device if generator is not None else device)
    return torch.complex(real, imag).to(device)


def _denoise_with_dc_gradient(denoiser, operator, y, x, sigma, zeta, residual_normalised):
    """One denoiser evaluation: returns ``(D(x), dc_grad, ||A D(x) - y||)`` with ``dc_grad`` the
    gradient of ``||A D(x) - y||^2`` w.r.t. ``x``, divided by ``2 ||A D(x) - y||`` per slice when
    ``residual_normalised`` (then it is the gradient of the residual norm); no gradient and no
    residual (``None``) when ``zeta`` is 0."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(zeta > 0)
        denoised = denoiser(x, sigma)
        if zeta <= 0:
            return denoised.detach(), torch.zeros_like(x), None
        residual = operator.forward(denoised) - y
        per_slice = residual.abs().pow(2).flatten(1).sum(dim=1)
        grad, = torch.autograd.grad(per_slice.sum(), x)
    norm = per_slice.detach().sqrt()
    if residual_normalised:
        grad = grad / (2 * norm.clamp_min(1e-12).view(-1, 1, 1))
    return denoised.detach(), grad, norm


def dps_sample(denoiser, y: torch.Tensor, operator, zeta: float, *, num_steps: int,
               sigma_min: Optional[float] = None, sigma_max: Optional[float] = None, rho: float = RHO,
               dc_form: str = "dps", residual_normalised: bool = False, s_churn: float = 0.0,
               generator: Optional[torch.Generator] = None, x_init: Optional[torch.Tensor] = None,
               return_trajectory: bool = False, progress=None) -> DPSResult:
    """Draw one posterior sample per slice with DPS on the EDM ODE (Heun).

    Args:
        denoiser: ``(x complex [B,H,W], sigma [B]) -> D(x)``, see :mod:`models.sampler.denoisers`.
        y: measured k-space ``[B, C, H, W]`` in the prior's intensity scale.
        operator: ``SenseOperator``-like with ``forward`` (image -> k-space).
        zeta: data-consistency weight (0 = unconditional sampling from the prior).
        dc_form: ``"dps"`` (step after each ODE step) or ``"ode"`` (term inside the ODE), see module doc.
        num_steps: number of EDM noise levels (NFE = 2 * num_steps - 1).
        sigma_min, sigma_max, rho: EDM discretisation, clamped to the denoiser's range (None: its own ends).
        residual_normalised: use the gradient of ``||r||`` instead of ``||r||^2`` (DPS's step rule).
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
    if dc_form not in ("dps", "ode"):
        raise ValueError(f"dc_form must be 'dps' or 'ode', got {dc_form!r}")
    ode_zeta = zeta if dc_form == "ode" else 0.0
    device = y.device
    sigma_min, sigma_max = sigma_range(denoiser, sigma_min, sigma_max)
    sigmas = edm_sigma_steps(num_steps, sigma_min, sigma_max, rho).tolist()
    batch = y.shape[0]
    image_shape = tuple(getattr(operator, "image_shape", (batch,) + tuple(y.shape[-2:])))  # padded grid if any
    x = (x_init.to(device) if x_init is not None
         else _complex_randn(image_shape, generator, device) * sigmas[0]).to(torch.complex64)
    gamma_max = churn_gamma(s_churn, num_steps)
    nfe, trajectory, residuals = 0, [] if return_trajectory else None, []
    denoised = x
    for i, (t_cur, t_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        if gamma_max > 0:  # EDM churn: raise the noise level a little, then solve down
            t_hat = t_cur * (1 + gamma_max)
            x = x + (t_hat ** 2 - t_cur ** 2) ** 0.5 * _complex_randn(image_shape, generator, device)
            t_cur = t_hat
        sigma = torch.full((batch,), t_cur, device=device)
        denoised, grad, residual = _denoise_with_dc_gradient(denoiser, operator, y, x, sigma, zeta,
                                                             residual_normalised)
        nfe += 1
        if residual is not None:
            residuals.append(residual)
        d_cur = (x - denoised) / t_cur + t_cur * ode_zeta * grad
        x_next = x + (t_next - t_cur) * d_cur
        if t_next > 0:  # Heun correction
            sigma = torch.full((batch,), t_next, device=device)
            # the correction point needs a gradient only when the data term is inside the ODE
            denoised_next, grad_next, _ = _denoise_with_dc_gradient(
                denoiser, operator, y, x_next, sigma, ode_zeta, residual_normalised)
            nfe += 1
            d_next = (x_next - denoised_next) / t_next + t_next * ode_zeta * grad_next
            x_next = x + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_next)
            denoised = denoised_next
        if dc_form == "dps":
            x_next = x_next - zeta * grad
        x = x_next.detach()
        if return_trajectory:
            trajectory.append(denoised.cpu())
        if progress is not None:
            progress(i + 1, num_steps)
    return DPSResult(image=x.to(torch.complex64), nfe=nfe, trajectory=trajectory,
                     residuals=torch.stack(residuals).cpu() if residuals else None)
