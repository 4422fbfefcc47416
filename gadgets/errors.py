"""Typed errors of the Gadgetron-facing side (chains, protocol, raw files, slices).

Data problems found by the reconstruction library keep their own types from
:mod:`models.errors`; the errors here add *where* (which chain, which slice,
which connection) so a log line names slice and cause.
"""


class GadgetError(RuntimeError):
    """Base class of every gadget-level failure."""


class ChainConfigError(GadgetError):
    """A chain XML that cannot be run: bad XML, unknown gadget, bad or unknown property."""


class HeaderError(GadgetError):
    """The ISMRMRD header lacks what the chain needs (encoding, parallelImaging, ...)."""


class RawFileError(GadgetError):
    """An input file that is not a readable ISMRMRD raw HDF5 file (or is truncated)."""


class ConnectionDroppedError(GadgetError):
    """The peer closed or dropped the socket in the middle of a message or stream."""


class PeerClosedError(ConnectionDroppedError):
    """Gadgetron closed our socket mid-scan (its client went away): the slices still held are abandoned."""


class SliceError(GadgetError):
    """One slice could not be reconstructed; the others can still be.

    ``label`` names the slice (e.g. ``"slice 3 (repetition 1)"``), ``cause`` is the
    underlying exception.
    """

    def __init__(self, label: str, cause: BaseException):
        self.label = label
        self.cause = cause
        super().__init__(f"{label}: {type(cause).__name__}: {cause}")


class IncompleteSliceError(GadgetError):
    """A slice whose acquisitions never completed (e.g. the stream ended mid-slice)."""


class MissingCoilMapsError(GadgetError):
    """Reconstruction data arrived without the coil maps that belong to it."""
