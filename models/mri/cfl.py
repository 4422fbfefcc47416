"""Read and write BART's ``.cfl`` / ``.hdr`` array files.

Format (BART, Uecker et al.): ``name.hdr`` is text, a ``# Dimensions`` line then
the sizes separated by spaces; ``name.cfl`` holds the complex64 samples in
column-major (Fortran) order. BART's axes are ``x`` (readout), ``y`` (phase
encode), ``z``, coils, maps, ...; :func:`kspace_to_bart` and
:func:`maps_from_bart` convert from and to our ``[C, H, W]`` layout (``H``
readout, ``W`` phase encode).
"""

import os

import numpy as np
import torch

from models.errors import ShapeError


def write_cfl(name: str, array) -> None:
    """Write ``array`` (any complex or real array) as ``name.cfl`` + ``name.hdr``."""
    array = np.asarray(array, dtype=np.complex64)
    with open(name + ".hdr", "w") as header:
        header.write("# Dimensions\n")
        header.write(" ".join(str(n) for n in array.shape) + "\n")
    array.ravel(order="F").tofile(name + ".cfl")


def read_cfl(name: str) -> np.ndarray:
    """Read ``name.cfl`` + ``name.hdr`` into a complex64 array (trailing size-1 axes dropped)."""
    with open(name + ".hdr") as header:
        header.readline()
        dims = [int(n) for n in header.readline().split()]
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    data = np.fromfile(name + ".cfl", dtype=np.complex64)
    if data.size != int(np.prod(dims)):
        raise ShapeError(f"{os.path.basename(name)}.cfl holds {data.size} samples, header says {dims}")
    return data.reshape(dims, order="F")


def kspace_to_bart(kspace) -> np.ndarray:
    """Our multi-coil data ``[C, H, W]`` (torch or numpy) -> BART ``[x=H, y=W, z=1, coils=C]``."""
    if kspace.ndim != 3:
        raise ShapeError(f"kspace_to_bart: expected [C, H, W], got shape {tuple(kspace.shape)}")
    if isinstance(kspace, torch.Tensor):
        kspace = kspace.detach().cpu().numpy()
    return np.asarray(kspace).transpose(1, 2, 0)[:, :, None, :]


def image_from_bart(image: np.ndarray) -> np.ndarray:
    """BART image ``[x, y, 1, ...]`` with singleton trailing axes -> ours ``[H, W]``."""
    image = np.asarray(image)
    return image.reshape(image.shape[0], image.shape[1])


def maps_from_bart(maps: np.ndarray) -> torch.Tensor:
    """BART maps ``[x, y, 1, coils(, maps)]`` -> ours ``[C, H, W]`` (first map set)."""
    maps = np.asarray(maps)
    if maps.ndim == 5:
        maps = maps[..., 0]
    if maps.ndim != 4 or maps.shape[2] != 1:
        raise ShapeError(f"maps_from_bart: expected [x, y, 1, coils], got shape {maps.shape}")
    return torch.from_numpy(np.ascontiguousarray(maps[:, :, 0, :].transpose(2, 0, 1)))
