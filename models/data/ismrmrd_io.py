"""Read ISMRMRD raw HDF5 files into arrays, without Gadgetron.

The numeric reading layer under the offline chain, the CLI and the tests. It
returns the parsed XML header, the noise-scan samples and, per slice, the
k-space with zeros in the lines that were not acquired, in our layout:

  noise       ``[C, n]`` complex64 (all ``ACQ_IS_NOISE_MEASUREMENT`` samples)
  k-space     ``[C, RO, E1]`` complex64; ``RO`` = readout samples (the encoded
              matrix, e.g. ``2H`` with readout oversampling, or ``H`` after
              :func:`remove_readout_oversampling`), ``E1`` = phase-encode lines
              (the ``W`` axis of :mod:`models.mri.fft`)
  masks       ``[E1]`` bool

Acquisitions flagged ``ACQ_IS_PARALLEL_CALIBRATION`` go to the reference
(calibration) array only; ``ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING`` to both
the imaging k-space and the reference, as Gadgetron's ``BucketToBuffer`` sorts
them into its data and reference buffers. A line acquired more than once
(averages) is averaged.

Format: ISMRMRD 1.x HDF5 (``/dataset/xml`` and ``/dataset/data``; see
ismrmrd.readthedocs.io). The header is parsed with the pinned ``ismrmrd``
package's ``ismrmrd.xsd`` classes.

Every problem with a file raises a :class:`models.errors.RawFileError` subclass
naming the file and the field, acquisition, slice or line concerned.
"""

import logging
import os
from typing import List, NamedTuple, Optional, Tuple

import h5py
import ismrmrd
import numpy as np
import torch

from models.errors import (IncompleteSliceError, NonFiniteRawDataError, RawFileError, RawHeaderError,
                           ShapeError)
from models.mri.masks import acs_columns_from_mask

log = logging.getLogger(__name__)

DEFAULT_RECEIVER_NOISE_BANDWIDTH = 0.793  # Gadgetron's default when the header has none

#: Acquisitions that carry no imaging or calibration data for a 2D Cartesian recon.
_SKIPPED_FLAGS = (
    ismrmrd.ACQ_IS_NAVIGATION_DATA, ismrmrd.ACQ_IS_PHASECORR_DATA, ismrmrd.ACQ_IS_HPFEEDBACK_DATA,
    ismrmrd.ACQ_IS_DUMMYSCAN_DATA, ismrmrd.ACQ_IS_RTFEEDBACK_DATA, ismrmrd.ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA,
    ismrmrd.ACQ_IS_PHASE_STABILIZATION_REFERENCE, ismrmrd.ACQ_IS_PHASE_STABILIZATION,
)


def flag_bit(flag: int) -> int:
    """Bit mask of an ISMRMRD flag number (flags are 1-based bit positions)."""
    return 1 << (flag - 1)


def has_flag(flags: int, flag: int) -> bool:
    """Whether the 64-bit ``flags`` word has ISMRMRD flag ``flag`` set."""
    return bool(int(flags) & flag_bit(flag))


class SliceGeometry(NamedTuple):
    """Slice position and orientation in patient coordinates (mm, unit vectors), as in
    an ISMRMRD acquisition header."""

    position: Tuple[float, float, float]
    read_dir: Tuple[float, float, float]
    phase_dir: Tuple[float, float, float]
    slice_dir: Tuple[float, float, float]
    patient_table_position: Tuple[float, float, float]


class EncodingInfo(NamedTuple):
    """What the reader needs from the header's first ``<encoding>``.

    Matrices are ``(x, y, z)`` = (readout, phase encode 1, phase encode 2);
    fields of view in mm.
    """

    encoded_matrix: Tuple[int, int, int]
    recon_matrix: Tuple[int, int, int]
    encoded_fov_mm: Tuple[float, float, float]
    recon_fov_mm: Tuple[float, float, float]
    e1_limits: Tuple[int, int, int]  # (minimum, maximum, center) of kspace_encoding_step_1
    num_slices: int
    acceleration: int  # accelerationFactor.kspace_encoding_step_1, 1 without parallelImaging
    calibration_mode: Optional[str]  # "embedded", "separate", ... or None
    receiver_channels: Optional[int]
    receiver_noise_bandwidth: float

    @property
    def readout_oversampling(self) -> float:
        """Encoded over recon readout size (2.0 for a scanner's usual oversampling)."""
        return self.encoded_matrix[0] / self.recon_matrix[0]


