"""Reading slices out of Gadgetron's ``ReconData`` buffers (layout only, no numerics).

A ``ReconBuffer`` holds ``data [RO, E1, E2, CHA, N, S, LOC]`` and headers
``[E1, E2, N, S, LOC]``; unacquired lines are zeros with zeroed headers.
:func:`slices_of` yields one :class:`SliceData` per ``(N, S, LOC)`` with k-space
in the library's layout ``[C, H, W]`` (``H`` readout, ``W`` phase encode) and,
when the bit carries a reference buffer, the calibration lines on the same grid.
2D only: ``E2`` must be 1.
"""

from typing import Iterator, NamedTuple, Optional

import ismrmrd
import numpy as np

from gadgets.errors import HeaderError

IDX_NAMES = ("repetition", "contrast", "phase", "set", "average")


class SliceData(NamedTuple):
    label: str  # "slice 3" / "slice 3 (repetition 1)"
    key: str  # pairs coil maps with their data between nodes
    index: tuple  # (n, s, loc) inside the buffer
    kspace: np.ndarray  # [C, H, W] complex64
    reference: Optional[np.ndarray]  # [C, H, W] complex64 calibration lines, or None
    centre: ismrmrd.AcquisitionHeader  # geometry source for the image
    lines: int  # phase-encode lines holding data
    complete: bool  # a header carries ACQ_LAST_IN_SLICE


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


def centre_header(headers: np.ndarray):
    """Header of the acquired line closest to the centre of ``headers [E1]`` (None if none)."""
    positions = [i for i in range(headers.shape[0]) if filled(headers[i])]
    if not positions:
        return None
    centre = headers.shape[0] // 2
    return headers[min(positions, key=lambda i: abs(i - centre))]


def _reference_on_grid(ref, index, shape, e1_offset) -> Optional[np.ndarray]:
    n, s, loc = index
    data = np.asarray(ref.data)
    n, s, loc = min(n, data.shape[4] - 1), min(s, data.shape[5] - 1), min(loc, data.shape[6] - 1)
    block = data[:, :, 0, :, n, s, loc]  # [RO, E1ref, CHA]
    if block.shape[0] != shape[1]:
        raise HeaderError(f"reference readout has {block.shape[0]} samples but the data have {shape[1]}")
    grid = np.zeros(shape, dtype=np.complex64)  # placed by header index: right for every calibration mode
    for i in range(block.shape[1]):
        header = ref.headers[i, 0, n, s, loc]
        if filled(header):
            e1 = int(header.idx.kspace_encode_step_1) + e1_offset
            if 0 <= e1 < shape[2]:
                grid[:, :, e1] = block[:, i, :].T
    return grid


def slices_of(bit, bit_index: int, e1_offset: int = 0) -> Iterator[SliceData]:
    """Slices of one ``ReconBit``; ``e1_offset`` maps header E1 indices to the data grid."""
    data = np.asarray(bit.data.data)
    if data.ndim != 7:
        raise HeaderError(f"ReconData buffer must be 7D [RO, E1, E2, CHA, N, S, LOC], got shape {data.shape}")
    if data.shape[2] != 1:
        raise HeaderError(f"3D encoding (E2 = {data.shape[2]}) is not supported; 2D slices only")
    headers = bit.data.headers
    for n, s, loc in np.ndindex(*data.shape[4:]):
        line_headers = headers[:, 0, n, s, loc]
        centre = centre_header(line_headers)
        if centre is None:
            continue
        kspace = np.ascontiguousarray(data[:, :, 0, :, n, s, loc].transpose(2, 0, 1)).astype(np.complex64)
        reference = None
        if bit.ref is not None:
            reference = _reference_on_grid(bit.ref, (n, s, loc), kspace.shape, e1_offset)
        yield SliceData(
            label=slice_label(centre), key=slice_key(centre, bit_index), index=(n, s, loc), kspace=kspace,
            reference=reference, centre=centre, lines=int((np.abs(kspace).max(axis=(0, 1)) > 0).sum()),
            complete=any(_flag(h, ismrmrd.ACQ_LAST_IN_SLICE) for h in line_headers if filled(h)))


def e1_offset(header, espace: int = 0) -> int:
    """``matrix_y / 2 - encodingLimits.kspace_encoding_step_1.center`` (0 if limits are missing)."""
    encoding = header.encoding[espace]
    limits = encoding.encodingLimits
    e1 = getattr(limits, "kspace_encoding_step_1", None) if limits is not None else None
    return encoding.encodedSpace.matrixSize.y // 2 - e1.center if e1 is not None else 0
