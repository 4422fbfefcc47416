"""Gadget ``gadgets.coil_sensitivity``: coil maps from the ACS of each slice.

Input: ``ReconData`` from Gadgetron's BucketToBufferGadget (anything else passes
on untouched). Per slice the maps are estimated (ESPIRiT or Walsh, property
``method``) from the reference buffer (separate calibration scans, or in-line
ACS sent with ``ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING``) or, when there is no
reference buffer, from the fully sampled centre of the data itself.

Output, per ``ReconBit``, two messages that a real Gadgetron can deserialize and
re-serialize between two external nodes (both are among the types its external
channel reads by default):

1. an ``ImageArray`` holding the maps, ``data [RO, E1, 1, CHA, N, S, LOC]``
   complex64 (the layout of the k-space buffer), one image header per
   ``(N, S, LOC)`` with the slice's geometry, and meta ``GADGETRON_DataRole =
   CoilMap``, ``DPS_MapKey`` (pairs maps with data), ``DPS_MapStatus``;
2. the ``ReconData`` bit itself without its reference buffer (no longer needed).

With ``retrospective_acceleration = R > 1`` fully sampled slices are undersampled
first (equispaced, ``num_acs`` ACS lines, :mod:`models.mri.masks`); slices that
are already undersampled are left as they are. A slice that fails (no ACS,
NaN data, never completed) is logged with its cause and left out; the others go
on, and the lost slices are reported to Gadgetron in one ERROR message at the
end (an ERROR earlier would make Gadgetron stop feeding this node).
"""

import logging
import time

import numpy as np

from gadgetron.types.image_array import ImageArray
from gadgetron.types.recon_data import ReconData

from models.errors import MissingCalibrationError, ReconInputError
from models.mri.checks import require_finite

from gadgets import images
from gadgets.buffers import e1_offset, slices_of
from gadgets.errors import GadgetError, HeaderError, IncompleteSliceError, SliceError
from gadgets.protocol import harden, report_error
from gadgets.settings import CoilSensitivitySettings

log = logging.getLogger(__name__)

ROLE = "CoilMap"


def require_encoding(header) -> None:
    if header is None or not getattr(header, "encoding", None):
        raise HeaderError("the ISMRMRD header has no <encoding> section")


def undersample_if_full(bit, settings: CoilSensitivitySettings) -> bool:
    """Apply the retrospective mask to a fully sampled bit in place; True if it did."""
    from models.mri.masks import create_mask_func

    data = bit.data.data
    acquired = np.abs(data).reshape(data.shape[0], data.shape[1], -1).max(axis=(0, 2)) > 0
    low, high = bit.data.sampling.sampling_limits[1].min, bit.data.sampling.sampling_limits[1].max
    if not acquired[low:high + 1].all():
        return False
    mask = create_mask_func("equispaced", settings.retrospective_acceleration, settings.num_acs)(data.shape[1]).mask
    data[:, ~mask.numpy()] = 0  # headers stay: they still carry geometry and the end-of-slice flag
    return True


def estimate_slice_maps(slice_data, settings: CoilSensitivitySettings) -> np.ndarray:
    """Maps ``[C, H, W]`` complex64 for one slice (raises on bad data)."""
    import torch

    from models.mri.coil_maps import estimate_coil_maps

    if settings.require_complete_slices and not slice_data.complete:
        raise IncompleteSliceError(f"the slice never completed: {slice_data.lines} lines arrived and none is "
                                   f"flagged ACQ_LAST_IN_SLICE (stream ended or lines were lost)")
    if settings.calibration == "reference" and slice_data.reference is None:
        raise MissingCalibrationError("calibration='reference' but no reference (ACS) buffer arrived")
    use_reference = slice_data.reference is not None and settings.calibration != "data"
    calib = slice_data.reference if use_reference else slice_data.kspace
    require_finite("k-space", slice_data.kspace)
    maps = estimate_coil_maps(torch.from_numpy(calib), method=settings.method)
    return maps.numpy().astype(np.complex64)