class RawSlice(NamedTuple):
    """One slice (and repetition) of a raw file, in the layout of the module docstring."""

    slice: int
    repetition: int
    kspace: np.ndarray  # [C, RO, E1] complex64, imaging lines, zeros elsewhere
    mask: np.ndarray  # [E1] bool, imaging lines
    reference: np.ndarray  # [C, RO, E1] complex64, calibration lines, zeros elsewhere
    reference_mask: np.ndarray  # [E1] bool, calibration lines
    acs_range: Tuple[int, int]  # [start, stop) contiguous calibration block around the centre
    geometry: SliceGeometry  # from the acquisition nearest the k-space centre line

    def with_reference(self) -> Tuple[np.ndarray, np.ndarray]:
        """Imaging k-space with calibration-only lines filled in, and its mask ``[E1]``.

        Right for embedded (in-line) calibration, where the reference lines share the
        imaging contrast; for a separate reference scan they come from another
        acquisition, so use this only when that scan matches the imaging one.
        """
        extra = self.reference_mask & ~self.mask
        kspace = self.kspace.copy()
        kspace[:, :, extra] = self.reference[:, :, extra]
        return kspace, self.mask | self.reference_mask


class RawScan(NamedTuple):
    """A whole raw file: header, noise scan and slices (sorted by slice, repetition)."""

    path: str
    header: "ismrmrd.xsd.ismrmrdHeader"
    encoding: EncodingInfo
    noise: Optional[np.ndarray]  # [C, n] complex64 or None without a noise scan
    noise_sample_time_us: Optional[float]
    sample_time_us: float  # dwell time of the imaging acquisitions
    slices: List[RawSlice]
    readout_oversampling_removed: bool

    def kspace_stack(self) -> np.ndarray:
        """Imaging k-space of all slices, ``[S, C, RO, E1]``."""
        return np.stack([s.kspace for s in self.slices])


def parse_header(xml, source: str = "header") -> "ismrmrd.xsd.ismrmrdHeader":
    """Parse ISMRMRD XML (``bytes`` or ``str``) with the pinned ``ismrmrd.xsd`` classes.

    Unknown elements (a newer schema) are tolerated with a warning; malformed XML,
    or XML that is not an ``ismrmrdHeader``, raises :class:`RawHeaderError`.
    """
    if isinstance(xml, np.ndarray):
        xml = xml.item()
    if isinstance(xml, str):
        xml = xml.encode("utf-8")
    try:
        return ismrmrd.xsd.CreateFromDocument(xml)
    except Exception as strict_error:  # xsdata raises its own parser errors
        try:
            from xsdata.formats.dataclass.parsers import XmlParser
            from xsdata.formats.dataclass.parsers.config import ParserConfig
            header = XmlParser(config=ParserConfig(fail_on_unknown_properties=False)).from_bytes(
                xml, ismrmrd.xsd.ismrmrdHeader)
        except Exception as exc:
            raise RawHeaderError(f"{source}: XML header is not a readable ISMRMRD header ({exc})") from exc
        log.warning("%s: XML header has elements this ismrmrd version does not know (%s); ignored",
                    source, strict_error)
        return header


