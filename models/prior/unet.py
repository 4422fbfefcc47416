"""Contrast-conditioned U-Net denoiser backbone ``F_theta`` for the EDM prior.

Architecture in the spirit of DDPM++ / ADM as used by EDM (Karras et al. 2022,
"Elucidating the Design Space of Diffusion-Based Generative Models", NeurIPS;
Song et al. 2021 "Score-Based Generative Modeling through SDEs"; Dhariwal &
Nichol 2021): residual blocks with GroupNorm + SiLU and an embedding-driven
scale/shift, optional dropout, self-attention at chosen resolutions, average-pool
down-sampling, nearest up-sampling, and encoder -> decoder skip connections.

Conditioning (one embedding vector per image, given to every block):
``emb = SiLU(noise_mlp(pos_emb(c_noise)) + contrast_mlp(one_hot) + augment_map(aug))``.
The contrast net is ``Linear(label_dim, E) -> SiLU -> Linear(E, E)``; its first
layer is the one :func:`models.prior.contrasts.add_contrast_slot` widens.

Input / output: real float32 ``[B, in_channels, H, W]`` (two channels = real and
imaginary part of a complex image, see :mod:`models.prior.channels`), with ``H``
and ``W`` divisible by ``2 ** (len(channel_mult) - 1)``.
"""

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from models.errors import ReconInputError, ShapeError

