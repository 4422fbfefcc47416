"""Intensity normalisation of complex images for the prior (one rule, stored with the model).

Rule: multiply the coil-combined complex image by ``scale`` so that the
``percentile``-th percentile (default 99th) of its magnitude equals ``target``
(default 1). A high percentile rather than the maximum makes the scale robust to
a few bright pixels (vessels, fat, noise spikes); it is computed per slice.

With this rule the background is ~0 and tissue magnitudes are O(1); the per-channel
(real, imag) standard deviation of such slices is typically 0.2-0.4, so EDM's
``sigma_data = 0.5`` is the default; :func:`estimate_sigma_data` measures it on a
training set if one wants the exact value. The sampler scales measured k-space by
the same rule applied to a zero-filled (or low-resolution ACS) estimate of the
image, and undoes it on output.
"""

from dataclasses import asdict, dataclass
from typing import Union

import numpy as np
import torch

from models.errors import NonFiniteDataError, NormalizationError, ReconInputError, ShapeError

ArrayLike = Union[np.ndarray, torch.Tensor]


@dataclass(frozen=True)
class IntensityNormalization:
    """``image * scale_from_image(image)`` has its magnitude percentile at ``target``."""

    percentile: float = 99.0
    target: float = 1.0
    method: str = "magnitude_percentile"

    def __post_init__(self):
        if self.method != "magnitude_percentile":
            raise ReconInputError(f"unknown normalisation method {self.method!r}")
        if not 0.0 < self.percentile <= 100.0 or self.target <= 0:
            raise ReconInputError(
                f"normalisation needs 0 < percentile <= 100 and target > 0, got {self.percentile}, {self.target}"
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["description"] = (
            f"complex coil-combined image multiplied per slice so that the {self.percentile:g}th "
            f"percentile of |image| equals {self.target:g}"
        )
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "IntensityNormalization":
        return cls(**{k: v for k, v in d.items() if k != "description"})

    def scale_from_image(self, image: ArrayLike) -> float:
        """Scale (float, 1 / intensity units) for one slice ``[H, W]`` (complex or real)."""
        mag = np.abs(image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image))
        if mag.ndim != 2:
            raise ShapeError(f"scale_from_image expects one slice [H, W], got shape {mag.shape}")
        if not np.all(np.isfinite(mag)):
            raise NonFiniteDataError("scale_from_image: image contains NaN or Inf")
        ref = float(np.percentile(mag, self.percentile))
        if ref <= 0.0:
            raise NormalizationError(
                f"the {self.percentile:g}th percentile of |image| is {ref}; cannot normalise an (almost) empty slice"
            )
        return self.target / ref


DEFAULT_NORMALIZATION = IntensityNormalization()


def scale_from_image(image: ArrayLike, normalization: IntensityNormalization = DEFAULT_NORMALIZATION) -> float:
    """Per-slice scale with the default rule (99th percentile of the magnitude -> 1)."""
    return normalization.scale_from_image(image)


def estimate_sigma_data(channels: torch.Tensor) -> float:
    """Per-channel standard deviation of normalised training images ``[N, 2, H, W]`` (pooled)."""
    if channels.ndim != 4:
        raise ShapeError(f"estimate_sigma_data expects [N, C, H, W], got {tuple(channels.shape)}")
    return float(channels.to(torch.float64).std())
