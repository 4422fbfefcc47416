"""Tune CG-SENSE's Tikhonov constant kappa (``models.mri.recon.TIKHONOV_KAPPA``) on validation corpora.

Each raw file is replayed once through its chain (zero-filled, to capture what the
gadget hands to the reconstruction: k-space, maps, mask, the scan's noise level);
CG-SENSE is then run on those inputs for every kappa of the grid, and the table
lists each file's NRMSE per kappa with the file's best kappa. Validation corpora only
(``tests/external_corpus.py`` with other seeds): the test corpus never picks kappa.

    python benchmarks/tune_kappa.py --corpus runs/corpus_val_a runs/corpus_val_b
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from chain_vs_bart import start_run  # noqa: E402
from tune_dds import capture  # noqa: E402

from models.mri.metrics import nrmse_scaled  # noqa: E402
from models.mri.recon import TIKHONOV_KAPPA, TIKHONOV_KAPPA_BY_ACCELERATION, cg_sense, tikhonov_kappa, tikhonov_weight  # noqa: E402,E501

log = logging.getLogger("tune_kappa")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, nargs="+", required=True, help="validation corpus folders")
    p.add_argument("--kappas", type=float, nargs="+", default=[0.3, 0.6, 1.0, 1.5, 2.5, 4.0])
    p.add_argument("--iterations", type=int, default=20, help="CG-SENSE iterations at most (the chains')")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tune_kappa.md")
    return p.parse_args(argv)


def cg_nrmse(calls, truth, kappa, iterations):
    """NRMSE of CG-SENSE at ``kappa`` (``None``: the shipped per-R table at the chain's acceleration)."""
    images = []
    for kspace, maps, mask, settings in calls:
        k = tikhonov_kappa(settings.acceleration) if kappa is None else kappa
        weight = tikhonov_weight(kspace, maps, mask, settings.noise_variance, kappa=k)
        images.append(cg_sense(kspace, maps, mask, iterations=iterations, l2_weight=weight)[0].abs().numpy())
    return nrmse_scaled(np.stack(truth), np.stack(images))


def main(argv=None):
    args = parse_args(argv)
    start_run(args.threads)
    files = sorted(p for folder in args.corpus for p in folder.glob("*.h5"))
    lines = ["# CG-SENSE Tikhonov constant kappa on validation corpora", "",
             f"Made by `python benchmarks/tune_kappa.py --corpus {' '.join(str(c) for c in args.corpus)}`; "
             f"CG-SENSE ({args.iterations} iterations at most) on the inputs the chain's gadget received; "
             f"NRMSE of magnitudes after a least-squares scale. Shipped: kappa per R "
             + ", ".join(f"{r:g}: {k:g}" for r, k in sorted(TIKHONOV_KAPPA_BY_ACCELERATION.items()))
             + f" (column `per R`), {TIKHONOV_KAPPA:g} without an acceleration.", "",
             "| file | " + " | ".join(f"kappa {k:g}" for k in args.kappas) + " | per R | best |",
             "|---|" + "---|" * (len(args.kappas) + 2)]
    table = []
    with tempfile.TemporaryDirectory() as workdir:
        for path in files:
            calls, truth = capture(path, workdir)
            row = [cg_nrmse(calls, truth, k, args.iterations) for k in args.kappas + [None]]
            table.append(row)
            best = int(np.argmin(row[:-1]))
            name = f"{path.parent.name}/{path.stem}"
            log.info("%s: %s", name, " ".join(f"{v:.4f}" for v in row))
            lines.append(f"| {name} | " + " | ".join(f"{v:.4f}" for v in row) + f" | {args.kappas[best]:g} |")
    table = np.array(table)
    regret = table / table[:, :-1].min(axis=1, keepdims=True)
    lines += ["", "Worst and mean ratio to each file's best kappa:", "",
              "| kappa | worst | mean |", "|---|---|---|"]
    lines += [f"| {k:g} | {regret[:, i].max():.3f} | {regret[:, i].mean():.3f} |" for i, k in enumerate(args.kappas)]
    lines.append(f"| per R | {regret[:, -1].max():.3f} | {regret[:, -1].mean():.3f} |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
