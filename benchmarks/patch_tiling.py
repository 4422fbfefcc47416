"""How a patch prior should cover a whole image, and how many posterior draws it buys: measured through the chain.

Each variant is ``TILING:SAMPLES:STEPS`` (``shifted``: tiles of the largest patch at a fresh random offset every
step; ``whole``: the network once on the whole image, see ``models/prior/patches.py``), run as
``dps-gadgetron replay`` of ``config_xml/dps_r{R}.xml`` with ``--set gadgets.dps_recon.patch_tiling=...``,
``num_samples`` and ``num_steps``, on the 12-coil SNR 30 files at R = 4, 5, 6 of each corpus of
``tests/external_corpus.py``. Scores as in ``benchmarks/chain_vs_bart.py`` (NRMSE of the magnitude after a
least-squares scale against the writer's noise-free prewhitened RSS image); seconds are the replay's wall time.

    python benchmarks/patch_tiling.py --corpus runs/corpus_val_a runs/corpus_val_b \\
        --variant shifted:4:20 --variant whole:8:20 --out benchmarks/results/patch_tiling.md
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from chain_vs_bart import score_through_chain  # noqa: E402

from models.prior.patches import AssembledDenoiser  # noqa: E402

log = logging.getLogger("patch_tiling")
FILES = (("int_acs_12c_snr30", 4), ("int_acs_12c_snr30_r5", 5), ("int_acs_12c_snr30_r6", 6))


def variant(text: str):
    parts = text.split(":")
    if len(parts) != 3 or parts[0] not in AssembledDenoiser.TILINGS or not all(p.isdigit() for p in parts[1:]):
        raise argparse.ArgumentTypeError(f"--variant {text!r}: expected TILING:SAMPLES:STEPS, "
                                         f"TILING one of {AssembledDenoiser.TILINGS}")
    return parts[0], int(parts[1]), int(parts[2])


def run_variant(tiling, samples, steps, files, workdir: Path):
    """``[(nrmse, seconds)]`` of one variant on ``files`` (``[(path, R)]``)."""
    results = []
    for path, acceleration in files:
        out = workdir / f"{path.parent.name}_{path.stem}_{tiling}_{samples}_{steps}.h5"
        results.append(score_through_chain(path, acceleration, {"gadgets.dps_recon.patch_tiling": tiling,
                                                                "gadgets.dps_recon.num_samples": str(samples),
                                                                "gadgets.dps_recon.num_steps": str(steps)}, out))
        log.info("%s %s:%d:%d NRMSE %.4f", path, tiling, samples, steps, results[-1][0])
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, nargs="+", required=True, help="folders written by build_corpora")
    parser.add_argument("--variant", type=variant, action="append", required=True, help="TILING:SAMPLES:STEPS")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--note", default="", help="a sentence on the conditions, put in the report")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    files = [(folder / f"{name}.h5", r) for folder in args.corpus for name, r in FILES]
    missing = [str(p) for p, _ in files if not p.is_file()]
    if missing:
        parser.error(f"missing corpus files (python tools/build_corpora.py --out runs): {', '.join(missing)}")
    with tempfile.TemporaryDirectory() as tmp:
        table = {v: run_variant(*v, files, Path(tmp)) for v in args.variant}
    heads = [f"{t} x {s} draws x {n} steps" for t, s, n in args.variant]
    lines = [
        "# Patch prior on whole images: tiling and posterior draws through the chain", "",
        f"Made by `python benchmarks/patch_tiling.py {' '.join(sys.argv[1:])}` on {platform.machine()} "
        f"({os.cpu_count()} cores, {args.threads} torch threads), {time.strftime('%Y-%m-%d')}. {args.note}", "",
        "NRMSE of the magnitude (least-squares scale) against the writer's noise-free prewhitened RSS image, "
        "`dps-gadgetron replay` of `config_xml/dps_r{R}.xml` with the shipped prior, only the tiling, draws and "
        "steps set. `shifted`: tiles of the largest training patch (64) at a fresh random offset every step; "
        "`whole`: the network once on the whole image with its position channels.", "",
        "| corpus | file | R | " + " | ".join(heads) + " |",
        "|---|---|---|" + "---|" * len(heads)]
    for i, (path, r) in enumerate(files):
        lines.append(f"| {path.parent.name} | {path.stem} | {r} | "
                     + " | ".join(f"{table[v][i][0]:.4f}" for v in args.variant) + " |")
    lines.append("| **mean** | | | " + " | ".join(
        f"**{sum(x for x, _ in table[v]) / len(files):.4f}**" for v in args.variant) + " |")
    lines.append("| seconds (all files) | | | " + " | ".join(
        f"{sum(s for _, s in table[v]):.0f}" for v in args.variant) + " |")
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
