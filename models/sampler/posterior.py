"""Prior-based reconstruction of a stack, in two named steps: prepare it, then sample it.

:func:`prepare_stack` brings a scan's stack to the prior:

- measured k-space is scaled per slice with the prior's stored intensity
  normalisation, measured on a CG-SENSE estimate (the prior never sees k-space);
  the result is scaled back, so output intensities match the input;
- the scan's noise level in the prior's units (the DDS sampler weighs the data with it);
- the contrast label and the denoiser, with the prior's measured error curve;
- matrices the network cannot take are sampled on a padded grid (the operator
  composes the crop with SENSE: :func:`models.sampler.padding.fit_operator_to_network`).

:func:`sample_stack` draws from it with a small :class:`SamplerConfig`:

- ``num_samples`` draws; draw ``k`` starts from noise seeded ``seed + k``;
- slices (x draws) go through the network together, ``max_batch`` at a time;
- with the paper's DPS step, a slice that looks diverged (zeta past the stability limit
  for this scan) is drawn again at half the zeta, with a warning, and keeps the draw that
  fits the data better;
- an optional final data-consistency polish: a few CG-SENSE iterations warm-started
  from the draw.

:func:`dps_reconstruct` does both and returns the posterior mean and the per-pixel
standard deviation of the magnitude, zero outside the coil maps' support by default
(as for the classical reconstructions: no coil sees that region, so the data say
nothing there and the prior's guess is not shown as if it were measured).
"""

import logging
from dataclasses import dataclass
from typing import Optional

import torch

from models.errors import ReconInputError, SamplerDivergenceError
from models.mri.noise import kspace_noise_variance
from models.mri.operators import SenseOperator
from models.mri.recon import cg_sense
from models.prior.normalization import DEFAULT_NORMALIZATION
from models.sampler.dds import dds_sample
from models.sampler.denoisers import PriorDenoiser
from models.sampler.dps import _complex_randn, diverged_slices, dps_sample
from models.sampler.padding import fit_operator_to_network, padded_size
from models.sampler.schedule import RHO

log = logging.getLogger(__name__)

SUPPORT_THRESHOLD = 1e-3  # sum_c |S_c|^2 below this: outside the coil maps' support


@dataclass(frozen=True)
class SamplerConfig:
    """What drawing from a prepared stack needs (nothing about the scan, the chain or the method)."""

    sampler: str  # "dds" or "dps"
    zeta: float
    num_steps: int
    num_samples: int = 1
    seed: int = 0
    sigma_max: Optional[float] = None  # None: the prior's
    rho: float = RHO
    dc_form: str = "dps"
    residual_normalised: bool = False
    dds_cg_iterations: int = 10
    dds_eta: float = 1.0
    dds_churn: float = 0.0
    dds_noise_floor: float = 0.0
    sigma_start: Optional[float] = None
    final_cg_iterations: int = 0
    max_batch: int = 8

    @classmethod
    def from_settings(cls, settings) -> "SamplerConfig":
        """From :class:`models.recon_settings.ReconSettings` (zeta resolved here if the caller has not)."""
        return cls(sampler=settings.sampler, zeta=settings.resolved_zeta(), num_steps=settings.num_steps,
                   num_samples=settings.num_samples, seed=settings.seed, sigma_max=settings.sigma_max,
                   rho=settings.rho, dc_form=settings.dc_form, residual_normalised=settings.residual_normalised,
                   dds_cg_iterations=settings.dds_cg_iterations, dds_eta=settings.dds_eta,
                   dds_churn=settings.dds_churn, dds_noise_floor=settings.dds_noise_floor,
                   sigma_start=settings.sigma_start,
                   final_cg_iterations=settings.final_cg_iterations, max_batch=settings.max_batch)


