"""The evaluation pipeline (issue 8) end to end: the reduced plan on synthetic banks built here.

One interrupted run plus its resumption is shared by the checks (module fixture): results.json
must hold what was measured before the interruption, the re-run must train nothing and keep
those entries, and the report must hold every method at every R with the paired tests.
"""

import argparse
import json
import shutil

import numpy as np
import pytest
import torch
import yaml

from gadgets import cli_evaluate
from models.data.slice_bank import read_slice_bank, write_slice_bank
from models.errors import ReconInputError
from models.experiments import PLANS_DIR
from models.experiments import runner as runner_module
from models.experiments.banks import concatenate_banks
from models.experiments.plan import BASELINE_LABELS, ExperimentPlanError, load_plan
from models.mri.coil_simulation import brain_phantom
from models.sampler.zeta import default_zeta
from models.training.loop import Trainer

SIZE = 32
REDUCED = PLANS_DIR / "reduced.yaml"


def _bank(path, contrasts, subjects, first, seed, slices=2):
    g = torch.Generator().manual_seed(seed)
    images, contrast, subject, source, index = [], [], [], [], []
    for c_i, name in enumerate(contrasts):
        for s in range(subjects):
            for k in range(slices):
                images.append((brain_phantom((SIZE, SIZE), generator=g).image * (0.5 + 0.2 * c_i)).numpy())
                contrast.append(name), subject.append(f"sub{first + s:04d}"), source.append("phantom")
                index.append(k)
    rule = {"method": "test", "spec": {"contrasts": list(contrasts), "seed": seed}}  # specs differ, as in real banks
    write_slice_bank(path, np.stack(images), contrast, subject, source, index, rule)


@pytest.fixture(scope="module")
def bank_root(tmp_path_factory):
    """The four banks the reduced plan names, with the split of the real ones (disjoint subjects)."""
    root = tmp_path_factory.mktemp("banks")
    _bank(root / "banks" / "pretrain.h5", ["T1", "T2", "PD", "T1post"], subjects=3, first=0, seed=0)
    _bank(root / "banks" / "flair_train.h5", ["FLAIR"], subjects=4, first=1000, seed=1)
    _bank(root / "banks" / "flair_val.h5", ["FLAIR"], subjects=2, first=2000, seed=2)
    _bank(root / "banks" / "flair_test.h5", ["FLAIR"], subjects=2, first=3000, seed=3)
    return root


def _evaluate(*argv) -> int:
    parser = argparse.ArgumentParser()
    cli_evaluate.add_arguments(parser)
    return cli_evaluate.run(parser.parse_args([str(a) for a in argv]))


class _Stop(Exception):
    """Stands for a killed process."""


def _snapshot(results_dir):
    return {p.parent.name: (p.stat().st_mtime_ns, (p.parent / "log.jsonl").read_text())
            for p in (results_dir / "runs").glob("*/state.pt")}


@pytest.fixture(scope="module")
def completed(bank_root, tmp_path_factory):
    """Run the reduced plan, 'killed' just before the R = 5 methods; then the same command again."""
    results = tmp_path_factory.mktemp("results") / "reduced"
    mp = pytest.MonkeyPatch()
    seen = {}
    original = runner_module.ExperimentRunner.evaluate_methods

    def interrupting(self, acceleration):
        if acceleration == 5:
            seen["on_disk"] = json.loads((results / "results.json").read_text())
            raise _Stop()
        return original(self, acceleration)

    mp.setattr(runner_module.ExperimentRunner, "evaluate_methods", interrupting)
    with pytest.raises(_Stop):
        _evaluate("--reduced", "--results", results, "--bank-root", bank_root, "--no-progress")
    mp.undo()
    seen["after_interrupt"] = json.loads((results / "results.json").read_text())
    seen["runs_before"] = _snapshot(results)

    constructed = []

    class CountingTrainer(Trainer):
        def __init__(self, *args, **kwargs):
            constructed.append(args[1])
            super().__init__(*args, **kwargs)

    mp.setattr(runner_module, "Trainer", CountingTrainer)
    assert _evaluate("--reduced", "--results", results, "--bank-root", bank_root, "--no-progress") == 0
    seen["trainers_on_rerun"] = list(constructed)
    seen["runs_after"] = _snapshot(results)
    seen["final"] = json.loads((results / "results.json").read_text())
    (results / "README.md").unlink()
    assert _evaluate("--reduced", "--only-report", "--results", results) == 0
    mp.undo()
    seen["trainers_on_report"] = list(constructed)
    seen["dir"] = results
    return seen


