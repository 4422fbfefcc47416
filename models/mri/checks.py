"""Input checks shared by the physics code; each raises a typed error naming the problem."""

import numpy as np
import torch

from models.errors import CoilMismatchError, NonFiniteDataError, ShapeError


def require_finite(name: str, data) -> None:
    """Raise :class:`NonFiniteDataError` if ``data`` holds NaN or Inf (counts them)."""
    if isinstance(data, torch.Tensor):
        bad = int((~torch.isfinite(data)).sum())
    else:
        bad = int((~np.isfinite(np.asarray(data))).sum())
    if bad:
        raise NonFiniteDataError(f"{name} contains {bad} NaN/Inf value(s)")


def require_min_ndim(name: str, data, ndim: int, layout: str) -> None:
    """Raise :class:`ShapeError` if ``data`` has fewer than ``ndim`` axes."""
    if data.ndim < ndim:
        raise ShapeError(f"{name} must have at least {ndim} axes {layout}, got shape {tuple(data.shape)}")


def require_same_coils(maps_shape, kspace_shape) -> None:
    """Maps ``[..., C, H, W]`` and k-space ``[..., C, H, W]`` must agree on C, H and W."""
    if maps_shape[-3] != kspace_shape[-3]:
        raise CoilMismatchError(
            f"coil maps have {maps_shape[-3]} coils but k-space has {kspace_shape[-3]}")
    if tuple(maps_shape[-2:]) != tuple(kspace_shape[-2:]):
        raise ShapeError(
            f"coil maps matrix {tuple(maps_shape[-2:])} differs from k-space matrix {tuple(kspace_shape[-2:])}")
