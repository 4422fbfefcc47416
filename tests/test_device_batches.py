"""DeviceBatches: the GPU-resident replacement of the training DataLoader (tested on the CPU)."""

import numpy as np
import torch

from models.data.slice_bank import BankRecord, SliceBank
from models.prior.contrasts import ContrastVocabulary
from models.training.batches import DeviceBatches


def _bank(n=10, size=8):
    rng = np.random.default_rng(0)
    images = (rng.standard_normal((n, size, size)) + 1j * rng.standard_normal((n, size, size))).astype(np.complex64)
    images[:, 0, 0] = np.arange(n)  # a tag to find each slice again
    contrast = np.array(["T1" if i % 2 else "T2" for i in range(n)])
    record = BankRecord(images, contrast, np.array([f"s{i}" for i in range(n)]), np.array(["x"] * n),
                        np.zeros(n, dtype=int))
    return SliceBank(record, ["T1", "T2"], ContrastVocabulary(["T1", "T2"]))


def test_batches_match_the_loader_items_and_cover_each_epoch():
    bank = _bank()
    batches = DeviceBatches(bank, batch_size=5, device="cpu", seed=3)
    assert len(batches) == 2
    it = iter(batches)
    seen = []
    for _ in range(2):  # one epoch
        images, labels = next(it)
        assert images.shape == (5, 2, 8, 8) and images.dtype == torch.float32 and labels.dtype == torch.long
        for image, label in zip(images, labels):
            k = int(image[0, 0, 0])
            expected_image, expected_label = bank[k]
            torch.testing.assert_close(image, expected_image)
            assert int(label) == int(expected_label)
            seen.append(k)
    assert sorted(seen) == list(range(10))


def test_incomplete_last_batch_is_dropped_and_order_is_seeded():
    bank = _bank(n=7)
    first = [next(iter(DeviceBatches(bank, 3, "cpu", seed=1)))[0][:, 0, 0, 0] for _ in range(2)]
    torch.testing.assert_close(first[0], first[1])
    assert len(DeviceBatches(bank, 3, "cpu")) == 2  # 7 slices: two batches of 3, one slice left out per epoch
    small = next(iter(DeviceBatches(bank, 16, "cpu")))[0]
    assert small.shape[0] == 7  # a bank smaller than a batch gives it whole, as the loader does