@dataclass
class PreparedStack:
    """A stack in the prior's intensity units, with the denoiser that samples it."""

    y: torch.Tensor  # [B, C, H, W] measured k-space times scale
    maps: torch.Tensor  # [B, C, H, W]
    mask: torch.Tensor  # broadcastable to [B, 1, H, W]
    per_slice_mask: bool  # the mask has one entry per slice
    scale: torch.Tensor  # [B] factors the k-space was multiplied by
    noise_variance: Optional[torch.Tensor]  # [B] E|n|^2 of y per complex sample (None: not needed)
    x_init: torch.Tensor  # [B, H, W] the CG-SENSE estimate, times scale
    denoiser: PriorDenoiser
    size_multiple: int  # the network's grid multiple

    def rows(self, start: int, stop: int, repeat: int = 1):
        """``(y, maps, mask, noise_variance, x_init)`` of slices ``start:stop``, each repeated ``repeat``
        times sample-major (draw ``k`` of slice ``b`` at row ``k * (stop - start) + b``)."""
        def take(t):
            return None if t is None else t[start:stop].repeat(repeat, *([1] * (t.ndim - 1)))
        mask = take(self.mask) if self.per_slice_mask else self.mask
        return take(self.y), take(self.maps), mask, take(self.noise_variance), take(self.x_init)

    def operator(self, maps, mask):
        """SENSE on ``maps`` and ``mask``, composed with the crop to the network's grid."""
        return fit_operator_to_network(SenseOperator(maps, mask), self.size_multiple)

    @property
    def grid(self):
        height, width = self.y.shape[-2:]
        return padded_size(height, self.size_multiple), padded_size(width, self.size_multiple)


def kspace_scale(kspace, maps, mask, normalization=DEFAULT_NORMALIZATION, iterations: int = 10,
                 return_estimate: bool = False):
    """Per-slice factors ``[B]`` that bring the CG-SENSE image to the prior's intensity scale
    (and that image, in the input's units, with ``return_estimate``)."""
    estimate = cg_sense(kspace, maps, mask, iterations=iterations)
    scales = [normalization.scale_from_image(estimate[i]) for i in range(estimate.shape[0])]
    scale = torch.tensor(scales, dtype=torch.float32, device=kspace.device)
    return (scale, estimate) if return_estimate else scale


def scan_noise_variance(kspace, mask, noise_variance: Optional[float] = None) -> torch.Tensor:
    """``E|n|^2`` per complex k-space sample ``[B]`` in the input's units: ``noise_variance`` when given (the
    chain passes the prewhitened one, :mod:`models.mri.noise`), else an estimate from each slice's outer
    readout band (logged: it errs high, which weighs the data less)."""
    if noise_variance is not None:
        return torch.full((kspace.shape[0],), float(noise_variance), device=kspace.device)
    mask = torch.as_tensor(mask, device=kspace.device)
    per_slice = mask.ndim == 4 and mask.shape[0] == kspace.shape[0]
    values = [kspace_noise_variance(kspace[i], mask[i] if per_slice else mask) for i in range(kspace.shape[0])]
    log.info("no noise level given: estimated from the outer readout band (%s per sample)",
             ", ".join(f"{v:.3g}" for v in values))
    return torch.tensor(values, dtype=torch.float32, device=kspace.device)


def _size_multiple(prior) -> int:
    config = getattr(getattr(prior, "net", None), "config", None)
    return int(getattr(config, "size_multiple", 1))


