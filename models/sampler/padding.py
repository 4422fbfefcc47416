"""Let the prior sample a grid the network accepts when the scan's matrix is not one.

The U-Net needs ``H`` and ``W`` divisible by ``2**(levels - 1)``. Instead of
resampling the data, the sample lives on a zero-centred padded grid and the
operator crops it back to the scan's matrix before ``A``: the padded border is
never measured, so only the prior shapes it, and it is cropped from the output.
"""

import logging

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


def padded_size(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


class CroppedOperator:
    """``A' = A o crop`` (image ``[B, H', W']`` -> k-space of the scan), with ``A'^H = pad o A^H``.

    With a padded shape equal to the scan's, crop and pad are the identity, so samplers
    always sample on ``image_shape`` and return ``crop(x)``.
    """

    def __init__(self, operator, padded_shape):
        self.operator = operator
        h, w = operator.image_shape[-2:]
        self.padded_shape = tuple(padded_shape)
        ph, pw = self.padded_shape
        self.top, self.left = (ph - h) // 2, (pw - w) // 2
        self.bottom, self.right = ph - h - self.top, pw - w - self.left
        self.image_shape = (operator.image_shape[0],) + self.padded_shape

    @property
    def padded(self) -> bool:
        return (self.top, self.bottom, self.left, self.right) != (0, 0, 0, 0)

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        if not self.padded:
            return x
        h, w = self.operator.image_shape[-2:]
        return x[..., self.top:self.top + h, self.left:self.left + w]

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        if not self.padded:
            return x
        real = F.pad(x.real, (self.left, self.right, self.top, self.bottom))
        imag = F.pad(x.imag, (self.left, self.right, self.top, self.bottom))
        return torch.complex(real, imag)

    def forward(self, x):
        return self.operator.forward(self.crop(x))

    def adjoint(self, y):
        return self.pad(self.operator.adjoint(y))

    def normal(self, x):
        return self.pad(self.operator.normal(self.crop(x)))


def fit_operator_to_network(operator, multiple: int) -> CroppedOperator:
    """``operator o crop`` from the smallest grid of ``multiple`` holding the scan's (padding logged)."""
    h, w = operator.image_shape[-2:]
    ph, pw = padded_size(h, multiple), padded_size(w, multiple)
    if (ph, pw) == (h, w):
        return CroppedOperator(operator, (ph, pw))
    log.info("matrix %dx%d is not a multiple of %d: sampling on a padded %dx%d grid, cropping the output",
             h, w, multiple, ph, pw)
    return CroppedOperator(operator, (ph, pw))
