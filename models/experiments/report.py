"""Markdown report and PNG figures of an experiment run, made from ``results.json`` alone.

Writes ``README.md`` (so the folder reads well when browsed) and ``figures/``:

- ``examples.png``: the example slice at the example R, every method side by side, with
  error maps ``| |x| - |truth| |`` on a shared scale below;
- ``nrmse_vs_R.png``: NRMSE (mean ± std over slices) against R per method and baseline;
- ``ablation.png``: the fine-tuning ablation's NRMSE as a learning rate x length heat map;
- ``zeta_sweep.png``: NRMSE against zeta per R, with each R's optimum marked.

Figures need matplotlib (``pip install .[bench]``); without it the report says so and keeps
the tables. Results from unfinished trainings are marked with a dagger and the report opens
with a PARTIAL banner until the plan is complete.
"""

import logging
from pathlib import Path
from typing import List, Optional

import numpy as np

from models.experiments.plan import BASELINE_LABELS, ExperimentPlan
from models.experiments.results import RESULTS_FILE, read_results

log = logging.getLogger(__name__)

REPORT_FILE = "README.md"
PARTIAL_MARK = "†"


def _mean_std(entry: Optional[dict], metric: str = "nrmse", digits: int = 4) -> str:
    if entry is None:
        return "—"
    mark = f" {PARTIAL_MARK}" if entry.get("partial") else ""
    return f"{entry[metric]:.{digits}f} ± {entry[metric + '_std']:.{digits}f}{mark}"


def _p(value) -> str:
    return "—" if value is None else f"{value:.3g}"


def _rows(plan: ExperimentPlan, results: dict) -> List[tuple]:
    """``(key, label)`` of every table row: the methods in plan order, then the baselines."""
    rows = [(f"method{m.id}", m.label) for m in plan.methods.values()]
    rows += [(b, BASELINE_LABELS[b]) for b in plan.evaluation.baselines]
    return rows


def _metric_table(plan, results, metric: str, digits: int) -> List[str]:
    ev = plan.evaluation
    lines = ["| method | " + " | ".join(f"R = {r}" for r in ev.accelerations) + " |",
             "|---|" + "---|" * len(ev.accelerations)]
    for key, label in _rows(plan, results):
        cells = [_mean_std(results["evaluation"].get(f"R{r}", {}).get(key), metric, digits) for r in ev.accelerations]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _baseline_parameters(plan, results) -> List[str]:
    lines = []
    for r in plan.evaluation.accelerations:
        chosen = [f"{k} {e['parameter']:g}" for k, e in results["evaluation"].get(f"R{r}", {}).items()
                  if e.get("kind") == "baseline" and e.get("parameter") is not None]
        if chosen:
            lines.append(f"R = {r}: " + ", ".join(chosen))
    return lines