def prepare_stack(kspace, maps, mask, prior, contrast: str, sampler: str = "dds",
                  noise_variance: Optional[float] = None, cuda_bf16: bool = False,
                  patch_tiling: str = "shifted") -> PreparedStack:
    """Scale the stack to the prior, attach the noise level (``sampler="dds"``), label and denoiser."""
    if prior is None:
        raise ReconInputError("method 'dps' needs a prior (checkpoint) to be loaded")
    missing = [name for name in ("vocabulary", "normalization", "error_curves") if not hasattr(prior, name)]
    if missing:
        raise ReconInputError(f"the prior carries no {', '.join(missing)} (an EDMPrecond from "
                              f"models.prior.checkpoint.load_prior carries them)")
    labels = prior.vocabulary.one_hot([contrast]).to(kspace.device)
    scale, estimate = kspace_scale(kspace, maps, mask, prior.normalization, return_estimate=True)
    noise = scan_noise_variance(kspace, mask, noise_variance) * scale ** 2 if sampler == "dds" else None
    if noise is not None:
        log.debug("k-space noise variance in the prior's units: %s", ", ".join(f"{v:.3g}" for v in noise.tolist()))
    curve = prior.error_curves.get(contrast)
    if sampler == "dds" and curve is None:
        log.warning("the prior has no measured error curve for %s (python -m models.prior.error_curve CHECKPOINT): "
                    "the DDS sampler falls back to the Gaussian surrogate, which its zeta table is not tuned for",
                    contrast)
    mask = torch.as_tensor(mask, device=kspace.device)
    return PreparedStack(
        y=(kspace * scale.view(-1, 1, 1, 1)).to(torch.complex64), maps=maps, mask=mask,
        per_slice_mask=mask.ndim == 4 and mask.shape[0] == kspace.shape[0] and kspace.shape[0] > 1,
        scale=scale, noise_variance=noise, x_init=(estimate * scale.view(-1, 1, 1)).to(torch.complex64),
        denoiser=PriorDenoiser(prior, labels, cuda_bf16=cuda_bf16, error_variance=curve, patch_tiling=patch_tiling),
        size_multiple=_size_multiple(prior))


def sample_stack(stack: PreparedStack, config: SamplerConfig, progress=None):
    """``num_samples`` draws ``[K, B, H, W]`` in the input's units, and the network evaluations spent."""
    if config.sampler not in ("dds", "dps"):
        raise ReconInputError(f"unknown sampler {config.sampler!r}")
    draw = _dds_draws if config.sampler == "dds" else _dps_draws
    draws, nfe = draw(stack, config, progress)
    return draws / stack.scale.view(1, -1, 1, 1), nfe


def _polish(image, y, maps, mask, config):
    if not config.final_cg_iterations:
        return image
    return cg_sense(y, maps, mask, iterations=config.final_cg_iterations, x0=image)


