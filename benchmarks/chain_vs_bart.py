"""The chains on raw files from an independent writer, against BART on the same prewhitened k-space.

Every figure is measured through the chain (``dps-gadgetron replay`` of
``config_xml/dps_r{R}.xml`` with ``method`` switched by ``--set``), on the corpus of
``tests/external_corpus.py`` (its own coils, noise, object and flags: nothing from
this project's simulator). The k-space, coil maps and mask the DPS gadget handed to
the reconstruction are recorded during the replay; BART ``ecalib -m1`` + ``pics``
(``-l2`` Tikhonov and ``-l1`` wavelet, each with its regularisation tuned to its
best NRMSE on a grid: an oracle choice) runs on that same prewhitened k-space.

Scores: NRMSE and SSIM of the magnitude against the writer's noise-free
prewhitened RSS image, after a least-squares intensity scale (the images are in
other units than the truth). ``rss all lines`` is the zero-filled RSS of every
measured sample, the floor a zero-filled chain must reach.

Usage:  python benchmarks/chain_vs_bart.py [--corpus runs/corpus] [--cases ...] [--methods ...]
        [--dps-steps 100] [--out benchmarks/results/chain_vs_bart.md]
Needs ``bart`` on PATH (Debian package ``bart``) for the BART columns.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads must not spin on a shared 2-core box

import argparse  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import ismrmrd  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import external_corpus as corpus  # noqa: E402
from chain_capture import ReconCapture  # noqa: E402

from gadgets.replay import replay  # noqa: E402
from models.mri import bart  # noqa: E402
from models.mri.metrics import nrmse_scaled, ssim  # noqa: E402
from models.mri.recon import TIKHONOV_KAPPA_BY_ACCELERATION, cg_sense, tikhonov_weight, zero_filled_rss  # noqa: E402

log = logging.getLogger("chain_vs_bart")

METHODS = ("zero_filled", "cg_sense", "cs", "dps")
L2_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
L1_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "runs" / "corpus",
                        help="folder of the corpus (written there first when a file is missing)")
    parser.add_argument("--cases", nargs="+", default=sorted(corpus.CASES), choices=sorted(corpus.CASES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--image", type=Path, default=None,
                        help="object for the corpus instead of its phantom (e.g. models/data/examples/flair_truth.npz: "
                             "the test individual's FLAIR); cases it does not fill are skipped")
    parser.add_argument("--dps-steps", type=int, default=None, help="DPS steps (default: the chain's)")
    parser.add_argument("--kappas", type=float, nargs="*", default=[0.3, 0.6, 1.2],
                        help="CG-SENSE Tikhonov kappas to report beside the shipped one (API on the chain's k-space)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "chain_vs_bart.md")
    return parser.parse_args(argv)


def magnitudes(path) -> list:
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False, mode="r")
    images = [ds.read_image("image_1", i) for i in range(ds.number_of_images("image_1"))]
    ds.close()
    return [np.asarray(im.data).squeeze().T for im in images]  # ISMRMRD stores [E1, RO]


def scores(truth, images):
    truth, images = np.stack(truth), np.stack(images)
    scale = float((truth * images).sum() / (images * images).sum())
    return nrmse_scaled(truth, images), ssim(truth, images * scale)


def score_through_chain(path: Path, acceleration: int, overrides: dict, out: Path):
    """``(nrmse, seconds)`` of ``dps-gadgetron replay`` of ``path`` through ``config_xml/dps_r{R}.xml`` with
    ``overrides`` (``--set`` keys), against the corpus file's noise-free truth; the images go to ``out``."""
    truth, _ = corpus.load_truth(path)
    start = time.perf_counter()
    summary = replay(path, ROOT / "config_xml" / f"dps_r{acceleration}.xml", out, overrides=overrides,
                     progress=False)
    if not summary.ok:
        raise RuntimeError(f"{path} with {overrides}: {summary.line()} {summary.errors}")
    return scores(truth, magnitudes(out))[0], time.perf_counter() - start


