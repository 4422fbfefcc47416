"""Reading slices out of Gadgetron's ``ReconData`` buffers (layout only, no numerics).

A ``ReconBuffer`` holds ``data [RO, E1, E2, CHA, N, S, LOC]`` and headers
``[E1, E2, N, S, LOC]``; unacquired lines are zeros with empty headers
(``number_of_samples == 0``). :func:`slices_of` yields one :class:`SliceData`
per image: k-space in the library's layout ``[C, H, W]`` (``H`` readout, ``W``
phase encode) with the **sampling mask built from the acquisition headers**
(which lines, which readout samples), never guessed from non-zero samples.

What is measured data of the slice:

- every line of the data buffer;
- in ``embedded`` calibration mode (Siemens "integrated" ACS) and ``interleaved``
  mode (calibration lines acquired within the same repetition, as ismrmrd-tools'
  generator writes them), also the calibration-only lines
  (``ACQ_IS_PARALLEL_CALIBRATION``), which Gadgetron keeps in the reference buffer
  only: they lie on the imaging grid of the same image and enter the data term.
  In ``separate`` / ``external`` mode they come from another acquisition (often
  another contrast or resolution) and do not;
- several averages of a line (``N_dimension = average``) are combined (mean);
- a line holding NaN/Inf is dropped from the mask (its E1 is reported).

2D only: ``E2`` must be 1.
"""

from typing import Iterator, NamedTuple, Optional, Tuple

import ismrmrd
import numpy as np

from gadgets.errors import HeaderError

IDX_NAMES = ("repetition", "contrast", "phase", "set", "average")
#: a slice with more than this fraction of its measured lines unusable (NaN/Inf) is not reconstructed
MAX_DROPPED_FRACTION = 0.25
#: calibration modes whose calibration-only lines are measured data of the image itself
CALIBRATION_IN_DATA = ("embedded", "interleaved")


class SliceData(NamedTuple):
    label: str  # "slice 3" / "slice 3 (repetition 1)"
    key: str  # pairs coil maps with their data between nodes
    index: tuple  # (n, s, loc) inside the buffer (the first average's n when averages were combined)
    kspace: np.ndarray  # [C, H, W] complex64: every measured sample of the slice, zeros elsewhere
    mask: np.ndarray  # [H, W] bool: where kspace was measured (from the headers)
    reference: Optional[np.ndarray]  # [C, H, W] complex64 calibration lines, or None
    centre: ismrmrd.AcquisitionHeader  # geometry source for the image
    lines: int  # phase-encode lines in the mask
    complete: bool  # a header carries ACQ_LAST_IN_SLICE
    calibration_lines: int = 0  # calibration-only lines taken into kspace (CALIBRATION_IN_DATA modes)
    averages: int = 1  # averages combined into kspace
    dropped_lines: Tuple[int, ...] = ()  # grid E1 of lines dropped for NaN/Inf samples

    def usable(self) -> Optional[str]:
        """Why this slice cannot be reconstructed, or None."""
        measured = self.lines + len(self.dropped_lines)
        if measured == 0:
            return "no measured phase-encode line"
        if self.lines == 0 or len(self.dropped_lines) > MAX_DROPPED_FRACTION * measured:
            return (f"{len(self.dropped_lines)} of {measured} measured lines hold NaN/Inf samples "
                    f"(E1 {list(self.dropped_lines)})")
        return None


def filled(header) -> bool:
    return int(header.number_of_samples) > 0


def _flag(header, flag) -> bool:
    return bool(int(header.flags) & (1 << (flag - 1)))


def slice_label(header) -> str:
    extra = [f"{name} {int(getattr(header.idx, name))}" for name in IDX_NAMES if int(getattr(header.idx, name))]
    return f"slice {int(header.idx.slice)}" + (f" ({', '.join(extra)})" if extra else "")


def slice_key(header, bit: int) -> str:
    idx = header.idx
    return (f"bit={bit};slice={idx.slice};rep={idx.repetition};con={idx.contrast};phs={idx.phase};"
            f"set={idx.set};ave={idx.average}")


