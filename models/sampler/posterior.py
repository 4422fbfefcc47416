"""DPS reconstruction of a stack: intensity scaling, seeds, posterior mean and std.

Wraps :func:`models.sampler.dps.dps_sample` with what a scan needs: measured
k-space is scaled per slice with the prior's stored intensity normalisation
(measured on a CG-SENSE estimate, since the prior never sees k-space), sampled
with ``num_samples`` seeds (``seed, seed + 1, ...``), and scaled back.
"""

import logging

import torch

from models.errors import ReconInputError
from models.mri.operators import SenseOperator
from models.mri.recon import cg_sense
from models.prior.normalization import DEFAULT_NORMALIZATION
from models.sampler.denoisers import PriorDenoiser
from models.sampler.dps import dps_sample

log = logging.getLogger(__name__)


def kspace_scale(kspace, maps, mask, normalization=DEFAULT_NORMALIZATION, iterations: int = 10) -> torch.Tensor:
    """Per-slice factors ``[B]`` that bring the CG-SENSE image to the prior's intensity scale."""
    estimate = cg_sense(kspace, maps, mask, iterations=iterations)
    scales = [normalization.scale_from_image(estimate[i]) for i in range(estimate.shape[0])]
    return torch.tensor(scales, dtype=torch.float32, device=kspace.device)


def dps_reconstruct(kspace, maps, mask, settings, prior, progress=None):
    """Posterior mean ``[B, H, W]``, magnitude std (or None) and an info dict."""
    if prior is None:
        raise ReconInputError("method 'dps' needs a prior (checkpoint) to be loaded")
    vocabulary = getattr(prior, "vocabulary", None)
    if vocabulary is None:
        raise ReconInputError("the prior carries no contrast vocabulary")
    labels = vocabulary.one_hot([settings.contrast]).to(kspace.device)
    normalization = getattr(prior, "normalization", None) or DEFAULT_NORMALIZATION
    zeta = settings.resolved_zeta()
    scale = kspace_scale(kspace, maps, mask, normalization).view(-1, 1, 1, 1)
    y = (kspace * scale).to(torch.complex64)
    operator = SenseOperator(maps, mask)
    denoiser = PriorDenoiser(prior, labels)
    samples, nfe = [], 0
    for k in range(settings.num_samples):
        generator = torch.Generator(device=kspace.device).manual_seed(settings.seed + k)
        result = dps_sample(denoiser, y, operator, zeta=zeta, num_steps=settings.num_steps,
                            residual_normalised=settings.residual_normalised, generator=generator,
                            progress=progress)
        samples.append(result.image / scale.view(-1, 1, 1))
        nfe += result.nfe
    stack = torch.stack(samples)
    mean = stack.mean(0)
    std = stack.abs().std(0, unbiased=True) if len(samples) > 1 else None
    return mean, std, {"zeta": zeta, "nfe": nfe, "num_samples": settings.num_samples,
                       "num_steps": settings.num_steps, "contrast": settings.contrast}
