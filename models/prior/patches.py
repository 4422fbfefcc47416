"""Patch-based EDM prior (PaDIS: Hu et al., NeurIPS 2024; PaDIS-MRI: Sanda et al., 2025).

Why: on a CPU a training step on a 32x32 patch costs a fraction of a step on the 128x128 slice, and every
slice yields many patches, so the network sees far more (and more varied) examples per CPU-hour. The
network is the same contrast-conditioned U-Net; it gets two more input channels, the pixel's absolute
position in the slice, so a patch knows where in the head it lies.

- :func:`position_channels`: the two position channels of a window of the slice;
- :func:`random_patches`: training patches (with zero padding around the slice, as PaDIS pads, so that
  patches also cover the edges) and their positions;
- :class:`PatchPrecond`: EDM preconditioning around the 4-channel U-Net, on patches;
- :class:`AssembledDenoiser`: a whole-image denoiser made of patches, tiled with a fresh random shift
  at every call so that no seam stays in one place; it has :class:`~models.prior.precond.EDMPrecond`'s
  call signature and attributes, so every sampler uses it unchanged.
"""

import math
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import nn

from models.errors import ShapeError
from models.prior.channels import channels_to_complex, complex_to_channels
from models.prior.precond import EDMPrecond
from models.tilings import PATCH_TILINGS

PATCH_SIZES = (16, 32, 64)  # PaDIS-MRI's sizes and probabilities
PATCH_PROBABILITIES = (0.2, 0.3, 0.5)
POSITION_CHANNELS = 2


def position_channels(top: torch.Tensor, left: torch.Tensor, size: int, height: int, width: int,
                      device=None) -> torch.Tensor:
    """``[B, 2, size, size]``: row and column of each pixel of the windows at (``top``, ``left``) of a
    ``height x width`` slice, scaled so the slice's pixel centres span [-1, 1] (padding lies outside)."""
    top = torch.as_tensor(top, device=device).reshape(-1, 1).float()
    left = torch.as_tensor(left, device=device).reshape(-1, 1).float()
    steps = torch.arange(size, device=top.device, dtype=torch.float32).reshape(1, -1)
    rows = (2 * (top + steps) + 1) / height - 1  # [B, size]
    cols = (2 * (left + steps) + 1) / width - 1
    b = rows.shape[0]
    return torch.stack([rows[:, :, None].expand(b, size, size), cols[:, None, :].expand(b, size, size)], dim=1)


def choose_patch_size(generator: Optional[torch.Generator] = None, sizes: Sequence[int] = PATCH_SIZES,
                      probabilities: Sequence[float] = PATCH_PROBABILITIES) -> int:
    """One patch size for a batch, drawn with ``probabilities`` (one size per batch keeps shapes equal)."""
    weights = torch.tensor(probabilities, dtype=torch.float64)
    return int(sizes[int(torch.multinomial(weights, 1, generator=generator))])