def test_results_are_written_before_the_interruption(completed):
    on_disk = completed["on_disk"]
    assert on_disk["complete"] is False
    r4 = on_disk["evaluation"]["R4"]
    assert {f"method{m}" for m in ("1", "3", "4", "5", "6")} <= set(r4)
    assert {"zero_filled", "cg_sense", "cs"} <= set(r4)
    assert on_disk["paired_tests"]["R4"]  # computed as soon as R = 4 was scored
    assert "R5" not in on_disk["evaluation"] or not any(k.startswith("method") for k in on_disk["evaluation"]["R5"])
    assert all(t["finished"] for t in on_disk["trainings"].values()) and len(on_disk["trainings"]) == 6 + 12


def test_rerun_resumes_without_retraining_or_rescoring(completed):
    assert completed["trainers_on_rerun"] == [] and completed["trainers_on_report"] == []
    assert completed["runs_after"] == completed["runs_before"] and len(completed["runs_after"]) == 18
    before, after = completed["after_interrupt"]["evaluation"]["R4"], completed["final"]["evaluation"]["R4"]
    for key, entry in before.items():  # timings differ between runs: equal entries were not recomputed
        assert after[key] == entry, key
    assert completed["final"]["complete"] is True
    assert completed["final"]["provenance"]["commands"][-1].startswith("dps-gadgetron evaluate --reduced")


def test_budgets_and_shared_pretraining(completed):
    plan = load_plan(REDUCED)
    runs = completed["dir"] / "runs"
    for name, spec in plan.all_trainings().items():
        state = torch.load(runs / name / "state.pt", weights_only=True)
        assert int(state["step"]) == spec.steps, name
    fine_tunings = ["finetune_few"] + [n for n in plan.all_trainings() if n.startswith("ablation-")]
    assert len(fine_tunings) == 13
    for name in fine_tunings:
        config = yaml.safe_load((runs / name / "config.yaml").read_text())
        assert config["init_checkpoint"] == str(runs / "pretrain" / "best.safetensors"), name
        assert config["preset"] == "tiny" and config["num_target_subjects"] == 2
    lrs = {yaml.safe_load((runs / n / "config.yaml").read_text())["resolved_lr"] for n in fine_tunings}
    assert lrs == {5e-4, 1e-4, 5e-5, 1e-5}
    joint = yaml.safe_load((runs / "joint_few" / "config.yaml").read_text())
    assert joint["data"].endswith("pretrain+target_train.h5")
    merged = read_slice_bank(joint["data"])
    assert sorted(set(merged.contrast)) == ["FLAIR", "PD", "T1", "T1post", "T2"] and len(merged.images) == 24 + 8


def test_banks_normalised_differently_are_not_concatenated(bank_root, tmp_path):
    record = read_slice_bank(bank_root / "banks" / "flair_val.h5")
    other = write_slice_bank(tmp_path / "other.h5", record.images, record.contrast, record.subject, record.source,
                             record.slice_index, {"method": "magnitude_percentile", "percentile": 95.0})
    with pytest.raises(ReconInputError, match="different rules"):
        concatenate_banks([bank_root / "banks" / "flair_val.h5", other], tmp_path / "both.h5")
    assert not (tmp_path / "both.h5").exists()


def test_table_has_every_method_and_acceleration(completed):
    plan = load_plan(REDUCED)
    final, report = completed["final"], (completed["dir"] / "README.md").read_text()
    assert "PARTIAL" not in report and "—" not in report.split("## Paired tests")[0]
    nrmse_table = report.split("## NRMSE")[1].split("## PSNR")[0]
    assert "| method | R = 4 | R = 5 | R = 6 |" in nrmse_table
    labels = [m.label for m in plan.methods.values()] + [BASELINE_LABELS[b] for b in plan.evaluation.baselines
                                                         if b != "bart" or shutil.which("bart")]
    for label in labels:
        row = next(line for line in nrmse_table.splitlines() if line.startswith(f"| {label} |"))
        assert row.count("±") == 3, row
    for r in (4, 5, 6):
        entries = final["evaluation"][f"R{r}"]
        for m in ("1", "3", "4", "5", "6"):
            e = entries[f"method{m}"]
            assert len(e["per_slice"]["nrmse"]) == 3 and e["nrmse"] == pytest.approx(np.mean(e["per_slice"]["nrmse"]))
            assert e["partial"] is False and e["zeta"] == pytest.approx(default_zeta(r, sampler="dds"))  # the sampler's table
    assert len(final["ablation"]) == 12 and set(final["zeta_sweep"]) == {"R4", "R5", "R6"}
    assert "## Fine-tuning ablation" in report and "dps-gadgetron evaluate --reduced" in report
    assert "cores" in report and "torch" in report
    pytest.importorskip("matplotlib")
    for name in ("examples", "nrmse_vs_R", "ablation", "zeta_sweep"):
        assert (completed["dir"] / "figures" / f"{name}.png").stat().st_size > 1000
        assert f"figures/{name}.png" in report