def _image_key(header) -> tuple:
    """What makes an image: every index but the average (averages are combined)."""
    idx = header.idx
    return (int(idx.slice), int(idx.repetition), int(idx.contrast), int(idx.phase), int(idx.set))


def centre_header(headers: np.ndarray):
    """Header of the acquired line closest to the centre of ``headers [E1]`` (None if none)."""
    positions = [i for i in range(headers.shape[0]) if filled(headers[i])]
    if not positions:
        return None
    centre = headers.shape[0] // 2
    return headers[min(positions, key=lambda i: abs(i - centre))]


def readout_placement(header, buffer_samples: int, sampling_centre: int) -> Tuple[int, int]:
    """``(offset, samples)``: where BucketToBuffer puts a line's readout in a buffer of ``buffer_samples``.

    One rule for the buffer twin that places the samples and for the mask that
    says which are measured: a line that fills the buffer with its echo centred
    keeps its samples in place (``discard_pre`` / ``discard_post`` samples, e.g.
    the zeros that AsymmetricEchoAdjustRO padded, are not measured); any other line
    is aligned by its ``center_sample`` on the buffer's sampling centre.
    """
    count = int(header.number_of_samples)
    samples = count - int(header.discard_pre) - int(header.discard_post)
    if count == buffer_samples and int(header.center_sample) == count // 2:
        return int(header.discard_pre), samples
    return sampling_centre - int(header.center_sample), samples


def calibration_mode(header, espace: int = 0) -> Optional[str]:
    pi = header.encoding[espace].parallelImaging
    mode = getattr(pi, "calibrationMode", None) if pi is not None else None
    return getattr(mode, "value", mode)


def _line_extents(buffer, n, s, loc, e1_shift=0):
    """``{grid e1: (ro_start, ro_stop)}`` of the filled headers of one ``(n, s, loc)``."""
    samples = np.asarray(buffer.data).shape[0]
    centre = int(buffer.sampling.sampling_limits[0].center) if buffer.sampling is not None else samples // 2
    extents = {}
    for i in range(buffer.headers.shape[0]):
        header = buffer.headers[i, 0, n, s, loc]
        if filled(header):
            offset, count = readout_placement(header, samples, centre)
            extents[i + e1_shift] = (max(offset, 0), min(offset + count, samples))
    return extents


def _reference_lines(ref, index, shape, e1_offset):
    """Calibration lines on the data grid: ``(grid [C, H, W], {grid e1: (ro_start, ro_stop)})``."""
    n, s, loc = index
    data = np.asarray(ref.data)
    n, s, loc = min(n, data.shape[4] - 1), min(s, data.shape[5] - 1), min(loc, data.shape[6] - 1)
    block = data[:, :, 0, :, n, s, loc]  # [RO, E1ref, CHA]
    if block.shape[0] != shape[1]:
        raise HeaderError(f"reference readout has {block.shape[0]} samples but the data have {shape[1]}")
    grid = np.zeros(shape, dtype=np.complex64)  # placed by header index: right for every calibration mode
    centre = int(ref.sampling.sampling_limits[0].center) if ref.sampling is not None else block.shape[0] // 2
    extents = {}
    for i in range(block.shape[1]):
        header = ref.headers[i, 0, n, s, loc]
        if filled(header):
            e1 = int(header.idx.kspace_encode_step_1) + e1_offset
            if 0 <= e1 < shape[2]:
                grid[:, :, e1] = block[:, i, :].T
                offset, count = readout_placement(header, block.shape[0], centre)
                extents[e1] = (max(offset, 0), min(offset + count, block.shape[0]))
    return grid, extents


def _combine(parts, shape):
    """Mean over averages of measured samples: ``(kspace, mask)``."""
    total = np.zeros(shape, dtype=np.complex64)
    count = np.zeros(shape[1:], dtype=np.int32)
    for kspace, mask in parts:
        total += kspace * mask
        count += mask
    return (total / np.maximum(count, 1)).astype(np.complex64), count > 0