def random_patches(images: torch.Tensor, size: int, pad: Optional[int] = None, per_image: int = 1,
                   generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(patches [B*per_image, C, size, size], positions [B*per_image, 2, size, size])`` cut at random
    from ``images`` ``[B, C, H, W]`` zero-padded by ``pad`` on every side.

    Default ``pad``: ``size // 2``, except for a patch as large as the slice, which is the whole slice
    unpadded (Patch Diffusion, Wang et al. NeurIPS 2023, mixes full-size images into the patch sizes so the
    network also learns the global layout; the chains' ``whole`` tiling shows it exactly these inputs)."""
    if images.ndim != 4:
        raise ShapeError(f"random_patches expects images [B, C, H, W], got {tuple(images.shape)}")
    b, c, h, w = images.shape
    if pad is None:
        pad = 0 if size >= max(h, w) else size // 2
    pad = int(pad)
    if size > min(h, w) + 2 * pad:
        raise ShapeError(f"patch size {size} does not fit a {h}x{w} image padded by {pad}")
    padded = nn.functional.pad(images, (pad, pad, pad, pad))
    n = b * per_image
    device = generator.device if generator is not None else torch.device("cpu")
    tops = torch.randint(0, h + 2 * pad - size + 1, (n,), generator=generator, device=device).to(images.device)
    lefts = torch.randint(0, w + 2 * pad - size + 1, (n,), generator=generator, device=device).to(images.device)
    source = torch.arange(b, device=images.device).repeat_interleave(per_image)
    rows = tops[:, None] + torch.arange(size, device=images.device)[None]  # [n, size]
    cols = lefts[:, None] + torch.arange(size, device=images.device)[None]
    patches = padded[source[:, None, None, None], torch.arange(c, device=images.device)[None, :, None, None],
                     rows[:, None, :, None], cols[:, None, None, :]]
    positions = position_channels(tops - pad, lefts - pad, size, h, w, device=images.device)
    return patches, positions.to(images.dtype)


class PatchPrecond(EDMPrecond):
    """EDM preconditioning of a U-Net with ``in_channels = image channels + 2``: the position channels
    go to the network beside ``c_in x`` (unscaled: they are coordinates, not intensities)."""

    def __init__(self, net, patch_sizes: Sequence[int] = PATCH_SIZES, **kwargs):
        super().__init__(net, **kwargs)
        if net.config.in_channels != net.config.out_channels + POSITION_CHANNELS:
            raise ShapeError(f"a patch prior's U-Net takes {net.config.out_channels} + {POSITION_CHANNELS} input "
                             f"channels (image and position), not {net.config.in_channels}")
        self.patch_sizes = tuple(int(p) for p in patch_sizes)

    def forward(self, x, sigma, contrast_labels=None, augment_labels=None, positions=None):
        """Denoised patches ``[B, 2, p, p]``; ``positions`` ``[B, 2, p, p]`` from :func:`position_channels`."""
        if positions is None or positions.shape[0] != x.shape[0] or positions.shape[-2:] != x.shape[-2:]:
            raise ShapeError("a patch prior needs the patches' positions [B, 2, p, p] "
                             "(use AssembledDenoiser for whole images)")
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1)
        if sigma.numel() == 1:
            sigma = sigma.expand(x.shape[0])
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma.reshape(-1, 1, 1, 1))
        x32 = x.to(torch.float32)
        net_in = torch.cat([c_in * x32, positions.to(torch.float32)], dim=1)
        f_x = self.net(net_in, c_noise.flatten(), contrast_labels, augment_labels)
        return (c_skip * x32 + c_out * f_x.to(torch.float32)).to(x.dtype)


