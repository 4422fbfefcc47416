"""Fast mode: decomposed data consistency on the denoised estimate (DDS-style).

At each EDM noise level the denoised estimate ``x0 = D(x; t)`` is pulled to the
data by a few conjugate-gradient iterations on

    min_z ||A z - y||^2 + gamma ||z - x0||^2      (warm start z = x0)

and the ODE continues from the corrected estimate with the same noise direction
(deterministic DDIM / Euler step ``x_next = z + (t_next / t) (x - x0)``).
No gradient flows through the network, so a step costs one forward pass, and
10-20 steps suffice (Chung, Lee & Ye, "Decomposed Diffusion Sampler for
accelerating large-scale inverse problems", ICLR 2024).

Shapes as in :mod:`models.sampler.dps`.
"""

from typing import Optional

import torch

from models.mri.checks import require_finite
from models.mri.recon import conjugate_gradient
from models.sampler.dps import DPSResult, _complex_randn
from models.sampler.schedule import edm_sigma_steps


def data_consistent(operator, y: torch.Tensor, x0: torch.Tensor, gamma: float, iterations: int) -> torch.Tensor:
    """``argmin_z ||A z - y||^2 + gamma ||z - x0||^2`` by ``iterations`` CG steps from ``x0``."""
    rhs = operator.adjoint(y) + gamma * x0
    return conjugate_gradient(lambda v: operator.normal(v) + gamma * v, rhs, x0=x0, iterations=iterations)


@torch.no_grad()
def dds_sample(denoiser, y: torch.Tensor, operator, num_steps: int = 15, cg_iterations: int = 5,
               gamma: float = 0.05, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
               generator: Optional[torch.Generator] = None, progress=None) -> DPSResult:
    """One posterior-like sample per slice with CG data consistency on each denoised estimate.

    Args:
        gamma: weight of the proximity to the denoised estimate (smaller = closer to the data).
        cg_iterations: CG iterations per step (early stopping regularises too).
        Others as :func:`models.sampler.dps.dps_sample`.
    """
    require_finite("measured k-space", y)
    sigma_min = max(sigma_min, getattr(denoiser, "sigma_min", 0.0))
    sigma_max = min(sigma_max, getattr(denoiser, "sigma_max", float("inf")))
    sigmas = edm_sigma_steps(num_steps, sigma_min, sigma_max, rho).tolist()
    batch = y.shape[0]
    shape = (batch,) + tuple(y.shape[-2:])
    x = _complex_randn(shape, generator, y.device).to(torch.complex64) * sigmas[0]
    z = x
    for i, (t_cur, t_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        x0 = denoiser(x, torch.full((batch,), t_cur, device=y.device))
        z = data_consistent(operator, y, x0, gamma, cg_iterations)
        x = z + (t_next / t_cur) * (x - x0)
        if progress is not None:
            progress(i + 1, num_steps)
    return DPSResult(image=z.to(torch.complex64), nfe=num_steps, trajectory=None)
