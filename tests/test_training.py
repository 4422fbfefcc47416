"""Training CLI and loop on a tiny synthetic slice bank: pretrain -> finetune, resume, DDP."""

import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml

from gadgets.cli import main as cli_main
from models.errors import ReconInputError
from models.mri.coil_simulation import brain_phantom
from models.prior.checkpoint import load_prior, read_metadata
from models.training.config import TrainConfig
from models.data.slice_bank import SliceBank, read_slice_bank, write_slice_bank

SIZE = 32


def _make_bank(path, contrasts=("T1", "T2", "FLAIR"), subjects=4, slices=2):
    images, contrast, subject, source, index = [], [], [], [], []
    g = torch.Generator().manual_seed(0)
    for c_i, c in enumerate(contrasts):
        for s in range(subjects):
            for k in range(slices):
                img = brain_phantom((SIZE, SIZE), generator=g).image
                img = img * (0.5 + 0.25 * c_i)
                images.append(img.numpy())
                contrast.append(c), subject.append(f"sub{s:02d}"), source.append("phantom"), index.append(k)
    return write_slice_bank(path, np.stack(images), contrast, subject, source, index, {"method": "test"})


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    return _make_bank(tmp_path_factory.mktemp("bank") / "bank.h5")


def _write_config(path, bank, **extra):
    values = dict(data=str(bank), source_contrasts=["T1", "T2"], target_contrast="FLAIR", preset="tiny",
                  image_size=SIZE, batch_size=4, total_steps=6, val_every=3, checkpoint_every=3, log_every=2,
                  num_target_subjects=2, lr_rampup_steps=2, val_slices=2, fp16_export=False, augment_p=0.5)
    values.update(extra)
    path.write_text(yaml.safe_dump(values))
    return path


def test_pretrain_then_finetune_end_to_end(bank, tmp_path):
    config = _write_config(tmp_path / "cfg.yaml", bank)
    assert cli_main(["train", "pretrain", "--config", str(config), "--run-dir", str(tmp_path / "pre"),
                     "--no-progress"]) == 0
    best = tmp_path / "pre" / "best.safetensors"
    meta = read_metadata(best)
    assert meta.contrasts == ["T1", "T2"] and meta.training["mode"] == "pretrain" and meta.weights == "ema"
    assert (tmp_path / "pre" / "config.yaml").exists() and (tmp_path / "pre" / "state.pt").exists()
    log_lines = (tmp_path / "pre" / "log.jsonl").read_text().splitlines()
    assert any("val_denoise" in line for line in log_lines)

    assert cli_main(["train", "finetune", "--config", str(config), "--init-checkpoint", str(best),
                     "--run-dir", str(tmp_path / "ft"), "--steps", "4", "--no-progress"]) == 0
    precond, meta_ft = load_prior(tmp_path / "ft" / "best.safetensors")
    assert meta_ft.contrasts == ["T1", "T2", "FLAIR"] and meta_ft.training["mode"] == "finetune"
    assert meta_ft.training["lr"] == pytest.approx(1e-5)
    assert meta_ft.training["subjects"] == {"FLAIR": 2}
    assert meta_ft.training["init_checkpoint"] == str(best) and meta_ft.training["init_steps"] == meta.steps
    x = torch.randn(1, 2, SIZE, SIZE)
    out_flair = precond(x, 0.5, precond.vocabulary.one_hot(["FLAIR"]))
    out_t1 = precond(x, 0.5, precond.vocabulary.one_hot(["T1"]))
    assert out_flair.shape == x.shape and not torch.allclose(out_flair, out_t1)


