"""Python twin of Gadgetron's ``BucketToBufferGadget``: buckets -> ``ReconData``.

Per bucket, acquisitions are grouped by the key ``(average, slice, contrast,
phase, repetition, set, segment)`` with the ``N_dimension`` / ``S_dimension``
entries cleared (and ``slice`` cleared unless ``split_slices``, ``segment``
when ``ignore_segment``); each group becomes one ``ReconData`` whose bits are
the encoding spaces. A bit's data buffer is ``[RO, E1, E2, CHA, N, S, LOC]``
complex64 (zeros where nothing was acquired) with headers ``[E1, E2, N, S, LOC]``
and a ``SamplingDescription``; its reference buffer holds the calibration lines.

Placement follows Gadgetron: E1 of data (and of ``embedded`` reference data)
is shifted so that the encoding-limits centre lands on ``matrix_y / 2``;
``separate`` / ``external`` reference buffers only span the reference lines.
Reference lines without a ``parallelImaging`` header section are an error (as
they are in Gadgetron).
"""

import logging

import ismrmrd
import numpy as np

from gadgetron.types.recon_data import ReconBit, ReconBuffer, ReconData, SamplingDescription

from gadgets.buffers import readout_placement
from gadgets.errors import ChainConfigError, HeaderError

log = logging.getLogger(__name__)

KEY_FIELDS = ("average", "slice", "contrast", "phase", "repetition", "set", "segment")
DIMENSIONS = ("", "none", "average", "contrast", "phase", "repetition", "set", "segment", "slice")


def _value(enum_or_str):
    return getattr(enum_or_str, "value", enum_or_str)


def _limit(limits, name):
    return getattr(limits, name, None) if limits is not None else None


