"""Contrast vocabulary: ordered contrast names -> one-hot slots of the prior.

The method conditions the score model on the contrast with a one-hot vector;
a new contrast (the fine-tuning target) gets a new slot appended at the end, so
existing slots keep their index. The vocabulary is stored in the checkpoint
metadata next to the weights (see :mod:`models.prior.checkpoint`).
"""

from dataclasses import dataclass
from typing import Iterable, Sequence, Tuple, Union

import torch

from models.errors import ReconInputError, UnknownContrastError


@dataclass(frozen=True)
class ContrastVocabulary:
    """Immutable ordered tuple of contrast names; slot ``i`` is ``names[i]``."""

    names: Tuple[str, ...]

    def __init__(self, names: Iterable[str]):
        names = tuple(str(n) for n in names)
        if len(set(names)) != len(names):
            raise ReconInputError(f"duplicate contrast names in vocabulary: {list(names)}")
        if any(not n for n in names):
            raise ReconInputError("contrast names must be non-empty strings")
        object.__setattr__(self, "names", names)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    @property
    def label_dim(self) -> int:
        """Number of one-hot slots (the network's ``label_dim``)."""
        return len(self.names)

    def index(self, name: str) -> int:
        """Slot of ``name``; raises :class:`UnknownContrastError` listing known names."""
        try:
            return self.names.index(name)
        except ValueError:
            raise UnknownContrastError(
                f"unknown contrast {name!r}; this prior knows {list(self.names)}"
            ) from None

    def one_hot(
        self,
        names: Union[str, Sequence[str]],
        device: Union[str, torch.device, None] = None,
    ) -> torch.Tensor:
        """One-hot float32 labels ``[B, label_dim]`` for a name or a list of ``B`` names."""
        if isinstance(names, str):
            names = [names]
        idx = torch.tensor([self.index(n) for n in names], dtype=torch.long)
        labels = torch.nn.functional.one_hot(idx, num_classes=len(self.names))
        return labels.to(device=device, dtype=torch.float32)

    def add(self, name: str) -> "ContrastVocabulary":
        """New vocabulary with ``name`` appended as the last slot (this one is unchanged)."""
        if name in self.names:
            raise ReconInputError(f"contrast {name!r} already has slot {self.index(name)}")
        return ContrastVocabulary(self.names + (name,))

    def to_list(self):
        """JSON-friendly list of names in slot order."""
        return list(self.names)


@torch.no_grad()
def add_contrast_slot(
    model: torch.nn.Module, vocabulary: ContrastVocabulary, name: str, init: str = "mean"
) -> ContrastVocabulary:
    """Give ``model`` a new one-hot contrast slot for ``name``; returns the grown vocabulary.

    ``model`` is a :class:`~models.prior.unet.UNet` or an
    :class:`~models.prior.precond.EDMPrecond` (whose ``vocabulary`` attribute is
    updated too). The first layer of the contrast net, ``Linear(label_dim, E)``,
    gains one input column; old columns, the bias and everything else are kept,
    so outputs for old one-hot labels are bit-for-bit unchanged (their new entry
    is 0). ``init`` sets the new column:

    - ``"mean"`` (default): mean of the existing columns, so the new contrast
      starts at the average pre-activation of the known contrasts, a neutral
      point for fine-tuning (the method's new slot for the target contrast);
    - ``"zero"``: zero, so the new label first maps to the bias alone.
    """
    net = getattr(model, "net", model)
    mlp = getattr(net, "contrast_mlp", None)
    if mlp is None:
        raise ReconInputError("this network is not contrast-conditioned (label_dim = 0); cannot add a slot")
    first = mlp[0]
    if first.in_features != len(vocabulary):
        raise ReconInputError(
            f"vocabulary has {len(vocabulary)} contrasts but the network has {first.in_features} slots"
        )
    if init not in ("mean", "zero"):
        raise ReconInputError(f"init must be 'mean' or 'zero', got {init!r}")
    new_vocab = vocabulary.add(name)
    w = first.weight
    col = w.mean(dim=1, keepdim=True) if (init == "mean" and w.shape[1]) else torch.zeros_like(w[:, :1])
    grown = torch.nn.Linear(first.in_features + 1, first.out_features, device=w.device, dtype=w.dtype)
    grown.weight.copy_(torch.cat([w, col], dim=1))
    grown.bias.copy_(first.bias)
    grown.weight.requires_grad_(w.requires_grad)
    grown.bias.requires_grad_(first.bias.requires_grad)
    mlp[0] = grown
    net.config = type(net.config).from_dict({**net.config.to_dict(), "label_dim": len(new_vocab)})
    if hasattr(model, "vocabulary"):
        model.vocabulary = new_vocab
    return new_vocab
