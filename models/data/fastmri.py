"""Reader for fastMRI multi-coil brain HDF5 files.

A fastMRI file (Zbontar et al., "fastMRI: An Open Dataset and Benchmarks for
Accelerated MRI", arXiv:1811.08839; file layout per the dataset's documentation)
holds at its root:

  ``kspace``              complex64 ``[S, C, H, W]``: slices, coils, readout
                          (2x oversampled, e.g. 640), phase encode (e.g. 320);
                          already our layout (:mod:`models.mri.fft`).
  ``ismrmrd_header``      the ISMRMRD XML header of the scan (a string).
  ``reconstruction_rss``  float32 ``[S, h, w]`` root-sum-of-squares image cropped
                          to the reconSpace matrix (absent in test files).
  ``mask``                bool/float ``[W]`` sampled lines (test/challenge files).
  attrs                   ``acquisition`` (``AXFLAIR``, ``AXT2``, ``AXT1``,
                          ``AXT1PRE``, ``AXT1POST``), ``patient_id``, ``max``,
                          ``norm``, and in test files ``acceleration``,
                          ``num_low_frequency``.

The reader returns the k-space unchanged plus the parsed header, and turns each
slice into the :class:`models.data.ismrmrd_io.RawSlice` the ISMRMRD reader
returns, so a user with fastMRI data goes through the same code.
"""

import logging
import os
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import h5py
import numpy as np
import torch

from models.data.ismrmrd_io import EncodingInfo, RawSlice, SliceGeometry, encoding_info, parse_header
from models.errors import NonFiniteRawDataError, RawFileError, ShapeError
from models.mri.fft import ifft2c_np
from models.mri.masks import acs_columns_from_mask

log = logging.getLogger(__name__)

#: fastMRI ``acquisition`` attribute -> contrast name used by our data pipeline.
# fastMRI brain "acquisition" attribute -> our contrast names (models.data.contrasts.CONTRASTS)
FASTMRI_CONTRASTS = {"AXFLAIR": "FLAIR", "AXT2": "T2", "AXT1": "T1", "AXT1PRE": "T1", "AXT1POST": "T1post"}

_NO_GEOMETRY = SliceGeometry((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0))


class FastMRIVolume(NamedTuple):
    """One fastMRI file (NumPy arrays, complex64 / float32)."""

    path: str
    kspace: np.ndarray  # [S, C, H, W] complex64, H readout (oversampled), W phase encode
    header: "object"  # ismrmrd.xsd.ismrmrdHeader
    encoding: EncodingInfo
    acquisition: Optional[str]  # e.g. "AXFLAIR"
    reconstruction_rss: Optional[np.ndarray]  # [S, h, w] float32
    mask: Optional[np.ndarray]  # [W] bool, sampled lines (None: fully sampled)
    acquired_columns: Tuple[int, int]  # [left, right): columns inside the encoding limits
    attrs: Dict[str, object]
    slice_indices: Tuple[int, ...]  # which slices of the file are in ``kspace``

    @property
    def contrast(self) -> Optional[str]:
        """Our contrast name for the file's ``acquisition`` (None if unknown)."""
        return FASTMRI_CONTRASTS.get(self.acquisition or "")

    def sampling_mask(self) -> np.ndarray:
        """``[W]`` bool: the file's mask, or the columns holding non-zero data."""
        if self.mask is not None:
            return self.mask
        return np.abs(self.kspace).sum(axis=(0, 1, 2)) > 0

    def to_raw_slices(self) -> List[RawSlice]:
        """Each slice as a :class:`RawSlice` (readout still oversampled); the reference
        holds the contiguous fully sampled centre block (calibration lines)."""
        mask = self.sampling_mask()
        start, stop = (int(v) for v in acs_columns_from_mask(torch.from_numpy(mask)))
        ref_mask = np.zeros_like(mask)
        ref_mask[start:stop] = True
        out = []
        for index, kspace in zip(self.slice_indices, self.kspace):
            kspace = kspace * mask  # zeros in the lines that were not acquired
            out.append(RawSlice(int(index), 0, kspace.astype(np.complex64), mask.copy(),
                                (kspace * ref_mask).astype(np.complex64), ref_mask, (start, stop), _NO_GEOMETRY))
        return out