class BucketToBuffer:
    name = "BucketToBufferGadget"
    PROPERTIES = ("N_dimension", "S_dimension", "split_slices", "ignore_segment", "verbose")

    def __init__(self, header, props=None):
        props = props or {}
        if not header.encoding:
            raise HeaderError("BucketToBuffer: the ISMRMRD header has no <encoding> section")
        self.header = header
        self.n_dim = props.get("N_dimension", "").strip().lower()
        self.s_dim = props.get("S_dimension", "").strip().lower()
        for name, value in (("N_dimension", self.n_dim), ("S_dimension", self.s_dim)):
            if value not in DIMENSIONS:
                raise ChainConfigError(f"BucketToBufferGadget: {name}={value!r} is not one of {DIMENSIONS[1:]}")
        self.split_slices = props.get("split_slices", "false").strip().lower() in ("true", "1", "yes")
        self.ignore_segment = props.get("ignore_segment", "false").strip().lower() in ("true", "1", "yes")

    # ------------------------------------------------------------------ keys and sizes
    def key(self, acq):
        key = {name: int(getattr(acq.idx, name)) for name in KEY_FIELDS}
        for dim in (self.n_dim, self.s_dim):
            if dim in key and dim != "slice":
                key[dim] = 0
        if not self.split_slices:
            key["slice"] = 0
        if self.ignore_segment:
            key["segment"] = 0
        return tuple(key[name] for name in KEY_FIELDS)

    @staticmethod
    def _size(dimension, stats):
        if dimension in ("", "none"):
            return 1
        values = getattr(stats, dimension)
        return max(values) - min(values) + 1

    def _encoding(self, espace):
        if espace >= len(self.header.encoding):
            raise HeaderError(f"acquisition refers to encoding space {espace} but the header has "
                              f"{len(self.header.encoding)}")
        return self.header.encoding[espace]

    @staticmethod
    def _mode(encoding):
        pi = encoding.parallelImaging
        return _value(pi.calibrationMode) if pi is not None and pi.calibrationMode is not None else None

    def _sizes(self, acq, encoding, stats, forref):
        pi = encoding.parallelImaging
        limits = encoding.encodingLimits
        matrix = encoding.encodedSpace.matrixSize
        separate = forref and self._mode(encoding) in ("separate", "external")
        if pi is not None:
            ne0 = acq.number_of_samples
        else:
            ne0 = acq.number_of_samples - acq.discard_pre - acq.discard_post

        def along(step, matrix_size, stat_values):
            lim = _limit(limits, step)
            if pi is not None:
                return (max(stat_values) - min(stat_values) + 1) if separate else matrix_size
            return (lim.maximum - lim.minimum + 1) if lim is not None else matrix_size

        ne1 = along("kspace_encoding_step_1", matrix.y, stats.kspace_encode_step_1)
        ne2 = along("kspace_encoding_step_2", matrix.z, stats.kspace_encode_step_2)
        if self.split_slices:
            nloc = 1
        else:
            lim = _limit(limits, "slice")
            nloc = (lim.maximum - lim.minimum + 1) if lim is not None else 1
            nloc = min(nloc, max(stats.slice) - min(stats.slice) + 1)
        return (ne0, ne1, ne2, acq.active_channels, self._size(self.n_dim, stats),
                self._size(self.s_dim, stats), nloc)

    def _offsets(self, encoding):
        limits = encoding.encodingLimits
        matrix = encoding.encodedSpace.matrixSize
        e1 = _limit(limits, "kspace_encoding_step_1")
        e2 = _limit(limits, "kspace_encoding_step_2")
        off1 = matrix.y // 2 - e1.center if e1 is not None else 0
        off2 = matrix.z // 2 - e2.center if (e2 is not None and matrix.z > 1) else 0
        return off1, off2

    def sampling(self, encoding, acq, forref) -> SamplingDescription:
        enc, rec = encoding.encodedSpace, encoding.reconSpace
        s = SamplingDescription()
        s.encoded_FOV[:] = (rec.fieldOfView_mm.x, enc.fieldOfView_mm.y, enc.fieldOfView_mm.z)
        s.encoded_matrix[:] = (rec.matrixSize.x, enc.matrixSize.y, enc.matrixSize.z)
        s.recon_FOV[:] = (rec.fieldOfView_mm.x, rec.fieldOfView_mm.y, rec.fieldOfView_mm.z)
        s.recon_matrix[:] = (rec.matrixSize.x, rec.matrixSize.y, rec.matrixSize.z)
        s.sampling_limits[0].min = acq.discard_pre
        s.sampling_limits[0].max = acq.number_of_samples - acq.discard_post - 1
        s.sampling_limits[0].center = acq.number_of_samples // 2
        limits = encoding.encodingLimits
        e1 = _limit(limits, "kspace_encoding_step_1")
        if e1 is None:
            raise HeaderError("header <encodingLimits> lacks kspace_encoding_step_1 (needed to place lines)")
        e2 = _limit(limits, "kspace_encoding_step_2")
        shift = (not forref) or self._mode(encoding) == "embedded"
        off1, off2 = self._offsets(encoding) if shift else (0, 0)
        s.sampling_limits[1].min = e1.minimum + off1
        s.sampling_limits[1].max = e1.maximum + off1
        s.sampling_limits[1].center = s.encoded_matrix[1] // 2 if shift else e1.center
        if e2 is not None:
            s.sampling_limits[2].min = e2.minimum + off2
            s.sampling_limits[2].max = e2.maximum + off2
            s.sampling_limits[2].center = s.encoded_matrix[2] // 2 if shift else e2.center
        return s

    # ------------------------------------------------------------------ filling
    def _new_buffer(self, acq, encoding, stats, forref) -> ReconBuffer:
        shape = self._sizes(acq, encoding, stats, forref)
        data = np.zeros(shape, dtype=np.complex64, order="F")
        headers = np.empty(shape[1:3] + shape[4:], dtype=object)
        for index in np.ndindex(headers.shape):
            headers[index] = ismrmrd.AcquisitionHeader()
        return ReconBuffer(data, None, None, headers, self.sampling(encoding, acq, forref))

    def _dim_index(self, dimension, acq, size):
        if dimension in ("", "none", "slice"):
            return 0
        return min(int(getattr(acq.idx, dimension)), size - 1)

    def add(self, buffer: ReconBuffer, acq, encoding, stats, forref):
        ne0, ne1, ne2, nch, nn, ns, nloc = buffer.data.shape
        loc = 0 if (self.split_slices or nloc == 1) else int(acq.idx.slice)
        offset, npts = readout_placement(acq, ne0, buffer.sampling.sampling_limits[0].center)
        if offset < 0 or ne0 - npts - offset < 0:
            raise HeaderError(f"slice {acq.idx.slice} line {acq.idx.kspace_encode_step_1}: readout of {npts} "
                              f"samples (centre {acq.center_sample}) does not fit a buffer of {ne0}")
        e1, e2 = int(acq.idx.kspace_encode_step_1), int(acq.idx.kspace_encode_step_2)
        mode = self._mode(encoding)
        if (not forref) or mode == "embedded":
            off1, off2 = self._offsets(encoding)
            e1, e2 = e1 + off1, e2 + off2
        if forref and mode in ("separate", "external"):
            e1 -= min(stats.kspace_encode_step_1)
            e2 -= min(stats.kspace_encode_step_2)
        if not (0 <= e1 < ne1 and 0 <= e2 < ne2):
            raise HeaderError(f"slice {acq.idx.slice}: acquisition with kspace_encode_step_1 "
                              f"{acq.idx.kspace_encode_step_1} (step_2 {acq.idx.kspace_encode_step_2}) lands at "
                              f"({e1}, {e2}), outside the {ne1} x {ne2} encoded matrix: the header's "
                              f"encodingLimits / matrixSize disagree with the acquisitions")
        n = self._dim_index(self.n_dim, acq, nn)
        s = self._dim_index(self.s_dim, acq, ns)
        samples = np.asarray(acq.data)[:, acq.discard_pre:acq.discard_pre + npts]
        if samples.shape[0] != nch:
            raise HeaderError(f"slice {acq.idx.slice}: acquisition with {samples.shape[0]} coils in a "
                              f"{nch}-coil buffer")
        buffer.data[offset:offset + npts, e1, e2, :, n, s, loc] = samples.T
        buffer.headers[e1, e2, n, s, loc] = acq.getHead()

    def process(self, items):
        for bucket in items:
            if not hasattr(bucket, "refstats"):
                yield bucket
                continue
            groups = {}
            for forref, acquisitions, allstats in ((True, bucket.ref, bucket.refstats),
                                                    (False, bucket.data, bucket.datastats)):
                for acq in acquisitions:
                    espace = int(acq.encoding_space_ref)
                    encoding = self._encoding(espace)
                    if forref and encoding.parallelImaging is None:
                        raise HeaderError(
                            f"slice {acq.idx.slice}: calibration lines (ACQ_IS_PARALLEL_CALIBRATION...) but the "
                            f"header's encoding has no <parallelImaging> section (accelerationFactor, "
                            f"calibrationMode)")
                    bits = groups.setdefault(self.key(acq), {})
                    slots = bits.setdefault(espace, {"data": None, "ref": None})
                    slot = "ref" if forref else "data"
                    if slots[slot] is None:
                        slots[slot] = self._new_buffer(acq, encoding, allstats[espace], forref)
                    self.add(slots[slot], acq, encoding, allstats[espace], forref)
            for key in sorted(groups):
                bits = []
                for espace in range(max(groups[key]) + 1):
                    slots = groups[key].get(espace, {"data": None, "ref": None})
                    if slots["data"] is None:  # only reference lines in this group: nothing to reconstruct
                        log.debug("group %s encoding %d holds reference data only", key, espace)
                        continue
                    bits.append(ReconBit(slots["data"], slots["ref"]))
                if bits:
                    yield ReconData(bits)
