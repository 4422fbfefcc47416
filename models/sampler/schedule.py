"""EDM noise-level discretisation (Karras et al. 2022, Eq. 5).

``sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``
for ``i = 0..N-1``, followed by ``sigma_N = 0``. ``rho = 7`` spends most steps
at low noise, where image detail forms.
"""

from typing import Optional

import torch

#: EDM's noise range and spacing (Karras et al. 2022); a prior's own range (``EDMPrecond.sigma_min/max``) wins
SIGMA_MIN, SIGMA_MAX, RHO = 0.002, 80.0, 7.0


def sigma_range(denoiser, sigma_min: Optional[float] = None, sigma_max: Optional[float] = None):
    """``(sigma_min, sigma_max)`` of a sampler: the requested range clamped to the denoiser's; ``None`` takes
    the denoiser's own end (EDM's where the denoiser has none)."""
    own_min = float(getattr(denoiser, "sigma_min", 0.0))
    own_max = float(getattr(denoiser, "sigma_max", float("inf")))
    low = max(SIGMA_MIN if sigma_min is None else sigma_min, own_min)
    high = min(SIGMA_MAX if own_max == float("inf") else own_max,
               float("inf") if sigma_max is None else sigma_max)
    return low, high


def churn_gamma(s_churn: float, num_steps: int) -> float:
    """EDM's per-step noise increase ``gamma = min(S_churn / N, sqrt(2) - 1)`` (Karras et al. 2022, Algorithm 2):
    a step at level ``t`` first raises it to ``t (1 + gamma)`` by fresh noise; the cap keeps that below
    doubling the variance."""
    return min(s_churn / num_steps, 2 ** 0.5 - 1)


def edm_sigma_steps(num_steps: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = RHO,
                    device=None) -> torch.Tensor:
    """Decreasing noise levels ``[num_steps + 1]`` (float64), the last one 0."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    if num_steps == 1:
        steps = torch.tensor([sigma_max], dtype=torch.float64, device=device)
    else:
        i = torch.arange(num_steps, dtype=torch.float64, device=device)
        steps = (sigma_max ** (1 / rho) + i / (num_steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([steps, torch.zeros(1, dtype=torch.float64, device=device)])