def _attr(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_fastmri(path: str, slices: Optional[Sequence[int]] = None) -> FastMRIVolume:
    """Read a fastMRI multi-coil file.

    Args:
        path: the ``.h5`` file.
        slices: slice indices to read (default all); reading a few saves memory.
    Raises:
        RawFileError: missing / non-HDF5 / truncated file, no ``kspace`` or
            ``ismrmrd_header``, k-space that is not complex ``[S, C, H, W]``, or
            slice indices out of range.
        RawHeaderError: an unreadable header or one without encoding.
        NonFiniteRawDataError: NaN/Inf in the k-space (names the slice).
    """
    path = str(path)
    if not os.path.exists(path):
        raise RawFileError(f"{path}: fastMRI file does not exist")
    if not h5py.is_hdf5(path):
        raise RawFileError(f"{path}: not an HDF5 file (fastMRI files are HDF5)")
    try:
        with h5py.File(path, "r") as f:
            for name in ("kspace", "ismrmrd_header"):
                if name not in f:
                    raise RawFileError(f"{path}: not a fastMRI file (no '{name}' dataset)")
            dset = f["kspace"]
            if dset.ndim != 4 or not np.issubdtype(dset.dtype, np.complexfloating):
                raise RawFileError(f"{path}: 'kspace' must be complex [slices, coils, H, W], "
                                   f"got {dset.dtype} of shape {dset.shape}")
            total = dset.shape[0]
            index = list(range(total)) if slices is None else [int(s) for s in slices]
            if not index or any(not 0 <= s < total for s in index):
                raise RawFileError(f"{path}: slices {index} out of range, the file has {total}")
            kspace = np.stack([dset[s] for s in index]).astype(np.complex64)
            xml = f["ismrmrd_header"][()]
            rss = None
            if "reconstruction_rss" in f:
                rss = np.stack([f["reconstruction_rss"][s] for s in index]).astype(np.float32)
            mask = np.asarray(f["mask"][()]).astype(bool).reshape(-1) if "mask" in f else None
            attrs = {key: _attr(value) for key, value in f.attrs.items()}
    except OSError as exc:
        raise RawFileError(f"{path}: HDF5 file cannot be read, truncated or corrupt ({exc})") from exc
    header = parse_header(xml, source=path)
    info = encoding_info(header, source=path)
    for s, volume in zip(index, kspace):
        bad = int((~np.isfinite(volume)).sum())
        if bad:
            raise NonFiniteRawDataError(f"{path}: slice {s} of 'kspace' holds {bad} NaN/Inf values")
    width = kspace.shape[-1]
    if mask is not None and mask.size != width:
        raise RawFileError(f"{path}: 'mask' has {mask.size} lines but 'kspace' has {width} phase-encode columns")
    if info.encoded_matrix[1] != width:
        log.warning("%s: header encoded matrix y = %d differs from k-space width %d", path,
                    info.encoded_matrix[1], width)
    # fastMRI convention: columns outside the encoding limits are zero padding.
    left = info.encoded_matrix[1] // 2 - info.e1_limits[2]
    acquired = (max(left, 0), min(left + info.e1_limits[1] + 1, width))
    acquisition = attrs.get("acquisition")
    log.info("%s: %s, %d slice(s), %d coils, k-space %s", path, acquisition, len(index), kspace.shape[1],
             tuple(kspace.shape[-2:]))
    return FastMRIVolume(path, kspace, header, info, acquisition, rss, mask, acquired, attrs, tuple(index))


def center_crop(image: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """Central ``shape = (h, w)`` crop of the last two axes."""
    height, width = image.shape[-2:]
    h, w = shape
    if h > height or w > width:
        raise ShapeError(f"center_crop: cannot crop {(height, width)} to {(h, w)}")
    top, left = (height - h) // 2, (width - w) // 2
    return image[..., top:top + h, left:left + w]


def rss_images(kspace: np.ndarray, crop: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Root-sum-of-squares coil combination: ``[..., C, H, W]`` k-space -> ``[..., h, w]``
    float32 magnitude, centre-cropped to ``crop`` (e.g. the reconSpace matrix), as
    fastMRI's ``reconstruction_rss``."""
    image = np.sqrt((np.abs(ifft2c_np(kspace)) ** 2).sum(axis=-3))
    if crop is not None:
        image = center_crop(image, crop)
    return image.astype(np.float32)


def coil_combined_images(volume: FastMRIVolume, maps: Optional[np.ndarray] = None) -> np.ndarray:
    """Images of a volume on the reconSpace matrix.

    Without ``maps``: :func:`rss_images` (float32 ``[S, h, w]``). With ``maps``
    ``[S, C, H, W]`` on the k-space grid: the complex combination
    ``sum_c conj(S_c) x_c`` (complex64 ``[S, h, w]``).
    """
    crop = (volume.encoding.recon_matrix[0], volume.encoding.recon_matrix[1])
    crop = (min(crop[0], volume.kspace.shape[-2]), min(crop[1], volume.kspace.shape[-1]))
    if maps is None:
        return rss_images(volume.kspace, crop)
    maps = np.asarray(maps)
    if maps.shape != volume.kspace.shape:
        raise ShapeError(f"coil_combined_images: maps {maps.shape} must match k-space {volume.kspace.shape}")
    combined = (maps.conj() * ifft2c_np(volume.kspace)).sum(axis=-3)
    return center_crop(combined, crop).astype(np.complex64)
