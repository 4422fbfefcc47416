"""Centred, orthonormal 2D Fourier transforms.

Complex convention (used throughout ``models``): native complex tensors
(``torch.complex64``), never a trailing real/imag axis. The transform acts on the
last two axes ``[..., H, W]``; ``H`` is the readout direction and ``W`` the
phase-encode direction (fastMRI layout). ``norm="ortho"`` makes ``ifft2c`` the
exact adjoint and inverse of ``fft2c``.
"""

import numpy as np
import torch

_DIMS = (-2, -1)


def fft2c(image: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D FFT: image ``[..., H, W]`` -> k-space ``[..., H, W]``."""
    shifted = torch.fft.ifftshift(image, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.fft2(shifted, dim=_DIMS, norm="ortho"), dim=_DIMS)


def ifft2c(kspace: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D inverse FFT: k-space ``[..., H, W]`` -> image ``[..., H, W]``."""
    shifted = torch.fft.ifftshift(kspace, dim=_DIMS)
    return torch.fft.fftshift(torch.fft.ifft2(shifted, dim=_DIMS, norm="ortho"), dim=_DIMS)


def fft2c_np(image: np.ndarray) -> np.ndarray:
    """NumPy twin of :func:`fft2c` for callers that hold numpy arrays."""
    shifted = np.fft.ifftshift(image, axes=_DIMS)
    return np.fft.fftshift(np.fft.fft2(shifted, axes=_DIMS, norm="ortho"), axes=_DIMS)


def ifft2c_np(kspace: np.ndarray) -> np.ndarray:
    """NumPy twin of :func:`ifft2c`."""
    shifted = np.fft.ifftshift(kspace, axes=_DIMS)
    return np.fft.fftshift(np.fft.ifft2(shifted, axes=_DIMS, norm="ortho"), axes=_DIMS)
