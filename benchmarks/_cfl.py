"""Read and write BART ``.cfl``/``.hdr`` file pairs (for the BART comparisons).

Format (BART's own documentation): ``name.hdr`` is text, a comment line
``# Dimensions`` then the dimensions separated by spaces; ``name.cfl`` holds the
complex64 samples in column-major (Fortran) order, dimension 0 fastest. BART's
dimension 0 is the readout (x), 1 the phase encode (y), 3 the coils; so an
image ``[H, W]`` of this project is BART ``[H, W]`` and multi-coil data
``[C, H, W]`` is BART ``[H, W, 1, C]``.
"""

import numpy as np


def write_cfl(name: str, array: np.ndarray) -> None:
    """Write ``array`` (any shape, BART dimension order) as ``name.hdr`` + ``name.cfl``."""
    array = np.asarray(array, dtype=np.complex64)
    with open(name + ".hdr", "w") as header:
        header.write("# Dimensions\n" + " ".join(str(n) for n in array.shape) + "\n")
    np.asfortranarray(array).ravel(order="F").tofile(name + ".cfl")


def read_cfl(name: str) -> np.ndarray:
    """Read ``name.hdr`` + ``name.cfl`` into a complex64 array in BART dimension order."""
    with open(name + ".hdr") as header:
        lines = [line for line in header if not line.startswith("#") and line.strip()]
    dims = [int(n) for n in lines[0].split()]
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    data = np.fromfile(name + ".cfl", dtype=np.complex64)
    return data.reshape(dims, order="F")


def to_bart_coils(data: np.ndarray) -> np.ndarray:
    """``[C, H, W]`` (this project) -> BART ``[H, W, 1, C]``."""
    return np.transpose(np.asarray(data), (1, 2, 0))[:, :, None, :]


def from_bart_image(data: np.ndarray) -> np.ndarray:
    """BART image ``[H, W, ...]`` with singleton trailing dims -> ``[H, W]``."""
    return np.asarray(data).reshape(data.shape[0], data.shape[1])
