"""Fixed training augmentation for the prior, with EDM-style augmentation labels.

Non-leaking augmentation (Karras et al. 2022, Appendix B.5 / "augment_labels"):
each geometric transform is applied to an image with probability ``p`` and
described by a label vector the network is conditioned on; at sampling time the
labels are zero ("not augmented"), so the transforms do not leak into samples.

Transforms (brain images have a canonical orientation, so no 90-degree rotations
and no up-down flips):

1. left-right flip along ``flip_dim`` (default the last axis, ``W``);
2. one affine warp (bilinear ``grid_sample``, zero padding): rotation by
   ``theta ~ U(-max_rotate_deg, max_rotate_deg)``, isotropic scaling by
   ``2 ** N(0, scale_std^2)``, translation by ``U(-max_translate, max_translate)``
   times the image size per axis; rotation, scaling and translation are each on
   with probability ``p``;
3. a global phase ``exp(i phi)``, ``phi ~ U(0, 2 pi)``, with probability ``phase_p``.
   Any global phase is physically equivalent in MRI, so this is a true invariance
   of the data and is *not* labelled: the prior should accept any phase.

Label layout (``AUGMENT_DIM = 6``, all zero = identity):
``[flip, sin(theta), cos(theta) - 1, log2(scale), tx, ty]`` with ``tx``/``ty``
the shift as a fraction of the image width/height.
"""

import math
from dataclasses import asdict, dataclass
from typing import Optional, Tuple

import torch
from torch.nn import functional as F

from models.errors import ReconInputError, ShapeError

AUGMENT_DIM = 6


@dataclass(frozen=True)
class AugmentPipe:
    """Callable ``pipe(images, generator=None) -> (augmented, augment_labels)``.

    ``images`` real ``[B, 2, H, W]`` (real, imag); returns the same shape and
    labels ``[B, AUGMENT_DIM]``. Reproducible given a seeded ``torch.Generator``:
    the same number of random numbers is drawn on every call, whatever ``p``.
    With ``p = 0`` and ``phase_p = 0`` the output equals the input exactly.
    """

    p: float = 0.15
    xflip: bool = True
    max_rotate_deg: float = 10.0
    scale_std: float = 0.1
    max_translate: float = 0.0625
    phase_p: float = 1.0
    flip_dim: int = -1

    def __post_init__(self):
        for name in ("p", "phase_p"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ReconInputError(f"AugmentPipe.{name} must be in [0, 1], got {v}")
        if self.flip_dim not in (-1, -2):
            raise ReconInputError(f"AugmentPipe.flip_dim must be -1 (W) or -2 (H), got {self.flip_dim}")

    @property
    def augment_dim(self) -> int:
        return AUGMENT_DIM

    def to_dict(self) -> dict:
        return asdict(self)

    def __call__(
        self, images: torch.Tensor, generator: Optional[torch.Generator] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        if images.ndim != 4 or images.shape[1] != 2:
            raise ShapeError(f"AugmentPipe expects [B, 2, H, W] (real, imag), got {tuple(images.shape)}")
        b, _, h, w = images.shape
        dev = generator.device if generator is not None else images.device

        def rand(*shape):
            return torch.rand(shape, generator=generator, device=dev).to(images.device)

        def randn(*shape):
            return torch.randn(shape, generator=generator, device=dev).to(images.device)

        on = rand(b, 4) < self.p  # flip, rotate, scale, translate
        flip = (rand(b) < 0.5) & on[:, 0] & self.xflip
        theta = (rand(b) * 2 - 1) * math.radians(self.max_rotate_deg) * on[:, 1]
        log2s = randn(b) * self.scale_std * on[:, 2]
        shift = (rand(b, 2) * 2 - 1) * self.max_translate * on[:, 3:4]  # (tx, ty) fractions
        phase_on = rand(b) < self.phase_p
        phi = rand(b) * 2 * math.pi * phase_on

        x = images
        if flip.any():
            x = torch.where(flip[:, None, None, None], x.flip(self.flip_dim), x)
        warp = (theta != 0) | (log2s != 0) | (shift != 0).any(dim=1)
        if warp.any():
            idx = warp.nonzero().flatten()
            grid = _affine_grid(theta[idx], log2s[idx], shift[idx], h, w, x.dtype)
            warped = F.grid_sample(x[idx], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            x = x.clone()
            x[idx] = warped
        if phase_on.any():
            c, s = phi.cos()[:, None, None], phi.sin()[:, None, None]
            re, im = x[:, 0], x[:, 1]
            rotated = torch.stack([c * re - s * im, s * re + c * im], dim=1)
            x = torch.where(phase_on[:, None, None, None], rotated, x)

        labels = torch.stack(
            [flip.to(x.dtype), theta.sin(), theta.cos() - 1, log2s, shift[:, 0], shift[:, 1]], dim=1
        ).to(x.dtype)
        return x, labels


def _affine_grid(theta, log2s, shift, h, w, dtype):
    """Sampling grid for "rotate by theta, scale by 2**log2s, then shift" in pixel geometry.

    ``F.affine_grid`` maps output to input coordinates normalised to [-1, 1] per
    axis; the rotation is done in pixel units (diag(W/2, H/2)) so that non-square
    images rotate without shear.
    """
    scale = torch.exp2(log2s)
    c, s = theta.cos(), theta.sin()
    # inverse of (p -> scale * R(theta) p + t) in pixel units: p_in = R(-theta) (p_out - t) / scale
    inv = torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2) / scale[:, None, None]
    px = torch.tensor([w / 2.0, h / 2.0], dtype=inv.dtype, device=inv.device)
    inv_norm = inv * px[None, None, :] / px[None, :, None]  # P^-1 A P with P = diag(px)
    t_norm = shift * 2.0  # fraction of size -> normalised units
    offset = -(inv_norm @ t_norm[:, :, None])
    mat = torch.cat([inv_norm, offset], dim=2).to(dtype)
    return F.affine_grid(mat, [len(theta), 2, h, w], align_corners=False)
