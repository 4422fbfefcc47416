"""One reconstruction API for gadgets, CLI, evaluation and tests.

:func:`reconstruct` takes one stack of slices (measured k-space, coil maps,
sampling mask) and a :class:`ReconSettings`, and returns complex images in the
intensity units of the input (a SENSE image for maps with ``sum_c |S_c|^2 = 1``).

Methods: ``zero_filled`` (sensitivity-weighted combination), ``cg_sense``,
``cs`` (L1-wavelet FISTA) and ``dps`` (the diffusion prior, see
:mod:`models.sampler.dps`). For ``dps`` the k-space is scaled per slice with the
prior's stored intensity normalisation, measured on a CG-SENSE estimate, and the
result is scaled back; several seeds give a posterior mean and a per-pixel
standard deviation.

Shapes: k-space and maps ``[B, C, H, W]`` complex64; mask broadcastable to
``[B, 1, H, W]`` (usually ``[W]``); images ``[B, H, W]``.
"""

import copy
import logging
import time
from typing import NamedTuple, Optional

import torch

from models.errors import ReconInputError
from models.mri.checks import require_finite, require_same_coils
from models.mri.cs import cs_wavelet
from models.mri.recon import cg_sense, tikhonov_kappa, tikhonov_weight, zero_filled_sense
from models.recon_settings import METHODS, SAMPLERS, ReconSettings  # noqa: F401 (the API's names)

log = logging.getLogger(__name__)


class ReconOutput(NamedTuple):
    image: torch.Tensor  # complex64 [B, H, W], input intensity units (posterior mean for dps)
    std: Optional[torch.Tensor]  # float32 [B, H, W] posterior std of the magnitude, or None
    info: dict  # method, seconds, nfe, zeta, device ...


def _check_inputs(kspace, maps, mask):
    if kspace.ndim != 4:
        raise ReconInputError(f"k-space must be [B, C, H, W], got shape {tuple(kspace.shape)}")
    require_same_coils(maps.shape, kspace.shape)
    if maps.shape[0] != kspace.shape[0]:
        raise ReconInputError(f"maps have {maps.shape[0]} slices but k-space has {kspace.shape[0]}")
    require_finite("k-space", kspace)
    require_finite("coil maps", maps)
    if int(torch.as_tensor(mask).sum()) == 0:
        raise ReconInputError("sampling mask is empty: no acquired lines")


def reconstruct(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, settings: ReconSettings,
                prior=None, progress=None) -> ReconOutput:
    """Reconstruct a stack of slices.

    Args:
        kspace: measured k-space ``[B, C, H, W]`` (zeros where not sampled).
        maps: coil sensitivities ``[B, C, H, W]``.
        mask: sampling mask (``[W]`` or broadcastable to ``[B, 1, H, W]``).
        settings: :class:`ReconSettings`.
        prior: an ``EDMPrecond`` (from :func:`models.prior.checkpoint.load_prior`); needed for ``dps``.
        progress: optional ``(step, total)`` callback for long runs.
    """
    _check_inputs(kspace, maps, mask)
    mask = torch.as_tensor(mask, device=kspace.device)
    start = time.perf_counter()
    info = {"method": settings.method, "device": str(kspace.device), "slices": int(kspace.shape[0])}
    std = None
    if settings.method == "zero_filled":
        image = zero_filled_sense(kspace, maps)
    elif settings.method == "cg_sense":
        weight = 0.0
        if settings.noise_variance is not None:
            weight = tikhonov_weight(kspace, maps, mask, settings.noise_variance,
                                     kappa=tikhonov_kappa(settings.acceleration))
            info["tikhonov_weight"] = [float(w) for w in weight]
        image = cg_sense(kspace, maps, mask, iterations=settings.cg_iterations, l2_weight=weight)
    elif settings.method == "cs":
        image = cs_wavelet(kspace, maps, mask, lam=settings.cs_lambda, iterations=settings.cs_iterations,
                           generator=torch.Generator().manual_seed(settings.seed)).image
    else:
        image, std, dps_info = _dps_within_memory(kspace, maps, mask, settings, prior, progress)
        info.update(dps_info)
    info["seconds"] = time.perf_counter() - start
    return ReconOutput(image.to(torch.complex64), std, info)


def _dps_within_memory(kspace, maps, mask, settings: ReconSettings, prior, progress):
    """DPS that survives running out of GPU memory: smaller chunks first, then the CPU.

    A chain must not crash because another job took the GPU's memory: each out-of-memory
    error halves the chunk of slices that go through the network together; at one slice
    the whole stack moves to the CPU (with a warning) and the images come back to the
    input's device.
    """
    from models.sampler.posterior import dps_reconstruct  # torch-heavy path, imported on use

    batch = settings.max_batch
    while True:
        try:
            return dps_reconstruct(kspace, maps, mask, settings.with_changes(max_batch=batch), prior,
                                   progress=progress)
        except torch.cuda.OutOfMemoryError:
            if kspace.is_cuda:
                torch.cuda.empty_cache()
            if batch > 1:
                batch = max(1, batch // 2)
                log.warning("out of GPU memory: retrying DPS with %d slice(s) at a time", batch)
                continue
            if not kspace.is_cuda:
                raise
            log.warning("out of GPU memory with one slice at a time: DPS falls back to the CPU (slow)")
            device = kspace.device
            cpu_prior = copy.deepcopy(prior).to("cpu")  # keeps vocabulary and normalisation; the GPU one stays
            image, std, info = dps_reconstruct(kspace.cpu(), maps.cpu(), torch.as_tensor(mask).cpu(), settings,
                                               cpu_prior, progress=progress)
            info["cpu_fallback"] = True
            return image.to(device), (std.to(device) if std is not None else None), info
