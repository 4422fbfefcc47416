"""Denoisers the sampler can use, all with one signature on complex images.

``denoiser(x, sigma) -> D(x; sigma)`` with ``x`` complex ``[B, H, W]`` and
``sigma`` a float tensor ``[B]``: the minimum-MSE estimate of the clean image
from ``x = x0 + sigma * n`` (complex Gaussian ``n`` with unit variance per real
channel, EDM's convention applied to the real and imaginary channels).

- :class:`PriorDenoiser` wraps the trained EDM prior (``EDMPrecond``) for one
  contrast; the network sees ``[B, 2, H, W]`` real channels (optionally bf16 autocast on CUDA).
- :class:`GaussianDenoiser` is the exact denoiser of an i.i.d. Gaussian prior
  ``x0 ~ N(mean, std^2)`` per real channel; the sampler's tests use it because
  the posterior is then known in closed form.
"""

import torch

from models.prior.channels import channels_to_complex, complex_to_channels
from models.prior.patches import whole_image_prior


class GaussianDenoiser:
    """``D(x; sigma) = (std^2 x + sigma^2 mean) / (std^2 + sigma^2)`` (exact for a Gaussian prior)."""

    def __init__(self, mean: torch.Tensor, std: float):
        self.mean = mean
        self.std = float(std)
        self.sigma_data = self.std  # the prior's per-channel std (the DDS sampler's v_t uses it)
        self.sigma_min, self.sigma_max = 0.0, float("inf")

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s2 = sigma.to(x.real.dtype).view(-1, *([1] * (x.ndim - 1))) ** 2
        return (self.std ** 2 * x + s2 * self.mean) / (self.std ** 2 + s2)


class PriorDenoiser:
    """The EDM prior for one contrast, as a complex-image denoiser.

    Args:
        precond: an ``EDMPrecond``-like module, ``(x [B,2,H,W], sigma [B], contrast_labels [B,L]) -> D_x``.
        contrast_labels: one-hot ``[1, L]`` or ``[B, L]`` for the contrast to sample.
        error_variance: optional ``t -> v_t``, the denoiser's measured error variance for that contrast.
        patch_tiling: how a patch prior covers the image (:func:`models.prior.patches.whole_image_prior`).
    """

    def __init__(self, precond, contrast_labels: torch.Tensor, cuda_bf16: bool = False, error_variance=None,
                 patch_tiling: str = "shifted"):
        self.precond = whole_image_prior(precond, tiling=patch_tiling)  # a patch prior is tiled over the image
        self.error_variance = error_variance  # t -> measured v_t for this contrast (models.prior.error_curve)
        self.contrast_labels = contrast_labels
        self.cuda_bf16 = cuda_bf16
        self.sigma_min = float(getattr(precond, "sigma_min", 0.0))
        self.sigma_max = float(getattr(precond, "sigma_max", float("inf")))
        self.sigma_data = float(getattr(precond, "sigma_data", 0.5))

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        labels = self.contrast_labels.to(x.device)
        if labels.shape[0] == 1 and x.shape[0] > 1:
            labels = labels.expand(x.shape[0], -1)
        # With cuda_bf16 the network runs under bf16 autocast on CUDA (EDMPrecond keeps the skip
        # connection and output scaling in float32); on the CPU everything stays float32.
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda_bf16 and x.is_cuda):
            denoised = self.precond(complex_to_channels(x), sigma.to(torch.float32), labels)
        return channels_to_complex(denoised.float())