def encoding_info(header, source: str = "header") -> EncodingInfo:
    """Summarise the first ``<encoding>`` of a parsed header; raises :class:`RawHeaderError`
    naming the missing field."""
    if not header.encoding:
        raise RawHeaderError(f"{source}: XML header has no <encoding> section")
    enc = header.encoding[0]
    for name in ("encodedSpace", "reconSpace"):
        space = getattr(enc, name, None)
        if space is None or space.matrixSize is None:
            raise RawHeaderError(f"{source}: <encoding> lacks {name}/matrixSize")
    em, rm = enc.encodedSpace.matrixSize, enc.reconSpace.matrixSize
    encoded = (int(em.x), int(em.y), int(em.z))
    recon = (int(rm.x), int(rm.y), int(rm.z))
    if min(encoded) < 1 or min(recon) < 1:
        raise RawHeaderError(f"{source}: matrix sizes must be positive, encoded {encoded}, recon {recon}")
    ef, rf = enc.encodedSpace.fieldOfView_mm, enc.reconSpace.fieldOfView_mm
    limits = enc.encodingLimits
    e1 = limits.kspace_encoding_step_1 if limits is not None else None
    e1_limits = (int(e1.minimum), int(e1.maximum), int(e1.center)) if e1 is not None else (
        0, encoded[1] - 1, encoded[1] // 2)
    slices = limits.slice if limits is not None else None
    num_slices = int(slices.maximum) + 1 if slices is not None else 1
    acceleration, mode = 1, None
    if enc.parallelImaging is not None:
        acceleration = int(enc.parallelImaging.accelerationFactor.kspace_encoding_step_1)
        if enc.parallelImaging.calibrationMode is not None:
            mode = enc.parallelImaging.calibrationMode.value
    system = header.acquisitionSystemInformation
    channels = bandwidth = None
    if system is not None:
        channels = system.receiverChannels
        bandwidth = system.relativeReceiverNoiseBandwidth
    return EncodingInfo(encoded, recon, (float(ef.x), float(ef.y), float(ef.z)),
                        (float(rf.x), float(rf.y), float(rf.z)), e1_limits, num_slices, acceleration, mode,
                        None if channels is None else int(channels),
                        DEFAULT_RECEIVER_NOISE_BANDWIDTH if bandwidth is None else float(bandwidth))


def remove_readout_oversampling(kspace: np.ndarray, recon_size: int, axis: int = -2) -> np.ndarray:
    """Crop the readout field of view to ``recon_size`` samples, as Gadgetron's
    RemoveROOversamplingGadget does.

    Centred orthonormal inverse FFT along ``axis``, keep the central ``recon_size``
    pixels, FFT back. With this scaling the noise variance per sample is
    unchanged and an image padded to the oversampled FOV is recovered exactly.

    Args:
        kspace: complex array whose ``axis`` holds the readout samples (``[C, RO, E1]``
            by default axis -2).
        recon_size: readout samples to keep (``<=`` the current size).
    Returns:
        complex64 array with ``axis`` of size ``recon_size``.
    """
    kspace = np.asarray(kspace)
    size = kspace.shape[axis]
    if recon_size > size or recon_size < 1:
        raise ShapeError(f"remove_readout_oversampling: cannot crop {size} readout samples to {recon_size}")
    if recon_size == size:
        return kspace.astype(np.complex64, copy=False)
    image = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(kspace, axes=axis), axis=axis, norm="ortho"), axes=axis)
    start = size // 2 - recon_size // 2
    image = np.take(image, np.arange(start, start + recon_size), axis=axis)
    out = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(image, axes=axis), axis=axis, norm="ortho"), axes=axis)
    return out.astype(np.complex64)


def _open(path: str) -> h5py.File:
    if not os.path.exists(path):
        raise RawFileError(f"{path}: raw file does not exist")
    if not h5py.is_hdf5(path):
        raise RawFileError(f"{path}: not an HDF5 file (an ISMRMRD raw file is HDF5)")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise RawFileError(f"{path}: HDF5 file cannot be opened, truncated or corrupt ({exc})") from exc


def read_header(path: str, dataset: str = "dataset") -> "ismrmrd.xsd.ismrmrdHeader":
    """The parsed XML header of an ISMRMRD raw file."""
    with _open(path) as f:
        return parse_header(_read_xml(f, path, dataset), source=path)


def _read_xml(f: h5py.File, path: str, dataset: str):
    try:
        group = f[dataset]
        xml = group["xml"][0]
    except KeyError:
        raise RawFileError(f"{path}: not an ISMRMRD raw file (no /{dataset}/xml header)") from None
    except (OSError, IndexError) as exc:
        raise RawFileError(f"{path}: /{dataset}/xml cannot be read, truncated or corrupt ({exc})") from exc
    return xml


def _read_acquisitions(f: h5py.File, path: str, dataset: str) -> np.ndarray:
    if "data" not in f[dataset]:
        raise RawFileError(f"{path}: ISMRMRD file holds no acquisitions (/{dataset}/data missing)")
    try:
        return f[dataset]["data"][()]
    except (OSError, ValueError) as exc:
        raise RawFileError(f"{path}: /{dataset}/data cannot be read, truncated or corrupt ({exc})") from exc


