"""Gadget ``gadgets.dps_recon``: coil maps + k-space -> ISMRMRD images via :func:`models.reconstruction.reconstruct`.

Input: what ``gadgets.coil_sensitivity`` sends, i.e. ``ImageArray`` messages
with ``GADGETRON_DataRole = CoilMap`` followed by the ``ReconData`` they belong
to (paired by ``DPS_MapKey``); anything else passes on. Properties: see
:class:`gadgets.settings.DpsReconSettings` (the chain fields of
:class:`models.recon_settings.ReconSettings`, then checkpoint, device, batching, output).

Slices are reconstructed in batches (all slices of the scan on a GPU with
``batch_slices = auto``, one at a time on the CPU); a batch that fails is
retried slice by slice so one bad slice never costs the others. Output per
slice: a magnitude image (float32, or uint16 scaled for DICOM with ``ushort``)
in series ``series_index`` and, with several posterior samples, the posterior
standard deviation in series ``series_index + 1``; geometry from the slice's
centre acquisition, meta as in :mod:`gadgets.images`. Problems that concern the
whole scan (unknown contrast, missing checkpoint, header without what is needed)
are reported at once; lost slices are reported in one ERROR message at the end.
"""

import logging
import threading
import time
from typing import List, NamedTuple, Optional

import ismrmrd
import numpy as np

from gadgetron.types.image_array import ImageArray
from gadgetron.types.recon_data import ReconData

from models.errors import NonFiniteDataError, ReconInputError

from gadgets import images
from gadgets.buffers import SliceData, slices_of
from gadgets.coil_sensitivity import ROLE as MAP_ROLE, require_encoding
from gadgets.errors import GadgetError, HeaderError, MissingCoilMapsError, PeerClosedError, SliceError
from gadgets.protocol import harden, peer_closed, report_error
from gadgets.settings import DpsReconSettings
from gadgets.standard.noise_adjust import receiver_bandwidth

log = logging.getLogger(__name__)

#: Scans share the device: reconstructions of concurrent connections queue on this lock.
DEVICE_LOCK = threading.Lock()


class Job(NamedTuple):
    slice: SliceData
    maps: np.ndarray  # [C, H, W]


def header_acceleration(header) -> Optional[float]:
    pi = header.encoding[0].parallelImaging
    if pi is None or pi.accelerationFactor is None:
        return None
    return float(pi.accelerationFactor.kspace_encoding_step_1)


