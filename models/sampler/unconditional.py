"""Unconditional samples of the prior (no data): what it has learned, per contrast.

EDM's deterministic Heun sampler (Karras et al. 2022, Algorithm 1) on complex
images; used for the provenance figures of a shipped prior and as a sanity check
that a prior draws brain slices of the asked contrast.
"""

from typing import Optional

import torch

from models.sampler.denoisers import PriorDenoiser
from models.sampler.dps import _complex_randn
from models.sampler.schedule import edm_sigma_steps, sigma_range


@torch.no_grad()
def sample_prior(prior, contrast: str, count: int, size: tuple, num_steps: int = 32,
                 generator: Optional[torch.Generator] = None, patch_tiling: str = "shifted") -> torch.Tensor:
    """``count`` samples ``[count, H, W]`` (complex64) of ``contrast`` from ``prior`` (an ``EDMPrecond``;
    a patch prior covers the image with ``patch_tiling``, :mod:`models.tilings`)."""
    device = next(prior.parameters()).device
    denoiser = PriorDenoiser(prior, prior.vocabulary.one_hot([contrast]).to(device), patch_tiling=patch_tiling)
    sigmas = edm_sigma_steps(num_steps, *sigma_range(denoiser)).tolist()
    x = _complex_randn((count,) + tuple(size), generator, device).to(torch.complex64) * sigmas[0]
    for t_cur, t_next in zip(sigmas[:-1], sigmas[1:]):
        d_cur = (x - denoiser(x, torch.full((count,), t_cur, device=device))) / t_cur
        x_next = x + (t_next - t_cur) * d_cur
        if t_next > 0:
            d_next = (x_next - denoiser(x_next, torch.full((count,), t_next, device=device))) / t_next
            x_next = x + (t_next - t_cur) * 0.5 * (d_cur + d_next)
        x = x_next
    return x
