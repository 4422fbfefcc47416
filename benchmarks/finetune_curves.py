"""Fine-tuning ablation from validation curves: where adapting turns into over-fitting.

Reads the ``log.jsonl`` of fine-tuning runs (one per learning rate, each validated
at short intervals by DPS NRMSE at R = 4 on the held-out validation individual)
and writes a markdown table (best score and step per learning rate, and the score
at 2 %, 8 % and 20 % of the pre-training's steps where the run got that far) and a
PNG of the curves.

Usage: python benchmarks/finetune_curves.py RUN_DIR [RUN_DIR ...] --pretrain-steps N
       --out benchmarks/results/finetune_curves
"""

import argparse
import json
import sys
from pathlib import Path

import yaml

FRACTIONS = (0.02, 0.08, 0.2)


def read_curve(run_dir: Path):
    """``(lr, [(step, val_dps), ...])`` of a fine-tuning run directory."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    points = []
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "val_dps" in record:
            points.append((int(record["step"]), float(record["val_dps"])))
    return float(config["resolved_lr"]), sorted(points)


def score_at(points, step):
    """Validation score at the last validation at or before ``step`` (None if none, or not reached)."""
    if not points or points[-1][0] < step:
        return None
    before = [s for s in points if s[0] <= step]
    return before[-1][1] if before else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--pretrain-steps", type=int, required=True, help="steps of the pre-training fine-tuned from")
    p.add_argument("--out", type=Path, required=True, help="output stem (.md and .png are added)")
    args = p.parse_args(argv)
    curves = sorted((read_curve(r) for r in args.runs), key=lambda c: -c[0])
    marks = [max(1, round(f * args.pretrain_steps)) for f in FRACTIONS]
    lines = [f"Fine-tuning on 20 FLAIR subjects from a {args.pretrain_steps}-step pre-training: DPS NRMSE at R = 4 "
             "on the validation individual (lower is better).", "",
             "| learning rate | " + " | ".join(f"{f:.1%} ({m} steps)" for f, m in zip(FRACTIONS, marks))
             + " | best (step) | last (step) |",
             "|---|" + "---|" * (len(marks) + 2)]
    for lr, points in curves:
        cells = [score_at(points, m) for m in marks]
        best = min(points, key=lambda s: s[1])
        lines.append(f"| {lr:g} | " + " | ".join("not reached" if c is None else f"{c:.4f}" for c in cells)
                     + f" | {best[1]:.4f} ({best[0]}) | {points[-1][1]:.4f} ({points[-1][0]}) |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for lr, points in curves:
        ax.plot([s for s, _ in points], [v for _, v in points], marker=".", label=f"lr {lr:g}")
    for m in marks:
        ax.axvline(m, color="grey", lw=0.5, ls=":")
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("validation NRMSE (DPS, R = 4)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
