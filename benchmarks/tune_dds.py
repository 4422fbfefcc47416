"""Choose the DDS sampler's settings on VALIDATION scans of the independent corpus (never test data).

Each validation raw file (``tests/external_corpus.py --seed-offset ... --image`` with a
validation individual's FLAIR) is replayed once through its chain, and what the DPS
gadget hands to the reconstruction (k-space, coil maps, mask, the scan's noise level) is
recorded; every sampler setting of the grid then runs on exactly those inputs through
``models.reconstruction.reconstruct`` (the chain's own call: ``tests/test_external_corpus.py``
asserts chain = API). Scores: NRMSE against the writer's noise-free prewhitened truth after
a least-squares scale, beside the chain's Tikhonov CG-SENSE on the same inputs.

Usage: python benchmarks/tune_dds.py --corpus runs/corpus_val_a runs/corpus_val_b
       [--zetas 1 2 4] [--steps 50] [--sigma-starts none 5] [--out benchmarks/results/tune_dds.md]
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import itertools  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import external_corpus as corpus  # noqa: E402
from chain_capture import ReconCapture  # noqa: E402
from chain_vs_bart import start_run  # noqa: E402

from models.prior.shipped import load_shipped_prior  # noqa: E402
from gadgets.replay import replay  # noqa: E402
from models.mri.metrics import nrmse_scaled  # noqa: E402
from models.reconstruction import reconstruct  # noqa: E402

log = logging.getLogger("tune_dds")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, nargs="+", required=True, help="validation corpus folders")
    p.add_argument("--cases", nargs="+", default=None, help="only these corpus cases (default: every file)")
    p.add_argument("--zetas", type=float, nargs="+", default=[1.0, 2.0, 4.0],
                   help="the sampler's zeta (dds: likelihood weight, dps: step); 0 = the sampler's per-R table")
    p.add_argument("--steps", type=int, nargs="+", default=[50])
    p.add_argument("--sigma-starts", nargs="+", default=["none"], help="warm-start noise levels ('none': off)")
    p.add_argument("--samples", type=int, nargs="+", default=[1], help="posterior samples averaged")
    p.add_argument("--cg", type=int, nargs="+", default=[5], help="CG iterations per step")
    p.add_argument("--etas", type=float, nargs="+", default=[0.0], help="DDS stochasticity (dds_eta)")
    p.add_argument("--samplers", nargs="+", default=["dds"], choices=("dds", "dps"))
    p.add_argument("--set", dest="fixed", action="append", default=[], metavar="KEY=VALUE",
                   help="a ReconSettings field set for every column (e.g. sigma_max=20); repeatable")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tune_dds.md")
    return p.parse_args(argv)


def capture(path, workdir):
    """``(inputs, truth)`` of one raw file: the reconstruct calls of a zero-filled replay and the truth images."""
    case = corpus.CASES[path.stem]
    chain = ROOT / "config_xml" / f"dps_r{case.acceleration}.xml"
    with ReconCapture() as cap:
        summary = replay(path, chain, Path(workdir) / "zf.h5", overrides={"gadgets.dps_recon.method": "zero_filled"},
                         progress=False)
    if not summary.ok:
        raise RuntimeError(f"{path}: {summary.line()} {summary.errors}")
    truth, _ = corpus.load_truth(path)
    return cap.calls, truth


def fixed_changes(pairs) -> dict:
    """``["sigma_max=20", ...]`` -> typed ReconSettings changes (the schema parses and names bad ones)."""
    from models.recon_settings import ReconSettings
    from models.settings_schema import parse, schema_fields

    schema = {f.name: f.metadata["schema"] for f in schema_fields(ReconSettings)}
    out = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        if key not in schema:
            raise SystemExit(f"--set {pair}: {key!r} is not a ReconSettings field")
        out[key] = parse(key, text, schema[key])
    return out


def score(calls, truth, prior, **changes):
    images = []
    for kspace, maps, mask, settings in calls:
        out = reconstruct(kspace, maps, mask, settings.with_changes(**changes), prior=prior)
        images.append(out.image[0].abs().numpy())
    return nrmse_scaled(np.stack(truth), np.stack(images))


def main(argv=None):
    args = parse_args(argv)
    start_run(args.threads)
    prior = load_shipped_prior("cpu")
    files = sorted(p for folder in args.corpus for p in folder.glob("*.h5")
                   if args.cases is None or p.stem in args.cases)
    fixed = fixed_changes(args.fixed)
    grid = list(itertools.product(args.samplers, args.zetas, args.steps, args.sigma_starts, args.cg, args.samples,
                                  args.etas))
    results = defaultdict(dict)  # file -> setting -> nrmse
    with tempfile.TemporaryDirectory() as workdir:
        for path in files:
            calls, truth = capture(path, workdir)
            name = f"{path.parent.name}/{path.stem}"
            results[name]["cg_sense"] = score(calls, truth, prior, method="cg_sense")
            for sampler, zeta, steps, start, cg, samples, eta in grid:
                t0 = time.perf_counter()
                sigma_start = None if start == "none" else float(start)
                key = (sampler, zeta, steps, start, cg, samples, eta)
                changes = dict(method="dps", sampler=sampler, num_steps=steps, dds_cg_iterations=cg, num_samples=samples,
                               sigma_start=sigma_start, zeta=zeta if zeta > 0 else None,
                               dds_eta=eta, **fixed)
                results[name][key] = score(calls, truth, prior, **changes)
                log.info("%s %s: NRMSE %.4f (CG-SENSE %.4f), %.1f s", name, key, results[name][key],
                         results[name]["cg_sense"], time.perf_counter() - t0)
            args.out.write_text(render(results, grid, fixed))
    print(render(results, grid, fixed))


def render(results, grid, fixed=None) -> str:
    cols = ["file", "CG-SENSE"] + [f"{s} z{z:g} n{n} s{st} cg{c} k{k}" + (f" e{e:g}" if e else "")
                                   for s, z, n, st, c, k, e in grid]
    lines = ["# DDS settings on validation scans of the independent corpus", "",
             "NRMSE through the chain's inputs (benchmarks/tune_dds.py); columns: sampler, zeta, steps, "
             "warm-start sigma, CG iterations per step, posterior samples averaged (and DDS eta where not 0)."
             + (" Set for every column: " + ", ".join(f"{k}={v}" for k, v in fixed.items()) + "." if fixed else ""), "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, row in results.items():
        cells = [name, f"{row['cg_sense']:.4f}"] + [f"{row[k]:.4f}" if k in row else "-" for k in grid]
        lines.append("| " + " | ".join(cells) + " |")
    complete = [row for row in results.values() if all(k in row for k in grid)]
    if complete:
        mean = lambda key: sum(r[key] for r in complete) / len(complete)  # noqa: E731
        lines.append("| **mean** | " + " | ".join(f"**{mean(k):.4f}**" for k in ["cg_sense"] + grid) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