class AssembledDenoiser(nn.Module):
    """Whole-image denoiser from a :class:`PatchPrecond`: the image, padded with noise of the current
    level, is cut into ``patch_size`` tiles at a random offset, each tile is denoised with its position,
    and the tiles are put back. A fresh offset at every call moves the seams between sampler steps.

    ``tiling="whole"`` instead runs the (fully convolutional) network once on the whole image with
    its positions: no seams and no offset, and on a 128 x 128 slice a quarter of the pixels the
    shifted 64-pixel tiles cover (9 tiles, 192 x 192), so about half the time on the CPU; through the
    chain at equal time it allows twice the posterior draws (benchmarks/results/patch_tiling.md).

    ``generator`` (CPU) draws the offsets; :meth:`reseed` makes a run repeatable.
    """

    TILINGS = PATCH_TILINGS

    def __init__(self, patch_prior: PatchPrecond, patch_size: Optional[int] = None, chunk: int = 64,
                 seed: int = 0, tiling: str = "shifted"):
        super().__init__()
        if tiling not in self.TILINGS:
            raise ValueError(f"tiling must be one of {self.TILINGS}, got {tiling!r}")
        self.patch_prior = patch_prior
        self.tiling = tiling
        self.patch_size = int(patch_size or max(patch_prior.patch_sizes))
        if self.patch_size % patch_prior.net.config.size_multiple:
            raise ShapeError(f"patch size {self.patch_size} is not a multiple of the U-Net's "
                             f"{patch_prior.net.config.size_multiple}")
        self.chunk = int(chunk)
        self.generator = torch.Generator().manual_seed(seed)

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed))

    def __getattr__(self, name):  # sigma_min, sigma_max, sigma_data, label_dim, vocabulary, normalization, ...
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("patch_prior"), name)

    def denoise_complex(self, x: torch.Tensor, sigma, contrast_labels=None) -> torch.Tensor:
        """Complex ``[B, H, W]`` in, complex64 ``[B, H, W]`` denoised out."""
        return channels_to_complex(self(complex_to_channels(x), sigma, contrast_labels))

    def forward(self, x: torch.Tensor, sigma: Union[float, torch.Tensor], contrast_labels=None,
                augment_labels=None) -> torch.Tensor:
        if x.ndim != 4:
            raise ShapeError(f"AssembledDenoiser expects x of shape [B, C, H, W], got {tuple(x.shape)}")
        b, c, h, w = x.shape
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1)
        sigma = sigma.expand(b) if sigma.numel() == 1 else sigma
        if self.tiling == "whole":  # one square tile over the image (padded to the U-Net's multiple)
            multiple = self.patch_prior.net.config.size_multiple
            p = math.ceil(max(h, w) / multiple) * multiple
            dy = dx = 0
        else:
            p = self.patch_size
            dy, dx = (int(v) for v in torch.randint(0, p, (2,), generator=self.generator))
        rows, cols = math.ceil((h + dy) / p), math.ceil((w + dx) / p)
        big_h, big_w = rows * p, cols * p
        if (big_h, big_w) == (h, w):  # the tiles cover the slice exactly (whole tiling at the U-Net's multiple)
            canvas = torch.empty((b, c, h, w), device=x.device, dtype=torch.float32)
        else:  # outside the slice: zeros plus noise of this level, as the padded training patches were
            canvas = torch.randn((b, c, big_h, big_w), generator=self.generator).to(x.device, torch.float32)
            canvas = canvas * sigma.reshape(-1, 1, 1, 1)
        canvas[:, :, dy:dy + h, dx:dx + w] = x.to(torch.float32)
        tiles = canvas.reshape(b, c, rows, p, cols, p).permute(0, 2, 4, 1, 3, 5).reshape(b * rows * cols, c, p, p)
        tops = (torch.arange(rows, device=x.device) * p - dy).repeat_interleave(cols).repeat(b)
        lefts = (torch.arange(cols, device=x.device) * p - dx).repeat(rows).repeat(b)
        positions = position_channels(tops, lefts, p, h, w, device=x.device)
        per_tile_sigma = sigma.repeat_interleave(rows * cols)
        labels = contrast_labels
        if labels is not None:
            labels = labels.expand(b, -1) if labels.shape[0] == 1 else labels
            labels = labels.repeat_interleave(rows * cols, dim=0)
        out = torch.empty_like(tiles)
        for start in range(0, tiles.shape[0], self.chunk):
            part = slice(start, start + self.chunk)
            out[part] = self.patch_prior(tiles[part], per_tile_sigma[part],
                                         None if labels is None else labels[part], None, positions[part])
        out = out.reshape(b, rows, cols, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, big_h, big_w)
        return out[:, :, dy:dy + h, dx:dx + w].to(x.dtype)


def whole_image_prior(prior, seed: int = 0, tiling: str = "shifted"):
    """What a sampler should call for whole images: the prior itself, or a patch prior's assembly
    (``tiling``: :attr:`AssembledDenoiser.TILINGS`; a whole-image prior ignores it)."""
    if isinstance(prior, PatchPrecond):
        return AssembledDenoiser(prior, seed=seed, tiling=tiling)
    return prior


def patches_per_image(image_size: int, patch_size: int) -> int:
    """Patches cut from each slice of a batch: a quarter of the tiles that would cover it (PaDIS-MRI cuts
    batches of patches; here a step on patches costs about a quarter of a step on whole slices)."""
    return max(1, (image_size // patch_size) ** 2 // 4)


def patch_loss(loss_fn, net, images, contrast_labels, augment_pipe, generator, patch_size: int, per_image: int):
    """EDM loss on random patches of ``images``: augment whole slices first (so a flipped slice keeps its
    positions right), then cut ``per_image`` patches of each and train on them with their positions."""
    augment_labels = None
    if augment_pipe is not None:
        images, augment_labels = augment_pipe(images, generator=generator)
    patches, positions = random_patches(images, patch_size, per_image=per_image, generator=generator)
    labels = None if contrast_labels is None else contrast_labels.repeat_interleave(per_image, dim=0)
    if augment_labels is not None:
        augment_labels = augment_labels.repeat_interleave(per_image, dim=0)

    def denoise(x, sigma, labels_, _augment):
        return net(x, sigma, labels_, augment_labels, positions)

    return loss_fn(denoise, patches, labels, augment_pipe=None, generator=generator)
