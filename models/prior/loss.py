"""EDM training loss (Karras et al. 2022, Sec. 5 and Table 1, "EDM" column).

Per image: ``ln(sigma) ~ N(P_mean, P_std^2)``, ``n ~ N(0, sigma^2 I)``, and the
weighted denoising error
``lambda(sigma) * (D(y + n; sigma) - y)^2`` with
``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2``,
which makes the effective target of ``F`` unit-variance at every ``sigma``.
"""

from typing import Callable, Optional, Tuple

import torch

from models.errors import ShapeError


def _randn(shape, like: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device, dtype=torch.float32).to(like.device)


class EDMLoss:
    """``loss(net, images, contrast_labels, augment_pipe=None, generator=None)``.

    ``net`` is an :class:`~models.prior.precond.EDMPrecond` (or anything with its
    call signature); ``images`` real ``[B, 2, H, W]`` in normalised units.
    ``augment_pipe(images, generator=...)`` returns ``(augmented, augment_labels)``.
    Returns the per-pixel weighted loss ``[B, 2, H, W]`` (take the mean or sum
    yourself, as EDM does).
    """

    def __init__(self, P_mean: float = -1.2, P_std: float = 1.2, sigma_data: float = 0.5):
        self.P_mean = float(P_mean)
        self.P_std = float(P_std)
        self.sigma_data = float(sigma_data)

    def sample_sigma(self, batch: int, like: torch.Tensor, generator=None) -> torch.Tensor:
        """Log-normal noise levels ``[B, 1, 1, 1]``."""
        rnd = _randn((batch, 1, 1, 1), like, generator)
        return (rnd * self.P_std + self.P_mean).exp()

    def weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2``."""
        return (sigma ** 2 + self.sigma_data ** 2) / (sigma * self.sigma_data) ** 2

    def __call__(
        self,
        net: Callable,
        images: torch.Tensor,
        contrast_labels: Optional[torch.Tensor] = None,
        augment_pipe: Optional[Callable[..., Tuple[torch.Tensor, torch.Tensor]]] = None,
        generator: Optional[torch.Generator] = None,
        sigma: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Weighted per-pixel loss; ``sigma`` ``[B]`` may be given to fix the noise levels."""
        if images.ndim != 4:
            raise ShapeError(f"EDMLoss expects images [B, C, H, W], got {tuple(images.shape)}")
        b = images.shape[0]
        if sigma is None:
            sigma = self.sample_sigma(b, images, generator)
        else:
            sigma = torch.as_tensor(sigma, dtype=torch.float32, device=images.device).reshape(-1, 1, 1, 1)
            sigma = sigma.expand(b, 1, 1, 1)
        augment_labels = None
        y = images
        if augment_pipe is not None:
            y, augment_labels = augment_pipe(images, generator=generator)
        n = _randn(y.shape, y, generator) * sigma
        d_yn = net(y + n, sigma.flatten(), contrast_labels, augment_labels)
        return self.weight(sigma) * (d_yn - y) ** 2
