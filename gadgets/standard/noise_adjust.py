"""Python twin of Gadgetron's ``NoiseAdjustGadget`` (pre-whitening with the noise scan).

Acquisitions flagged ``ACQ_IS_NOISE_MEASUREMENT`` are consumed: their samples
accumulate into the coil noise covariance. At the first imaging acquisition the
whitening matrix ``W = L^{-1}`` (``Psi = L L^H``) is built once, scaled as
Gadgetron scales it, ``sqrt(2 * acq_dwell / noise_dwell * receiver_bandwidth)``
(``relativeReceiverNoiseBandwidth`` from the header, default 0.793), and applied
to every following acquisition. A noise scan without ``sample_time_us`` takes the
property ``noise_dwell_time_us_preset``; when only one of the two dwell times is
known the scan cannot be scaled and is an error naming the acquisition (both
unknown: assumed equal, with a warning). Without a
noise scan, data pass unchanged. Stored noise dependencies (``workingDirectory``
files of earlier scans) are not read: replay uses the noise in the file.

An acquisition with NaN/Inf cannot be whitened; it passes unchanged with a
warning naming slice and line, so the slice fails later with a clear error
while the other slices are still reconstructed. Numerics: :mod:`models.mri.prewhiten`.
"""

import logging
import math

import ismrmrd
import numpy as np

from models.errors import NonFiniteDataError, ReconInputError
from models.mri.prewhiten import noise_covariance, prewhiten, whitening_matrix

from gadgets.errors import HeaderError

log = logging.getLogger(__name__)

DEFAULT_RECEIVER_BANDWIDTH = 0.793


def receiver_bandwidth(header) -> float:
    info = getattr(header, "acquisitionSystemInformation", None)
    value = getattr(info, "relativeReceiverNoiseBandwidth", None) if info is not None else None
    return float(value) if value else DEFAULT_RECEIVER_BANDWIDTH


def bandwidth_scale(acq_dwell_us: float, noise_dwell_us: float, bandwidth: float) -> float:
    """Gadgetron's whitener scale; 1 when either dwell time is unknown (0)."""
    if acq_dwell_us == 0 or noise_dwell_us == 0:
        return 1.0
    return math.sqrt(2.0 * acq_dwell_us / noise_dwell_us * bandwidth)


class NoiseAdjust:
    """``NoiseAdjustGadget``: properties ``perform_noise_adjust`` (default true)."""

    name = "NoiseAdjustGadget"
    PROPERTIES = ("perform_noise_adjust", "noise_dwell_time_us_preset", "workingDirectory",
                  "noise_dependency_prefix", "pass_nonconformant_data", "scale_only_channels_by_name")

    def __init__(self, header, props=None):
        props = props or {}
        self.enabled = props.get("perform_noise_adjust", "true").strip().lower() not in ("false", "0", "no")
        self.bandwidth = receiver_bandwidth(header)
        try:
            self.noise_dwell_preset = float(props.get("noise_dwell_time_us_preset", "0") or 0)
        except ValueError:
            raise HeaderError(f"NoiseAdjust: noise_dwell_time_us_preset={props['noise_dwell_time_us_preset']!r} "
                              f"is not a number") from None
        self.noise_chunks = []
        self.noise_dwell_us = 0.0
        self.noise_index = None  # scan_counter of the first noise acquisition (named in errors)
        self.whitener = None

    def _build(self, acq_dwell_us):
        noise_dwell = self.noise_dwell_us or self.noise_dwell_preset
        if (noise_dwell == 0) != (acq_dwell_us == 0):
            which = (f"the noise acquisition (scan_counter {self.noise_index})" if noise_dwell == 0
                     else "the first imaging acquisition")
            raise HeaderError(f"NoiseAdjust: {which} has no sample_time_us (0) while the other has "
                              f"{max(noise_dwell, acq_dwell_us):g} us: the noise scan cannot be scaled to the data "
                              f"(set the chain property noise_dwell_time_us_preset if the dwell time is known)")
        if noise_dwell == 0:
            log.warning("no sample_time_us on noise or imaging acquisitions: assuming they share one dwell time")
        self.noise_dwell_us = noise_dwell
        noise = np.concatenate(self.noise_chunks, axis=1)
        try:
            covariance = noise_covariance(noise)
            self.whitener = whitening_matrix(covariance) * bandwidth_scale(acq_dwell_us, self.noise_dwell_us,
                                                                          self.bandwidth)
        except ReconInputError as exc:
            raise HeaderError(f"noise scan unusable for pre-whitening: {exc}") from None
        log.info("noise pre-whitening from %d samples x %d coils (noise dwell %.3g us, data dwell %.3g us)",
                 noise.shape[1], noise.shape[0], self.noise_dwell_us, acq_dwell_us)
        self.noise_chunks = []

    def process(self, items):
        for acq in items:
            if not isinstance(acq, ismrmrd.Acquisition):
                yield acq
                continue
            if acq.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
                if self.enabled:
                    self.noise_chunks.append(np.asarray(acq.data))
                    self.noise_dwell_us = float(acq.sample_time_us)
                    if self.noise_index is None:
                        self.noise_index = int(acq.scan_counter)
                continue
            if not self.enabled:
                yield acq
                continue
            if self.whitener is None and self.noise_chunks:
                self._build(float(acq.sample_time_us))
            if self.whitener is not None:
                if self.whitener.shape[0] != acq.data.shape[0]:
                    raise HeaderError(f"noise scan has {self.whitener.shape[0]} coils but data have "
                                      f"{acq.data.shape[0]} (slice {acq.idx.slice})")
                try:
                    acq.data[:] = prewhiten(acq.data, self.whitener)
                except NonFiniteDataError:
                    log.warning("slice %d line %d: NaN/Inf samples, passed on without pre-whitening",
                                acq.idx.slice, acq.idx.kspace_encode_step_1)
            yield acq
