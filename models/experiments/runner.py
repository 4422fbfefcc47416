"""Run an experiment plan: train every prior (resumably), score it on held-out slices, record.

Folder layout under the results root::

    results.json          every measurement so far (see :mod:`models.experiments.results`)
    runs/NAME/            one run directory per training (Trainer: config.yaml, state.pt,
                          best.safetensors, last.safetensors, log.jsonl)
    banks/A+B.h5          concatenated training banks (joint trainings)
    examples/R6/KEY.npy   the example slice of every method at the example R (complex64 [H, W])

Order of work: trainings in dependency order (the shared pre-training first; method 4 and
every ablation cell fine-tune from its ``best.safetensors``), then per R the baselines and the
methods, the paired tests, the ablation grid and the zeta sweep. A training is finished when
its ``state.pt`` step equals its budget; finished ones are skipped, unfinished ones resume
(:class:`models.training.loop.Trainer`). An entry of ``results.json`` is recomputed only when
what produced it changed (checkpoint digest, settings, slices), so a re-run after an
interruption picks up where it stopped. With ``train=False`` nothing is trained and the
checkpoints that exist are scored; entries from unfinished trainings are marked partial.

Scores: NRMSE / PSNR / SSIM of the magnitude (:mod:`models.mri.metrics`), mean and std over
slices, on scans simulated from the test bank (:func:`models.evaluation.make_test_cases`).
Baseline parameters are tuned by mean NRMSE on the tuning bank (validation slices), never on
the test slices; DPS uses the plan's zeta per R (default: the shipped table).
"""

import dataclasses
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import yaml

from models.evaluation import TestCase, load_test_slices, make_test_cases, run_callable, summarize
from models.experiments.banks import concatenate_banks
from models.experiments.plan import BASELINE_LABELS, ExperimentPlan, ExperimentPlanError
from models.experiments.results import RESULTS_FILE, ResultsFile, fingerprint
from models.experiments.stats import paired_test
from models.prior.checkpoint import load_prior, read_metadata
from models.reconstruction import ReconSettings, reconstruct
from models.sampler.zeta import default_zeta
from models.training.config import TrainConfig
from models.training.loop import Trainer, logged_step

log = logging.getLogger(__name__)

#: TrainConfig fields that may differ between a run directory's config.yaml and the plan on resume.
RESUMABLE_CHANGES = ("total_steps", "device", "num_workers")
PATH_FIELDS = ("data", "val_data", "init_checkpoint")


def training_step(run_dir) -> Tuple[int, Optional[int], Optional[float]]:
    """``(step, best_step, best_score)`` of a run directory; ``(0, None, None)`` for one not started.

    Read from ``state.pt``; a run trained elsewhere (e.g. on a lent GPU) whose 69 MB state
    was not copied back is read from its ``log.jsonl`` (last step) and ``best.safetensors``.
    """
    path = Path(run_dir) / "state.pt"
    if not path.is_file():
        return _step_from_log(Path(run_dir))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated file must not read as "not started"
        raise ExperimentPlanError(f"cannot read {path}: {exc}") from None
    best_step = int(state["best_step"])
    return int(state["step"]), (best_step if best_step >= 0 else None), float(state["best_score"])


def _step_from_log(run_dir: Path) -> Tuple[int, Optional[int], Optional[float]]:
    best_path = run_dir / "best.safetensors"
    if not ((run_dir / "log.jsonl").is_file() and best_path.is_file()):
        return 0, None, None
    training = read_metadata(best_path).training or {}
    return logged_step(run_dir), training.get("best_step"), training.get("best_score")


def hardware_info() -> dict:
    """What the numbers were measured on: CPU / GPU, threads, library versions, commit."""
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "cuda": None, "bart": None, "git_commit": None}
    if torch.cuda.is_available():
        info["cuda"] = torch.cuda.get_device_name(0)
    if shutil.which("bart"):
        done = subprocess.run(["bart", "version"], capture_output=True, text=True)
        info["bart"] = done.stdout.strip() or None
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, timeout=10)
        info["git_commit"] = done.stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip()
        if info["git_commit"] and dirty:
            info["git_commit"] += " (with uncommitted changes)"
    except (OSError, subprocess.SubprocessError):
        pass
    if hasattr(os, "getloadavg"):
        info["load_average"] = round(os.getloadavg()[0], 2)
    return info


