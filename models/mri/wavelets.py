"""Orthogonal 2D wavelet sparsifying transform and its l1 proximal operator.

Used by the compressed-sensing baseline (:mod:`models.mri.cs`). Runs on numpy
through PyWavelets (Lee et al. 2019, JOSS 4:1237): ``wavedec2`` / ``waverec2``
in ``periodization`` mode act on the last two axes of ``[B, H, W]``, so a batch of
slices is one call. Complex images are transformed on their real and imaginary
parts (PyWavelets does this itself), and the complex soft threshold shrinks each
coefficient's magnitude and keeps its phase.

The transform is orthonormal for orthogonal wavelets (Daubechies ``dbN``, ``haar``)
when ``H`` and ``W`` are multiples of ``2**levels``; then
``shrink(x, t) = Psi^H soft(Psi x, t)`` is the exact proximal operator of
``t ||Psi_detail x||_1``. Other sizes are zero-padded up to such a multiple and
cropped back, which makes the operator an approximation of that prox.
The coarsest approximation band is never thresholded (it carries the image's
low-resolution content, which is not sparse).
"""

import numpy as np

from models.errors import ReconInputError, ShapeError

_AXES = (-2, -1)


def soft_threshold(coeffs: np.ndarray, threshold) -> np.ndarray:
    """Complex soft threshold ``c * max(0, 1 - t / |c|)`` (real inputs: ordinary soft threshold).

    ``threshold`` broadcasts against ``coeffs`` (e.g. ``[B, 1, 1]`` for one value per slice).
    """
    magnitude = np.abs(coeffs)
    scale = np.maximum(0.0, 1.0 - threshold / np.maximum(magnitude, np.finfo(magnitude.dtype).tiny))
    return (coeffs * scale).astype(coeffs.dtype, copy=False)


class WaveletTransform:
    """Multi-level orthogonal 2D wavelet transform on ``[B, H, W]`` (numpy, real or complex).

    Args:
        wavelet: a PyWavelets orthogonal wavelet name (default ``db2``, the 4-tap Daubechies
            wavelet, called "Daubechies-4" by Lustig et al. 2007 and ``dau2`` by BART).
        levels: decomposition levels; ``None`` picks ``min(4, max level for min(H, W))``.
    """

    def __init__(self, wavelet: str = "db2", levels: int = None):
        # imported here: DPS and training never need PyWavelets (one wheel less on a bare GPU machine)
        import pywt

        self._pywt = pywt
        try:
            self.wavelet = pywt.Wavelet(wavelet)
        except ValueError as exc:
            raise ReconInputError(f"unknown wavelet {wavelet!r}: {exc}") from None
        if not self.wavelet.orthogonal:
            raise ReconInputError(f"wavelet {wavelet!r} is not orthogonal; the l1 prox needs an orthogonal one")
        if levels is not None and levels < 1:
            raise ReconInputError(f"wavelet levels must be >= 1, got {levels}")
        self.levels = levels

    def levels_for(self, shape) -> int:
        """Decomposition levels used for an image of shape ``[..., H, W]``."""
        if self.levels is not None:
            return self.levels
        return max(1, min(4, self._pywt.dwt_max_level(min(shape[-2:]), self.wavelet.dec_len)))

    def _padded_shape(self, shape) -> tuple:
        block = 2 ** self.levels_for(shape)
        return tuple(-(-n // block) * block for n in shape[-2:])

    def forward(self, image: np.ndarray) -> list:
        """``[B, H, W]`` -> PyWavelets coefficient list ``[cA, (cH, cV, cD), ...]`` (coarse first)."""
        if image.ndim < 2:
            raise ShapeError(f"WaveletTransform: image must be [..., H, W], got shape {image.shape}")
        padded = self._padded_shape(image.shape)
        if padded != image.shape[-2:]:
            pad = [(0, 0)] * (image.ndim - 2) + [(0, padded[0] - image.shape[-2]), (0, padded[1] - image.shape[-1])]
            image = np.pad(image, pad)
        return self._pywt.wavedec2(image, self.wavelet, mode="periodization", level=self.levels_for(image.shape), axes=_AXES)

    def inverse(self, coeffs: list, shape) -> np.ndarray:
        """Coefficient list -> image cropped to ``shape[-2:]``."""
        image = self._pywt.waverec2(coeffs, self.wavelet, mode="periodization", axes=_AXES)
        return image[..., : shape[-2], : shape[-1]]

    def detail_l1(self, image: np.ndarray) -> np.ndarray:
        """``||Psi_detail x||_1`` per slice (sum of complex magnitudes of all detail bands): ``[B]``."""
        coeffs = self.forward(image)
        total = np.zeros(image.shape[:-2])
        for bands in coeffs[1:]:
            for band in bands:
                total = total + np.abs(band).sum(axis=_AXES)
        return total

    def shrink(self, image: np.ndarray, threshold) -> np.ndarray:
        """Soft-threshold the detail coefficients of ``image`` by ``threshold`` (``[B, 1, 1]`` or scalar)."""
        coeffs = self.forward(image)
        shrunk = [coeffs[0]] + [tuple(soft_threshold(band, threshold) for band in bands) for bands in coeffs[1:]]
        return self.inverse(shrunk, image.shape).astype(image.dtype, copy=False)