def test_paired_test_compares_method_4_with_3_and_5(completed):
    from scipy import stats
    final = completed["final"]
    for r in (4, 5, 6):
        tests, entries = final["paired_tests"][f"R{r}"], final["evaluation"][f"R{r}"]
        assert set(tests) == {"4 vs 3", "4 vs 5"}
        for other in ("3", "5"):
            a, b = entries["method4"]["per_slice"]["nrmse"], entries[f"method{other}"]["per_slice"]["nrmse"]
            t = tests[f"4 vs {other}"]
            assert t["n"] == 3 and t["mean_difference"] == pytest.approx(np.mean(b) - np.mean(a))
            assert t["wilcoxon_p"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
            assert t["ttest_p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)


def test_partial_results_are_marked(bank_root, tmp_path):
    """Score with --no-train while one training is part-way: its entries are partial, the rest absent."""
    plan = load_plan(REDUCED)
    results = tmp_path / "partial"
    runner = runner_module.ExperimentRunner(plan, results, bank_root=bank_root, device="cpu", progress=False)
    config = runner.train_config("target_few")
    config.total_steps = 1  # a run stopped at step 1 of its 3
    Trainer(config, runner.run_dir("target_few")).run(progress=False)
    assert _evaluate("--reduced", "--no-train", "--results", results, "--bank-root", bank_root) == 0
    data = json.loads((results / "results.json").read_text())
    assert data["complete"] is False
    assert data["trainings"]["target_few"] == {**data["trainings"]["target_few"], "step": 1, "finished": False}
    for r in (4, 5, 6):
        entries = data["evaluation"][f"R{r}"]
        assert entries["method5"]["partial"] is True and entries["method5"]["training_step"] == 1
        assert not {"method1", "method3", "method4", "method6"} & set(entries)
        assert entries["zero_filled"]["partial"] is False
    assert data["paired_tests"] == {} and data["ablation"] == {} and data["zeta_sweep"] == {}
    report = (results / "README.md").read_text()
    assert "PARTIAL RESULTS" in report and "target_few (1/3 steps)" in report
    row = next(line for line in report.splitlines() if line.startswith("| 5: few target subjects only |"))
    assert row.count("†") == 3


def test_train_only_trains_the_named_and_scores_nothing(bank_root, tmp_path):
    """--train-only (one process per core) trains just those; the full run then skips them."""
    results = tmp_path / "split"
    assert _evaluate("--reduced", "--results", results, "--bank-root", bank_root, "--no-progress",
                     "--train-only", "target_few", "pretrain") == 0
    assert sorted(p.parent.name for p in (results / "runs").glob("*/state.pt")) == ["pretrain", "target_few"]
    assert not (results / "results.json").exists()
    runner = runner_module.ExperimentRunner(load_plan(REDUCED), results, bank_root=bank_root, device="cpu",
                                            progress=False)
    assert runner.finished("target_few") and runner.finished("pretrain") and not runner.finished("joint_few")
    before = _snapshot(results)
    assert _evaluate("--reduced", "--results", results, "--bank-root", bank_root, "--no-progress",
                     "--train-only", "pretrain") == 0
    assert _snapshot(results) == before
    with pytest.raises(ExperimentPlanError, match="no training named nonsense"):
        _evaluate("--reduced", "--results", results, "--bank-root", bank_root, "--train-only", "nonsense")


def test_scoring_uses_the_samplers_own_zeta_and_steps(bank_root, tmp_path):
    """The two samplers' zetas mean different things: each plan sampler gets its own table and step count."""
    def with_sampler(name, steps):
        def edit(raw):
            raw["evaluation"]["sampler"] = name
            raw["evaluation"].pop("dps_steps", None)
            if steps is not None:
                raw["evaluation"]["dps_steps"] = steps
        return load_plan(_plan_with(tmp_path, edit))

    for name, steps, want_steps in (("dds", None, 20), ("dps", None, 100), ("dps", 7, 7)):
        runner = runner_module.ExperimentRunner(with_sampler(name, steps), tmp_path / "r", bank_root=bank_root,
                                                device="cpu", progress=False)
        settings = runner.dps_settings(6)
        assert settings.sampler == name and settings.num_steps == want_steps
        assert settings.resolved_zeta() == pytest.approx(default_zeta(6, sampler=name))
    assert default_zeta(6, sampler="dds") != default_zeta(6, sampler="dps")
    with pytest.raises(ExperimentPlanError, match="evaluation.sampler"):
        with_sampler("euler", None)


def test_two_writers_keep_each_others_entries(tmp_path):
    """A --no-train scoring beside a long run: neither drops what the other saved."""
    from models.experiments.results import ResultsFile
    plan = load_plan(REDUCED)
    a, b = ResultsFile(tmp_path / "results.json", plan), ResultsFile(tmp_path / "results.json", plan)
    a.put("evaluation", "R4", "cs", {"nrmse": 0.1})
    b.put("evaluation", "R4", "method5", {"nrmse": 0.3, "partial": True})
    a.put("ablation", None, "cell", {"nrmse": 0.2})
    b.put("evaluation", "R4", "cs", {"nrmse": 0.15})  # b's newer value of the same entry
    a.put("evaluation", "R5", "cs", {"nrmse": 0.4})
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["evaluation"]["R4"] == {"cs": {"nrmse": 0.15}, "method5": {"nrmse": 0.3, "partial": True}}
    assert data["evaluation"]["R5"] == {"cs": {"nrmse": 0.4}} and data["ablation"] == {"cell": {"nrmse": 0.2}}


def test_missing_bank_is_named_before_anything_runs(bank_root, tmp_path):
    root = tmp_path / "banks_root"
    shutil.copytree(bank_root / "banks", root / "banks")
    (root / "banks" / "flair_test.h5").unlink()
    with pytest.raises(ExperimentPlanError, match=r"test \(.*flair_test\.h5\)"):
        _evaluate("--reduced", "--results", tmp_path / "out", "--bank-root", root)
    assert not (tmp_path / "out").exists()


def _plan_with(tmp_path, edit):
    raw = yaml.safe_load(REDUCED.read_text())
    edit(raw)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_plan_errors(tmp_path):
    def unknown_method(raw):
        raw["methods"][0]["id"] = 2
    with pytest.raises(ExperimentPlanError, match="unknown method '2'"):
        load_plan(_plan_with(tmp_path, unknown_method))

    def wrong_training(raw):  # method 4 must fine-tune
        raw["methods"][2]["training"] = "target_few"
    with pytest.raises(ExperimentPlanError, match="method 4 .* needs a finetune training"):
        load_plan(_plan_with(tmp_path, wrong_training))

    def wrong_subjects(raw):  # method 5 trains on the few target subjects, not all of them
        raw["methods"][3]["training"] = "target_large"
    with pytest.raises(ExperimentPlanError, match="method 5 .* needs target_subjects"):
        load_plan(_plan_with(tmp_path, wrong_subjects))

    def own_preset(raw):  # one network for every training
        raw["trainings"]["target_few"]["settings"] = {"preset": "cpu-small"}
    with pytest.raises(ExperimentPlanError, match=r"\['preset'\] are set by the plan"):
        load_plan(_plan_with(tmp_path, own_preset))

    def unknown_bank(raw):
        raw["trainings"]["pretrain"]["data"] = ["pretrain", "nowhere"]
    with pytest.raises(ExperimentPlanError, match="unknown bank 'nowhere'"):
        load_plan(_plan_with(tmp_path, unknown_bank))

    def typo(raw):
        raw["evaluation"]["acelerations"] = [4]
    with pytest.raises(ExperimentPlanError, match="unknown keys \\['acelerations'\\]"):
        load_plan(_plan_with(tmp_path, typo))
    with pytest.raises(ExperimentPlanError, match="not found"):
        load_plan(tmp_path / "missing.yaml")
    parser = argparse.ArgumentParser()
    cli_evaluate.add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--reduced", "--plan", str(REDUCED), "--results", str(tmp_path)])


def test_changed_plan_refuses_to_reuse_a_run(completed, bank_root, tmp_path):
    results = tmp_path / "changed"
    shutil.copytree(completed["dir"] / "runs" / "pretrain", results / "runs" / "pretrain")

    def other_seed(raw):
        raw["train_defaults"]["seed"] = 1
    plan = _plan_with(tmp_path, other_seed)
    with pytest.raises(ExperimentPlanError, match="other settings .*seed: 0 -> 1"):
        _evaluate("--plan", plan, "--results", results, "--bank-root", bank_root, "--no-progress")