def find_bart() -> Tuple[Optional[Callable], str]:
    """``(pics_l1, "")`` when BART is installed, else ``(None, reason)``."""
    if shutil.which("bart") is None:
        return None, "bart is not installed (Debian package bart)"
    from models.mri.bart import pics_l1
    return pics_l1, ""


class ExperimentRunner:
    """Trains and scores one plan into ``results_dir``.

    Args:
        plan: the :class:`~models.experiments.plan.ExperimentPlan`.
        results_dir: the results root (created).
        bank_root: folder the plan's bank paths are relative to.
        device: training / sampling device (``auto``, ``cpu``, ``cuda``).
        progress: progress bars for trainings.
        command: the command line that started this run (recorded in results.json).
    """

    def __init__(self, plan: ExperimentPlan, results_dir, bank_root=".", device: str = "auto",
                 progress: bool = True, command: str = ""):
        self.plan = plan
        self.root = Path(results_dir)
        self.bank_root = Path(bank_root)
        self.device = device
        self.eval_device = torch.device("cuda" if device == "auto" and torch.cuda.is_available()
                                        else ("cpu" if device == "auto" else device))
        self.progress = progress
        self.command = command
        self.specs = plan.all_trainings()
        self._cases: Dict[tuple, List[TestCase]] = {}
        self._priors: Dict[str, object] = {}
        self._slice_names: Dict[tuple, List[str]] = {}
        self.results: Optional[ResultsFile] = None
        self.bart = find_bart() if "bart" in plan.evaluation.baselines else (None, "not in the plan")

    # ------------------------------------------------------------------ paths
    def run_dir(self, name: str) -> Path:
        return self.root / "runs" / name

    def _data_file(self, keys) -> Path:
        paths = [self.plan.bank_path(k, self.bank_root) for k in keys]
        if len(paths) == 1:
            return paths[0]
        return concatenate_banks(paths, self.root / "banks" / ("+".join(keys) + ".h5"))

    def train_config(self, name: str) -> TrainConfig:
        spec = self.specs[name]
        init = str(self.run_dir(spec.init_from) / "best.safetensors") if spec.init_from else ""
        return self.plan.train_config(name, data=str(self._data_file(spec.data)),
                                      val_data=str(self.plan.bank_path(spec.val_data, self.bank_root)),
                                      init_checkpoint=init, device=self.device)

    # ------------------------------------------------------------------ training
    def _check_resumable(self, config: TrainConfig, run_dir: Path) -> None:
        stored_path = run_dir / "config.yaml"
        if not (run_dir / "state.pt").is_file() or not stored_path.is_file():
            return
        stored = yaml.safe_load(stored_path.read_text()) or {}
        wanted = config.to_dict()
        diffs = []
        for key, value in wanted.items():
            if key in RESUMABLE_CHANGES or key not in stored:
                continue
            old = stored[key]
            if key in PATH_FIELDS:
                old, value = Path(str(old)).name, Path(str(value)).name
            if old != value:
                diffs.append(f"{key}: {old!r} -> {value!r}")
        if diffs:
            raise ExperimentPlanError(f"{run_dir} was trained with other settings than the plan now gives "
                                      f"({'; '.join(diffs)}): use another results folder or remove that run")

    def check_run(self, name: str) -> int:
        """The step a run directory is at; raises when it cannot belong to this plan's training."""
        spec, run_dir = self.specs[name], self.run_dir(name)
        step, _, _ = training_step(run_dir)
        if step > spec.steps:
            raise ExperimentPlanError(f"{run_dir} is at step {step}, beyond its budget of {spec.steps} steps in "
                                      f"the plan: use another results folder or remove that run")
        if step:
            self._check_resumable(self.train_config(name), run_dir)
        return step

    def train(self, name: str) -> dict:
        """Train (or resume) one training to its budget; a finished one is left untouched."""
        self._train(name)
        return self._record_training(name)

    def train_only(self, names) -> None:
        """Train (or resume) just ``names``, scoring nothing and leaving ``results.json`` alone.

        Independent trainings of a plan can so run at once, one process per core or GPU; the full
        run afterwards finds them finished and skips them.
        """
        unknown = [n for n in names if n not in self.specs]
        if unknown:
            raise ExperimentPlanError(f"plan {self.plan.name}: no training named {', '.join(unknown)} "
                                      f"(the plan has {', '.join(self.specs)})")
        self._check_banks()
        self.root.mkdir(parents=True, exist_ok=True)
        for name in names:
            self._train(name)

    def _check_banks(self) -> None:
        """Every bank the plan names exists: named before anything is trained or written."""
        missing = self.plan.missing_banks(self.bank_root)
        if missing:
            raise ExperimentPlanError(f"plan {self.plan.name}: slice banks not found: {', '.join(missing)} "
                                      f"(build them with tools/build_banks.sh)")

    def _train(self, name: str) -> None:
        spec, run_dir = self.specs[name], self.run_dir(name)
        step = self.check_run(name)
        if step == spec.steps:
            log.info("training %s: finished (%d steps), skipped", name, step)
            return
        if spec.init_from and training_step(self.run_dir(spec.init_from))[0] != self.specs[spec.init_from].steps:
            raise ExperimentPlanError(f"training {name} fine-tunes {spec.init_from}, which has not finished")
        config = self.train_config(name)
        log.info("training %s: %s, steps %d -> %d in %s", name, spec.mode, step, spec.steps, run_dir)
        Trainer(config, run_dir).run(progress=self.progress)

    def _record_training(self, name: str) -> dict:
        spec = self.specs[name]
        step, best_step, best_score = training_step(self.run_dir(name))
        record = {"mode": spec.mode, "step": step, "total_steps": spec.steps, "finished": step == spec.steps,
                  "best_step": best_step, "best_score": best_score,
                  "run_dir": str(self.run_dir(name).relative_to(self.root))}
        self.results.put("trainings", None, name, record)
        return record

    def finished(self, name: str) -> bool:
        return training_step(self.run_dir(name))[0] == self.specs[name].steps

    # ------------------------------------------------------------------ cases and recons
    def cases(self, bank_key: str, acceleration: int, count: int) -> List[TestCase]:
        key = (bank_key, acceleration, count)
        if key not in self._cases:
            ev, scan = self.plan.evaluation, self.plan.evaluation.scan
            slices = load_test_slices(self.plan.bank_path(bank_key, self.bank_root), self.plan.target_contrast, count)
            self._cases[key] = make_test_cases(slices, acceleration, num_acs=scan.num_acs, coils=scan.coils,
                                               snr=scan.snr, seed=ev.seed, coil_method=scan.coil_method)
        return self._cases[key]

    def _case_spec(self, bank_key: str, acceleration: int, count: int) -> dict:
        """What defines a set of cases (for fingerprints), without simulating them."""
        if (bank_key, count) not in self._slice_names:
            slices = load_test_slices(self.plan.bank_path(bank_key, self.bank_root), self.plan.target_contrast, count)
            self._slice_names[(bank_key, count)] = [name for _, name in slices]
        return {"bank": bank_key, "R": acceleration, "count": count, "seed": self.plan.evaluation.seed,
                "scan": dataclasses.asdict(self.plan.evaluation.scan), "slices": self._slice_names[(bank_key, count)]}

    def _settings_recon(self, settings: ReconSettings, prior=None) -> Callable[[TestCase], torch.Tensor]:
        device = self.eval_device

        def recon(case: TestCase) -> torch.Tensor:
            out = reconstruct(case.scan.kspace.to(device), case.maps.to(device), case.scan.mask.mask.to(device),
                              settings, prior=prior)
            return out.image[0].cpu()
        return recon

    def _bart_recon(self, lam: float, pics_l1) -> Callable[[TestCase], torch.Tensor]:
        def recon(case: TestCase) -> torch.Tensor:
            with tempfile.TemporaryDirectory() as workdir:
                return pics_l1(case.scan.kspace[0], case.maps[0], case.scan.mask.mask, lam, workdir)
        return recon

    def _score(self, cases, recon, example: Optional[Path] = None) -> dict:
        """Entry fields (means, stds, per-slice lists); saves the example slice's image when asked."""
        target = cases[self.plan.evaluation.example_slice % len(cases)].name if example is not None else None

        def recording(case):
            image = recon(case)
            if case.name == target:
                example.parent.mkdir(parents=True, exist_ok=True)
                np.save(example, image.numpy().astype(np.complex64))
                np.save(example.with_name("truth.npy"), case.truth.numpy().astype(np.complex64))
            return image
        scores = run_callable(cases, recording)
        entry = summarize(scores)
        entry["per_slice"] = {k: [float(getattr(s, k)) for s in scores] for k in ("nrmse", "psnr", "ssim")}
        return entry

    def _example_path(self, acceleration: int, key: str) -> Optional[Path]:
        if acceleration != self.plan.evaluation.example_acceleration:
            return None
        return self.root / "examples" / f"R{acceleration}" / f"{key}.npy"

    def _done(self, section: str, sub: Optional[str], key: str, fp: str, example: Optional[Path]) -> bool:
        """An entry with this fingerprint exists (and its example image, where one is due)."""
        cached = self.results.cached(section, sub, key, fp) is not None
        return cached and (example is None or (example.is_file() and example.with_name("truth.npy").is_file()))

    def zeta(self, acceleration: int) -> float:
        table = self.plan.evaluation.zeta
        return float(table[acceleration]) if table else default_zeta(acceleration, sampler=self.plan.evaluation.sampler)

    def dps_settings(self, acceleration: int, zeta: Optional[float] = None) -> ReconSettings:
        ev = self.plan.evaluation
        return ReconSettings(method="dps", contrast=self.plan.target_contrast, acceleration=acceleration,
                             sampler=ev.sampler, zeta=self.zeta(acceleration) if zeta is None else zeta,
                             num_steps=ev.steps,
                             num_samples=ev.num_samples, seed=ev.seed, final_cg_iterations=ev.final_cg_iterations)

    def checkpoint(self, training: str, which: str) -> Optional[Path]:
        """The requested checkpoint of a training, else its other one, else None (not trained yet)."""
        run_dir = self.run_dir(training)
        for name in (which, "last" if which == "best" else "best"):
            if (run_dir / f"{name}.safetensors").is_file():
                return run_dir / f"{name}.safetensors"
        return None

    def prior(self, path: Path):
        key = str(path)
        if key not in self._priors:
            self._priors = {key: load_prior(path, device=self.eval_device)[0]}  # one prior in memory at a time
        return self._priors[key]

    # ------------------------------------------------------------------ evaluation units
    def evaluate_baselines(self, acceleration: int) -> None:
        ev = self.plan.evaluation
        cases = self.cases(ev.bank, acceleration, ev.slices)
        tuning = self.cases(ev.tuning_bank, acceleration, ev.tuning_slices)
        candidates = {
            "zero_filled": (None, lambda _: self._settings_recon(ReconSettings(method="zero_filled"))),
            "cg_sense": (ev.cg_iterations, lambda n: self._settings_recon(
                ReconSettings(method="cg_sense", cg_iterations=int(n)))),
            "cs": (ev.cs_lambdas, lambda lam: self._settings_recon(
                ReconSettings(method="cs", cs_lambda=float(lam), seed=ev.seed))),
        }
        if "bart" in ev.baselines:
            pics_l1, reason = self.bart
            if pics_l1 is None:
                self.results.put("skipped", None, "bart", reason)
                log.warning("BART baseline skipped: %s", reason)
            else:
                candidates["bart"] = (ev.bart_lambdas, lambda lam: self._bart_recon(float(lam), pics_l1))
        sub = f"R{acceleration}"
        for name in ev.baselines:
            if name not in candidates:
                continue
            grid, make = candidates[name]
            fp = fingerprint(kind=name, grid=grid, cases=self._case_spec(ev.bank, acceleration, ev.slices),
                             tuning=self._case_spec(ev.tuning_bank, acceleration, ev.tuning_slices))
            if self._done("evaluation", sub, name, fp, self._example_path(acceleration, name)):
                continue
            tuned = {}
            if grid is not None:
                tuned = {str(v): summarize(run_callable(tuning, make(v)))["nrmse"] for v in grid}
                best = min(grid, key=lambda v: tuned[str(v)])
            else:
                best = None
            log.info("R=%d %s (parameter %s)", acceleration, name, best)
            entry = self._score(cases, make(best), self._example_path(acceleration, name))
            entry.update(kind="baseline", label=BASELINE_LABELS[name], parameter=best, tuning=tuned,
                         partial=False, fingerprint=fp)
            self.results.put("evaluation", sub, name, entry)

    def _prior_entry(self, training: str, which: str, acceleration: int, bank: str, count: int, key: str,
                     section: str, sub: Optional[str], extra: dict) -> None:
        path = self.checkpoint(training, which)
        if path is None:
            log.info("%s: %s has no checkpoint yet, not scored", key, training)
            return
        settings = self.dps_settings(acceleration)
        fp = fingerprint(checkpoint=read_metadata(path).sha256, settings=repr(settings),
                         cases=self._case_spec(bank, acceleration, count))
        example = self._example_path(acceleration, key) if section == "evaluation" else None
        if self._done(section, sub, key, fp, example):
            return
        log.info("R=%d %s: DPS with %s (%s)", acceleration, key, path, training)
        cases = self.cases(bank, acceleration, count)
        entry = self._score(cases, self._settings_recon(settings, self.prior(path)), example)
        step, _, _ = training_step(self.run_dir(training))
        entry.update(kind="prior", training=training, checkpoint=str(path.relative_to(self.root)),
                     checkpoint_steps=read_metadata(path).steps, training_step=step,
                     total_steps=self.specs[training].steps, partial=step != self.specs[training].steps,
                     zeta=settings.resolved_zeta(), dps_steps=settings.num_steps, fingerprint=fp, **extra)
        self.results.put(section, sub, key, entry)

    def evaluate_methods(self, acceleration: int) -> None:
        ev = self.plan.evaluation
        for method in self.plan.methods.values():
            self._prior_entry(method.training, method.checkpoint, acceleration, ev.bank, ev.slices,
                              f"method{method.id}", "evaluation", f"R{acceleration}",
                              {"label": method.label, "method": method.id})

    def paired_tests(self, acceleration: int) -> None:
        ev, sub = self.plan.evaluation, f"R{acceleration}"
        entries = self.results.section("evaluation", sub)
        reference = entries.get(f"method{ev.paired_reference}")
        for other_id in ev.paired_against:
            other = entries.get(f"method{other_id}")
            if reference is None or other is None:
                continue
            test = paired_test(reference["per_slice"]["nrmse"], other["per_slice"]["nrmse"])
            test.update(reference=ev.paired_reference, other=other_id, metric="nrmse",
                        partial=bool(reference["partial"] or other["partial"]))
            self.results.put("paired_tests", sub, f"{ev.paired_reference} vs {other_id}", test)

    def evaluate_ablation(self) -> None:
        ab, ev = self.plan.ablation, self.plan.evaluation
        for lr in ab.learning_rates:
            for length, steps in ab.lengths.items():
                name = ab.cell_name(lr, length)
                self._prior_entry(name, ab.checkpoint, ab.acceleration, ev.bank, ab.slices or ev.slices, name,
                                  "ablation", None,
                                  {"lr": lr, "length": length, "steps": steps, "R": ab.acceleration})

    def zeta_sweep(self) -> None:
        sweep = self.plan.zeta_sweep
        method = self.plan.methods[sweep.method]
        path = self.checkpoint(method.training, method.checkpoint)
        if path is None:
            log.info("zeta sweep: method %s not trained yet", sweep.method)
            return
        step, _, _ = training_step(self.run_dir(method.training))
        for r in sweep.accelerations:
            fp = fingerprint(checkpoint=read_metadata(path).sha256, values=sweep.values,
                             settings=repr(self.dps_settings(r, zeta=1.0)),
                             cases=self._case_spec(sweep.bank, r, sweep.slices))
            if self.results.cached("zeta_sweep", None, f"R{r}", fp):
                continue
            cases = self.cases(sweep.bank, r, sweep.slices)
            means, stds = [], []
            for value in sweep.values:
                s = summarize(run_callable(cases, self._settings_recon(self.dps_settings(r, zeta=value),
                                                                       self.prior(path))))
                means.append(s["nrmse"]), stds.append(s["nrmse_std"])
                log.info("zeta sweep R=%d zeta=%g: NRMSE %.4f", r, value, s["nrmse"])
            self.results.put("zeta_sweep", None, f"R{r}", {
                "values": list(sweep.values), "nrmse": means, "nrmse_std": stds,
                "best": sweep.values[int(np.argmin(means))], "table_zeta": self.zeta(r), "method": sweep.method,
                "bank": sweep.bank, "partial": step != self.specs[method.training].steps, "fingerprint": fp})

    # ------------------------------------------------------------------ the whole plan
    def expected_entries(self) -> List[Tuple[str, Optional[str], str]]:
        """``(section, sub, key)`` of every entry a complete run of the plan has."""
        ev = self.plan.evaluation
        baselines = [b for b in ev.baselines if b != "bart" or self.bart[0] is not None]
        keys = [("evaluation", f"R{r}", k) for r in ev.accelerations
                for k in baselines + [f"method{m}" for m in self.plan.methods]]
        if self.plan.ablation is not None:
            keys += [("ablation", None, self.plan.ablation.cell_name(lr, length))
                     for lr in self.plan.ablation.learning_rates for length in self.plan.ablation.lengths]
        if self.plan.zeta_sweep is not None:
            keys += [("zeta_sweep", None, f"R{r}") for r in self.plan.zeta_sweep.accelerations]
        return keys

    def is_complete(self) -> bool:
        """Every training at its budget and every expected entry present and not partial."""
        if not all(t["finished"] for name, t in self.results.data["trainings"].items() if name in self.specs):
            return False
        for section, sub, key in self.expected_entries():
            entry = self.results.section(section, sub).get(key)
            if entry is None or entry.get("partial"):
                return False
        return True

    def run(self, train: bool = True) -> dict:
        """Train (unless ``train=False``) and evaluate the whole plan; returns the results data."""
        self._check_banks()
        self.root.mkdir(parents=True, exist_ok=True)
        self.results = ResultsFile(self.root / RESULTS_FILE, self.plan)
        self.results.set_complete(False)
        self.results.add_command(self.command, hardware_info())
        for name in self.specs:
            if train:
                self.train(name)
            else:
                self.check_run(name)
                self._record_training(name)
        ev = self.plan.evaluation
        for r in ev.accelerations:
            self.evaluate_baselines(r)
            self.evaluate_methods(r)
            self.paired_tests(r)
        if self.plan.ablation is not None:
            self.evaluate_ablation()
        if self.plan.zeta_sweep is not None:
            self.zeta_sweep()
        self.results.set_complete(self.is_complete())
        log.info("plan %s: %s, results in %s", self.plan.name,
                 "complete" if self.results.data["complete"] else "PARTIAL", self.root / RESULTS_FILE)
        return self.results.data
