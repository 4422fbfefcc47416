"""DPS noise schedule on VALIDATION slices: NRMSE for steps, sigma_max and rho (EDM's discretisation).

The chains run EDM's default schedule (sigma_max 80, rho 7). With a data term as strong
as DPS's, the first, very noisy steps may be spent where the data decide anyway; this
probe scores other schedules at the table's zeta on the validation individual, to see
whether fewer steps could reach what many steps reach.

Usage: python benchmarks/dps_schedule_probe.py --acceleration 6
       [--configs 50:80:7 50:5:7 200:80:7] [--slices 4] [--out FILE.md]
(each config is STEPS:SIGMA_MAX:RHO[:SAMPLES]; SAMPLES > 1 scores the posterior mean of that many draws)
"""

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.prior.shipped import shipped_checkpoint  # noqa: E402
from models.evaluation import load_test_slices, make_test_cases, run_method, summarize  # noqa: E402
from models.prior.checkpoint import load_prior  # noqa: E402
from models.reconstruction import ReconSettings  # noqa: E402
from models.sampler.zeta import default_zeta  # noqa: E402

log = logging.getLogger("dps_schedule_probe")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prior", help="checkpoint (default: the shipped prior)")
    p.add_argument("--bank", default="banks/flair_val.h5")
    p.add_argument("--contrast", default="FLAIR")
    p.add_argument("--acceleration", type=int, default=6)
    p.add_argument("--configs", nargs="+", default=["50:80:7", "50:20:7", "50:5:7", "200:80:7"])
    p.add_argument("--slices", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--zeta", type=float, help="override the table's zeta")
    p.add_argument("--out", type=Path, help="write the table here (Markdown)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    prior, meta = load_prior(args.prior or shipped_checkpoint())
    cases = make_test_cases(load_test_slices(args.bank, args.contrast, args.slices), args.acceleration,
                            seed=args.seed)
    zeta = args.zeta if args.zeta is not None else default_zeta(args.acceleration)
    lines = [f"R = {args.acceleration}, zeta {zeta:g}, {len(cases)} slices of {args.bank}, prior steps {meta.steps}",
             "", "| steps | sigma_max | rho | samples | NRMSE | s/slice (1 thread) |", "|---|---|---|---|---|---|"]
    for config in args.configs:
        steps, sigma_max, rho, samples = ([float(v) for v in config.split(":")] + [1])[:4]
        settings = ReconSettings(method="dps", contrast=args.contrast, zeta=zeta, num_steps=int(steps),
                                 sigma_max=sigma_max, rho=rho, num_samples=int(samples), seed=args.seed)
        summary = summarize(run_method(cases, settings, prior=prior))
        lines.append(f"| {int(steps)} | {sigma_max:g} | {rho:g} | {int(samples)} | {summary['nrmse']:.4f} | "
                     f"{summary['seconds']:.0f} |")
        log.info(lines[-1])
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