def test_resume_continues_from_saved_step(bank, tmp_path):
    config = _write_config(tmp_path / "cfg.yaml", bank, total_steps=3)
    run_dir = tmp_path / "run"
    assert cli_main(["train", "scratch", "--config", str(config), "--run-dir", str(run_dir), "--no-progress"]) == 0
    first = torch.load(run_dir / "state.pt", weights_only=True)
    assert int(first["step"]) == 3
    assert cli_main(["train", "scratch", "--config", str(config), "--run-dir", str(run_dir), "--steps", "6",
                     "--no-progress"]) == 0
    second = torch.load(run_dir / "state.pt", weights_only=True)
    assert int(second["step"]) == 6
    steps = [yaml.safe_load(line)["step"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert max(steps) == 6 and min(steps) >= 2


def test_dry_run_prints_resolved_config(bank, tmp_path, capsys):
    config = _write_config(tmp_path / "cfg.yaml", bank)
    assert cli_main(["train", "joint", "--config", str(config), "--dry-run", "--lr", "5e-5"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["mode"] == "joint" and printed["resolved_lr"] == pytest.approx(5e-5)


def test_config_and_data_errors(bank, tmp_path):
    with pytest.raises(ReconInputError, match="finetune needs init_checkpoint"):
        TrainConfig(mode="finetune")
    with pytest.raises(ReconInputError, match="unknown training mode"):
        TrainConfig(mode="distill")
    bad = tmp_path / "bad.yaml"
    bad.write_text("mode: pretrain\nlearning_rate: 3\n")
    with pytest.raises(ReconInputError, match="unknown keys"):
        TrainConfig.from_yaml(bad)
    record = read_slice_bank(bank)
    from models.prior.contrasts import ContrastVocabulary
    with pytest.raises(ReconInputError, match="no slices of contrasts"):
        SliceBank(record, ["DWI"], ContrastVocabulary(["DWI"]))
    with pytest.raises(ReconInputError, match="4 subjects of FLAIR, 20 requested"):
        SliceBank(record, ["FLAIR"], ContrastVocabulary(["FLAIR"]), limit_subjects={"FLAIR": 20})
    with pytest.raises(ReconInputError, match="not found"):
        read_slice_bank(tmp_path / "missing.h5")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world_size, port, config_path, out_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from models.training.loop import Trainer
    config = TrainConfig.from_yaml(config_path, mode="scratch", device="cpu")
    trainer = Trainer(config, out_dir / "run")
    trainer.run(progress=False)
    torch.save({k: v.detach().cpu() for k, v in trainer.precond.state_dict().items()}, out_dir / f"rank{rank}.pt")


def test_ddp_two_ranks_end_with_identical_weights(bank, tmp_path):
    config = _write_config(tmp_path / "cfg.yaml", bank, total_steps=3, augment_p=0.0, val_every=100,
                           checkpoint_every=100)
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(config), tmp_path), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    # the ranks were seeded differently, so only DDP's broadcast and all-reduce make them agree
    assert len(a) > 10
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_dps_validation_score_is_the_reconstruction_nrmse(bank):
    """An oracle prior (its denoiser returns the true, normalised slice) scores near 0 (up to
    the intensity scale estimated from the undersampled data); a prior that always returns
    zeros relies on the data term alone and must score far worse."""
    from models.prior.contrasts import ContrastVocabulary
    from models.training.validation import dps_score
    from models.prior.normalization import scale_from_image
    images = torch.from_numpy(read_slice_bank(bank).images[:2])
    images = torch.stack([img * scale_from_image(img) for img in images])

    from models.prior.normalization import DEFAULT_NORMALIZATION

    class FixedPrecond(torch.nn.Module):
        def __init__(self, output):
            super().__init__()
            self.output, self.vocabulary, self.sigma_data = output, ContrastVocabulary(["FLAIR"]), 0.5
            self.normalization, self.error_curves = DEFAULT_NORMALIZATION, {}

        def forward(self, x, sigma, labels=None):
            return self.output.expand_as(x) + 0 * x

    truth = torch.stack([images.real, images.imag], 1).float()
    oracle = dps_score(FixedPrecond(truth), images, "FLAIR", num_steps=3, coils=4, snr=1000)
    blind = dps_score(FixedPrecond(torch.zeros_like(truth)), images, "FLAIR", num_steps=3, coils=4, snr=1000)
    assert oracle < 0.1
    assert blind > 0.5


def test_warm_start_continues_weights_and_step_count(bank, tmp_path):
    config = _write_config(tmp_path / "cfg.yaml", bank, total_steps=3, fp16_export=False)
    assert cli_main(["train", "pretrain", "--config", str(config), "--run-dir", str(tmp_path / "a"),
                     "--no-progress"]) == 0
    last = tmp_path / "a" / "last.safetensors"
    from models.training.loop import Trainer
    trainer = Trainer(TrainConfig.from_yaml(config, mode="pretrain", warm_start=str(last), total_steps=5),
                      tmp_path / "b")
    assert trainer.step == 3
    source, _ = load_prior(last)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(trainer.ema.module.state_dict()[key], value)
    # the average starts from trained weights: the configured half-life from the first step, no ramp-up
    halflife = trainer.config.ema_halflife_images
    assert trainer.ema.beta(4) == pytest.approx(0.5 ** (4 / halflife))
    fresh = Trainer(TrainConfig.from_yaml(config, mode="pretrain", total_steps=5), tmp_path / "c")
    assert fresh.ema.beta(4) < trainer.ema.beta(4)  # from random weights the ramp-up shortens it
    finetune = Trainer(TrainConfig.from_yaml(config, mode="finetune", init_checkpoint=str(last)), tmp_path / "d")
    assert finetune.ema.beta(4) == pytest.approx(fresh.ema.beta(4))  # fine-tuning keeps the ramp-up
    trainer.run(progress=False)
    assert int(torch.load(tmp_path / "b" / "state.pt", weights_only=True)["step"]) == 5
    with pytest.raises(ReconInputError, match="warm_start is for pretrain"):
        TrainConfig(mode="finetune", init_checkpoint="x", warm_start="y")


def test_time_budget_stops_with_checkpoint_and_logged_step(bank, tmp_path):
    from models.experiments.runner import training_step
    config = _write_config(tmp_path / "cfg.yaml", bank, total_steps=10_000, max_seconds=0.0, val_every=1000,
                           checkpoint_every=1000)
    run_dir = tmp_path / "timed"
    assert cli_main(["train", "pretrain", "--config", str(config), "--run-dir", str(run_dir), "--no-progress"]) == 0
    records = [yaml.safe_load(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert records[-1]["stopped"] == "max_seconds" and records[-1]["step"] == 1
    assert (run_dir / "best.safetensors").exists() and (run_dir / "last.safetensors").exists()
    assert training_step(run_dir)[0] == 1
    # without the resumable state (e.g. copied back from a GPU machine) the step comes from the log
    (run_dir / "state.pt").unlink()
    assert training_step(run_dir) == (1, 1, read_metadata(run_dir / "best.safetensors").training["best_score"])


@pytest.mark.slow
def test_compiled_training_matches_eager(bank, tmp_path):
    """torch.compile (for GPU throughput) must train the same network as eager mode."""
    weights = {}
    for compiled in (False, True):
        config = _write_config(tmp_path / f"cfg{compiled}.yaml", bank, total_steps=2, val_every=1000,
                               checkpoint_every=1000, compile=compiled, augment_p=0.0)
        run_dir = tmp_path / f"run{compiled}"
        assert cli_main(["train", "pretrain", "--config", str(config), "--run-dir", str(run_dir),
                         "--no-progress"]) == 0
        weights[compiled] = torch.load(run_dir / "state.pt", weights_only=True)["net"]
    for name, eager in weights[False].items():
        assert torch.allclose(eager, weights[True][name], atol=1e-4), name


def test_bf16_autocast_is_chosen_per_device(monkeypatch, caplog):
    from models.training import loop
    cpu = torch.device("cpu")
    assert loop.autocast_device(torch.device("cuda"), True, False) == "cuda"
    assert loop.autocast_device(torch.device("cuda"), False, True) is None
    assert loop.autocast_device(cpu, True, False) is None  # `amp` is for CUDA only
    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: True)
    assert loop.autocast_device(cpu, True, True) == "cpu"
    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: False)
    assert loop.autocast_device(cpu, True, True) is None
    assert "no bf16 instructions" in caplog.text


def test_cpu_bf16_training_step_follows_float32():
    from models.prior.augment import AugmentPipe
    from models.prior.ema import EMA
    from models.prior.loss import EDMLoss
    from models.training.loop import build_model, optimisation_step
    config = TrainConfig(mode="pretrain", preset="tiny", image_size=SIZE, source_contrasts=["T1", "T2"])
    images = torch.stack([torch.view_as_real(brain_phantom((SIZE, SIZE), generator=torch.Generator().manual_seed(i))
                                             .image).permute(2, 0, 1) for i in range(4)]).float()
    one_hot = torch.eye(2)[[0, 1, 0, 1]]
    losses = {}
    for autocast in (None, "cpu"):
        torch.manual_seed(0)
        augment = AugmentPipe(p=0.0)
        model = build_model(config, augment_dim=augment.augment_dim)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        loss = optimisation_step(model, model, EMA(model, decay=0.9), optimizer, EDMLoss(), images, one_hot,
                                 augment, torch.Generator().manual_seed(1), autocast=autocast,
                                 grad_clip=1.0)
        losses[autocast] = float(loss.detach())
    assert losses["cpu"] != losses[None]  # the network really ran in bf16
    assert losses["cpu"] == pytest.approx(losses[None], rel=0.05)


def test_dps_validation_uses_its_own_zeta_not_the_chains_table(bank, monkeypatch):
    """The chains' zeta table is tuned for 100 steps; the 20-step validation at that zeta under-pulls
    and scores every checkpoint alike, so validation fixes its own zeta."""
    from models.reconstruction import ReconOutput
    from models.training import validation
    seen = []

    def fake_reconstruct(kspace, maps, mask, settings, prior=None):
        seen.append((settings.resolved_zeta(), settings.num_steps))
        return ReconOutput(torch.zeros(kspace.shape[0], *kspace.shape[-2:], dtype=torch.complex64), None, {})

    monkeypatch.setattr(validation, "reconstruct", fake_reconstruct)
    images = torch.from_numpy(read_slice_bank(bank).images[:2])
    validation.dps_score(None, images, "FLAIR", coils=4)
    validation.dps_score(None, images, "FLAIR", coils=4, zeta=0.3)
    assert seen == [(validation.VAL_DPS_ZETA, 20), (0.3, 20)]


def test_patch_prior_pretrains_finetunes_resumes_and_reconstructs(bank, tmp_path):
    """prior: {kind: patch} through the same CLI: pretrain, resume, finetune (a new slot), and the
    checkpoint reconstructs whole slices through the sampler (tiled)."""
    from models.prior.patches import PatchPrecond
    from models.reconstruction import ReconSettings, reconstruct
    from models.mri.scan_simulation import simulate_undersampled_scan

    patch = {"kind": "patch", "patch_sizes": [8, 16], "patch_probabilities": [0.5, 0.5]}
    config = _write_config(tmp_path / "cfg.yaml", bank, prior=patch)
    assert cli_main(["train", "pretrain", "--config", str(config), "--run-dir", str(tmp_path / "pre"),
                     "--no-progress", "--steps", "3"]) == 0
    assert cli_main(["train", "pretrain", "--config", str(config), "--run-dir", str(tmp_path / "pre"),
                     "--no-progress"]) == 0  # resumes from state.pt at step 3
    steps = [yaml.safe_load(line).get("step") for line in (tmp_path / "pre" / "log.jsonl").read_text().splitlines()]
    assert max(steps) == 6
    seconds = [r["train_seconds"] for r in map(yaml.safe_load, (tmp_path / "pre" / "log.jsonl").read_text().splitlines())
               if "train_seconds" in r]
    assert seconds == sorted(seconds) and seconds[-1] > seconds[0] > 0  # summed over the resume
    best = tmp_path / "pre" / "best.safetensors"
    meta = read_metadata(best)
    assert meta.prior == {"kind": "patch", "patch_sizes": [8, 16]} and meta.unet["in_channels"] == 4
    assert cli_main(["train", "finetune", "--config", str(config), "--init-checkpoint", str(best),
                     "--run-dir", str(tmp_path / "ft"), "--steps", "2", "--no-progress"]) == 0
    prior, meta_ft = load_prior(tmp_path / "ft" / "best.safetensors")
    assert isinstance(prior, PatchPrecond) and meta_ft.contrasts == ["T1", "T2", "FLAIR"]
    image = read_slice_bank(bank).images[:1]
    scan = simulate_undersampled_scan(torch.as_tensor(image), 2, num_acs=8, coils=4, snr=30.0,
                                      generator=torch.Generator().manual_seed(0))
    out = reconstruct(scan.kspace, scan.true_maps, scan.mask.mask,
                      ReconSettings(method="dps", contrast="FLAIR", num_steps=3, zeta=1.0), prior=prior)
    assert out.image.shape == (1, SIZE, SIZE) and torch.isfinite(out.image.abs()).all()
    whole = _write_config(tmp_path / "whole.yaml", bank)  # an image-kind config cannot finetune a patch prior
    with pytest.raises(ReconInputError, match="patch prior"):
        cli_main(["train", "finetune", "--config", str(whole), "--init-checkpoint", str(best),
                  "--run-dir", str(tmp_path / "ft2"), "--steps", "2", "--no-progress"])


def test_prior_spec_errors_name_the_problem():
    with pytest.raises(ReconInputError, match="kind"):
        TrainConfig(prior={"kind": "voxel"})
    with pytest.raises(ReconInputError, match="patch_probabilities"):
        TrainConfig(prior={"kind": "patch", "patch_sizes": [16, 32], "patch_probabilities": [0.5]})
    with pytest.raises(ReconInputError, match="unknown keys"):
        TrainConfig(prior={"kind": "patch", "patch_size": 16})
    assert TrainConfig(prior={"kind": "patch"}).prior["patch_probabilities"] == [0.2, 0.3, 0.5]


def test_a_budget_counts_the_time_trained_over_resumes(bank, tmp_path):
    """budget_seconds stops a run once the wall time trained in all reaches it; a resumed run that has
    spent it stops at once."""
    config = _write_config(tmp_path / "cfg.yaml", bank, total_steps=100000, budget_seconds=1.0, checkpoint_every=5,
                           val_every=1000)
    assert cli_main(["train", "pretrain", "--config", str(config), "--run-dir", str(tmp_path / "run"),
                     "--no-progress"]) == 0
    records = [yaml.safe_load(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    stop = [r for r in records if r.get("stopped")]
    assert stop and stop[-1]["stopped"] == "budget_seconds" and stop[-1]["train_seconds"] >= 1.0
    assert read_metadata(tmp_path / "run" / "last.safetensors").training["train_seconds"] >= 1.0
    before = len(records)
    assert cli_main(["train", "pretrain", "--config", str(config), "--run-dir", str(tmp_path / "run"),
                     "--no-progress"]) == 0
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == before  # nothing more trained


def test_patch_prior_with_whole_slices_validates_with_the_chains_tiling(bank, tmp_path, monkeypatch):
    """Patch sizes may include the slice itself (cut unpadded), and ``val_tiling: whole`` validates the
    prior as the chains run it; an unknown tiling is refused by name."""
    from models.training import loop

    tilings = []
    original = loop.whole_image_prior

    def spy(prior, seed=0, tiling="shifted"):
        tilings.append(tiling)
        return original(prior, seed=seed, tiling=tiling)

    monkeypatch.setattr(loop, "whole_image_prior", spy)
    patch = {"kind": "patch", "patch_sizes": [8, SIZE], "patch_probabilities": [0.5, 0.5]}
    config = _write_config(tmp_path / "cfg.yaml", bank, prior=patch, val_tiling="whole")
    assert cli_main(["train", "pretrain", "--config", str(config), "--run-dir", str(tmp_path / "pre"),
                     "--no-progress", "--steps", "3"]) == 0
    assert tilings and set(tilings) == {"whole"}
    assert read_metadata(tmp_path / "pre" / "best.safetensors").prior["patch_sizes"] == [8, SIZE]
    with pytest.raises(ReconInputError, match="val_tiling"):
        TrainConfig(val_tiling="mosaic")
