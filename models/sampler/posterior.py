"""Prior-based reconstruction of a stack: scaling, padding, chunking, seeds, mean and std.

Wraps the samplers (:func:`models.sampler.dps.dps_sample`, the method; or the
fast :func:`models.sampler.dds.dds_sample`) with what a scan needs:

- measured k-space is scaled per slice with the prior's stored intensity
  normalisation, measured on a CG-SENSE estimate (the prior never sees
  k-space), and the result is scaled back, so output intensities match the input;
- matrices the network cannot take are sampled on a padded grid (logged);
- slices go through the network together, ``max_batch`` at a time;
- ``num_samples`` seeds (``seed, seed + 1, ...``) give a posterior mean and a
  per-pixel standard deviation of the magnitude;
- an optional final data-consistency polish: a few CG-SENSE iterations
  warm-started from the sample (early stopping keeps it close to the prior's image);
- the output is zero outside the coil maps' support (by default), as for the
  classical reconstructions: no coil sees that region, so the data say nothing
  there and the prior's guess is not shown as if it were measured.
"""

import logging

import torch

from models.errors import ReconInputError
from models.mri.operators import SenseOperator
from models.mri.recon import cg_sense
from models.prior.normalization import DEFAULT_NORMALIZATION
from models.sampler.dds import dds_sample
from models.sampler.denoisers import PriorDenoiser
from models.sampler.dps import dps_sample
from models.sampler.padding import CroppedOperator, fit_operator_to_network

log = logging.getLogger(__name__)

SUPPORT_THRESHOLD = 1e-3  # sum_c |S_c|^2 below this: outside the coil maps' support


def kspace_scale(kspace, maps, mask, normalization=DEFAULT_NORMALIZATION, iterations: int = 10) -> torch.Tensor:
    """Per-slice factors ``[B]`` that bring the CG-SENSE image to the prior's intensity scale."""
    estimate = cg_sense(kspace, maps, mask, iterations=iterations)
    scales = [normalization.scale_from_image(estimate[i]) for i in range(estimate.shape[0])]
    return torch.tensor(scales, dtype=torch.float32, device=kspace.device)


def _size_multiple(prior) -> int:
    net = getattr(prior, "net", None)
    config = getattr(net, "config", None)
    return int(getattr(config, "size_multiple", 1))


def _sample_chunk(denoiser, y, maps, mask, settings, zeta, generator, progress):
    operator = fit_operator_to_network(SenseOperator(maps, mask), settings.size_multiple)
    if settings.sampler == "dds":
        result = dds_sample(denoiser, y, operator, num_steps=settings.num_steps,
                            cg_iterations=settings.dds_cg_iterations, gamma=settings.dds_gamma,
                            generator=generator, progress=progress)
    else:
        result = dps_sample(denoiser, y, operator, zeta=zeta, num_steps=settings.num_steps,
                            dc_form=settings.dc_form, residual_normalised=settings.residual_normalised,
                            generator=generator,
                            progress=progress)
    image = operator.crop(result.image) if isinstance(operator, CroppedOperator) else result.image
    if settings.final_cg_iterations:
        image = cg_sense(y, maps, mask, iterations=settings.final_cg_iterations, x0=image)
    return image, result.nfe


def dps_reconstruct(kspace, maps, mask, settings, prior, progress=None):
    """Posterior mean ``[B, H, W]``, magnitude std (or None) and an info dict."""
    if prior is None:
        raise ReconInputError("method 'dps' needs a prior (checkpoint) to be loaded")
    vocabulary = getattr(prior, "vocabulary", None)
    if vocabulary is None:
        raise ReconInputError("the prior carries no contrast vocabulary")
    labels = vocabulary.one_hot([settings.contrast]).to(kspace.device)
    normalization = getattr(prior, "normalization", None) or DEFAULT_NORMALIZATION
    zeta = settings.resolved_zeta() if settings.sampler == "dps" else 0.0
    settings = settings.with_changes(size_multiple=_size_multiple(prior))
    scale = kspace_scale(kspace, maps, mask, normalization).view(-1, 1, 1, 1)
    y = (kspace * scale).to(torch.complex64)
    denoiser = PriorDenoiser(prior, labels, cuda_bf16=settings.cuda_bf16)
    samples, nfe = [], 0
    mask = torch.as_tensor(mask, device=kspace.device)
    per_slice_mask = mask.ndim == 4 and mask.shape[0] == kspace.shape[0] and kspace.shape[0] > 1
    for k in range(settings.num_samples):
        generator = torch.Generator(device=kspace.device).manual_seed(settings.seed + k)
        chunks = []
        for start in range(0, y.shape[0], settings.max_batch):
            stop = start + settings.max_batch
            chunk_mask = mask[start:stop] if per_slice_mask else mask
            image, chunk_nfe = _sample_chunk(denoiser, y[start:stop], maps[start:stop], chunk_mask, settings, zeta,
                                             generator, progress)
            chunks.append(image)
            nfe += chunk_nfe
        samples.append(torch.cat(chunks) / scale.view(-1, 1, 1))
    stack = torch.stack(samples)
    mean = stack.mean(0)
    std = stack.abs().std(0, unbiased=True) if len(samples) > 1 else None
    if settings.mask_to_coil_support:
        support = maps.abs().pow(2).sum(dim=-3) > SUPPORT_THRESHOLD
        mean = mean * support
        std = std * support if std is not None else None
    return mean, std, {"zeta": zeta, "nfe": nfe, "num_samples": settings.num_samples, "sampler": settings.sampler,
                       "num_steps": settings.num_steps, "contrast": settings.contrast}