def _dds_draws(stack: PreparedStack, config: SamplerConfig, progress):
    """DDS draws ``[K, B, H, W]`` (prior's units) and the NFE.

    The draws of a chunk of slices go through the network together (one batch of
    slices x samples: on two CPU cores a batch of 4 costs about a third per image of a
    batch of 1). Draw ``k`` starts from noise seeded ``seed + k``, whatever the chunking.
    """
    count, slices = config.num_samples, stack.y.shape[0]
    device = stack.y.device
    noise = torch.stack([_complex_randn((slices,) + stack.grid, torch.Generator(device=device).manual_seed(
        config.seed + k), device) for k in range(count)])  # [K, B, H', W']
    per_chunk = max(1, config.max_batch // count)
    draws, nfe = [], 0
    for start in range(0, slices, per_chunk):
        stop = min(start + per_chunk, slices)
        y, maps, mask, noise_variance, x_init = stack.rows(start, stop, repeat=count)
        operator = stack.operator(maps, mask)
        warm = config.sigma_start is not None
        result = dds_sample(stack.denoiser, y, operator, noise_variance=noise_variance + config.dds_noise_floor,
                            zeta=config.zeta,
                            num_steps=config.num_steps, cg_iterations=config.dds_cg_iterations,
                            sigma_max=config.sigma_max, rho=config.rho, sigma_start=config.sigma_start,
                            x_init=operator.pad(x_init) if warm else None,
                            initial_noise=noise[:, start:stop].reshape((count * (stop - start),) + stack.grid),
                            eta=config.dds_eta, churn=config.dds_churn,
                            step_noise=_step_noise(config, start, stop, stack.grid, device),
                            progress=progress)
        image = _polish(operator.crop(result.image), y, maps, mask, config)
        draws.append(image.reshape((count, stop - start) + image.shape[-2:]))
        nfe += result.nfe * count
    return torch.cat(draws, dim=1), nfe


def _step_noise(config: SamplerConfig, start: int, stop: int, grid, device):
    """The DDS steps' fresh noise (``dds_eta`` or ``dds_churn`` > 0) for slices ``start:stop`` of every draw, in
    the chunk's row order (draw-major): one generator per draw and slice, seeded from ``seed``, the draw and the
    slice, so that a draw does not depend on how slices are batched. None when neither draws fresh noise."""
    if not (config.dds_eta or config.dds_churn):
        return None
    generators = [torch.Generator(device=device).manual_seed(1_000_003 * (config.seed + k + 1) + b)
                  for k in range(config.num_samples) for b in range(start, stop)]
    return lambda: torch.stack([_complex_randn(grid, g, device) for g in generators])


def _dps_draws(stack: PreparedStack, config: SamplerConfig, progress):
    """The paper's DPS draws ``[K, B, H, W]`` (prior's units) and the NFE; ``max_batch`` slices at a time,
    draw ``k`` seeded ``seed + k``."""
    draws, nfe = [], 0
    slices = stack.y.shape[0]
    for k in range(config.num_samples):
        generator = torch.Generator(device=stack.y.device).manual_seed(config.seed + k)
        chunks = []
        for start in range(0, slices, config.max_batch):
            stop = min(start + config.max_batch, slices)
            y, maps, mask, _, _ = stack.rows(start, stop)
            operator, result = _dps_with_backoff(stack, y, maps, mask, config, generator, progress, start)
            chunks.append(_polish(operator.crop(result.image), y, maps, mask, config))
            nfe += result.nfe
        draws.append(torch.cat(chunks))
    return torch.stack(draws), nfe


def _dps_with_backoff(stack, y, maps, mask, config: SamplerConfig, generator, progress, first_slice):
    """DPS on a chunk; slices that look diverged (:func:`diverged_slices`) are drawn again at half the zeta.

    A zeta tuned at the edge of stability on simulated scans can be past it on another
    scan; the image would be garbage with finite numbers. Each flagged slice is drawn
    again at zeta / 2 (logged) and keeps whichever draw fits the data better, so a false
    alarm costs time, never the slice. Only a slice with no finite draw raises
    :class:`SamplerDivergenceError`.
    """
    def run(y_part, maps_part, mask_part, zeta, gen):
        operator = stack.operator(maps_part, mask_part)
        result = dps_sample(stack.denoiser, y_part, operator, zeta=zeta, num_steps=config.num_steps,
                            sigma_max=config.sigma_max, rho=config.rho, dc_form=config.dc_form,
                            residual_normalised=config.residual_normalised, generator=gen, progress=progress)
        return operator, result

    zeta = config.zeta
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
    _, retry = run(y[dev_idx], maps[dev_idx], mask[dev_idx] if stack.per_slice_mask else mask, zeta / 2,
                   torch.Generator(device=generator.device).manual_seed(config.seed))
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


def dps_reconstruct(kspace, maps, mask, settings, prior, progress=None):
    """Posterior mean ``[B, H, W]``, magnitude std (or None) and an info dict, for
    :class:`models.recon_settings.ReconSettings` ``settings``."""
    config = SamplerConfig.from_settings(settings)
    stack = prepare_stack(kspace, maps, mask, prior, settings.contrast, sampler=settings.sampler,
                          noise_variance=settings.noise_variance, cuda_bf16=settings.cuda_bf16,
                          patch_tiling=settings.patch_tiling)
    draws, nfe = sample_stack(stack, config, progress)  # [K, B, H, W] in the input's units
    mean = draws.mean(0)
    std = draws.abs().std(0, unbiased=True) if draws.shape[0] > 1 else None
    if settings.mask_to_coil_support:
        support = maps.abs().pow(2).sum(dim=-3) > SUPPORT_THRESHOLD
        mean = mean * support
        std = std * support if std is not None else None
    return mean, std, {"zeta": config.zeta, "nfe": nfe, "num_samples": config.num_samples,
                       "sampler": config.sampler, "num_steps": config.num_steps, "contrast": settings.contrast}
