"""An undersampled multi-coil scan of a known image, for validation and benchmarks.

Image -> simulated coil array -> noisy fully sampled k-space -> equispaced mask
with ACS lines (a scanner's GRAPPA/SENSE pattern). Everything seeded.
"""

from typing import NamedTuple, Optional

import torch

from models.mri.coil_simulation import simulate_coil_maps, simulate_kspace
from models.mri.masks import MaskResult, create_mask_func


class UndersampledScan(NamedTuple):
    kspace: torch.Tensor  # [B, C, H, W] complex64, zeros off the mask
    full_kspace: torch.Tensor  # [B, C, H, W] fully sampled (noisy)
    true_maps: torch.Tensor  # [B, C, H, W], unit sum of squares everywhere
    mask: MaskResult

    @property
    def acs(self) -> tuple:
        return self.mask.acs_start, self.mask.acs_start + self.mask.num_acs


def simulate_undersampled_scan(images: torch.Tensor, acceleration: int, num_acs: int = 24, coils: int = 12,
                               snr: float = 30.0, mask_kind: str = "equispaced",
                               generator: Optional[torch.Generator] = None) -> UndersampledScan:
    """Scan ``images`` complex ``[B, H, W]`` (one coil array per slice) at acceleration R."""
    if images.ndim == 2:
        images = images.unsqueeze(0)
    b, h, w = images.shape
    maps = torch.stack([simulate_coil_maps(coils, (h, w), generator=generator) for _ in range(b)])
    full = simulate_kspace(images.to(torch.complex64), maps, snr=snr, generator=generator).kspace
    mask = create_mask_func(mask_kind, acceleration, num_acs)(w, generator)
    return UndersampledScan((full * mask.as_kspace_mask()).to(torch.complex64), full, maps, mask)
