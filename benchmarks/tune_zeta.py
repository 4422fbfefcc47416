"""Choose zeta per acceleration on VALIDATION slices (never test data).

For each R, a grid of zeta values is scored by mean NRMSE of DPS on held-out
validation slices (the real individual of the validation split); the best
value per R is printed as the table for :data:`models.sampler.zeta.ZETA_BY_ACCELERATION`
and written with the full grid to benchmarks/results/tune_zeta.md.

Usage: python benchmarks/tune_zeta.py --prior PATH [--bank banks/flair_val.h5]
       [--accelerations 2 4 5 6] [--zetas 0.25 0.5 0.75 1.0] [--steps 25] [--slices 4]
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.evaluation import load_test_slices, make_test_cases, tune  # noqa: E402
from models.prior.checkpoint import load_prior  # noqa: E402
from models.reconstruction import ReconSettings  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prior", required=True)
    p.add_argument("--bank", default="banks/flair_val.h5")
    p.add_argument("--contrast", default="FLAIR")
    p.add_argument("--accelerations", type=int, nargs="+", default=[2, 4, 5, 6])
    p.add_argument("--zetas", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--slices", type=int, default=4)
    p.add_argument("--residual-normalised", action="store_true")
    p.add_argument("--dc-form", default="dps", choices=("dps", "ode"))
    p.add_argument("--seed", type=int, default=1)  # not the test seed
    p.add_argument("--out", default="benchmarks/results/tune_zeta.md")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    prior, meta = load_prior(args.prior)
    slices = load_test_slices(args.bank, args.contrast, args.slices)
    lines = [f"# zeta per R on validation slices ({args.bank}, {len(slices)} slices)", "",
             f"Prior `{args.prior}` ({meta.steps} steps); DPS {args.steps} steps, dc_form {args.dc_form}, "
             f"residual_normalised {args.residual_normalised}; mean NRMSE per zeta.", "",
             "| R | " + " | ".join(f"zeta {z:g}" for z in args.zetas) + " | best |",
             "|---|" + "---|" * (len(args.zetas) + 1)]
    best = {}
    for r in args.accelerations:
        cases = make_test_cases(slices, r, seed=args.seed)
        value, table = tune(cases, lambda z: ReconSettings(
            method="dps", contrast=args.contrast, zeta=z, num_steps=args.steps, dc_form=args.dc_form,
            residual_normalised=args.residual_normalised, seed=args.seed), args.zetas, prior)
        best[r] = value
        lines.append(f"| {r} | " + " | ".join(f"{table[z]:.4f}" for z in args.zetas) + f" | {value:g} |")
    lines += ["", "ZETA_BY_ACCELERATION = {" + ", ".join(f"{r}: {z:g}" for r, z in best.items()) + "}"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