class Reconstructor:
    """Everything fixed for a scan: settings, device, prior, acceleration and zeta."""

    def __init__(self, settings: DpsReconSettings, header, prior=None):
        from models.prior.shipped import load_cached
        from models.devices import resolve_device

        self.settings = settings
        self.device = resolve_device(settings.device)
        chain = settings.recon
        from_header = header_acceleration(header)
        if chain.acceleration is None:  # the chain said "header"
            if from_header is None and chain.method == "dps" and chain.zeta is None:
                raise HeaderError("acceleration='header' but the header has no <parallelImaging> "
                                  "accelerationFactor; set the chain property 'acceleration' or 'zeta'")
            self.acceleration = from_header
        else:
            self.acceleration = chain.acceleration
            if from_header not in (None, 1.0) and from_header != self.acceleration:
                log.warning("chain says R=%g but the header says R=%g; zeta follows the chain", self.acceleration,
                            from_header)
        #: what every slice of this scan is reconstructed with, zeta resolved once
        self.recon_settings = chain.with_changes(acceleration=self.acceleration).with_zeta_resolved()
        self.zeta = self.recon_settings.zeta if chain.method == "dps" else None
        self.prior = prior
        if chain.method == "dps" and prior is None:
            self.prior, _ = load_cached(settings.checkpoint_path(), self.device)
        if chain.method == "dps":
            vocabulary = getattr(self.prior, "vocabulary", None)
            if vocabulary is not None:
                vocabulary.index(chain.contrast)  # UnknownContrastError naming the known contrasts
            warn_if_pixels_outside_prior(self.prior, header)
        self.bandwidth = receiver_bandwidth(header)
        self.noise = None  # NoiseLevel of the scan, resolved on its first slice
        if settings.batch_slices is None:  # auto
            self.batch = 64 if self.device.type == "cuda" else 1
        else:
            self.batch = settings.batch_slices

    def noise_level(self, kspace, mask, averages: int = 1):
        """The scan's noise level per raw k-space sample (one for all its slices), from the property or the
        first slice (``averages``: how many averages its lines are the mean of)."""
        from models.mri.noise import NoiseLevel, resolve_noise_variance

        if self.noise is None:
            if self.settings.noise_variance is None:  # auto: per raw sample: undo the first slice's averaging
                noise = resolve_noise_variance(kspace[:1], mask[:1], self.bandwidth)
                self.noise = noise if noise.source == "prewhitened" else \
                    noise._replace(variance=noise.variance * averages)
            else:
                self.noise = NoiseLevel(float(self.settings.noise_variance), "given")
            log.info("k-space noise variance %.4g per sample (%s)", self.noise.variance, self.noise.source)
        return self.noise

    def describe(self) -> List[str]:
        s = self.recon_settings
        words = [s.method.upper() if s.method == "dps" else s.method]
        if s.method == "dps":
            words.append(f"sampler={s.sampler}")
        if self.acceleration is not None:
            words.append(f"R={self.acceleration:g}")
        if self.zeta is not None:
            words += [f"zeta={self.zeta:g}", f"steps={s.num_steps}", f"samples={s.num_samples}", f"seed={s.seed}"]
        words.append(f"contrast={s.contrast}")
        return words

    def run(self, jobs: List[Job]):
        """``(magnitude [B, H, W], std [B, H, W] or None)`` as numpy float32."""
        import torch

        from models.reconstruction import reconstruct

        kspace = torch.from_numpy(np.stack([j.slice.kspace for j in jobs])).to(self.device)
        maps = torch.from_numpy(np.stack([j.maps for j in jobs])).to(self.device)
        # the mask travels with the slice (built from the acquisition headers in gadgets.buffers)
        mask = torch.from_numpy(np.stack([j.slice.mask for j in jobs])).to(self.device, torch.float32)[:, None]
        settings = self.recon_settings
        if self.settings.noise_variance != "none":  # averaged lines: the noise variance of their mean
            averages = float(np.mean([j.slice.averages for j in jobs]))
            level = self.noise_level(kspace, mask, jobs[0].slice.averages)
            settings = settings.with_changes(noise_variance=level.variance / averages)
        with DEVICE_LOCK:
            out = reconstruct(kspace, maps, mask, settings, prior=self.prior)
        magnitude = out.image.abs().float().cpu().numpy()
        std = out.std.float().cpu().numpy() if out.std is not None else None
        return magnitude, std


#: a pixel this much outside the prior's trained pixel sizes is worth a warning (resampling in-plane by
#: a few percent changes little)
PIXEL_TOLERANCE = 0.05


def recon_pixel_mm(header) -> Optional[tuple]:
    """In-plane pixel size of the reconstructed images (mm, (x, y)), from the header's recon space."""
    try:
        space = header.encoding[0].reconSpace
        return (space.fieldOfView_mm.x / space.matrixSize.x, space.fieldOfView_mm.y / space.matrixSize.y)
    except (AttributeError, IndexError, TypeError, ZeroDivisionError):
        return None


def warn_if_pixels_outside_prior(prior, header) -> bool:
    """Warn (and say True) when the scan's pixels lie outside the pixel sizes the prior was trained on."""
    trained = getattr(prior, "pixel_range_mm", None)
    pixel = recon_pixel_mm(header)
    if not trained or pixel is None:
        return False
    low, high = trained
    outside = [p for p in pixel if p < low * (1 - PIXEL_TOLERANCE) or p > high * (1 + PIXEL_TOLERANCE)]
    if outside:
        log.warning("the scan's pixels are %.2f x %.2f mm, outside the %.2f-%.2f mm the prior was trained on: "
                    "expect it to serve this matrix worse (a prior trained with varied pixel sizes serves it)",
                    pixel[0], pixel[1], low, high)
    return bool(outside)


