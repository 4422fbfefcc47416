"""Python twin of Gadgetron's ``AcquisitionAccumulateTriggerGadget``.

Acquisitions are sorted into buckets by ``sorting_dimension`` and all buckets
are sent on when ``trigger_dimension`` changes value (before the acquisition
that changed it) and at the end of the stream. Noise acquisitions are dropped.
Inside a bucket, ``ACQ_IS_PARALLEL_CALIBRATION`` lines go to the reference
list only, ``..._CALIBRATION_AND_IMAGING`` lines to both the reference and the
data list, phase-correction lines to neither data nor reference, everything
else to the data list; per-encoding-space statistics (the sets of indices seen)
travel with the bucket as in Gadgetron. Triggers ``n_acquisitions`` and
``parallel_calibration`` are not twinned (an error names them).
"""

import builtins
from dataclasses import dataclass, field

import ismrmrd

from gadgetron.types.acquisition_bucket import AcquisitionBucket

from gadgets.errors import ChainConfigError

INDEX_DIMENSIONS = ("kspace_encode_step_1", "kspace_encode_step_2", "average", "slice", "contrast", "phase",
                    "repetition", "set", "segment")
USER_DIMENSIONS = tuple(f"user_{i}" for i in range(8))
STAT_FIELDS = ("kspace_encode_step_1", "kspace_encode_step_2", "average", "slice", "contrast", "phase",
               "repetition", "set", "segment")


def index_of(acq, dimension: str) -> int:
    if dimension in ("", "none"):
        return 0
    if dimension in USER_DIMENSIONS:
        return int(acq.idx.user[int(dimension[-1])])
    return int(getattr(acq.idx, dimension))


@dataclass
class BucketStats:
    """Index values seen per dimension (Gadgetron's ``AcquisitionBucketStats``)."""

    kspace_encode_step_1: builtins.set = field(default_factory=builtins.set)
    kspace_encode_step_2: builtins.set = field(default_factory=builtins.set)
    average: builtins.set = field(default_factory=builtins.set)
    slice: builtins.set = field(default_factory=builtins.set)
    contrast: builtins.set = field(default_factory=builtins.set)
    phase: builtins.set = field(default_factory=builtins.set)
    repetition: builtins.set = field(default_factory=builtins.set)
    set: builtins.set = field(default_factory=builtins.set)  # noqa: A003 - ISMRMRD's name
    segment: builtins.set = field(default_factory=builtins.set)

    def add(self, acq):
        for name in STAT_FIELDS:
            getattr(self, name).add(int(getattr(acq.idx, name)))


def _stats_at(stats: list, espace: int) -> BucketStats:
    while len(stats) <= espace:
        stats.append(BucketStats())
    return stats[espace]


def add_to_bucket(bucket: AcquisitionBucket, acq: ismrmrd.Acquisition) -> None:
    """Gadgetron's ``AcquisitionBucket::add_acquisition``."""
    espace = int(acq.encoding_space_ref)
    calibration = acq.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
    if calibration or acq.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING):
        bucket.ref.append(acq)
        _stats_at(bucket.refstats, espace).add(acq)
    if not (calibration or acq.is_flag_set(ismrmrd.ACQ_IS_PHASECORR_DATA)):
        bucket.data.append(acq)
        _stats_at(bucket.datastats, espace).add(acq)


def new_bucket() -> AcquisitionBucket:
    return AcquisitionBucket(data=[], datastats=[], ref=[], refstats=[], waveforms=[])


class AcquisitionAccumulateTrigger:
    name = "AcquisitionAccumulateTriggerGadget"
    PROPERTIES = ("trigger_dimension", "sorting_dimension", "n_acquisitions_before_trigger",
                  "n_acquisitions_before_ongoing_trigger")
    VALID = ("", "none") + INDEX_DIMENSIONS + USER_DIMENSIONS

    def __init__(self, header, props=None):
        props = props or {}
        self.trigger = props.get("trigger_dimension", "").strip().lower()
        self.sorting = props.get("sorting_dimension", "").strip().lower()
        for name, value in (("trigger_dimension", self.trigger), ("sorting_dimension", self.sorting)):
            if value not in self.VALID:
                raise ChainConfigError(f"AcquisitionAccumulateTriggerGadget: {name}={value!r} has no Python twin; "
                                       f"use one of {[v for v in self.VALID if v]}")

    def process(self, items):
        buckets, waveforms, previous = {}, [], None

        def flush():
            out = [buckets[k] for k in sorted(buckets)]
            if out:
                out[0].waveforms = list(waveforms)
            buckets.clear()
            waveforms.clear()
            return out

        for item in items:
            if isinstance(item, ismrmrd.Waveform):
                waveforms.append(item)
                continue
            if not isinstance(item, ismrmrd.Acquisition):
                yield item
                continue
            if item.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
                continue
            if self.trigger not in ("", "none"):
                value = index_of(item, self.trigger)
                if previous is not None and value != previous:
                    yield from flush()
                previous = value
            key = index_of(item, self.sorting)
            add_to_bucket(buckets.setdefault(key, new_bucket()), item)
        yield from flush()
