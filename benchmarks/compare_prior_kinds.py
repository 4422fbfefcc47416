"""The deciding experiment of issue 17: priors of different kinds (whole-image, patch), each trained for the
same CPU wall time, scored by DPS through the chain on raw files from an independent writer.

Every figure is ``dps-gadgetron replay`` of ``config_xml/dps_r{R}.xml`` with only the checkpoint switched
(``--set gadgets.dps_recon.checkpoint=PATH``), on the corpora of ``tests/external_corpus.py``: the
validation individuals (``runs/corpus_val_a``, ``runs/corpus_val_b``) and the test corpus (``runs/corpus``).
Scores as in ``benchmarks/chain_vs_bart.py`` (NRMSE of the magnitude after a least-squares scale, against
the writer's noise-free prewhitened RSS image).

    python benchmarks/compare_prior_kinds.py --prior image=runs/cmp_image_ft/best.safetensors \\
        --prior patch=runs/cmp_patch_ft/best.safetensors --out benchmarks/results/prior_kinds.md
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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

import external_corpus as corpus  # noqa: E402
from chain_vs_bart import score_through_chain  # noqa: E402

from models.prior.checkpoint import read_metadata  # noqa: E402

log = logging.getLogger("compare_prior_kinds")
DEFAULT_CORPORA = [ROOT / "runs" / "corpus_val_a", ROOT / "runs" / "corpus_val_b", ROOT / "runs" / "corpus"]


def named_prior(text: str):
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--prior {text!r}: expected NAME=CHECKPOINT")
    return name, Path(path)


def cases_in(folder: Path, accelerations, names=None):
    """(name, path, R) of the corpus cases present in ``folder`` at these accelerations (and ``names``)."""
    found = []
    for name, case in sorted(corpus.CASES.items()):
        path = folder / f"{name}.h5"
        if path.is_file() and case.acceleration in accelerations and (not names or name in names):
            found.append((name, path, case.acceleration))
    return found


def score_prior(checkpoint: Path, path: Path, acceleration: int, workdir: Path, steps=None):
    overrides = {"gadgets.dps_recon.checkpoint": str(checkpoint.resolve())}
    if steps:
        overrides["gadgets.dps_recon.num_steps"] = str(steps)
    return score_through_chain(path, acceleration, overrides, workdir / f"{path.stem}_{checkpoint.stem}.h5")


def describe(name: str, checkpoint: Path) -> str:
    meta = read_metadata(checkpoint)
    t = meta.training
    seconds = t.get("train_seconds")
    steps = f"{t['init_steps']} + {meta.steps}" if t.get("init_steps") else f"{meta.steps}"
    kind = meta.prior.get("kind", "image")
    if kind == "patch":
        kind += " " + "/".join(str(p) for p in meta.prior.get("patch_sizes", []))
    return (f"| {name} | `{checkpoint}` | {kind} | {steps} | "
            f"{'?' if seconds is None else f'{seconds / 3600:.2f}'} | {t.get('mode')} | {t.get('pixel_mm')} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prior", type=named_prior, action="append", required=True, metavar="NAME=CHECKPOINT")
    p.add_argument("--corpus", type=Path, nargs="+", default=DEFAULT_CORPORA)
    p.add_argument("--accelerations", type=int, nargs="+", default=[4, 6])
    p.add_argument("--cases", nargs="+", choices=sorted(corpus.CASES), help="only these cases (default: all)")
    p.add_argument("--dps-steps", type=int, help="DPS steps (default: the chain's)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "prior_kinds.md")
    p.add_argument("--title", default="Prior kinds at an equal CPU budget (issue 17)", help="the report's heading")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    priors = dict(args.prior)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for folder in args.corpus:
            for name, path, acceleration in cases_in(folder, args.accelerations, args.cases):
                row = {"corpus": folder.name, "case": name, "R": acceleration}
                for prior_name, checkpoint in priors.items():
                    row[prior_name], _ = score_prior(checkpoint, path, acceleration, Path(tmp), args.dps_steps)
                    log.info("%s/%s R=%d %s: NRMSE %.4f", folder.name, name, acceleration, prior_name, row[prior_name])
                rows.append(row)
    if not rows:
        sys.exit(f"no corpus case at R {args.accelerations} in {[str(c) for c in args.corpus]} "
                 "(python tests/external_corpus.py writes them)")
    names = list(priors)
    steps_text = args.dps_steps or "the chain's"
    lines = [f"# {args.title}", "",
             f"Made by `python benchmarks/compare_prior_kinds.py` ({os.cpu_count()} cores). DPS through the chain "
             f"(`dps_r{{R}}.xml`, only the checkpoint switched; DPS steps: {steps_text}), NRMSE "
             "against the writer's truth; lower is better.", "", "| prior | checkpoint | kind | steps (pre-training + this run) | hours trained (this run) | mode | pixels (mm) |",
             "|---|---|---|---|---|---|---|"]
    lines += [describe(n, c) for n, c in priors.items()]
    lines += ["", "| corpus | case | R | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for row in rows:
        best = min(row[n] for n in names)
        cells = [f"**{row[n]:.4f}**" if row[n] == best else f"{row[n]:.4f}" for n in names]
        lines.append(f"| {row['corpus']} | {row['case']} | {row['R']} | " + " | ".join(cells) + " |")
    for acceleration in sorted({r["R"] for r in rows}):
        means = [np.mean([r[n] for r in rows if r["R"] == acceleration]) for n in names]
        lines.append(f"| **mean** | | {acceleration} | " + " | ".join(f"{m:.4f}" for m in means) + " |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
