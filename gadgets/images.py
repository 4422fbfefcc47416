"""ISMRMRD image headers and meta for what our gadgets send (magnitude, std, coil maps).

Geometry comes from the slice's centre acquisition (position, read/phase/slice
directions, patient table position, slice and other indices, time stamps, via
``ImageHeader.from_acquisition``); the field of view from the header's recon
space. An image ``[H, W]`` (``H`` readout, ``W`` phase encode) is stored with
``matrix_size = (H, W, 1)``, i.e. x = readout, y = phase encode, as Gadgetron
stores images. Meta keys follow Gadgetron's conventions: ``GADGETRON_DataRole``,
``GADGETRON_ImageComment``, ``ImageProcessingHistory``, ``SeriesDescription``,
``WindowCenter`` / ``WindowWidth``. Every ImageArray meta entry is non-empty
(Gadgetron cannot read an empty one).
"""

from typing import Dict, Optional, Sequence

import ismrmrd
import numpy as np

USHORT_MAX = 4095  # 12-bit range DICOM viewers expect from Gadgetron (FloatToUShort's default maximum)


def field_of_view(header, espace: int = 0):
    fov = header.encoding[espace].reconSpace.fieldOfView_mm
    return (float(fov.x), float(fov.y), float(fov.z))


def image_header(acquisition_header, header, matrix: Sequence[int], *, image_type: int, series_index: int,
                 image_index: int, data_type: int, channels: int = 1) -> ismrmrd.ImageHeader:
    """Image header with the centre acquisition's geometry and indices."""
    head = ismrmrd.ImageHeader.from_acquisition(acquisition_header)
    head.version = 1
    head.data_type = data_type
    head.image_type = image_type
    head.image_series_index = series_index
    head.image_index = image_index
    head.channels = channels
    head.matrix_size[:] = (int(matrix[0]), int(matrix[1]), 1)
    head.field_of_view[:] = field_of_view(header)
    return head


def display_window(magnitude: np.ndarray):
    """``(centre, width)`` spanning 0 .. 99th percentile of the magnitude."""
    top = float(np.percentile(magnitude, 99.0)) if magnitude.size else 0.0
    top = top if top > 0 else float(magnitude.max(initial=0.0)) or 1.0
    return top / 2.0, top


def make_meta(role: str, comment: Sequence[str], history: Sequence[str], series: str,
              window=None, extra: Optional[Dict[str, object]] = None) -> ismrmrd.Meta:
    meta = ismrmrd.Meta()
    meta["GADGETRON_DataRole"] = role
    meta["GADGETRON_ImageComment"] = list(comment)
    meta["ImageProcessingHistory"] = list(history)
    meta["SeriesDescription"] = series
    if window is not None:
        meta["WindowCenter"] = f"{window[0]:.6g}"
        meta["WindowWidth"] = f"{window[1]:.6g}"
    for key, value in (extra or {}).items():
        meta[key] = value if isinstance(value, (list, tuple)) else str(value)
    return meta


def scalar_image(array: np.ndarray, acquisition_header, header, *, series_index: int, image_index: int,
                 meta: ismrmrd.Meta, ushort: bool = False, scale: Optional[float] = None) -> ismrmrd.Image:
    """A real image from ``array [H, W]``: float32, or uint16 scaled so 99.9% of it fits 0..4095.

    With ``ushort``, ``scale`` (intensity units -> counts) is chosen from the array
    unless given, clipped, and recorded in the meta as ``DPS_IntensityScale``.
    """
    array = np.asarray(array, dtype=np.float32)
    if ushort:
        if scale is None:
            top = float(np.percentile(array, 99.9)) if array.size else 0.0
            scale = USHORT_MAX / top if top > 0 else 1.0
        pixels = np.clip(np.rint(array * scale), 0, USHORT_MAX).astype(np.uint16)
        meta["DPS_IntensityScale"] = f"{scale:.8g}"
        data_type = ismrmrd.DATATYPE_USHORT
    else:
        pixels = array
        data_type = ismrmrd.DATATYPE_FLOAT
    head = image_header(acquisition_header, header, pixels.shape, image_type=ismrmrd.IMTYPE_MAGNITUDE,
                        series_index=series_index, image_index=image_index, data_type=data_type)
    # ismrmrd stores [channels, z, y, x]: y = phase encode (W), x = readout (H).
    data = np.ascontiguousarray(pixels.T)[None, None]
    image = ismrmrd.Image(head=head, data=data)
    image.meta = meta
    return image
