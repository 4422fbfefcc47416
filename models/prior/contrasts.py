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
