"""The one-lease GPU training driver: its configurations are valid and its anatomy unpacking round-trips."""

import gzip
import importlib.util
import lzma
from pathlib import Path

from models.training.config import TrainConfig

SPEC = importlib.util.spec_from_file_location(
    "train_on_gpu", Path(__file__).resolve().parents[1] / "tools/train_on_gpu.py")
driver = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(driver)


def test_every_training_config_is_a_valid_train_config(tmp_path):
    a = driver.phase_a_configs(tmp_path, batch=64, seconds=100)
    b = driver.phase_b_configs(tmp_path, tmp_path / "pre.safetensors", batch=64, seconds=50, val_every=10)
    assert set(a) == {"pretrain", "all_data", "target_large", "target20", "joint20"}
    assert set(b) == set(driver.FINETUNE_LRS)
    configs = {name: TrainConfig(**{k: v for k, v in cfg.items()}) for name, cfg in {**a, **b}.items()}
    # the comparison's fairness: one network, batch, seed and time budget in phase A
    assert len({(c.preset, c.batch_size, c.seed, c.max_seconds) for n, c in configs.items() if n in a}) == 1
    assert configs["target20"].num_target_subjects == 20 and configs["target_large"].num_target_subjects is None
    assert configs["finetune20"].learning_rate == 1e-5 and configs["finetune20_lr5e-4"].learning_rate == 5e-4


def test_unpack_anatomy_restores_nifti_as_gzip_and_other_files_as_is(tmp_path):
    packed = tmp_path / "packed" / "some_source"
    packed.mkdir(parents=True)
    (packed / "T1.nii.xz").write_bytes(lzma.compress(b"nifti bytes"))
    (packed / "slice.npy.xz").write_bytes(lzma.compress(b"npy bytes"))
    driver.unpack_anatomy(tmp_path / "packed", tmp_path / "out")
    assert gzip.decompress((tmp_path / "out/some_source/T1.nii.gz").read_bytes()) == b"nifti bytes"
    assert (tmp_path / "out/some_source/slice.npy").read_bytes() == b"npy bytes"


def test_pretrain_options_touch_the_pretraining_only(tmp_path):
    configs = driver.phase_a_configs(tmp_path, batch=256, seconds=100)
    driver.set_pretrain_options(configs, tmp_path / "w.safetensors", 4e-4)
    pre = TrainConfig(**configs["pretrain"])
    assert pre.learning_rate == 4e-4 and pre.warm_start == str((tmp_path / "w.safetensors").resolve())
    assert all(TrainConfig(**configs[n]).learning_rate == 1e-4 and not configs[n].get("warm_start")
               for n in configs if n != "pretrain")


def test_the_patch_prior_reaches_every_training(tmp_path, monkeypatch):
    monkeypatch.setitem(driver.COMMON, "prior", {"kind": "patch"})
    a = driver.phase_a_configs(tmp_path, batch=64, seconds=100)
    b = driver.phase_b_configs(tmp_path, tmp_path / "pre.safetensors", batch=64, seconds=50, val_every=10)
    kinds = {TrainConfig(**cfg).prior["kind"] for cfg in {**a, **b}.values()}
    assert kinds == {"patch"}


def test_pixel_sizes_reach_both_training_banks(tmp_path, monkeypatch):
    import models.data.bank_builder as builder
    seen = {}
    monkeypatch.setattr(builder, "build_slice_bank", lambda path, spec, **kw: seen.__setitem__(Path(path).name, spec))
    driver.render_banks(tmp_path, workers=1, small=False, pixel_mm=[0.9, 2.0])
    assert set(seen) == {"pretrain.h5", "flair_train.h5"}
    assert all(spec.pixel_mm_range == (0.9, 2.0) for spec in seen.values())
    seen.clear()
    driver.render_banks(tmp_path / "fixed", workers=1, small=False)
    assert all(spec.pixel_mm_range is None for spec in seen.values())
