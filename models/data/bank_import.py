"""Slice banks from measured data: fastMRI multi-coil brain files and ISMRMRD raw files.

The same training code then serves the project's simulated anatomy and users'
own fully sampled scans. Each slice becomes a complex image on the training
matrix: readout oversampling removed, the central ``matrix x matrix`` block of
k-space kept (a resolution change by k-space truncation, no interpolation),
coils combined with ESPIRiT maps from the central lines, and the prior's
intensity normalisation applied. Subjects are files (fastMRI files are one
subject each), so subject-level splits stay possible.
"""

import logging
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

import numpy as np
import torch

from models.data.fastmri import read_fastmri
from models.data.ismrmrd_io import read_raw, remove_readout_oversampling
from models.data.slice_bank import write_slice_bank
from models.errors import ReconInputError
from models.mri.coil_maps import estimate_coil_maps
from models.mri.fft import ifft2c
from models.prior.normalization import DEFAULT_NORMALIZATION

log = logging.getLogger(__name__)


def centre_kspace(kspace: torch.Tensor, matrix: int) -> torch.Tensor:
    """Central ``matrix x matrix`` block of k-space ``[..., H, W]`` (zero-padded if smaller)."""
    h, w = kspace.shape[-2:]
    out = torch.zeros(kspace.shape[:-2] + (matrix, matrix), dtype=kspace.dtype)
    sh, sw = min(h, matrix), min(w, matrix)
    src_h, src_w = h // 2 - sh // 2, w // 2 - sw // 2
    dst_h, dst_w = matrix // 2 - sh // 2, matrix // 2 - sw // 2
    out[..., dst_h:dst_h + sh, dst_w:dst_w + sw] = kspace[..., src_h:src_h + sh, src_w:src_w + sw]
    return out


def combined_images(kspace: np.ndarray, matrix: int, num_acs: int = 24) -> np.ndarray:
    """Fully sampled multi-coil k-space ``[S, C, H, W]`` -> normalised complex images ``[S, matrix, matrix]``."""
    k = centre_kspace(torch.from_numpy(np.ascontiguousarray(kspace)).to(torch.complex64), matrix)
    start = matrix // 2 - num_acs // 2
    maps = estimate_coil_maps(k, acs=(start, start + num_acs))
    images = (maps.conj() * ifft2c(k)).sum(dim=-3)
    return np.stack([(img * DEFAULT_NORMALIZATION.scale_from_image(img)).numpy() for img in images])


def images_from_fastmri(path, matrix: int) -> Tuple[np.ndarray, Optional[str]]:
    """Normalised complex images ``[S, matrix, matrix]`` of a fully sampled fastMRI file and its contrast."""
    volume = read_fastmri(str(path))
    if volume.mask is not None and not volume.mask.all():
        raise ReconInputError(f"{path}: undersampled fastMRI file (a 'mask' dataset); training needs full data")
    kspace = remove_readout_oversampling(volume.kspace, volume.encoding.recon_matrix[0], axis=-2)
    return combined_images(kspace, matrix), volume.contrast


def images_from_ismrmrd(path, matrix: int) -> np.ndarray:
    """Normalised complex images of every slice of a fully sampled ISMRMRD raw file."""
    scan = read_raw(str(path), remove_oversampling=True)
    pairs = [raw_slice.with_reference() for raw_slice in scan.slices]
    kspace = np.stack([k for k, _ in pairs])
    masks = np.stack([m for _, m in pairs])
    if not masks.all():
        raise ReconInputError(f"{path}: not fully sampled ({int((~masks).sum())} missing lines); "
                              "training needs full data")
    return combined_images(kspace, matrix)


def bank_from_files(out, fastmri: Iterable = (), ismrmrd: Iterable = (), contrast: Optional[str] = None,
                    matrix: int = 128) -> Path:
    """Write one bank from fastMRI and/or ISMRMRD files; ``contrast`` overrides the fastMRI attribute
    and is required for ISMRMRD files (their header does not name a contrast)."""
    rows: List[tuple] = []
    for path in fastmri:
        images, file_contrast = images_from_fastmri(path, matrix)
        name = contrast or file_contrast
        if name is None:
            raise ReconInputError(f"{path}: unknown fastMRI acquisition; pass the contrast explicitly")
        rows += [(img, name, Path(path).stem, "fastmri", k) for k, img in enumerate(images)]
    for path in ismrmrd:
        if contrast is None:
            raise ReconInputError("ISMRMRD raw files need the contrast named explicitly")
        rows += [(img, contrast, Path(path).stem, "ismrmrd", k)
                 for k, img in enumerate(images_from_ismrmrd(path, matrix))]
    if not rows:
        raise ReconInputError("no input files given")
    images, contrasts, subjects, sources, index = zip(*rows)
    log.info("imported %d slices from %d subjects", len(images), len(set(subjects)))
    return write_slice_bank(out, np.stack(images), contrasts, subjects, sources, index,
                            DEFAULT_NORMALIZATION.to_dict())
