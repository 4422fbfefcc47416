"""Multi-coil Cartesian SENSE operator ``A = P F S`` with adjoint and normal.

Shapes (native complex64, see :mod:`models.mri.fft`):
  image ``x``      ``[B, H, W]``
  maps ``S``       ``[B, C, H, W]``
  k-space ``y``    ``[B, C, H, W]`` (unsampled entries zero)
  mask ``P``       anything broadcastable to ``[B, 1, H, W]``; typically ``[W]``
                   (phase-encode lines) or ``[B, 1, 1, W]``.

Torch-native so that DPS can differentiate through it with autograd.
"""

import torch

from models.errors import ShapeError
from models.mri.checks import require_same_coils
from models.mri.fft import fft2c, ifft2c


class SenseOperator:
    """``A x = P F (S x)``; ``A^H y = sum_c conj(S_c) F^H (P y_c)``; ``A^H A``."""

    def __init__(self, maps: torch.Tensor, mask: torch.Tensor):
        if maps.ndim != 4:
            raise ShapeError(f"SenseOperator: maps must be [B, C, H, W], got shape {tuple(maps.shape)}")
        if not maps.is_complex():
            raise ShapeError("SenseOperator: maps must be a complex tensor")
        self.maps = maps
        mask = torch.as_tensor(mask, device=maps.device)
        try:
            torch.broadcast_shapes(mask.shape, (maps.shape[0], 1) + tuple(maps.shape[-2:]))
        except RuntimeError as exc:
            raise ShapeError(
                f"SenseOperator: mask of shape {tuple(mask.shape)} does not broadcast to "
                f"[B, 1, H, W] = {(maps.shape[0], 1) + tuple(maps.shape[-2:])}") from exc
        self.mask = mask.to(maps.real.dtype)

    @property
    def image_shape(self):
        return (self.maps.shape[0],) + tuple(self.maps.shape[-2:])

    @property
    def kspace_shape(self):
        return tuple(self.maps.shape)

    def _check(self, name, data, expected):
        if tuple(data.shape) != tuple(expected):
            raise ShapeError(f"SenseOperator.{name}: expected shape {tuple(expected)}, got {tuple(data.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``[B, H, W]`` -> sampled multi-coil k-space ``[B, C, H, W]``."""
        self._check("forward", x, self.image_shape)
        return self.mask * fft2c(self.maps * x.unsqueeze(-3))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Multi-coil k-space ``[B, C, H, W]`` -> image ``[B, H, W]``."""
        require_same_coils(self.maps.shape, y.shape)
        self._check("adjoint", y, self.kspace_shape)
        return (self.maps.conj() * ifft2c(self.mask * y)).sum(dim=-3)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x`` (image -> image); the mask is idempotent so it is applied once."""
        self._check("normal", x, self.image_shape)
        return (self.maps.conj() * ifft2c(self.mask * fft2c(self.maps * x.unsqueeze(-3)))).sum(dim=-3)

    __call__ = forward

    @property
    def H(self):
        """Adjoint as a callable, in sigpy's spirit (``A.H(y)``)."""
        return self.adjoint
