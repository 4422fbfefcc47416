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
- a slice on which DPS looks diverged (zeta past the stability limit for this scan) is
  drawn again at half the zeta, with a warning, and keeps the draw that fits the data better;
- an optional final data-consistency polish: a few CG-SENSE iterations
  warm-started from the sample (early stopping keeps it close to the prior's image);
- the output is zero outside the coil maps' support (by default), as for the
  classical reconstructions: no coil sees that region, so the data say nothing
  there and the prior's guess is not shown as if it were measured.
"""

import logging

import torch

from models.errors import ReconInputError, SamplerDivergenceError
from models.mri.operators import SenseOperator
from models.mri.noise import kspace_noise_variance
from models.mri.recon import cg_sense
from models.prior.normalization import DEFAULT_NORMALIZATION
from models.sampler.dds import dds_sample
from models.sampler.denoisers import PriorDenoiser
from models.sampler.dps import _complex_randn, diverged_slices, dps_sample
from models.sampler.padding import fit_operator_to_network, padded_size

log = logging.getLogger(__name__)

SUPPORT_THRESHOLD = 1e-3  # sum_c |S_c|^2 below this: outside the coil maps' support


def kspace_scale(kspace, maps, mask, normalization=DEFAULT_NORMALIZATION, iterations: int = 10,
                 return_estimate: bool = False):
    """Per-slice factors ``[B]`` that bring the CG-SENSE image to the prior's intensity scale
    (and that image, in the input's units, with ``return_estimate``)."""
    estimate = cg_sense(kspace, maps, mask, iterations=iterations)
    scales = [normalization.scale_from_image(estimate[i]) for i in range(estimate.shape[0])]
    scale = torch.tensor(scales, dtype=torch.float32, device=kspace.device)
    return (scale, estimate) if return_estimate else scale


def scan_noise_variance(kspace, mask, settings) -> torch.Tensor:
    """``E|n|^2`` per complex k-space sample ``[B]`` in the input's units: the settings' value (the chain
    passes the prewhitened one, :mod:`models.mri.noise`), else an estimate from each slice's outer readout
    band (logged: it errs high, which weighs the data less)."""
    if settings.noise_variance is not None:
        return torch.full((kspace.shape[0],), float(settings.noise_variance), device=kspace.device)
    mask = torch.as_tensor(mask, device=kspace.device)
    per_slice = mask.ndim == 4 and mask.shape[0] == kspace.shape[0]
    values = [kspace_noise_variance(kspace[i], mask[i] if per_slice else mask) for i in range(kspace.shape[0])]
    log.info("no noise level given: estimated from the outer readout band (%s per sample)",
             ", ".join(f"{v:.3g}" for v in values))
    return torch.tensor(values, dtype=torch.float32, device=kspace.device)


def _size_multiple(prior) -> int:
    net = getattr(prior, "net", None)
    config = getattr(net, "config", None)
    return int(getattr(config, "size_multiple", 1))


def _dps_with_backoff(denoiser, y, maps, mask, settings, zeta, generator, progress, first_slice, per_slice_mask):
    """DPS on a chunk; slices that look diverged (:func:`diverged_slices`) are drawn again at half the zeta.

    A zeta tuned at the edge of stability on simulated scans can be past it on another
    scan; the image would be garbage with finite numbers. Each flagged slice is drawn
    again at zeta / 2 (logged) and keeps whichever draw fits the data better, so a false
    alarm costs time, never the slice. Only a slice with no finite draw raises
    :class:`SamplerDivergenceError`.
    """
    def run(y_part, maps_part, mask_part, z, gen):
        operator = fit_operator_to_network(SenseOperator(maps_part, mask_part), settings.size_multiple)
        result = dps_sample(denoiser, y_part, operator, zeta=z, num_steps=settings.num_steps,
                            sigma_max=settings.sigma_max, rho=settings.rho, dc_form=settings.dc_form,
                            residual_normalised=settings.residual_normalised, generator=gen, progress=progress)
        return operator, result

    operator, result = run(y, maps, mask, zeta, generator)
    bad = diverged_slices(result.residuals)
    if not bad.any():
        return operator, result
    idx = bad.nonzero().flatten()
    first = result.residuals[-1][idx]
    rise = first / result.residuals.min(dim=0).values[idx]
    log.warning("DPS diverged on slice(s) %s at zeta %.3g (data residual ended %s x its minimum): "
                "drawing them again at zeta %.3g", [first_slice + int(i) for i in idx], zeta,
                ", ".join(f"{float(r):.2f}" for r in rise), zeta / 2)
    dev_idx = idx.to(y.device)
    _, retry = run(y[dev_idx], maps[dev_idx], mask[dev_idx] if per_slice_mask else mask, zeta / 2,
                   torch.Generator(device=generator.device).manual_seed(settings.seed))
    second = retry.residuals[-1]
    take = torch.nan_to_num(second, nan=float("inf")) < torch.nan_to_num(first, nan=float("inf"))
    lost = ~torch.isfinite(torch.where(take, second, first))
    if lost.any():
        names = [first_slice + int(i) for i in idx[lost]]
        raise SamplerDivergenceError(f"DPS gave no finite image for slice(s) {names} at zeta {zeta:g} or "
                                     f"{zeta / 2:g}: lower zeta for this scan")
    if take.any():
        log.warning("slice(s) %s keep the draw at zeta %.3g", [first_slice + int(i) for i in idx[take]], zeta / 2)
    image = result.image.clone()
    image[dev_idx[take.to(y.device)]] = retry.image[take.to(y.device)]
    return operator, result._replace(image=image)


def _dds_draws(denoiser, y, maps, mask, settings, zeta, noise_variance, x_init, per_slice_mask, progress):
    """``num_samples`` DDS draws ``[K, B, H, W]`` (prior's units) and the NFE.

    The draws of a chunk of slices go through the network together (one batch of
    slices x samples: on two CPU cores a batch of 4 costs about a third per image of a
    batch of 1). Draw ``k`` starts from noise seeded ``seed + k``, whatever the chunking.
    """
    count = settings.num_samples
    height, width = y.shape[-2:]
    grid = (padded_size(height, settings.size_multiple), padded_size(width, settings.size_multiple))
    noise = torch.stack([_complex_randn((y.shape[0],) + grid, torch.Generator(device=y.device).manual_seed(
        settings.seed + k), y.device) for k in range(count)])  # [K, B, H', W']
    per_chunk = max(1, settings.max_batch // count)
    draws, nfe = [], 0
    for start in range(0, y.shape[0], per_chunk):
        stop = min(start + per_chunk, y.shape[0])
        b = stop - start
        rep = lambda t: t[start:stop].repeat(count, *([1] * (t.ndim - 1)))  # noqa: E731 (sample-major)
        chunk_mask = rep(mask) if per_slice_mask else mask
        operator = fit_operator_to_network(SenseOperator(rep(maps), chunk_mask), settings.size_multiple)
        start_image = operator.pad(rep(x_init))
        result = dds_sample(denoiser, rep(y), operator, noise_variance=rep(noise_variance), zeta=zeta,
                            num_steps=settings.num_steps, cg_iterations=settings.dds_cg_iterations,
                            sigma_max=settings.sigma_max, rho=settings.rho, sigma_start=settings.sigma_start,
                            x_init=start_image if settings.sigma_start is not None else None,
                            initial_noise=noise[:, start:stop].reshape((count * b,) + grid), progress=progress)
        image = operator.crop(result.image)
        if settings.final_cg_iterations:
            image = cg_sense(rep(y), rep(maps), chunk_mask, iterations=settings.final_cg_iterations, x0=image)
        draws.append(image.reshape((count, b) + image.shape[-2:]))
        nfe += result.nfe * count
    return torch.cat(draws, dim=1), nfe


def _dps_draws(denoiser, y, maps, mask, settings, zeta, noise_variance, x_init, per_slice_mask, progress):
    """``num_samples`` DPS draws ``[K, B, H, W]`` (prior's units) and the NFE; ``max_batch`` slices at a time,
    draw ``k`` seeded ``seed + k`` (``noise_variance`` and ``x_init`` are the DDS sampler's, unused here)."""
    draws, nfe = [], 0
    for k in range(settings.num_samples):
        generator = torch.Generator(device=y.device).manual_seed(settings.seed + k)
        chunks = []
        for start in range(0, y.shape[0], settings.max_batch):
            stop = start + settings.max_batch
            chunk_mask = mask[start:stop] if per_slice_mask else mask
            image, chunk_nfe = _sample_chunk(denoiser, y[start:stop], maps[start:stop], chunk_mask, settings, zeta,
                                             generator, progress, first_slice=start, per_slice_mask=per_slice_mask)
            chunks.append(image)
            nfe += chunk_nfe
        draws.append(torch.cat(chunks))
    return torch.stack(draws), nfe


def _sample_chunk(denoiser, y, maps, mask, settings, zeta, generator, progress, first_slice=0,
                  per_slice_mask=False):
    operator, result = _dps_with_backoff(denoiser, y, maps, mask, settings, zeta, generator, progress,
                                         first_slice, per_slice_mask)
    image = operator.crop(result.image)
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
    normalization = getattr(prior, "normalization", DEFAULT_NORMALIZATION)
    zeta = settings.resolved_zeta()
    settings = settings.with_changes(size_multiple=_size_multiple(prior))
    scale, estimate = kspace_scale(kspace, maps, mask, normalization, return_estimate=True)
    noise_variance = scan_noise_variance(kspace, mask, settings) * scale ** 2 if settings.sampler == "dds" else None
    scale = scale.view(-1, 1, 1, 1)
    y = (kspace * scale).to(torch.complex64)
    x_init = (estimate * scale.view(-1, 1, 1)).to(torch.complex64)
    curve = getattr(prior, "error_curves", {}).get(settings.contrast)
    if settings.sampler == "dds" and curve is None:
        log.warning("the prior has no measured error curve for %s (python -m models.prior.error_curve CHECKPOINT): "
                    "the DDS sampler falls back to the Gaussian surrogate, which its zeta table is not tuned for",
                    settings.contrast)
    denoiser = PriorDenoiser(prior, labels, cuda_bf16=settings.cuda_bf16, error_variance=curve)
    mask = torch.as_tensor(mask, device=kspace.device)
    per_slice_mask = mask.ndim == 4 and mask.shape[0] == kspace.shape[0] and kspace.shape[0] > 1
    draw = _dds_draws if settings.sampler == "dds" else _dps_draws
    draws, nfe = draw(denoiser, y, maps, mask, settings, zeta, noise_variance, x_init, per_slice_mask, progress)
    stack = draws / scale.view(1, -1, 1, 1)  # [K, B, H, W] in the input's units
    mean = stack.mean(0)
    std = stack.abs().std(0, unbiased=True) if stack.shape[0] > 1 else None
    if settings.mask_to_coil_support:
        support = maps.abs().pow(2).sum(dim=-3) > SUPPORT_THRESHOLD
        mean = mean * support
        std = std * support if std is not None else None
    return mean, std, {"zeta": zeta, "nfe": nfe, "num_samples": settings.num_samples, "sampler": settings.sampler,
                       "num_steps": settings.num_steps, "contrast": settings.contrast}
