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
from dataclasses import dataclass, field, replace
from typing import NamedTuple, Optional

import torch

from models.errors import ReconInputError
from models.mri.checks import require_finite, require_same_coils
from models.mri.cs import cs_wavelet
from models.mri.recon import cg_sense, tikhonov_weight, zero_filled_sense
from models.sampler.zeta import DEFAULT_STEPS, TABLE_STEPS, default_zeta

log = logging.getLogger(__name__)

_warned_step_counts = set()  # step counts already warned about (once per process, not per slice)

METHODS = ("zero_filled", "cg_sense", "cs", "dps")
SAMPLERS = ("dps", "dds")


@dataclass(frozen=True)
class ReconSettings:
    """What to reconstruct with; every field has a sensible default.

    ``zeta=None`` takes the per-acceleration default of :mod:`models.sampler.zeta`.
    """

    method: str = "dps"
    contrast: str = "FLAIR"
    acceleration: Optional[float] = None
    zeta: Optional[float] = None
    num_steps: int = DEFAULT_STEPS  # the chains' step count (models/sampler/zeta.py)
    sigma_max: float = 80.0  # EDM's discretisation of the DPS noise levels (Karras et al. 2022)
    rho: float = 7.0
    num_samples: int = 1
    seed: int = 0
    dc_form: str = "dps"  # "dps": DPS step after each ODE step; "ode": data term inside the ODE
    residual_normalised: bool = False  # True: gradient of ||r|| (DPS paper's step rule) instead of ||r||^2
    # "dds": noise-weighted CG data consistency on each denoised estimate (models/sampler/dds.py);
    # "dps": the paper's gradient step through the network (models/sampler/dps.py)
    sampler: str = "dds"
    dds_cg_iterations: int = 10
    sigma_start: Optional[float] = None  # DDS warm start from the CG-SENSE image at this noise level; None: off
    # CG-SENSE polish warm-started from the prior's image (0 = off: it amplified noise on validation slices)
    final_cg_iterations: int = 0
    max_batch: int = 8  # slices through the network at once
    # bf16 autocast for the network on CUDA (off: slower than float32 for the shipped network,
    # benchmarks/results/gpu_dps_check.md)
    cuda_bf16: bool = False
    mask_to_coil_support: bool = True  # zero the prior's output where no coil map reaches
    size_multiple: int = 1  # set from the prior: the network's grid multiple
    cg_iterations: int = 20
    # per-sample noise variance E|n|^2 of the k-space (models.mri.noise); set: CG-SENSE is Tikhonov-regularised
    # from it (models.mri.recon.tikhonov_weight) and runs cg_iterations at most; None: plain early-stopped CG
    noise_variance: Optional[float] = None
    cs_lambda: float = 0.005
    cs_iterations: int = 100
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ReconInputError(f"unknown reconstruction method {self.method!r}; known: {', '.join(METHODS)}")
        if self.num_samples < 1 or self.num_steps < 1 or self.max_batch < 1:
            raise ReconInputError("num_samples, num_steps and max_batch must be >= 1")
        if not (self.sigma_max > 0 and self.rho > 0):
            raise ReconInputError(f"sigma_max and rho must be > 0, got {self.sigma_max} and {self.rho}")
        if self.noise_variance is not None and not self.noise_variance > 0:
            raise ReconInputError(f"noise_variance must be > 0, got {self.noise_variance}")
        if self.sigma_start is not None and not 0 < self.sigma_start:
            raise ReconInputError(f"sigma_start must be > 0, got {self.sigma_start}")
        if self.sampler not in SAMPLERS:
            raise ReconInputError(f"unknown sampler {self.sampler!r}; known: {', '.join(SAMPLERS)}")

    def resolved_zeta(self) -> float:
        if self.zeta is not None:
            return float(self.zeta)
        if self.acceleration is None:
            raise ReconInputError("DPS needs either zeta or the acceleration factor to choose zeta")
        if (self.method, self.sampler) == ("dps", "dps") and self.num_steps != TABLE_STEPS \
                and self.num_steps not in _warned_step_counts:
            _warned_step_counts.add(self.num_steps)
            log.warning("the zeta table is tuned for %d DPS steps; at %d steps the data term pulls %s: "
                        "set zeta for this step count (benchmarks/tune_zeta.py)", TABLE_STEPS, self.num_steps,
                        "less" if self.num_steps < TABLE_STEPS else "more")
        return default_zeta(self.acceleration, sampler=self.sampler)

    def with_changes(self, **changes) -> "ReconSettings":
        return replace(self, **changes)


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
            weight = tikhonov_weight(kspace, maps, mask, settings.noise_variance)
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
