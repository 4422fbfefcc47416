"""Training batches drawn from a slice bank held in the training device's memory.

On a GPU, a ``DataLoader`` with ``num_workers=0`` gathers, converts and copies every
batch on the host while the GPU waits: at batch 256 this cost about a third of the
step on an H200 (1714 against 2555 images/s, ``benchmarks/results/gpu_train_throughput.md``).
A bank of a few thousand 128x128 slices is a few hundred MB, so it can live on the
GPU whole; each epoch is then one seeded permutation there and a batch is one
indexing operation. Same semantics as the loader it replaces: shuffled epochs,
the last incomplete batch dropped when the bank holds at least one batch.
"""

from typing import Iterator, Tuple

import torch

from models.data.slice_bank import SliceBank


class DeviceBatches:
    """Infinite iterator of ``(images [B, 2, H, W] float32, labels [B] long)`` on ``device``."""

    def __init__(self, bank: SliceBank, batch_size: int, device, seed: int = 0):
        self.device = torch.device(device)
        self.images = torch.view_as_real(bank.images).permute(0, 3, 1, 2).to(self.device, torch.float32)
        self.images = self.images.contiguous()
        self.labels = bank.labels.to(self.device)
        self.batch_size = int(batch_size)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self.labels)
        return n // self.batch_size if n >= self.batch_size else 1

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        while True:
            order = torch.randperm(n, generator=self.generator, device=self.device)
            for k in range(len(self)):
                idx = order[k * self.batch_size:(k + 1) * self.batch_size]
                yield self.images[idx], self.labels[idx]
