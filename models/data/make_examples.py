"""Build the bundled example scans under ``models/data/examples/``.

Default output (about 2 MB, deterministic for a seed):

* ``flair_R4.h5``: prospectively undersampled ISMRMRD raw file, R = 4 equispaced,
  24 embedded ACS lines, 128 x 128 reconstruction matrix (256 readout samples,
  2x oversampling), 8 coils, 2 slices, noise scan first;
* ``flair_truth.npz``: the noiseless source images ``image`` ``[S, H, W]``
  complex64 (for scoring), the ``lesion`` fractions, and the provenance
  (``subject_id``, ``source``, ``slice_index``).

The anatomy is a FLAIR slice with stroke lesions of a TEST-split subject
(:mod:`models.data.splits`, :mod:`models.data.anatomy`); when that source's
package is not installed the coil-simulation phantom is used instead and the
provenance says so. ``--accelerations 4 6 --fully-sampled`` writes more
variants (the fully sampled twin shares every noise sample with the
undersampled files of the same seed).

Run: ``python -m models.data.make_examples [--out DIR]``.
"""

import argparse
import json
import logging
import os
from typing import List, Optional, Sequence

import numpy as np
import torch

from models.data.raw_simulator import RawProtocol, simulate_raw
from models.errors import DataSourceError

log = logging.getLogger(__name__)

EXAMPLES_DIR = os.path.join(os.path.dirname(__file__), "examples")
EXAMPLE_SUBJECT = "colin27-0000"  # test split: never seen in training
EXAMPLE_SLICES = (8, 7)  # superior first: slice_dir points to the feet; both hold lesions
FOV_MM = 240.0


def example_images(matrix=(128, 128), subject_id: str = EXAMPLE_SUBJECT, slices: Sequence[int] = EXAMPLE_SLICES,
                   seed: int = 0):
    """FLAIR images ``[S, H, W]`` complex64, lesion fractions ``[S, H, W]`` and a provenance dict."""
    try:
        from models.data.anatomy import make_subject
        subject = make_subject(subject_id, seed=seed, lesion_probability=1.0)
        samples = [subject.sample(k, "FLAIR", matrix=tuple(matrix), fov_mm=FOV_MM) for k in slices]
        images = np.stack([s.image for s in samples])
        lesions = np.stack([s.lesion for s in samples])
        provenance = {"anatomy": "models.data.anatomy", "subject_id": subject_id, "source": samples[0].source,
                      "slice_index": list(slices), "contrast": "FLAIR", "seed": seed}
    except (ImportError, OSError, DataSourceError) as exc:  # source not installed: fall back, and say so
        log.warning("anatomy for %s unavailable (%s); using the coil-simulation phantom", subject_id, exc)
        from models.mri.coil_simulation import brain_phantom
        generator = torch.Generator().manual_seed(seed)
        images = np.stack([brain_phantom(tuple(matrix), generator=generator).image.numpy() for _ in slices])
        lesions = np.zeros(images.shape, np.float32)
        provenance = {"anatomy": "models.mri.coil_simulation.brain_phantom", "seed": seed, "reason": str(exc)}
    return images.astype(np.complex64), lesions.astype(np.float32), provenance


def make_examples(out_dir: str = EXAMPLES_DIR, accelerations: Sequence[int] = (4,), fully_sampled: bool = False,
                  num_coils: int = 8, matrix=(128, 128), num_acs: int = 24, snr: float = 30.0,
                  seed: int = 0) -> List[str]:
    """Write the example files; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    images, lesions, provenance = example_images(matrix, seed=seed)
    maps_generator = torch.Generator().manual_seed(seed)
    from models.mri.coil_simulation import simulate_coil_maps
    maps = simulate_coil_maps(num_coils, tuple(matrix), generator=maps_generator)
    written = []
    variants = [(r, False) for r in accelerations] + ([(1, True)] if fully_sampled else [])
    for acceleration, full in variants:
        protocol = RawProtocol(acceleration=max(acceleration, 1), num_acs=num_acs, fully_sampled=full,
                               fov_mm=(FOV_MM, FOV_MM), patient_id=provenance.get("subject_id", "phantom"))
        name = "flair_full.h5" if full else f"flair_R{acceleration}.h5"
        path = os.path.join(out_dir, name)
        sim = simulate_raw(path, torch.from_numpy(images), maps, protocol=protocol, snr=snr,
                           generator=torch.Generator().manual_seed(seed + 1))
        written.append(path)
        log.info("%s: %.2f MB, noise std %.4g", path, os.path.getsize(path) / 1e6, sim.noise_std)
    truth = os.path.join(out_dir, "flair_truth.npz")
    np.savez_compressed(truth, image=images, lesion=lesions, provenance=json.dumps(provenance),
                        snr=snr, seed=seed)
    written.append(truth)
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=EXAMPLES_DIR, help="output directory (default: the bundled examples)")
    parser.add_argument("--accelerations", type=int, nargs="+", default=[4], help="equispaced R values")
    parser.add_argument("--fully-sampled", action="store_true", help="also write the fully sampled twin")
    parser.add_argument("--coils", type=int, default=8)
    parser.add_argument("--acs", type=int, default=24)
    parser.add_argument("--snr", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if any(r < 2 for r in args.accelerations):
        parser.error("accelerations must be >= 2 (use --fully-sampled for R = 1)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    make_examples(args.out, args.accelerations, args.fully_sampled, args.coils, num_acs=args.acs, snr=args.snr,
                  seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