_SKIP_SCALE = math.sqrt(0.5)


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNet`; round-trips through :meth:`to_dict` / :meth:`from_dict`.

    ``img_resolution`` is the nominal (square) training size: attention is placed at
    the levels whose resolution ``img_resolution / 2**level`` is in
    ``attn_resolutions``. Other sizes run through the same levels.
    """

    img_resolution: int = 64
    in_channels: int = 2
    out_channels: int = 2
    label_dim: int = 0
    augment_dim: int = 0
    model_channels: int = 64
    channel_mult: Tuple[int, ...] = (1, 2, 2, 2)
    channel_mult_emb: int = 4
    num_blocks: int = 2
    attn_resolutions: Tuple[int, ...] = (16,)
    dropout: float = 0.1
    num_heads: int = 1
    max_positions: int = 10000

    def __post_init__(self):
        object.__setattr__(self, "channel_mult", tuple(int(c) for c in self.channel_mult))
        object.__setattr__(self, "attn_resolutions", tuple(int(r) for r in self.attn_resolutions))
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ReconInputError(f"channel_mult must be non-empty positive ints, got {self.channel_mult}")
        if self.model_channels < 1 or self.num_blocks < 1:
            raise ReconInputError("model_channels and num_blocks must be >= 1")
        if self.label_dim < 0 or self.augment_dim < 0:
            raise ReconInputError("label_dim and augment_dim must be >= 0")
        if self.img_resolution % (2 ** (len(self.channel_mult) - 1)):
            raise ShapeError(
                f"img_resolution {self.img_resolution} is not divisible by 2**{len(self.channel_mult) - 1}"
            )

    @property
    def emb_channels(self) -> int:
        return self.model_channels * self.channel_mult_emb

    @property
    def size_multiple(self) -> int:
        """Image height and width must be multiples of this."""
        return 2 ** (len(self.channel_mult) - 1)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        d["attn_resolutions"] = list(self.attn_resolutions)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ReconInputError(f"unknown UNetConfig fields: {unknown}")
        return cls(**d)


def unet_preset(
    name: str, img_resolution: int, label_dim: int, augment_dim: int = 0, **overrides
) -> UNetConfig:
    """Named architecture presets (self-attention at the lowest-resolution level).

    - ``"tiny"``: tests only, under 200k parameters (2 levels, 16 channels).
    - ``"cpu-small"``: a few million parameters, trainable on a CPU in hours.
    - ``"gpu-base"``: tens of millions of parameters, DDPM++-like, for a GPU.
    """
    presets = {
        "tiny": dict(model_channels=16, channel_mult=(1, 2), channel_mult_emb=2, num_blocks=1, dropout=0.0, n_attn=1),
        # measured on 2 CPU cores at 128x128 (models/weights/provenance): a narrow top level keeps
        # the full-resolution convolutions cheap; depth and width sit at low resolution
        "cpu-small": dict(model_channels=16, channel_mult=(1, 2, 4, 8), num_blocks=2, dropout=0.05, n_attn=1),
        "gpu-base": dict(model_channels=128, channel_mult=(1, 2, 2, 2), num_blocks=3, dropout=0.1, n_attn=1),
    }
    if name not in presets:
        raise ReconInputError(f"unknown U-Net preset {name!r}; choose one of {sorted(presets)}")
    p = dict(presets[name])
    n_attn = p.pop("n_attn")
    levels = len(p["channel_mult"])
    p["attn_resolutions"] = tuple(img_resolution >> lvl for lvl in range(levels - n_attn, levels))
    p.update(img_resolution=img_resolution, label_dim=label_dim, augment_dim=augment_dim)
    p.update(overrides)
    return UNetConfig(**p)


def _groups(channels: int) -> int:
    """GroupNorm groups: 32 when possible, else the largest divisor giving >= 4 channels per group."""
    for g in (32, 16, 8, 4, 2, 1):
        if channels % g == 0 and channels // g >= 4:
            return g
    return 1


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding of a scalar per image (transformer-style, as in DDPM++)."""

    def __init__(self, num_channels: int, max_positions: int = 10000):
        super().__init__()
        self.num_channels = num_channels
        self.max_positions = max_positions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        freqs = torch.arange(half, dtype=torch.float32, device=x.device) / max(half - 1, 1)
        freqs = (1.0 / self.max_positions) ** freqs
        arg = x.to(torch.float32)[:, None] * freqs[None, :]
        return torch.cat([arg.cos(), arg.sin()], dim=1)


class Attention(nn.Module):
    """Multi-head self-attention over all pixels, residual, with GroupNorm in front."""

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        if channels % num_heads:
            raise ReconInputError(f"{channels} channels not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(_groups(channels), channels, eps=1e-6)
        self.qkv = nn.Conv2d(channels, channels * 3, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return (x + self.proj(out)) * _SKIP_SCALE


class UNetBlock(nn.Module):
    """Residual block: GN-SiLU-(resample)-conv, embedding scale/shift, GN-SiLU-dropout-conv.

    The sum with the (1x1-projected, resampled) input is scaled by sqrt(1/2) to keep
    the activation variance from growing with depth. ``resample`` is ``"down"``
    (2x2 average pool), ``"up"`` (nearest x2) or ``None``.
    """

    def __init__(self, in_ch: int, out_ch: int, emb_ch: int, resample: Optional[str] = None,
                 attention: bool = False, num_heads: int = 1, dropout: float = 0.0):
        super().__init__()
        self.resample = resample
        self.norm0 = nn.GroupNorm(_groups(in_ch), in_ch, eps=1e-6)
        self.conv0 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.affine = nn.Linear(emb_ch, out_ch * 2)
        self.norm1 = nn.GroupNorm(_groups(out_ch), out_ch, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if (in_ch != out_ch or resample) else None
        self.attn = Attention(out_ch, num_heads) if attention else None

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, 2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(self._resample(F.silu(self.norm0(x))))
        scale, shift = self.affine(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))
        h = self.conv1(self.dropout(h))
        skip = self._resample(x)
        if self.skip is not None:
            skip = self.skip(skip)
        x = (h + skip) * _SKIP_SCALE
        if self.attn is not None:
            x = self.attn(x)
        return x


class UNet(nn.Module):
    """EDM-style U-Net ``F(x, c_noise, contrast, augment) -> [B, out_channels, H, W]``.

    ``forward(x, noise_labels, contrast_labels, augment_labels=None)``:
    ``x`` real ``[B, in_channels, H, W]``; ``noise_labels`` ``[B]`` or scalar
    (EDM's ``c_noise``); ``contrast_labels`` one-hot float ``[B, label_dim]``
    (or ``[1, label_dim]``, broadcast); ``augment_labels`` ``[B, augment_dim]``,
    ``None`` meaning "not augmented" (zeros).
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        c = config
        emb_ch = c.emb_channels
        self.map_noise = PositionalEmbedding(c.model_channels, c.max_positions)
        self.noise_mlp = nn.Sequential(nn.Linear(c.model_channels, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))
        self.contrast_mlp = (
            nn.Sequential(nn.Linear(c.label_dim, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))
            if c.label_dim else None
        )
        self.map_augment = nn.Linear(c.augment_dim, emb_ch, bias=False) if c.augment_dim else None

        block = dict(emb_ch=emb_ch, num_heads=c.num_heads, dropout=c.dropout)
        self.conv_in = nn.Conv2d(c.in_channels, c.model_channels, 3, padding=1)
        self.enc = nn.ModuleList()
        skip_channels = [c.model_channels]
        cout = c.model_channels
        for level, mult in enumerate(c.channel_mult):
            attn = (c.img_resolution >> level) in c.attn_resolutions
            if level > 0:
                self.enc.append(UNetBlock(cout, cout, resample="down", **block))
                skip_channels.append(cout)
            for _ in range(c.num_blocks):
                cin, cout = cout, c.model_channels * mult
                self.enc.append(UNetBlock(cin, cout, attention=attn, **block))
                skip_channels.append(cout)

        self.mid = nn.ModuleList([
            UNetBlock(cout, cout, attention=True, **block),
            UNetBlock(cout, cout, **block),
        ])
        self.dec = nn.ModuleList()
        for level, mult in reversed(list(enumerate(c.channel_mult))):
            attn = (c.img_resolution >> level) in c.attn_resolutions
            if level < len(c.channel_mult) - 1:
                self.dec.append(UNetBlock(cout, cout, resample="up", **block))
            for _ in range(c.num_blocks + 1):
                cin, cout = cout + skip_channels.pop(), c.model_channels * mult
                self.dec.append(UNetBlock(cin, cout, attention=attn, **block))
        self.norm_out = nn.GroupNorm(_groups(cout), cout, eps=1e-6)
        self.conv_out = nn.Conv2d(cout, c.out_channels, 3, padding=1)

    def _check(self, x, contrast_labels, augment_labels):
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.in_channels:
            raise ShapeError(f"UNet expects x of shape [B, {c.in_channels}, H, W], got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % c.size_multiple or w % c.size_multiple:
            raise ShapeError(
                f"image size {h}x{w} is not divisible by 2**{len(c.channel_mult) - 1} = {c.size_multiple} "
                f"(the U-Net has {len(c.channel_mult)} levels); pad or crop the image"
            )
        if c.label_dim:
            if contrast_labels is None:
                raise ShapeError(f"this prior is contrast-conditioned: contrast_labels [B, {c.label_dim}] is required")
            if contrast_labels.ndim != 2 or contrast_labels.shape[1] != c.label_dim or \
                    contrast_labels.shape[0] not in (1, x.shape[0]):
                raise ShapeError(
                    f"contrast_labels must be [B or 1, {c.label_dim}], got {tuple(contrast_labels.shape)}"
                )
        if augment_labels is not None and (
            not c.augment_dim or augment_labels.shape[-1] != c.augment_dim
        ):
            raise ShapeError(
                f"augment_labels of shape {tuple(augment_labels.shape)} do not match augment_dim={c.augment_dim}"
            )

    def embedding(self, noise_labels, contrast_labels=None, augment_labels=None, batch: int = 1):
        """Per-image conditioning vector ``[B, emb_channels]`` given to every block."""
        noise_labels = torch.as_tensor(noise_labels, dtype=torch.float32, device=self.conv_in.weight.device)
        noise_labels = noise_labels.reshape(-1).expand(batch) if noise_labels.numel() == 1 else noise_labels.reshape(-1)
        if noise_labels.shape[0] != batch:
            raise ShapeError(f"noise_labels has {noise_labels.shape[0]} entries for a batch of {batch}")
        emb = self.noise_mlp(self.map_noise(noise_labels))
        if self.contrast_mlp is not None:
            emb = emb + self.contrast_mlp(contrast_labels.to(emb.dtype))
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels.to(emb.dtype))
        return F.silu(emb)

    def forward(self, x, noise_labels, contrast_labels=None, augment_labels=None):
        self._check(x, contrast_labels, augment_labels)
        emb = self.embedding(noise_labels, contrast_labels, augment_labels, batch=x.shape[0])
        if emb.shape[0] != x.shape[0]:
            emb = emb.expand(x.shape[0], -1)
        h = self.conv_in(x)
        skips = [h]
        for blk in self.enc:
            h = blk(h, emb)
            skips.append(h)
        for blk in self.mid:
            h = blk(h, emb)
        for blk in self.dec:
            if blk.resample != "up":
                h = torch.cat([h, skips.pop()], dim=1)
            h = blk(h, emb)
        return self.conv_out(F.silu(self.norm_out(h)))


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
