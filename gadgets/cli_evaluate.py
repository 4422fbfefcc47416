"""``dps-gadgetron evaluate --plan PLAN.yaml --results DIR``: the paper's comparison on our data.

Trains every prior the plan names (resuming unfinished runs, skipping finished ones), scores
them and the classical baselines on held-out slices, and writes ``results.json``, a markdown
report and figures under ``--results`` (see :mod:`models.experiments`). ``--reduced`` runs
the packaged reduced plan (tiny models, a few steps: CI's pipeline check); without ``--plan``
the packaged full plan is used. ``--only-report`` redraws the report from ``results.json``;
``--no-train`` scores the checkpoints that exist (e.g. while training goes on elsewhere),
marking results of unfinished trainings as partial.
"""

import logging
import shlex
from pathlib import Path

from models.experiments import PLANS_DIR

log = logging.getLogger(__name__)

HELP = "train and score the compared priors and baselines from an experiment plan (resumable)"


def add_arguments(parser):
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--plan", type=Path, help="experiment plan YAML (default: the packaged models/experiments/plans/full.yaml)")
    which.add_argument("--reduced", action="store_true",
                       help="use the packaged reduced plan models/experiments/plans/reduced.yaml (tiny models, "
                            "a few steps: CI's pipeline check)")
    parser.add_argument("--results", type=Path, required=True, help="results folder (created; resumed if it exists)")
    parser.add_argument("--bank-root", type=Path, default=Path("."),
                        help="folder the plan's bank paths are relative to (default: the current folder)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (training and sampling)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--only-report", action="store_true", help="only rewrite the report from results.json")
    what.add_argument("--no-train", action="store_true",
                      help="train nothing; score the checkpoints that exist (partial results are marked)")
    what.add_argument("--train-only", nargs="+", metavar="TRAINING",
                      help="only train (or resume) these trainings of the plan and score nothing: run "
                           "independent ones at once, one process per core or GPU; a later full run skips them")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")


def plan_path(args) -> Path:
    """The plan file the flags select."""
    if args.reduced:
        return PLANS_DIR / "reduced.yaml"
    return args.plan if args.plan is not None else PLANS_DIR / "full.yaml"


def command_line(args) -> str:
    """The command as a user would type it again (recorded in results.json)."""
    parts = ["dps-gadgetron", "evaluate"]
    if args.reduced or args.plan is not None:
        parts += ["--reduced"] if args.reduced else ["--plan", str(args.plan)]
    parts += ["--results", str(args.results)]
    if args.bank_root != Path("."):
        parts += ["--bank-root", str(args.bank_root)]
    if args.device != "auto":
        parts += ["--device", args.device]
    parts += [flag for flag, on in (("--no-train", args.no_train), ("--no-progress", args.no_progress)) if on]
    return shlex.join(parts)


def run(args) -> int:
    from models.experiments.plan import load_plan  # torch-heavy modules, import on use
    from models.experiments.report import write_report
    from models.experiments.runner import ExperimentRunner

    plan = load_plan(plan_path(args))
    if args.train_only:
        ExperimentRunner(plan, args.results, bank_root=args.bank_root, device=args.device,
                         progress=not args.no_progress).train_only(args.train_only)
        return 0
    if not args.only_report:
        runner = ExperimentRunner(plan, args.results, bank_root=args.bank_root, device=args.device,
                                  progress=not args.no_progress, command=command_line(args))
        runner.run(train=not args.no_train)
    report = write_report(plan, args.results)
    print(report)
    return 0
