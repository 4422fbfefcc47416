"""A self-contained simulated scan and its reconstruction with every available method.

The package's smoke job: it needs no files and no network. One brain-like slice
(:func:`models.mri.coil_simulation.brain_phantom`) is seen by a simulated coil
array, noise is added, the k-space is undersampled with an equispaced mask with
ACS lines, coil maps are estimated from the ACS lines, and each method
reconstructs. The reference is CG-SENSE of the fully sampled (noisy) k-space with
the same estimated maps, as fastMRI references come from fully sampled data.
"""

import logging
from typing import NamedTuple, Optional

import torch

from models.mri.coil_maps import estimate_coil_maps
from models.mri.coil_simulation import brain_phantom, simulate_coil_maps, simulate_kspace
from models.mri.masks import create_mask_func
from models.mri.metrics import slice_metrics
from models.mri.recon import cg_sense
from models.reconstruction import ReconSettings, reconstruct

log = logging.getLogger(__name__)


class DemoResult(NamedTuple):
    reference: torch.Tensor  # complex [H, W]
    images: dict  # method -> complex [H, W]
    metrics: dict  # method -> {"nrmse", "psnr", "ssim", "seconds"}
    mask: torch.Tensor  # bool [W]
    effective_acceleration: float


def run_demo(size: int = 128, coils: int = 12, acceleration: int = 4, num_acs: int = 24, snr: float = 30.0,
             seed: int = 0, methods=("zero_filled", "cg_sense", "cs"), prior=None,
             settings: Optional[ReconSettings] = None) -> DemoResult:
    """Simulate one slice, reconstruct it with ``methods`` and score each against the reference."""
    g = torch.Generator().manual_seed(seed)
    phantom = brain_phantom((size, size), generator=g)
    true_maps = simulate_coil_maps(coils, (size, size), generator=g)
    full = simulate_kspace(phantom.image, true_maps, snr=snr, generator=g).kspace
    mask_result = create_mask_func("equispaced", acceleration, num_acs)(size)
    kspace = full * mask_result.as_kspace_mask()
    acs = (mask_result.acs_start, mask_result.acs_start + num_acs)
    maps = estimate_coil_maps(kspace, acs=acs)
    reference = cg_sense(full, maps, torch.ones(size), iterations=30)[0]
    base = settings or ReconSettings(acceleration=acceleration)
    images, metrics = {}, {}
    for method in methods:
        out = reconstruct(kspace, maps, mask_result.mask, base.with_changes(method=method), prior=prior)
        images[method] = out.image[0]
        scores = slice_metrics(reference, out.image[0]).mean()
        scores["seconds"] = out.info["seconds"]
        metrics[method] = scores
        log.info("%-12s NRMSE %.4f  PSNR %.2f dB  SSIM %.4f  %.2f s", method, scores["nrmse"], scores["psnr"],
                 scores["ssim"], scores["seconds"])
    return DemoResult(reference, images, metrics, mask_result.mask, mask_result.effective_acceleration)
