"""NIfTI export of reconstructed ISMRMRD images (optional; needs ``nibabel``, in the ``data`` extra).

The volume is the magnitude images stacked by slice; the affine follows the
ISMRMRD image geometry (``position`` = centre of the image, ``read_dir`` along
x, ``phase_dir`` along y, slice spacing from consecutive positions), converted
from the scanner's LPS patient coordinates to NIfTI's RAS.
"""

from pathlib import Path

import numpy as np

from gadgets.errors import GadgetError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def nifti_affine(images) -> np.ndarray:
    """4x4 voxel -> RAS (mm) affine of a stack of ``ismrmrd.Image`` (one slice each, sorted)."""
    first = images[0]
    ny, nx = np.asarray(first.data).shape[-2:]  # ISMRMRD image data are [channels, z, y, x]
    fov = [float(v) for v in first.field_of_view]
    dx, dy = fov[0] / nx, fov[1] / ny
    read, phase = np.asarray(first.read_dir, float), np.asarray(first.phase_dir, float)
    if len(images) > 1:
        step = np.asarray(images[1].position, float) - np.asarray(first.position, float)
    else:
        step = np.asarray(first.slice_dir, float) * (fov[2] if fov[2] > 0 else 1.0)
    corner = np.asarray(first.position, float) - (nx / 2) * dx * read - (ny / 2) * dy * phase
    lps = np.column_stack([dx * read, dy * phase, step, corner])
    affine = np.eye(4)
    affine[:3, :] = LPS_TO_RAS @ lps
    return affine


def write_nifti(path, images) -> Path:
    """Write magnitude ``images`` (list of ``ismrmrd.Image``, sorted by slice) as one NIfTI volume."""
    try:
        import nibabel
    except ImportError:
        raise GadgetError("NIfTI output needs nibabel: pip install 'dps-gadgetron[data]'") from None
    if not images:
        raise GadgetError("no images to write as NIfTI")
    images = sorted(images, key=lambda im: int(im.slice))
    volume = np.stack([np.asarray(im.data[0, 0], dtype=np.float32) for im in images])  # [z, y, x]
    nibabel.save(nibabel.Nifti1Image(volume.transpose(2, 1, 0), nifti_affine(images)), str(path))
    return Path(path)