def tuned_bart(captured, regularizer, grid, truth, workdir):
    """Best ``(nrmse, ssim, lambda)`` of ``bart pics`` over ``grid`` on the chain's k-space (ecalib maps)."""
    best = None
    maps = []
    for k, chain_maps, _, _ in captured:
        try:
            maps.append(bart.ecalib(k[0], workdir))
        except RuntimeError as exc:  # no calibration block in the data term (a separate reference scan)
            log.info("  bart ecalib on the data failed (%s): BART gets the chain's ESPIRiT maps", exc)
            maps.append(chain_maps[0])
    for lam in grid:
        images = [bart.pics(k[0], m, mask.reshape(mask.shape[-2:]), lam, workdir, regularizer).abs().numpy()
                  for (k, _, mask, _), m in zip(captured, maps)]
        value = scores(truth, images)
        log.info("  bart pics -%s -r %g: NRMSE %.4f", regularizer, lam, value[0])
        if best is None or value[0] < best[0]:
            best = value + (lam,)
    return best


def run_case(name, args, workdir):
    case = corpus.CASES[name]
    path = args.corpus / f"{name}.h5"
    if not path.exists():
        corpus.write_case(case, args.corpus, args.object)
    truth, record = corpus.load_truth(path)
    chain = ROOT / "config_xml" / f"dps_r{case.acceleration}.xml"
    row = {"case": name, "R": case.acceleration, "coils": case.coils, "snr": case.snr,
           "matrix": f"{case.readout}x{case.lines}", "slices": case.slices}
    captured = None
    for method in args.methods:
        overrides = {"gadgets.dps_recon.method": method}
        if method == "dps" and args.dps_steps:
            overrides["gadgets.dps_recon.num_steps"] = str(args.dps_steps)
        out = Path(workdir) / f"{name}_{method}.h5"
        start = time.perf_counter()
        with ReconCapture() as capture:
            summary = replay(path, chain, out, overrides=overrides, progress=False)
        seconds = time.perf_counter() - start
        if not summary.ok:
            raise RuntimeError(f"{name} {method}: {summary.line()} {summary.errors}")
        row[method] = scores(truth, magnitudes(out))
        row[f"{method}_s"] = seconds / case.slices
        log.info("%s %s: NRMSE %.4f (%.1f s per slice)", name, method, row[method][0], row[f"{method}_s"])
        captured = captured or capture.calls
    row["lines"] = int(captured[0][2].reshape(captured[0][2].shape[-2:]).any(dim=0).sum())
    row["rss_all"] = scores(truth, [zero_filled_rss(k)[0].numpy() for k, _, _, _ in captured])
    for kappa in args.kappas:
        images = []
        for k, maps, mask, settings in captured:
            weight = tikhonov_weight(k, maps, mask, settings.noise_variance, kappa=kappa)  # the chain's noise level
            images.append(cg_sense(k, maps, mask, iterations=20, l2_weight=weight)[0].abs().numpy())
        row[f"kappa_{kappa:g}"] = scores(truth, images)
    if shutil.which("bart"):
        row["bart_l2"] = tuned_bart(captured, "l2", L2_GRID, truth, workdir)
        row["bart_l1"] = tuned_bart(captured, "l1", L1_GRID, truth, workdir)
    return row


def fmt(value):
    return "-" if value is None else f"{value[0]:.4f}"


