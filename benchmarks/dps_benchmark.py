"""DPS quality and speed against the classical baselines on held-out real anatomy.

For the prior given (default: the shipped one) and held-out slices of a bank
(default: the test individual's FLAIR), at each acceleration: NRMSE / PSNR /
SSIM (mean +- std over slices) and seconds per slice for DPS at several step
counts and the DDS-style fast mode, beside zero-filled, CG-SENSE (iterations
tuned), our L1-wavelet CS and BART ``pics -l1`` (both with lambda tuned to their
best on the same slices: an oracle choice that favours the baselines).
Writes a markdown table and a PNG (NRMSE vs NFE) under benchmarks/results/.

Usage: python benchmarks/dps_benchmark.py --bank banks/flair_test.h5 [--prior PATH]
       [--accelerations 4 5 6] [--steps 5 10 25 50 125] [--slices 4]
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.prior.shipped import shipped_checkpoint  # noqa: E402
from models.evaluation import load_test_slices, make_test_cases, run_callable, run_method, summarize, tune  # noqa: E402
from models.prior.checkpoint import load_prior  # noqa: E402
from models.reconstruction import ReconSettings  # noqa: E402
from models.sampler.zeta import default_zeta  # noqa: E402

log = logging.getLogger("dps_benchmark")
CS_LAMS = (3e-4, 1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2)
CG_ITERS = (3, 5, 8, 12, 20)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bank", default="banks/flair_test.h5")
    p.add_argument("--contrast", default="FLAIR")
    p.add_argument("--prior", help="checkpoint (default: the shipped prior)")
    p.add_argument("--prior-contrast", help="contrast slot of the prior to use (default: --contrast)")
    p.add_argument("--accelerations", type=int, nargs="+", default=[4, 5, 6])
    p.add_argument("--steps", type=int, nargs="+", default=[5, 10, 25, 50, 125])
    p.add_argument("--dds-steps", type=int, nargs="+", default=[10, 20])
    p.add_argument("--slices", type=int, default=4)
    p.add_argument("--coils", type=int, default=12)
    p.add_argument("--snr", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--zeta", type=float, help="override the per-R table")
    p.add_argument("--final-cg", type=int, default=0, help="CG polish iterations after DPS")
    p.add_argument("--no-bart", action="store_true")
    p.add_argument("--out", default="benchmarks/results/dps_benchmark")
    return p.parse_args(argv)


def bart_pics(case, lam, workdir):
    from models.mri.bart import pics_l1
    return pics_l1(case.scan.kspace[0], case.maps[0], case.scan.mask.mask, lam, workdir)


def row(name, param, s):
    return (f"| {name} | {param} | {s['nrmse']:.4f} ± {s['nrmse_std']:.4f} | {s['psnr']:.2f} | "
            f"{s['ssim']:.4f} | {s['seconds']:.2f} |")


def main(argv=None):
    args = parse_args(argv)
    prior_contrast = args.prior_contrast or args.contrast
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    prior_path = args.prior or shipped_checkpoint()
    prior, meta = load_prior(prior_path)
    slices = load_test_slices(args.bank, args.contrast, args.slices)
    use_bart = shutil.which("bart") is not None and not args.no_bart
    lines = [f"# DPS benchmark: {args.contrast}, {len(slices)} held-out slices of {args.bank}",
             "", f"Prior: `{prior_path}` ({meta.steps} steps, contrasts {meta.contrasts}). "
             f"Scans: {args.coils} simulated coils, SNR {args.snr:g}, equispaced + 24 ACS, ESPIRiT maps from the ACS.",
             f"Hardware: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
             f"{torch.__version__} ({torch.get_num_threads()} threads); load average {os.getloadavg()[0]:.1f}.", ""]
    curves = {}
    for r in args.accelerations:
        cases = make_test_cases(slices, r, coils=args.coils, snr=args.snr, seed=args.seed)
        zeta = args.zeta if args.zeta is not None else default_zeta(r)
        lines += [f"## R = {r} (effective {cases[0].scan.mask.effective_acceleration:.2f}), zeta {zeta:g}", "",
                  "| method | setting | NRMSE | PSNR | SSIM | s/slice |", "|---|---|---|---|---|---|"]
        zf = summarize(run_method(cases, ReconSettings(method="zero_filled")))
        lines.append(row("zero-filled", "-", zf))
        best_it, _ = tune(cases, lambda n: ReconSettings(method="cg_sense", cg_iterations=int(n)), CG_ITERS)
        lines.append(row("CG-SENSE", f"{best_it} it (tuned)",
                         summarize(run_method(cases, ReconSettings(method="cg_sense", cg_iterations=int(best_it))))))
        lam, _ = tune(cases, lambda v: ReconSettings(method="cs", cs_lambda=v), CS_LAMS)
        cs = summarize(run_method(cases, ReconSettings(method="cs", cs_lambda=lam)))
        lines.append(row("L1-wavelet CS (ours)", f"lam {lam:g} (tuned)", cs))
        if use_bart:
            with tempfile.TemporaryDirectory() as workdir:
                scores = {v: summarize(run_callable(cases, lambda c: bart_pics(c, v, workdir)))
                          for v in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)}
                best = min(scores, key=lambda v: scores[v]["nrmse"])
                lines.append(row("BART pics -l1", f"-r {best:g} (tuned)", scores[best]))
        curve = []
        for n in args.steps:
            settings = ReconSettings(method="dps", contrast=prior_contrast, acceleration=r, zeta=zeta, num_steps=n,
                                     seed=args.seed, final_cg_iterations=args.final_cg)
            s = summarize(run_method(cases, settings, prior))
            curve.append((2 * n - 1, s["nrmse"]))
            lines.append(row("DPS (ours)", f"{n} steps, NFE {2 * n - 1}", s))
        for n in args.dds_steps:
            settings = ReconSettings(method="dps", sampler="dds", contrast=prior_contrast, num_steps=n, seed=args.seed)
            lines.append(row("DDS-style fast mode", f"{n} steps, NFE {n}", summarize(run_method(cases, settings, prior))))
        curves[r] = curve
        ref = curve[-1][1]
        within = next((nfe for nfe, v in curve if v <= 1.03 * ref), None)
        lines += ["", f"NFE within 3% of the NFE-{curve[-1][0]} NRMSE: {within}", ""]
        log.info("R=%d done", r)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for r, curve in curves.items():
            ax.plot(*zip(*curve), marker="o", label=f"R={r}")
        ax.set_xscale("log"), ax.set_xlabel("NFE"), ax.set_ylabel("NRMSE"), ax.legend(), ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out.with_suffix(".png"), dpi=120)
    except ImportError:
        log.warning("matplotlib not installed: no PNG")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