def _budget_table(plan, results) -> List[str]:
    lines = ["| training | mode | data | target subjects | init from | steps (budget) | batch | images seen | lr | "
             "trained | best step |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in plan.budget_rows():
        state = results["trainings"].get(row["training"], {})
        trained = f"{state.get('step', 0)}/{row['steps']}" + ("" if state.get("finished") else f" {PARTIAL_MARK}")
        lines.append(f"| {row['training']} | {row['mode']} | {row['data']} | {row['target_subjects']} | "
                     f"{row['init_from']} | {row['steps']} | {row['batch_size']} | {row['images_seen']} | "
                     f"{row['lr']:g} | {trained} | {state.get('best_step', '—')} |")
    return lines


def _ablation_table(plan, results) -> List[str]:
    ab = plan.ablation
    n = ab.slices or plan.evaluation.slices
    lines = [f"NRMSE at R = {ab.acceleration} on {n} test slices of the `{ab.checkpoint}` checkpoint of each "
             f"fine-tuning (from the shared pre-training, on the same target subjects as method 4):", "",
             "| lr \\ length | " + " | ".join(f"{name} ({steps} steps)" for name, steps in ab.lengths.items()) + " |",
             "|---|" + "---|" * len(ab.lengths)]
    for lr in ab.learning_rates:
        cells = [_mean_std(results["ablation"].get(ab.cell_name(lr, length))) for length in ab.lengths]
        lines.append(f"| {lr:g} | " + " | ".join(cells) + " |")
    return lines


def _zeta_table(plan, results) -> List[str]:
    sweep = plan.zeta_sweep
    lines = [f"Mean NRMSE of method {sweep.method}'s prior on {sweep.slices} `{sweep.bank}` slices (validation, "
             "not the test slices):", "",
             "| R | " + " | ".join(f"zeta {v:g}" for v in sweep.values) + " | best | table zeta |",
             "|---|" + "---|" * (len(sweep.values) + 2)]
    for r in sweep.accelerations:
        entry = results["zeta_sweep"].get(f"R{r}")
        if entry is None:
            lines.append(f"| {r} | " + " | ".join("—" for _ in sweep.values) + " | — | — |")
            continue
        mark = f" {PARTIAL_MARK}" if entry.get("partial") else ""
        lines.append(f"| {r} | " + " | ".join(f"{v:.4f}" for v in entry["nrmse"]) +
                     f" | {entry['best']:g}{mark} | {entry['table_zeta']:g} |")
    return lines


def _paired_table(plan, results) -> List[str]:
    lines = ["| R | comparison | slices | mean NRMSE difference (other − reference) | reference better on | "
             "Wilcoxon p | paired t p |", "|---|---|---|---|---|---|---|"]
    for r in plan.evaluation.accelerations:
        for t in results["paired_tests"].get(f"R{r}", {}).values():
            mark = f" {PARTIAL_MARK}" if t.get("partial") else ""
            lines.append(f"| {r} | method {t['reference']} vs {t['other']}{mark} | {t['n']} | "
                         f"{t['mean_difference']:+.4f} | {t['reference_better']}/{t['n']} | {_p(t['wilcoxon_p'])} | "
                         f"{_p(t['ttest_p'])} |")
    return lines


# ---------------------------------------------------------------------- figures
def _figures(plan: ExperimentPlan, results: dict, root: Path) -> List[str]:
    """Draw what the results allow; returns the written file names (relative to ``root``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out, written = root / "figures", []
    out.mkdir(parents=True, exist_ok=True)
    ev = plan.evaluation
    rows = _rows(plan, results)

    example_dir = root / "examples" / f"R{ev.example_acceleration}"
    truth_path = example_dir / "truth.npy"
    shown = [(k, label) for k, label in rows if (example_dir / f"{k}.npy").is_file()]
    if truth_path.is_file() and shown:
        truth = np.abs(np.load(truth_path))
        images = [np.abs(np.load(example_dir / f"{k}.npy")) for k, _ in shown]
        vmax = float(np.percentile(truth, 99.5)) or 1.0
        errors = [np.abs(img - truth) for img in images]
        emax = max(float(np.percentile(e, 99.5)) for e in errors) or 1.0
        n = len(shown) + 1
        fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.2))
        axes[0, 0].imshow(truth, cmap="gray", vmin=0, vmax=vmax)
        axes[0, 0].set_title("truth", fontsize=7)
        axes[1, 0].axis("off")
        for j, ((key, label), img, err) in enumerate(zip(shown, images, errors, strict=True), start=1):
            entry = results["evaluation"].get(f"R{ev.example_acceleration}", {}).get(key, {})
            axes[0, j].imshow(img, cmap="gray", vmin=0, vmax=vmax)
            axes[0, j].set_title(f"{label}\nNRMSE {entry.get('per_slice', {}).get('nrmse', [np.nan])[0]:.3f}"
                                 if entry else label, fontsize=6)
            axes[1, j].imshow(err, cmap="inferno", vmin=0, vmax=emax)
        for ax in axes.flat:
            ax.set_xticks([]), ax.set_yticks([])
        axes[1, 1].set_ylabel(f"|error| (0..{emax:.2g})", fontsize=7)
        fig.suptitle(f"R = {ev.example_acceleration}, example slice", fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "examples.png", dpi=130)
        plt.close(fig)
        written.append("figures/examples.png")

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    drawn = False
    for key, label in rows:
        points = [(r, results["evaluation"].get(f"R{r}", {}).get(key)) for r in ev.accelerations]
        points = [(r, e) for r, e in points if e is not None]
        if points:
            ax.errorbar([r for r, _ in points], [e["nrmse"] for _, e in points],
                        yerr=[e["nrmse_std"] for _, e in points], marker="o" if key.startswith("method") else "s",
                        linestyle="-" if key.startswith("method") else "--", capsize=3, label=label)
            drawn = True
    if drawn:
        ax.set_xlabel("acceleration R"), ax.set_ylabel("NRMSE (mean ± std over slices)")
        ax.set_xticks(list(ev.accelerations)), ax.grid(alpha=0.3), ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(out / "nrmse_vs_R.png", dpi=130)
        written.append("figures/nrmse_vs_R.png")
    plt.close(fig)

    ab = plan.ablation
    if ab is not None and results["ablation"]:
        grid = np.full((len(ab.learning_rates), len(ab.lengths)), np.nan)
        for i, lr in enumerate(ab.learning_rates):
            for j, length in enumerate(ab.lengths):
                entry = results["ablation"].get(ab.cell_name(lr, length))
                if entry is not None:
                    grid[i, j] = entry["nrmse"]
        fig, ax = plt.subplots(figsize=(4.5, 3.5))
        im = ax.imshow(grid, cmap="viridis_r", aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=7, color="w")
        ax.set_xticks(range(len(ab.lengths)), [f"{k}\n({v} steps)" for k, v in ab.lengths.items()], fontsize=7)
        ax.set_yticks(range(len(ab.learning_rates)), [f"{lr:g}" for lr in ab.learning_rates], fontsize=7)
        ax.set_xlabel("fine-tuning length"), ax.set_ylabel("learning rate")
        ax.set_title(f"fine-tuning ablation: NRMSE at R = {ab.acceleration}", fontsize=8)
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        fig.savefig(out / "ablation.png", dpi=130)
        plt.close(fig)
        written.append("figures/ablation.png")

    if plan.zeta_sweep is not None and results["zeta_sweep"]:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for r in plan.zeta_sweep.accelerations:
            entry = results["zeta_sweep"].get(f"R{r}")
            if entry is None:
                continue
            line, = ax.plot(entry["values"], entry["nrmse"], marker="o", label=f"R = {r}")
            ax.plot([entry["best"]], [min(entry["nrmse"])], marker="*", markersize=12, color=line.get_color())
        ax.set_xscale("log"), ax.set_xlabel("zeta"), ax.set_ylabel("NRMSE (validation slices)")
        ax.set_title(f"zeta sweep, method {plan.zeta_sweep.method} (star: optimum)", fontsize=8)
        ax.grid(alpha=0.3), ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "zeta_sweep.png", dpi=130)
        plt.close(fig)
        written.append("figures/zeta_sweep.png")
    return written


# ---------------------------------------------------------------------- report
def _partial_banner(plan, results) -> List[str]:
    if results.get("complete"):
        return []
    unfinished = [f"{name} ({t['step']}/{t['total_steps']} steps)" for name, t in results["trainings"].items()
                  if not t.get("finished") and name in plan.all_trainings()]
    lines = [f"> **PARTIAL RESULTS.** The plan has not run to the end. Entries marked {PARTIAL_MARK} come from "
             "trainings that have not reached their budget; — marks entries not measured yet."]
    if unfinished:
        lines.append(f"> Unfinished trainings: {', '.join(unfinished)}.")
    return lines + [""]


def write_report(plan: ExperimentPlan, results_dir) -> Path:
    """Write ``README.md`` and ``figures/*.png`` under ``results_dir`` from its ``results.json``."""
    root = Path(results_dir)
    results = read_results(root / RESULTS_FILE)
    ev = plan.evaluation
    try:
        figures = _figures(plan, results, root)
        figure_note = ""
    except ImportError:
        figures, figure_note = [], "matplotlib is not installed, so no figures (`pip install .[bench]`)."
        log.warning("matplotlib not installed: report without figures")
    test = next(iter(results["evaluation"].values()), {})
    n_slices = len(next(iter(test.values()), {}).get("per_slice", {}).get("nrmse", [])) if test else 0
    zeta = ", ".join(f"R={r}: {z:g}" for r, z in ev.zeta.items()) if ev.zeta else f"the shipped {ev.sampler} per-R table"
    lines = [f"# Evaluation: plan `{plan.name}`", ""] + _partial_banner(plan, results) + [
        plan.description, "",
        f"Test slices: {n_slices} {plan.target_contrast} slices of `{plan.banks[ev.bank]}` (held-out subjects). "
        f"Scans simulated with {ev.scan.coils} coils, SNR {ev.scan.snr:g}, equispaced masks with {ev.scan.num_acs} ACS "
        f"lines, coil maps estimated from the ACS ({ev.scan.coil_method or 'default method'}); seed {ev.seed}. "
        f"DPS: sampler {ev.sampler}, {ev.steps} steps, {ev.num_samples} sample(s), zeta from {zeta}. Baseline parameters tuned by mean "
        f"NRMSE on {ev.tuning_slices} `{plan.banks[ev.tuning_bank]}` slices (not the test slices). Every prior: "
        f"U-Net preset `{plan.preset}`, {plan.image_size}x{plan.image_size}.", "",
        "## NRMSE (mean ± std over slices)", ""] + _metric_table(plan, results, "nrmse", 4) + [
        "", "## PSNR (dB)", ""] + _metric_table(plan, results, "psnr", 2) + [
        "", "## SSIM", ""] + _metric_table(plan, results, "ssim", 4) + [""]
    params = _baseline_parameters(plan, results)
    if params:
        lines += ["Tuned baseline parameters: " + "; ".join(params) + "."]
    if results.get("skipped"):
        lines += ["Skipped: " + "; ".join(f"{k}: {v}" for k, v in results["skipped"].items()) + "."]
    lines += ["", f"## Paired tests on per-slice NRMSE (method {ev.paired_reference} against "
              f"{', '.join(ev.paired_against)})", ""] + _paired_table(plan, results) + [
        "", "Two-sided Wilcoxon signed-rank and paired t-test over the same test slices.", "",
        "## Training budget", "", "Every training uses the same network; steps are the stated budget.", ""] + \
        _budget_table(plan, results) + [""]
    if plan.ablation is not None:
        lines += ["## Fine-tuning ablation", ""] + _ablation_table(plan, results) + [""]
    if plan.zeta_sweep is not None:
        lines += ["## zeta sweep", ""] + _zeta_table(plan, results) + [""]
    lines += ["## Figures", ""]
    lines += [f"![{Path(f).stem}]({f})" for f in figures] or [figure_note or "No figures yet."]
    hw = results["provenance"].get("hardware", {})
    lines += ["", "## Provenance", "", "Commands (in order):", "", "```"] + \
        (results["provenance"].get("commands") or ["(run through the Python API)"]) + ["```", "",
        f"Hardware: {hw.get('processor')}, {hw.get('cpu_count')} cores, GPU {hw.get('cuda') or 'none'}; "
        f"torch {hw.get('torch')} ({hw.get('torch_threads')} threads), Python {hw.get('python')}, "
        f"BART {hw.get('bart') or 'not installed'}; {hw.get('platform')}; load average {hw.get('load_average')}. "
        f"Code: commit {hw.get('git_commit') or 'unknown'}. Plan file `{plan.path}` (sha256 {plan.sha256[:12]}). "
        f"Results updated {results.get('updated')}.", ""]
    path = root / REPORT_FILE
    path.write_text("\n".join(lines))
    log.info("report written to %s (%d figures)", path, len(figures))
    return path