def maps_array(bit, per_slice, header, settings) -> ImageArray:
    """ImageArray of the maps of one bit; ``per_slice`` maps ``(n, s, loc)`` -> (slice, maps or exception)."""
    shape = bit.data.data.shape
    data = np.zeros(shape, dtype=np.complex64, order="F")
    headers = np.empty(shape[4:], dtype=object)
    meta = []
    for index in np.ndindex(*shape[4:]):
        entry = per_slice.get(index)
        if entry is None:
            headers[index] = images.image_header(bit.data.headers.flat[0], header, shape[:2], image_type=5,
                                                 series_index=0, image_index=0, data_type=7, channels=shape[3])
            meta.append(images.make_meta(ROLE, ["empty"], ["DPS"], "CoilMap",
                                         extra={"DPS_MapStatus": "absent"}).serialize())
            continue
        slice_data, result = entry
        ok = not isinstance(result, BaseException)
        if ok:
            data[:, :, 0, :, index[0], index[1], index[2]] = result.transpose(1, 2, 0)
        headers[index] = images.image_header(slice_data.centre, header, shape[:2], image_type=5, series_index=0,
                                             image_index=0, data_type=7, channels=shape[3])
        meta.append(images.make_meta(
            ROLE, [f"coil maps ({settings.method})"], ["DPS", "CoilSensitivity"], "CoilMap",
            extra={"DPS_MapKey": slice_data.key, "DPS_MapStatus": "ok" if ok else f"failed: {result}",
                   "DPS_CoilMapMethod": settings.method, "DPS_SliceLabel": slice_data.label}).serialize())
    return ImageArray(data=data, headers=headers, meta=meta)


def process_bit(bit, bit_index, header, settings, failures):
    """Estimate maps for every slice of a bit; returns (ImageArray, number of good slices)."""
    if settings.retrospective_acceleration > 1:
        bit.data.data = np.array(bit.data.data, dtype=np.complex64, order="F", copy=True)
        if undersample_if_full(bit, settings):
            log.info("bit %d: retrospectively undersampled to R=%d with %d ACS lines", bit_index,
                     settings.retrospective_acceleration, settings.num_acs)
        else:
            log.info("bit %d: data already undersampled; retrospective_acceleration ignored", bit_index)
    per_slice, good = {}, 0
    for slice_data in slices_of(bit, bit_index, e1_offset(header)):
        start = time.perf_counter()
        try:
            result = estimate_slice_maps(slice_data, settings)
            good += 1
            log.info("%s: coil maps (%s) in %.2f s", slice_data.label, settings.method, time.perf_counter() - start)
        except (ReconInputError, GadgetError) as exc:
            failure = SliceError(slice_data.label, exc)
            log.error("coil maps failed for %s", failure)
            failures.append(failure)
            result = exc
        per_slice[slice_data.index] = (slice_data, result)
    return maps_array(bit, per_slice, header, settings), good


def coil_sensitivity(connection):
    """Gadgetron entry point (``<execute name="gadgets.coil_sensitivity" target="coil_sensitivity">``)."""
    harden(connection)
    try:
        settings = CoilSensitivitySettings.from_config(connection.config)
        require_encoding(connection.header)
    except GadgetError as exc:
        report_error(connection, f"gadgets.coil_sensitivity: {exc}")
        raise
    log.info("coil_sensitivity: method=%s calibration=%s", settings.method, settings.calibration)
    connection.filter(ReconData)
    failures = []
    for recon_data in connection:
        results = [process_bit(bit, b, connection.header, settings, failures) for b, bit in enumerate(recon_data.bits)]
        if not any(good for _, good in results):
            continue
        for maps, _ in results:
            connection.send(maps)
        connection.send(ReconData([type(bit)(bit.data, None) for bit in recon_data.bits]))
    if failures:
        report_error(connection, f"gadgets.coil_sensitivity: {len(failures)} slice(s) lost: "
                                 + "; ".join(str(f) for f in failures))