def _acq_data(record, path: str, index: int) -> np.ndarray:
    head = record["head"]
    channels, samples = int(head["active_channels"]), int(head["number_of_samples"])
    flat = np.asarray(record["data"], dtype=np.float32)
    if flat.size != 2 * channels * samples:
        raise RawFileError(f"{path}: acquisition {index} holds {flat.size // 2} complex samples, header says "
                           f"{channels} channels x {samples} samples")
    return flat.view(np.complex64).reshape(channels, samples)


def _vec(values) -> Tuple[float, float, float]:
    return tuple(float(v) for v in values)


class _Group:
    """Accumulates the acquisitions of one (slice, repetition)."""

    def __init__(self, channels, readout, lines):
        self.data = np.zeros((channels, readout, lines), np.complex64)
        self.count = np.zeros(lines, np.int32)
        self.ref = np.zeros((channels, readout, lines), np.complex64)
        self.ref_count = np.zeros(lines, np.int32)
        self.closed = False
        self.geometry = None
        self.geometry_distance = None


def read_raw(path: str, remove_oversampling: bool = False, dataset: str = "dataset",
             require_slice_end: bool = True) -> RawScan:
    """Read an ISMRMRD raw file into a :class:`RawScan`.

    Args:
        path: the HDF5 file.
        remove_oversampling: crop the readout to the header's reconSpace matrix x
            (:func:`remove_readout_oversampling`); the noise samples are left as read.
        dataset: HDF5 group of the ISMRMRD dataset.
        require_slice_end: raise :class:`IncompleteSliceError` for a slice (and
            repetition) with no ``ACQ_LAST_IN_SLICE`` acquisition, i.e. one whose
            stream never completed (a Gadgetron chain triggering on that flag would
            never reconstruct it). ``False`` accepts files whose converter sets no
            slice flags.
    Raises:
        RawFileError: missing, non-HDF5, non-ISMRMRD, truncated or corrupt file.
        RawHeaderError: header unreadable, without encoding, without parallelImaging
            while calibration lines exist, or disagreeing with the acquisitions.
        NonFiniteRawDataError: NaN/Inf samples (names the acquisition, slice, line).
        IncompleteSliceError: see ``require_slice_end``.
    """
    path = str(path)
    with _open(path) as f:
        header = parse_header(_read_xml(f, path, dataset), source=path)
        records = _read_acquisitions(f, path, dataset)
    info = encoding_info(header, source=path)
    readout, lines = info.encoded_matrix[0], info.encoded_matrix[1]
    e1_center = info.e1_limits[2]

    noise, noise_dwell, sample_time, channels = [], None, None, None
    groups = {}
    skipped = 0
    for index, record in enumerate(records):
        head = record["head"]
        flags = int(head["flags"])
        if any(has_flag(flags, flag) for flag in _SKIPPED_FLAGS):
            skipped += 1
            continue
        data = _acq_data(record, path, index)
        if has_flag(flags, ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            bad = int((~np.isfinite(data)).sum())
            if bad:
                raise NonFiniteRawDataError(f"{path}: noise acquisition {index} holds {bad} NaN/Inf samples")
            if noise and data.shape[0] != noise[0].shape[0]:
                raise RawFileError(f"{path}: noise acquisition {index} has {data.shape[0]} channels, "
                                   f"earlier ones {noise[0].shape[0]}")
            noise.append(data)
            noise_dwell = noise_dwell if noise_dwell is not None else float(head["sample_time_us"])
            continue
        idx = head["idx"]
        slice_index, repetition = int(idx["slice"]), int(idx["repetition"])
        e1 = int(idx["kspace_encode_step_1"])
        where = f"{path}: acquisition {index} (slice {slice_index}, line {e1})"
        bad = int((~np.isfinite(data)).sum())
        if bad:
            raise NonFiniteRawDataError(f"{where} holds {bad} NaN/Inf samples")
        if channels is None:
            channels, sample_time = data.shape[0], float(head["sample_time_us"])
            if info.receiver_channels is not None and channels != info.receiver_channels:
                raise RawHeaderError(f"{where}: {channels} active channels but the header's "
                                     f"acquisitionSystemInformation/receiverChannels is {info.receiver_channels}")
        elif data.shape[0] != channels:
            raise RawFileError(f"{where}: {data.shape[0]} channels, earlier acquisitions {channels}")
        column = e1 - e1_center + lines // 2
        if not 0 <= column < lines:
            raise RawHeaderError(f"{where}: kspace_encode_step_1 {e1} lies outside the encoded matrix y = {lines} "
                                 f"(encodingLimits center {e1_center})")
        offset = readout // 2 - int(head["center_sample"])
        if offset < 0 or offset + data.shape[1] > readout:
            raise RawHeaderError(f"{where}: {data.shape[1]} samples with center_sample {int(head['center_sample'])} "
                                 f"do not fit the encoded matrix x = {readout}")
        is_cal = has_flag(flags, ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
        is_cal_imaging = has_flag(flags, ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
        if (is_cal or is_cal_imaging) and header.encoding[0].parallelImaging is None:
            raise RawHeaderError(f"{where} is a parallel-imaging calibration line but the header's <encoding> "
                                 f"has no <parallelImaging> (accelerationFactor, calibrationMode)")
        group = groups.get((slice_index, repetition))
        if group is None:
            group = groups[(slice_index, repetition)] = _Group(channels, readout, lines)
        elif group.closed:
            log.warning("%s arrives after ACQ_LAST_IN_SLICE of its slice", where)
        rows = slice(offset, offset + data.shape[1])
        if is_cal or is_cal_imaging:
            group.ref[:, rows, column] += data
            group.ref_count[column] += 1
        if not is_cal:
            group.data[:, rows, column] += data
            group.count[column] += 1
        distance = abs(column - lines // 2)
        if group.geometry is None or distance < group.geometry_distance:
            group.geometry_distance = distance
            group.geometry = SliceGeometry(_vec(head["position"]), _vec(head["read_dir"]), _vec(head["phase_dir"]),
                                           _vec(head["slice_dir"]), _vec(head["patient_table_position"]))
        if has_flag(flags, ismrmrd.ACQ_LAST_IN_SLICE):
            group.closed = True
    if skipped:
        log.info("%s: skipped %d navigator / phase-correction / feedback / dummy acquisitions", path, skipped)
    if not groups:
        raise RawFileError(f"{path}: no imaging or calibration acquisitions (only {len(noise)} noise acquisitions)")

    slices = []
    for (slice_index, repetition), group in sorted(groups.items()):
        if require_slice_end and not group.closed:
            got = int((group.count > 0).sum())
            raise IncompleteSliceError(
                f"{path}: slice {slice_index} (repetition {repetition}) never completes: no acquisition with "
                f"ACQ_LAST_IN_SLICE after {got} imaging lines (stream cut short?)")
        kspace, reference = _average(group.data, group.count), _average(group.ref, group.ref_count)
        if remove_oversampling:
            kspace = remove_readout_oversampling(kspace, info.recon_matrix[0])
            reference = remove_readout_oversampling(reference, info.recon_matrix[0])
        mask, ref_mask = group.count > 0, group.ref_count > 0
        acs = acs_columns_from_mask(torch.from_numpy(ref_mask if ref_mask.any() else mask))
        slices.append(RawSlice(slice_index, repetition, kspace, mask, reference, ref_mask,
                               (int(acs[0]), int(acs[1])), group.geometry))
    noise_array = np.concatenate(noise, axis=1) if noise else None
    if noise_array is not None and noise_array.shape[0] != channels:
        raise RawFileError(f"{path}: noise scan has {noise_array.shape[0]} channels, imaging data {channels}")
    log.info("%s: %d slice(s), %d channels, noise samples %s", path, len(slices), channels,
             None if noise_array is None else noise_array.shape[1])
    return RawScan(path, header, info, noise_array, noise_dwell, sample_time, slices, remove_oversampling)


def _average(data: np.ndarray, count: np.ndarray) -> np.ndarray:
    if count.max(initial=0) <= 1:
        return data
    return (data / np.maximum(count, 1)).astype(np.complex64)
