"""EDM preconditioning: the denoiser ``D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)``.

Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
Models", Table 1 (EDM column):

- ``c_skip = sigma_data^2 / (sigma^2 + sigma_data^2)``
- ``c_out  = sigma * sigma_data / sqrt(sigma^2 + sigma_data^2)``
- ``c_in   = 1 / sqrt(sigma^2 + sigma_data^2)``
- ``c_noise = ln(sigma) / 4``

``sigma_data`` is the per-channel standard deviation of the training images. Our
images are complex, normalised so the 99th percentile of the magnitude is 1
(:mod:`models.prior.normalization`), and seen as two channels (real, imag);
``sigma_data = 0.5`` (EDM's value for images in [-1, 1]) is the default and is a
constructor argument stored in the checkpoint. ``sigma`` is in the same
normalised intensity units as ``x``.
"""

import logging
from typing import Optional, Union

import torch
from torch import nn

from models.errors import ShapeError
from models.prior.channels import channels_to_complex, complex_to_channels
from models.prior.contrasts import ContrastVocabulary
from models.prior.normalization import DEFAULT_NORMALIZATION, IntensityNormalization
from models.prior.unet import UNet

logger = logging.getLogger(__name__)


class EDMPrecond(nn.Module):
    """Preconditioned denoiser around a :class:`~models.prior.unet.UNet`.

    Attributes used by samplers (as EDM's ``edm_sampler`` does): ``sigma_min``,
    ``sigma_max``, ``sigma_data``, ``label_dim``, ``vocabulary`` (the
    :class:`ContrastVocabulary`, or ``None`` when unknown) and ``normalization`` (the
    intensity rule of the training images, with which the sampler scales k-space) and
    ``error_curves`` (per contrast, the denoising error per noise level measured on
    validation images: :mod:`models.prior.error_curve`).
    """

    def __init__(
        self,
        net: UNet,
        sigma_data: float = 0.5,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        vocabulary: Optional[ContrastVocabulary] = None,
        normalization: IntensityNormalization = DEFAULT_NORMALIZATION,
        error_curves: Optional[dict] = None,
    ):
        super().__init__()
        self.net = net
        self.sigma_data = float(sigma_data)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.vocabulary = vocabulary
        self.normalization = normalization
        self.error_curves = dict(error_curves or {})  # contrast -> models.prior.error_curve.ErrorCurve

    @property
    def label_dim(self) -> int:
        return self.net.config.label_dim

    def coefficients(self, sigma: torch.Tensor):
        """``(c_skip, c_out, c_in, c_noise)`` for ``sigma`` of any shape (float64 safe)."""
        sd = self.sigma_data
        c_skip = sd ** 2 / (sigma ** 2 + sd ** 2)
        c_out = sigma * sd / (sigma ** 2 + sd ** 2).sqrt()
        c_in = 1 / (sd ** 2 + sigma ** 2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise

    def forward(
        self,
        x: torch.Tensor,
        sigma: Union[float, torch.Tensor],
        contrast_labels: Optional[torch.Tensor] = None,
        augment_labels: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Denoised ``D_x`` (same shape and dtype as ``x``), ``x`` real ``[B, 2, H, W]``.

        ``sigma``: scalar or ``[B]`` noise level(s). ``contrast_labels``: one-hot
        ``[B or 1, label_dim]``. ``augment_labels``: ``None`` = not augmented.
        """
        if x.ndim != 4:
            raise ShapeError(f"EDMPrecond expects x of shape [B, C, H, W], got {tuple(x.shape)}")
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1)
        if sigma.numel() == 1:
            sigma = sigma.expand(x.shape[0])
        if sigma.shape[0] != x.shape[0]:
            raise ShapeError(f"sigma has {sigma.shape[0]} entries for a batch of {x.shape[0]}")
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma.reshape(-1, 1, 1, 1))
        x32 = x.to(torch.float32)
        f_x = self.net(c_in * x32, c_noise.flatten(), contrast_labels, augment_labels)
        d_x = c_skip * x32 + c_out * f_x.to(torch.float32)
        return d_x.to(x.dtype)

    def denoise_complex(
        self,
        x: torch.Tensor,
        sigma: Union[float, torch.Tensor],
        contrast_labels: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Convenience: complex ``[B, H, W]`` in, complex64 ``[B, H, W]`` denoised out."""
        return channels_to_complex(self(complex_to_channels(x), sigma, contrast_labels))

