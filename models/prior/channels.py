"""Complex image <-> two real channels, the layout the prior's network sees.

Convention: ``models`` holds complex images as native complex tensors
``[..., H, W]`` (see :mod:`models.mri.fft`). The U-Net works on real float32
tensors ``[B, 2, H, W]`` with channel 0 the real part and channel 1 the
imaginary part.
"""

import torch

from models.errors import ShapeError


def complex_to_channels(image: torch.Tensor) -> torch.Tensor:
    """Complex ``[B, H, W]`` -> real float32 ``[B, 2, H, W]`` (real, imag)."""
    if not torch.is_complex(image):
        raise ShapeError(f"complex_to_channels expects a complex tensor, got dtype {image.dtype}")
    if image.ndim != 3:
        raise ShapeError(f"complex_to_channels expects [B, H, W], got shape {tuple(image.shape)}")
    return torch.stack([image.real, image.imag], dim=1).to(torch.float32)


def channels_to_complex(channels: torch.Tensor) -> torch.Tensor:
    """Real ``[B, 2, H, W]`` (real, imag) -> complex64 ``[B, H, W]``."""
    if channels.ndim != 4 or channels.shape[1] != 2:
        raise ShapeError(
            f"channels_to_complex expects [B, 2, H, W], got shape {tuple(channels.shape)}"
        )
    channels = channels.to(torch.float32)
    return torch.complex(channels[:, 0], channels[:, 1])
