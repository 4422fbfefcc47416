"""Exponential moving average (EMA) of network weights.

Two ways to set the decay per update:

- EDM style (Karras et al. 2022, ``ema_halflife_kimg``): a half-life in training
  images, ``beta = 0.5 ** (batch_size / halflife_images)``, optionally with a
  ramp-up that caps the half-life at ``rampup_ratio * images_seen`` early on;
- a fixed ``decay`` per update (``beta = decay``).

Update: ``ema = beta * ema + (1 - beta) * weights`` for every floating-point
parameter and buffer; integer buffers are copied.
"""

import copy
from typing import Optional

import torch
from torch import nn

from models.errors import ReconInputError


class EMA:
    """EMA copy of ``model``; ``ema.module`` is the averaged model (eval mode, no grads)."""

    def __init__(
        self,
        model: nn.Module,
        halflife_images: Optional[float] = None,
        rampup_ratio: Optional[float] = None,
        decay: Optional[float] = None,
    ):
        if (halflife_images is None) == (decay is None):
            raise ReconInputError("EMA needs exactly one of halflife_images or decay")
        if decay is not None and not 0.0 <= decay < 1.0:
            raise ReconInputError(f"EMA decay must be in [0, 1), got {decay}")
        if halflife_images is not None and halflife_images <= 0:
            raise ReconInputError(f"EMA halflife_images must be > 0, got {halflife_images}")
        self.halflife_images = halflife_images
        self.rampup_ratio = rampup_ratio
        self.decay = decay
        self.images_seen = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def beta(self, batch_size: int) -> float:
        """Decay for the next update; the ramp-up counts images seen including this batch."""
        if self.decay is not None:
            return self.decay
        halflife = self.halflife_images
        if self.rampup_ratio is not None:
            halflife = min(halflife, (self.images_seen + batch_size) * self.rampup_ratio)
        return 0.5 ** (batch_size / max(halflife, 1e-8))

    @torch.no_grad()
    def update(self, model: nn.Module, batch_size: int = 1) -> float:
        """Fold the current weights of ``model`` into the average; returns the beta used."""
        beta = self.beta(batch_size)
        src = dict(model.state_dict())
        averaged, current = [], []
        for name, ema_t in self.module.state_dict().items():
            cur = src[name].detach()
            if ema_t.is_floating_point():
                averaged.append(ema_t)
                current.append(cur.to(ema_t.dtype))
            else:
                ema_t.copy_(cur)
        if averaged:  # one fused kernel per group instead of one per tensor (matters on a GPU)
            torch._foreach_lerp_(averaged, current, 1.0 - beta)
        self.images_seen += batch_size
        return beta

    def state_dict(self) -> dict:
        return {
            "module": self.module.state_dict(),
            "images_seen": self.images_seen,
            "halflife_images": self.halflife_images,
            "rampup_ratio": self.rampup_ratio,
            "decay": self.decay,
        }

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.images_seen = int(state["images_seen"])
        self.halflife_images = state["halflife_images"]
        self.rampup_ratio = state["rampup_ratio"]
        self.decay = state["decay"]