class ImageWriter:
    """Builds the scanner images of each reconstructed slice; counts image indices per series."""

    def __init__(self, settings: DpsReconSettings, header, description: List[str],
                 acceleration: Optional[float] = None):
        self.settings = settings
        self.header = header
        self.description = description
        recon = settings.recon
        self.series = f"{recon.method.upper()}" + (f"_R{acceleration:g}" if acceleration else "") + \
            f"_{recon.contrast}"
        self.counters = {}
        self.device = "cpu"

    def _next(self, series):
        self.counters[series] = self.counters.get(series, 0) + 1
        return self.counters[series]

    def images(self, job: Job, magnitude: np.ndarray, std: Optional[np.ndarray]):
        s = self.settings
        tag = self.series
        method = s.recon.method
        history = ["GADGETRON", "DPS" if method == "dps" else method.upper()]
        extra = {"DPS_SliceLabel": job.slice.label, "DPS_Lines": job.slice.lines, "DPS_Device": self.device,
                 "DPS_CalibrationLinesInData": job.slice.calibration_lines, "DPS_Averages": job.slice.averages}
        description = self.description
        if job.slice.dropped_lines:
            extra["DPS_DroppedLines"] = " ".join(str(e1) for e1 in job.slice.dropped_lines)
            description = description + [f"lines dropped (NaN/Inf): E1 {list(job.slice.dropped_lines)}"]
        meta = images.make_meta("Image", description, history, tag, images.display_window(magnitude), extra)
        out = [images.scalar_image(magnitude, job.slice.centre, self.header, series_index=s.series_index,
                                   image_index=self._next(s.series_index), meta=meta, ushort=s.ushort)]
        if std is not None and s.output_std:
            series = s.series_index + 1
            std_meta = images.make_meta("PosteriorStd", self.description + ["posterior std"], history,
                                        tag + "_STD", images.display_window(std), extra)
            scale = None
            if s.ushort:  # same counts per intensity unit as the magnitude
                scale = float(out[0].meta["DPS_IntensityScale"])
            out.append(images.scalar_image(std, job.slice.centre, self.header, series_index=series,
                                           image_index=self._next(series), meta=std_meta, ushort=s.ushort,
                                           scale=scale))
        return out


def is_coil_map(item) -> bool:
    if not isinstance(item, ImageArray) or not item.meta:
        return False
    return ismrmrd.Meta.deserialize(item.meta[0]).get("GADGETRON_DataRole") == MAP_ROLE


def unpack_maps(array: ImageArray, store: dict) -> None:
    """Put each slice's maps ``[C, H, W]`` (or its upstream failure text) into ``store`` by key."""
    data = np.asarray(array.data)
    for flat, index in enumerate(np.ndindex(*data.shape[4:])):
        meta = ismrmrd.Meta.deserialize(array.meta[flat])
        key, status = meta.get("DPS_MapKey"), meta.get("DPS_MapStatus", "ok")
        if key is None:
            continue
        if status != "ok":
            store[key] = status
            continue
        store[key] = np.ascontiguousarray(data[:, :, 0, :, index[0], index[1], index[2]].transpose(2, 0, 1))


