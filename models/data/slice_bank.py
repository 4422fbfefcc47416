"""Slice banks: pre-generated, normalised training slices in one HDF5 file.

Synthesising contrasts and elastic deformations on the fly is too slow for a
2-core CPU, so :mod:`models.data` writes them once into a bank and training
reads the bank into memory. Layout (all datasets have the same first axis N):

- ``images``: complex64 ``[N, H, W]``, already intensity-normalised
  (:mod:`models.prior.normalization`);
- ``contrast``, ``subject``, ``source``: UTF-8 strings ``[N]``;
- ``slice_index``: int ``[N]``;
- file attribute ``normalization``: JSON of the rule used.

A :class:`SliceBank` selects slices by contrast and by number of subjects
(the method's "20 target subjects"), and serves ``(channels [2, H, W], label)``
pairs for a given :class:`~models.prior.contrasts.ContrastVocabulary`.
"""

import json
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from models.errors import ReconInputError

STRING = h5py.string_dtype("utf-8")


class BankRecord(NamedTuple):
    images: np.ndarray  # complex64 [N, H, W]
    contrast: np.ndarray  # str [N]
    subject: np.ndarray  # str [N]
    source: np.ndarray  # str [N]
    slice_index: np.ndarray  # int [N]
    pixel_mm: Optional[np.ndarray] = None  # float [N], the in-plane pixel size; None: not recorded


def write_slice_bank(path, images, contrast, subject, source, slice_index, normalization: dict,
                     pixel_mm=None) -> Path:
    """Write a bank (see module doc); arrays are in slice order. ``pixel_mm``: each slice's pixel size."""
    path = Path(path)
    n = len(images)
    if not (len(contrast) == len(subject) == len(source) == len(slice_index) == n):
        raise ReconInputError("slice bank: all fields need one entry per slice")
    if pixel_mm is not None and len(pixel_mm) != n:
        raise ReconInputError("slice bank: pixel_mm needs one entry per slice")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("images", data=np.asarray(images, dtype=np.complex64), chunks=True, compression="gzip",
                         compression_opts=1)
        for name, values in (("contrast", contrast), ("subject", subject), ("source", source)):
            f.create_dataset(name, data=np.asarray([str(v) for v in values], dtype=object), dtype=STRING)
        f.create_dataset("slice_index", data=np.asarray(slice_index, dtype=np.int32))
        if pixel_mm is not None:
            f.create_dataset("pixel_mm", data=np.asarray(pixel_mm, dtype=np.float32))
        f.attrs["normalization"] = json.dumps(normalization)
    tmp.replace(path)
    return path


def _pixel_sizes(f) -> Optional[np.ndarray]:
    """Per-slice pixel sizes: the bank's own, else its build spec's fixed field of view / matrix."""
    n = f["images"].shape[0]
    if "pixel_mm" in f:
        return f["pixel_mm"][()].astype(np.float32)
    try:
        spec = json.loads(f.attrs.get("normalization", "{}")).get("spec")
    except (TypeError, ValueError):
        return None
    if isinstance(spec, dict) and spec.get("fov_mm") and spec.get("matrix"):
        return np.full(n, float(spec["fov_mm"]) / float(spec["matrix"]), dtype=np.float32)
    return None


def read_slice_bank(path) -> BankRecord:
    """Read a whole bank into memory, with clear errors for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise ReconInputError(f"slice bank {path} not found")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("images", "contrast", "subject", "source", "slice_index") if k not in f]
            if missing:
                raise ReconInputError(f"slice bank {path} lacks datasets {missing}")
            record = BankRecord(
                images=f["images"][()],
                contrast=np.asarray(f["contrast"].asstr()[()]),
                subject=np.asarray(f["subject"].asstr()[()]),
                source=np.asarray(f["source"].asstr()[()]),
                slice_index=f["slice_index"][()],
                pixel_mm=_pixel_sizes(f),
            )
    except OSError as exc:
        raise ReconInputError(f"slice bank {path} is not a readable HDF5 file: {exc}") from None
    if record.images.ndim != 3 or not np.iscomplexobj(record.images):
        raise ReconInputError(f"slice bank {path}: images must be complex [N, H, W], got {record.images.shape}")
    return record


class SliceBank(Dataset):
    """Training slices of the chosen contrasts as ``(channels [2, H, W] float32, label int)``.

    Args:
        record: a :class:`BankRecord`.
        contrasts: contrasts to keep.
        vocabulary: maps contrast names to label slots.
        limit_subjects: ``{contrast: k}`` keeps only k subjects of that contrast,
            chosen by a seeded permutation of the sorted subject ids.
        seed: seed of that choice.
    """

    def __init__(self, record: BankRecord, contrasts: Sequence[str], vocabulary,
                 limit_subjects: Optional[dict] = None, seed: int = 0):
        keep = np.isin(record.contrast, list(contrasts))
        for name, k in (limit_subjects or {}).items():
            if k is None:
                continue
            subjects = sorted(set(record.subject[record.contrast == name]))
            if len(subjects) < k:
                raise ReconInputError(f"slice bank has {len(subjects)} subjects of {name}, {k} requested")
            chosen = set(np.random.default_rng(seed).permutation(subjects)[:k])
            keep &= (record.contrast != name) | np.isin(record.subject, list(chosen))
        if not keep.any():
            raise ReconInputError(f"slice bank holds no slices of contrasts {list(contrasts)}")
        self.images = torch.from_numpy(np.ascontiguousarray(record.images[keep]))
        self.contrast = record.contrast[keep]
        self.subject = record.subject[keep]
        self.labels = torch.tensor([vocabulary.index(c) for c in self.contrast], dtype=torch.long)
        self.pixel_mm = None if record.pixel_mm is None else record.pixel_mm[keep]

    @property
    def pixel_range_mm(self) -> Optional[list]:
        """``[smallest, largest]`` pixel size of the kept slices (mm), or None when the bank does not say."""
        if self.pixel_mm is None:
            return None
        return [round(float(self.pixel_mm.min()), 3), round(float(self.pixel_mm.max()), 3)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        image = self.images[i]
        return torch.stack([image.real, image.imag]).to(torch.float32), self.labels[i]

    @property
    def num_subjects(self) -> dict:
        """``{contrast: number of distinct subjects}``."""
        return {c: len(set(self.subject[self.contrast == c])) for c in sorted(set(self.contrast))}
