"""Sampler convergence through the chains: the DDS sampler at several NFE, the paper's DPS, and tuned BART l1.

Every image is made by ``dps-gadgetron replay`` (``gadgets.replay.replay``) of
``config_xml/dps_r{R}.xml`` with ``sampler`` / ``num_steps`` set by overrides, on the
TEST files of the independent corpus (``tests/external_corpus.py``; e.g. with the test
individual's FLAIR, ``--image models/data/examples/flair_truth.npz``). BART ``ecalib`` +
``pics -l1`` runs on the k-space the chain handed to the reconstruction, its
regularisation tuned to its best NRMSE on a grid (an oracle choice). Scores: NRMSE / SSIM
of the magnitude against the writer's noise-free prewhitened truth, after a least-squares
scale. Also printed: CG-SENSE through the chain, and seconds per slice.

Usage: python benchmarks/dds_nfe.py --corpus runs/corpus_flair [--cases ...] [--nfe 10 20 50 100 500]
       [--dps-steps 100] [--out benchmarks/results/dds_nfe.md]
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import external_corpus as corpus  # noqa: E402
from chain_capture import ReconCapture  # noqa: E402
from chain_vs_bart import L1_GRID, magnitudes, scores, start_run, tuned_bart  # noqa: E402

from gadgets.replay import replay  # noqa: E402

log = logging.getLogger("dds_nfe")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--cases", nargs="+", default=None, help="default: every .h5 in the corpus folder")
    p.add_argument("--nfe", type=int, nargs="+", default=[10, 20, 50, 100, 500],
                   help="DDS step counts (NFE) of one posterior sample, for the convergence columns")
    p.add_argument("--nfe-cases", nargs="*", default=None, help="cases that get the NFE sweep (default: all)")
    p.add_argument("--sweep-samples", type=int, default=1,
                   help="posterior draws averaged at each NFE of the sweep (the chains average several)")
    p.add_argument("--dps-steps", type=int, nargs="*", default=[100], help="the paper's DPS at these step counts")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "dds_nfe.md")
    return p.parse_args(argv)


def through_chain(path, chain, workdir, overrides):
    out = Path(workdir) / "out.h5"
    start = time.perf_counter()
    with ReconCapture() as capture:
        summary = replay(path, chain, out, overrides=overrides, progress=False)
    if not summary.ok:
        raise RuntimeError(f"{path.name} {overrides}: {summary.line()} {summary.errors}")
    return magnitudes(out), time.perf_counter() - start, capture.calls


def run_case(path, args, workdir):
    case = corpus.CASES[path.stem]
    chain = ROOT / "config_xml" / f"dps_r{case.acceleration}.xml"
    truth, _ = corpus.load_truth(path)
    row = {"case": path.stem, "R": case.acceleration, "coils": case.coils, "snr": case.snr,
           "matrix": f"{case.readout}x{case.lines}", "slices": case.slices}
    images, _, captured = through_chain(path, chain, workdir, {"gadgets.dps_recon.method": "cg_sense"})
    row["cg_sense"] = scores(truth, images)
    images, seconds, _ = through_chain(path, chain, workdir, {"gadgets.dps_recon.method": "dps"})
    row["default"] = scores(truth, images) + (seconds / case.slices,)
    log.info("%s chain default: NRMSE %.4f, %.1f s per slice", path.stem, row["default"][0], seconds / case.slices)
    sweep = args.nfe if args.nfe_cases is None or path.stem in args.nfe_cases else []
    runs = [("dds", n) for n in sweep] + [("dps", n) for n in args.dps_steps]
    for sampler, steps in runs:  # the sampler's own zeta table
        draws = args.sweep_samples if sampler == "dds" else 1
        images, seconds, _ = through_chain(path, chain, workdir, {"gadgets.dps_recon.method": "dps",
                                                                  "gadgets.dps_recon.sampler": sampler,
                                                                  "gadgets.dps_recon.zeta": "auto",
                                                                  "gadgets.dps_recon.num_samples": str(draws),
                                                                  "gadgets.dps_recon.num_steps": str(steps)})
        row[f"{sampler}_{steps}"] = scores(truth, images) + (seconds / case.slices,)
        log.info("%s %s %d steps: NRMSE %.4f, %.1f s per slice", path.stem, sampler.upper(), steps,
                 row[f"{sampler}_{steps}"][0], seconds / case.slices)
    if shutil.which("bart"):
        row["bart_l1"] = tuned_bart(captured, "l1", L1_GRID, truth, workdir)
    return row


def render(rows, args) -> str:
    dds = [f"dds_{n}" for n in args.nfe]
    dps = [f"dps_{s}" for s in args.dps_steps]
    head = ["case", "R", "coils", "SNR", "matrix", "CG-SENSE", "chain default"] + \
        [f"DDS {n} NFE, {args.sweep_samples} sample(s)" for n in args.nfe] + \
        [f"DPS {s} steps ({2 * s - 1} NFE)" for s in args.dps_steps] + \
        ["BART l1", "DDS 50 / 500", "default / BART l1", "default / CG-SENSE"]
    out = ["# Sampler convergence through the chains, against tuned BART l1", "",
           f"`python benchmarks/dds_nfe.py --corpus {args.corpus}` on {platform.processor() or platform.machine()}, "
           f"{args.threads} threads. NRMSE (SSIM) of the magnitude against the writer's noise-free prewhitened "
           "truth. `chain default`: the chain as shipped (DDS, the mean of the posterior draws its XML names); "
           f"`DDS n NFE`: the mean of {args.sweep_samples} draw(s) of n steps each (the convergence sweep); "
           "DPS at the shipped per-R table; BART pics l1 tuned per file on a grid (oracle).", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["case"], str(r["R"]), str(r["coils"]), f"{r['snr']:g}", r["matrix"],
                 f"{r['cg_sense'][0]:.4f}"]
        cells += [f"{r[k][0]:.4f} ({r[k][1]:.3f})" if k in r else "-" for k in ["default"] + dds + dps]
        l1 = r.get("bart_l1")
        cells.append(f"{l1[0]:.4f} (r {l1[2]:g})" if l1 else "-")
        a, b = r.get("dds_50"), r.get("dds_500")
        cells.append(f"{a[0] / b[0]:.3f}" if a and b else "-")
        cells.append(f"{r['default'][0] / l1[0]:.2f}" if l1 else "-")
        cells.append(f"{r['default'][0] / r['cg_sense'][0]:.2f}")
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "Seconds per slice through the chain (replay wall time / slices, includes loading):", "",
            "| " + " | ".join(["case", "chain default"] + [f"DDS {n}" for n in args.nfe] +
                              [f"DPS {s}" for s in args.dps_steps]) + " |",
            "|---|" + "---|" * (1 + len(dds) + len(dps))]
    for r in rows:
        out.append(f"| {r['case']} | " + " | ".join(f"{r[k][2]:.1f}" if k in r else "-"
                                                    for k in ["default"] + dds + dps) + " |")
    return "\n".join(out) + "\n"


def main(argv=None):
    args = parse_args(argv)
    start_run(args.threads)
    names = args.cases or sorted(p.stem for p in args.corpus.glob("*.h5"))
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            rows.append(run_case(args.corpus / f"{name}.h5", args, workdir))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(render(rows, args))
    print(render(rows, args))


if __name__ == "__main__":
    main()