class Session:
    """One scan through the gadget: pairs maps with data, batches, reconstructs, sends."""

    def __init__(self, connection, recon: Reconstructor):
        self.connection = connection
        self.recon = recon
        self.writer = ImageWriter(recon.settings, connection.header, recon.describe(), recon.acceleration)
        self.writer.device = str(recon.device)
        self.maps = {}
        self.pending: List[Job] = []
        self.failures: List[SliceError] = []
        self.done = 0

    def add(self, recon_data: ReconData):
        for bit_index, bit in enumerate(recon_data.bits):
            for slice_data in slices_of(bit, bit_index, self.connection.header):
                maps = self.maps.pop(slice_data.key, None)
                if isinstance(maps, str):  # failed upstream, already reported there
                    log.info("%s: skipped (coil maps %s)", slice_data.label, maps)
                    continue
                problem = slice_data.usable()
                if problem:
                    self.fail(slice_data, NonFiniteDataError(problem))
                    continue
                if slice_data.dropped_lines:
                    log.warning("%s: line(s) E1 %s hold NaN/Inf samples: dropped from the mask, the slice is "
                                "reconstructed from the other %d lines", slice_data.label,
                                list(slice_data.dropped_lines), slice_data.lines)
                log.info("%s: %d phase-encode lines in the data term (%d calibration-only, %d average(s)), "
                         "%d of %d k-space samples measured", slice_data.label, slice_data.lines,
                         slice_data.calibration_lines, slice_data.averages, int(slice_data.mask.sum()),
                         slice_data.mask.size)
                if maps is None:
                    self.fail(slice_data, MissingCoilMapsError(
                        "no coil maps arrived for this slice (is gadgets.coil_sensitivity before this node?)"))
                    continue
                self.pending.append(Job(slice_data, maps))
                if len(self.pending) >= self.recon.batch:
                    self.flush(mid_stream=True)

    def fail(self, slice_data, exc):
        failure = SliceError(slice_data.label, exc)
        log.error("reconstruction failed for %s", failure)
        self.failures.append(failure)

    def _send(self, jobs, magnitude, std):
        for i, job in enumerate(jobs):
            for image in self.writer.images(job, magnitude[i], None if std is None else std[i]):
                self.connection.send(image)
            self.done += 1

    def flush(self, mid_stream: bool = False):
        """Reconstruct and send the pending slices. ``mid_stream``: first check that the peer is still there
        (when Gadgetron dies or drops our socket mid-scan, the slices held here would be wasted work)."""
        jobs, self.pending = self.pending, []
        if mid_stream and peer_closed(self.connection):
            raise PeerClosedError(f"the peer closed the connection mid-scan: {len(jobs)} slice(s) "
                                  "held here abandoned, not reconstructed")
        groups = {}
        for job in jobs:
            groups.setdefault((job.slice.kspace.shape, job.maps.shape), []).append(job)
        for group in groups.values():
            try:
                start = time.perf_counter()
                magnitude, std = self.recon.run(group)
                log.info("%s: reconstructed in %.2f s", ", ".join(j.slice.label for j in group),
                         time.perf_counter() - start)
                self._send(group, magnitude, std)
            except (ReconInputError, GadgetError, ValueError) as exc:
                if len(group) == 1:
                    self.fail(group[0].slice, exc)
                    continue
                log.warning("batch of %d slices failed (%s); retrying one by one", len(group), exc)
                for job in group:
                    try:
                        magnitude, std = self.recon.run([job])
                        self._send([job], magnitude, std)
                    except (ReconInputError, GadgetError, ValueError) as single:
                        self.fail(job.slice, single)


def dps_recon(connection, prior=None):
    """Gadgetron entry point (``<execute name="gadgets.dps_recon" target="dps_recon">``).

    ``prior`` lets the resident server hand in an already loaded model.
    """
    harden(connection)
    start = time.perf_counter()
    try:
        settings = DpsReconSettings.from_config(connection.config)
        require_encoding(connection.header)
        recon = Reconstructor(settings, connection.header, prior=prior)
    except (GadgetError, ReconInputError) as exc:
        report_error(connection, f"gadgets.dps_recon: {type(exc).__name__}: {exc}")
        raise
    log.info("dps_recon: %s on %s, batches of %d", " ".join(recon.describe()), recon.device, recon.batch)
    session = Session(connection, recon)
    connection.filter(lambda item: isinstance(item, (ImageArray, ReconData)))
    try:
        for item in connection:
            if isinstance(item, ReconData):
                session.add(item)
            elif is_coil_map(item):
                unpack_maps(item, session.maps)
            else:
                connection.send(item)
    except PeerClosedError as exc:  # nobody will read what we send: stop, free the CPU for the next scan
        log.error("dps_recon: %s; %d slice(s) sent before", exc, session.done)
        raise
    session.flush()
    for key in session.maps:
        log.warning("coil maps %s arrived but no data for them", key)
    log.info("dps_recon: %d slice(s) in %.1f s on %s, %d lost", session.done, time.perf_counter() - start,
             recon.device, len(session.failures))
    if session.failures:
        report_error(connection, f"gadgets.dps_recon: {len(session.failures)} slice(s) lost: "
                                 + "; ".join(str(f) for f in session.failures))
    elif session.done == 0:  # a header and then nothing: upstream lost the scan (e.g. NoiseAdjust without storage)
        log.error("dps_recon: the stream closed without any slice to reconstruct")
        report_error(connection, "gadgets.dps_recon: no slice arrived (the stream held a header but no "
                                 "ReconData): check the gadgets before this one and Gadgetron's log")
    return session.done
