"""DPS noise schedule on VALIDATION slices: NRMSE for steps, sigma_max and rho (EDM's discretisation).

The chains run EDM's default schedule (sigma_max 80, rho 7). With a data term as strong
as DPS's, the first, very noisy steps may be spent where the data decide anyway; this
probe scores other schedules at the table's zeta on the validation individual, to see
whether fewer steps could reach what many steps reach.

Usage: python benchmarks/dps_schedule_probe.py --acceleration 6
       [--configs 50:80:7 50:5:7 200:80:7] [--slices 4] [--out FILE.md]
(each config is STEPS:SIGMA_MAX:RHO)
"""

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gadgets.prior_loading import shipped_checkpoint  # noqa: E402
from models.evaluation import load_test_slices, make_test_cases, score  # noqa: E402
from models.mri.operators import SenseOperator  # noqa: E402
from models.prior.checkpoint import load_prior  # noqa: E402
from models.sampler.denoisers import PriorDenoiser  # noqa: E402
from models.sampler.dps import dps_sample  # noqa: E402
from models.sampler.posterior import SUPPORT_THRESHOLD, kspace_scale  # noqa: E402
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
    kspace = torch.cat([c.scan.kspace for c in cases])
    maps = torch.cat([c.maps for c in cases])
    mask = cases[0].scan.mask.mask
    scale = kspace_scale(kspace, maps, mask).view(-1, 1, 1, 1)
    y = (kspace * scale).to(torch.complex64)
    denoiser = PriorDenoiser(prior, prior.vocabulary.one_hot([args.contrast]))
    support = maps.abs().pow(2).sum(dim=1) > SUPPORT_THRESHOLD
    zeta = args.zeta if args.zeta is not None else default_zeta(args.acceleration)
    lines = [f"R = {args.acceleration}, zeta {zeta:g}, {len(cases)} slices of {args.bank}, prior steps {meta.steps}",
             "", "| steps | sigma_max | rho | NRMSE | s (all slices, 1 thread) |", "|---|---|---|---|---|"]
    for config in args.configs:
        steps, sigma_max, rho = (float(v) for v in config.split(":"))
        start = time.perf_counter()
        result = dps_sample(denoiser, y, SenseOperator(maps, mask), zeta=zeta, num_steps=int(steps),
                            sigma_max=sigma_max, rho=rho, generator=torch.Generator().manual_seed(args.seed))
        image = result.image / scale.view(-1, 1, 1) * support
        nrmse = sum(score(c.truth, image[i], 0.0).nrmse for i, c in enumerate(cases)) / len(cases)
        lines.append(f"| {int(steps)} | {sigma_max:g} | {rho:g} | {nrmse:.4f} | {time.perf_counter() - start:.0f} |")
        log.info(lines[-1])
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