def table(rows, args) -> str:
    cols = ["case", "R", "coils", "SNR", "matrix", "lines", "rss all lines"] + \
        [m.replace("_", "-") for m in args.methods] + ["BART l2", "BART l1", "CG / BART l2", "DPS / BART l1",
                                                       "DPS s/slice"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        l2, l1 = r.get("bart_l2"), r.get("bart_l1")
        cells = [r["case"], str(r["R"]), str(r["coils"]), f"{r['snr']:g}", r["matrix"], str(r["lines"]),
                 fmt(r["rss_all"])] + [fmt(r.get(m)) for m in args.methods]
        cells += [f"{fmt(l2)} (r {l2[2]:g})" if l2 else "-", f"{fmt(l1)} (r {l1[2]:g})" if l1 else "-"]
        cells.append(f"{r['cg_sense'][0] / l2[0]:.2f}" if l2 and "cg_sense" in r else "-")
        cells.append(f"{r['dps'][0] / l1[0]:.2f}" if l1 and "dps" in r else "-")
        cells.append(f"{r['dps_s']:.1f}" if "dps_s" in r else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def start_run(threads: int):
    """Benchmark logging (the product's own INFO lines silenced) and the torch thread count."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("gadgets").setLevel(logging.WARNING)
    logging.getLogger("models").setLevel(logging.WARNING)
    torch.set_num_threads(threads)


def main(argv=None):
    args = parse_args(argv)
    start_run(args.threads)
    args.object = corpus.load_image(args.image) if args.image else None
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.cases:
            if args.object is not None and not corpus.fits(corpus.CASES[name], args.object):
                log.info("%s: skipped (the object %s does not fill it)", name, args.object.shape)
                continue
            rows.append(run_case(name, args, workdir))
            report = render(rows, args)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(report)  # after every case: a long run leaves what it measured
    print(report)


def render(rows, args) -> str:
    kappa_rows = ["| case | " + " | ".join(f"kappa {k:g}" for k in args.kappas) + " | BART l2 |",
                  "|---|" + "---|" * (len(args.kappas) + 1)]
    for r in rows:
        kappa_rows.append(f"| {r['case']} | " + " | ".join(fmt(r[f'kappa_{k:g}']) for k in args.kappas)
                          + f" | {fmt(r.get('bart_l2'))} |")
    ssim_rows = ["| case | " + " | ".join(m.replace("_", "-") for m in args.methods) + " | BART l2 | BART l1 |",
                 "|---|" + "---|" * (len(args.methods) + 2)]
    for r in rows:
        cells = [f"{r[m][1]:.3f}" if m in r else "-" for m in args.methods]
        cells += [f"{r[k][1]:.3f}" if r.get(k) else "-" for k in ("bart_l2", "bart_l1")]
        ssim_rows.append(f"| {r['case']} | " + " | ".join(cells) + " |")
    return "\n".join([
        "# Chains vs BART on raw files from an independent writer",
        "",
        f"Made by `python benchmarks/chain_vs_bart.py {' '.join(sys.argv[1:])}` on {platform.processor() or platform.machine()}"
        f" ({os.cpu_count()} cores, {args.threads} torch threads), {time.strftime('%Y-%m-%d')}.",
        "",
        "Corpus: `tests/external_corpus.py` (loop coils with non-unit sensitivities, a random full noise "
        f"covariance, {'the object ' + str(args.image) if args.image else 'a numpy brain-like phantom'}, Siemens-style integrated ACS, 2x readout oversampling, a noise "
        "scan at another dwell time). Every method column is the image `dps-gadgetron replay` wrote with "
        f"`config_xml/dps_r{{R}}.xml` and `--set gadgets.dps_recon.method=...`; CG-SENSE is Tikhonov-regularised "
        f"from the scan's noise level (kappa per R " + ", ".join(f"{r:g}: {k:g}" for r, k in
                                        sorted(TIKHONOV_KAPPA_BY_ACCELERATION.items())) + ", `models/mri/recon.py`). BART `ecalib -m1` + "
        "`pics -S` ran on the k-space and mask the chain's DPS gadget received, each regularisation tuned to "
        "its best NRMSE on a grid (oracle). NRMSE of magnitudes against the noise-free prewhitened RSS image after "
        "a least-squares scale; `lines` = phase-encode lines in the data term.",
        "",
        "## NRMSE",
        "",
        table(rows, args),
        "",
        "## SSIM",
        "",
        *ssim_rows,
        "",
        "## CG-SENSE Tikhonov weight (kappa) on the chain's k-space",
        "",
        *kappa_rows,
        "",
    ])


if __name__ == "__main__":
    main()
