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
2. the ``ReconData`` itself, reference buffers included: in ``embedded``
   calibration mode the calibration-only lines are measured data that
   ``gadgets.dps_recon`` puts into its data term (:mod:`gadgets.buffers`).

With ``retrospective_acceleration = R > 1`` fully sampled slices are undersampled
first (equispaced, ``num_acs`` ACS lines, :mod:`models.mri.masks`); slices that
are already undersampled are left as they are. A slice that fails (no ACS,
NaN data, never completed) is logged with its cause and left out; the others go
on, and the lost slices are reported to Gadgetron in one ERROR message at the
end (an ERROR earlier would make Gadgetron stop feeding this node).
"""

import logging
import time

import ismrmrd

import numpy as np

from gadgetron.types.image_array import ImageArray
from gadgetron.types.recon_data import ReconData

from models.errors import MissingCalibrationError, NonFiniteDataError, ReconInputError

from gadgets import images
from gadgets.buffers import filled, slices_of
from gadgets.errors import GadgetError, HeaderError, IncompleteSliceError, SliceError
from gadgets.protocol import harden, report_error
from gadgets.settings import CoilSensitivitySettings

log = logging.getLogger(__name__)

ROLE = "CoilMap"


def require_encoding(header) -> None:
    if header is None or not getattr(header, "encoding", None):
        raise HeaderError("the ISMRMRD header has no <encoding> section")


def undersample_if_full(bit, settings: CoilSensitivitySettings) -> bool:
    """Apply the retrospective mask to a fully sampled bit in place; True if it did.

    "Fully sampled" and "removed" are read from and written to the line headers (the
    mask downstream is built from them): a removed line's data are zeroed and its header
    emptied; an end-of-slice flag on a removed line moves to the last kept line.
    """
    from models.mri.masks import create_mask_func

    headers = bit.data.headers  # [E1, E2, N, S, LOC]
    low, high = bit.data.sampling.sampling_limits[1].min, bit.data.sampling.sampling_limits[1].max
    acquired = np.array([[filled(h) for h in headers[e1].flat] for e1 in range(headers.shape[0])])  # [E1, rest]
    sampled = acquired.any(axis=1)
    if not sampled[low:high + 1].all():
        return False
    keep = create_mask_func("equispaced", settings.retrospective_acceleration,
                            settings.num_acs)(headers.shape[0]).mask.numpy()
    bit.data.data[:, ~keep] = 0
    last_flag = 1 << (ismrmrd.ACQ_LAST_IN_SLICE - 1)
    for rest in range(acquired.shape[1]):
        moved = False
        for e1 in np.flatnonzero(~keep):
            header = headers[e1].flat[rest]
            moved = moved or (filled(header) and bool(int(header.flags) & last_flag))
            headers[e1].flat[rest] = ismrmrd.AcquisitionHeader()
        kept = [e1 for e1 in np.flatnonzero(keep) if filled(headers[e1].flat[rest])]
        if moved and kept:
            headers[kept[-1]].flat[rest].flags = int(headers[kept[-1]].flat[rest].flags) | last_flag
    return True


def estimate_slice_maps(slice_data, settings: CoilSensitivitySettings) -> np.ndarray:
    """Maps ``[C, H, W]`` complex64 for one slice (raises on bad data)."""
    import torch

    from models.mri.coil_maps import estimate_coil_maps

    if settings.require_complete_slices and not slice_data.complete:
        raise IncompleteSliceError(f"the slice never completed: {slice_data.lines} lines arrived and none is "
                                   f"flagged ACQ_LAST_IN_SLICE (stream ended or lines were lost)")
    problem = slice_data.usable()
    if problem:
        raise NonFiniteDataError(problem)
    if settings.calibration == "reference" and slice_data.reference is None:
        raise MissingCalibrationError("calibration='reference' but no reference (ACS) buffer arrived")
    use_reference = slice_data.reference is not None and settings.calibration != "data"
    calib = slice_data.reference if use_reference else slice_data.kspace
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
    for slice_data in slices_of(bit, bit_index, header):
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
        connection.send(recon_data)  # with its reference buffer: embedded calibration lines are measured data
    if failures:
        report_error(connection, f"gadgets.coil_sensitivity: {len(failures)} slice(s) lost: "
                                 + "; ".join(str(f) for f in failures))
