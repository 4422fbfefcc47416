"""Validation scores for choosing checkpoints (lower is better).

- ``denoise``: EDM loss of the denoiser at fixed noise levels with fixed noise, on
  validation slices of the target contrast. Cheap; a proxy until DPS is affordable.
- ``dps``: NRMSE of a short DPS reconstruction at R = 4 (equispaced, simulated
  coils and noise) against the validation slice itself: the quantity fine-tuning
  must optimise, so it reveals over-fitting that the denoising loss can hide.
"""

import torch

from models.mri.metrics import nrmse
from models.mri.scan_simulation import simulate_undersampled_scan
from models.reconstruction import ReconSettings, reconstruct

VAL_SIGMAS = (0.02, 0.1, 0.3, 1.0, 3.0)

#: zeta of the validation reconstruction. It runs the chains' default sampler (DDS, 20 steps), where zeta
#: is a likelihood weight (1 = Bayes' rule with the scan's noise; the chains use 4). 0.9 was chosen
#: when validation still ran the paper's DPS step (where zeta is a step length) and stayed when DDS
#: became the default sampler; it is kept fixed so that fine-tuning runs stay comparable with each other
#: (benchmarks/results/finetune_curves.md). It ranks checkpoints; it is not the chains' setting.
VAL_DPS_ZETA = 0.9


@torch.no_grad()
def denoising_score(precond, images: torch.Tensor, labels: torch.Tensor, sigmas=VAL_SIGMAS, seed: int = 0) -> float:
    """Mean over ``sigmas`` of ``E|D(x + sigma n) - x|^2 / sigma^2``-style EDM-weighted error.

    ``images`` real ``[N, 2, H, W]``; ``labels`` one-hot ``[N, L]``.
    """
    g = torch.Generator(device="cpu").manual_seed(seed)
    total = 0.0
    for sigma in sigmas:
        noise = torch.randn(images.shape, generator=g).to(images.device) * sigma
        denoised = precond(images + noise, torch.full((images.shape[0],), sigma, device=images.device), labels)
        weight = (sigma ** 2 + precond.sigma_data ** 2) / (sigma * precond.sigma_data) ** 2
        total += float(weight * (denoised - images).pow(2).mean())
    return total / len(sigmas)


def dps_score(precond, images: torch.Tensor, contrast: str, acceleration: int = 4, num_steps: int = 20,
              coils: int = 8, snr: float = 30.0, seed: int = 0, zeta: float = VAL_DPS_ZETA) -> float:
    """Mean NRMSE of DPS at ``acceleration`` on complex ``images`` ``[N, H, W]`` with simulated coils."""
    g = torch.Generator().manual_seed(seed)
    n, h, w = images.shape
    scan = simulate_undersampled_scan(images.cpu(), acceleration, num_acs=max(8, w // 8), coils=coils, snr=snr,
                                      generator=g)
    settings = ReconSettings(method="dps", sampler="dds", contrast=contrast, zeta=zeta, num_steps=num_steps,
                              seed=seed)
    # simulated maps have unit sum of squares everywhere, so the SENSE image is the slice itself
    device = images.device
    out = reconstruct(scan.kspace.to(device), scan.true_maps.to(device), scan.mask.mask.to(device), settings,
                      prior=precond)
    return float(sum(nrmse(images[i], out.image[i]) for i in range(n)) / n)