def slices_of(bit, bit_index: int, header=None) -> Iterator[SliceData]:
    """Slices of one ``ReconBit``; ``header`` (the ISMRMRD header) gives the grid offset and calibration mode."""
    from models.mri.masks import mask_from_acquisitions

    data = np.asarray(bit.data.data)
    if data.ndim != 7:
        raise HeaderError(f"ReconData buffer must be 7D [RO, E1, E2, CHA, N, S, LOC], got shape {data.shape}")
    if data.shape[2] != 1:
        raise HeaderError(f"3D encoding (E2 = {data.shape[2]}) is not supported; 2D slices only")
    offset = e1_offset(header) if header is not None else 0
    merge_calibration = header is not None and calibration_mode(header) in CALIBRATION_IN_DATA
    headers = bit.data.headers
    groups = {}  # image key -> [(n, s, loc, centre header)], averages of one image together
    for n, s, loc in np.ndindex(*data.shape[4:]):
        centre = centre_header(headers[:, 0, n, s, loc])
        if centre is not None:
            groups.setdefault((s, loc) + _image_key(centre), []).append((n, s, loc, centre))
    for members in groups.values():
        n0, s, loc, centre = members[0]
        shape = (data.shape[3], data.shape[0], data.shape[1])
        parts, complete = [], False
        for n, _, _, _ in members:
            kspace = np.ascontiguousarray(data[:, :, 0, :, n, s, loc].transpose(2, 0, 1)).astype(np.complex64)
            extents = _line_extents(bit.data, n, s, loc)
            mask = mask_from_acquisitions(shape[1:], [(e1, a, b) for e1, (a, b) in extents.items()])
            parts.append((kspace, mask))
            complete = complete or any(_flag(h, ismrmrd.ACQ_LAST_IN_SLICE)
                                       for h in headers[:, 0, n, s, loc] if filled(h))
        kspace, mask = _combine(parts, shape) if len(parts) > 1 else parts[0]
        reference, calibration_lines = None, 0
        if bit.ref is not None:
            refs = [_reference_lines(bit.ref, (n, s, loc), shape, offset) for n, _, _, _ in members]
            ref_extents = {e1: extent for _, extents in refs for e1, extent in extents.items()}
            if len(refs) > 1:  # averages of the calibration lines, combined as the data are
                reference, _ = _combine([(grid, mask_from_acquisitions(shape[1:], [(e1, a, b) for e1, (a, b)
                                                                                    in extents.items()]))
                                         for grid, extents in refs], shape)
            else:
                reference = refs[0][0]
            if merge_calibration:
                extra = [e1 for e1 in ref_extents if not mask[:, e1].any()]
                kspace = kspace.copy()
                for e1 in extra:
                    start, stop = ref_extents[e1]
                    kspace[:, :, e1] = reference[:, :, e1]
                    mask[start:stop, e1] = True
                calibration_lines = len(extra)
        measured = mask.any(axis=0)
        bad = measured & ~np.isfinite(kspace).all(axis=(0, 1))
        dropped = tuple(int(e1) for e1 in np.flatnonzero(bad))
        if dropped:
            kspace = kspace.copy()
            kspace[:, :, bad] = 0
            mask[:, bad] = False
        if reference is not None:
            reference = np.where(np.isfinite(reference), reference, 0).astype(np.complex64)
        yield SliceData(
            label=slice_label(centre), key=slice_key(centre, bit_index), index=(n0, s, loc), kspace=kspace,
            mask=mask, reference=reference, centre=centre, lines=int(mask.any(axis=0).sum()), complete=complete,
            calibration_lines=calibration_lines, averages=len(parts), dropped_lines=dropped)


def e1_offset(header, espace: int = 0) -> int:
    """``matrix_y / 2 - encodingLimits.kspace_encoding_step_1.center`` (0 if limits are missing)."""
    encoding = header.encoding[espace]
    limits = encoding.encodingLimits
    e1 = getattr(limits, "kspace_encoding_step_1", None) if limits is not None else None
    return encoding.encodedSpace.matrixSize.y // 2 - e1.center if e1 is not None else 0
