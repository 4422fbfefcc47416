"""tools/carry_run.py: a run packed at half the bytes and unpacked on another machine resumes with the
same training command, at its step, with its time trained, and follows the run resumed from its
float32 state.pt."""

import importlib.util
import shutil
from pathlib import Path

import pytest
import torch

from gadgets.cli import main as cli_main
from tests.test_training import _make_bank, _write_config

SPEC = importlib.util.spec_from_file_location("carry_run", Path(__file__).resolve().parents[1] / "tools" / "carry_run.py")
carry_run = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(carry_run)


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    return _make_bank(tmp_path_factory.mktemp("bank") / "bank.h5", contrasts=("T1", "T2"))


def _train(config, run_dir, steps):
    assert cli_main(["train", "pretrain", "--config", str(config), "--run-dir", str(run_dir), "--steps", str(steps),
                     "--no-progress"]) == 0
    return torch.load(run_dir / "state.pt", weights_only=True)


def test_pack_unpack_resumes_like_the_float32_state(bank, tmp_path):
    config = _write_config(tmp_path / "cfg.yaml", bank, augment_p=0.0)
    first = _train(config, tmp_path / "first", 3)
    shutil.copytree(tmp_path / "first", tmp_path / "exact")
    straight = _train(config, tmp_path / "exact", 6)  # resumed from the float32 state on the same machine
    packed = carry_run.pack(tmp_path / "first", tmp_path / "pack")
    assert packed.stat().st_size < 0.7 * (tmp_path / "first" / "state.pt").stat().st_size
    assert (tmp_path / "pack" / "log.jsonl").is_file() and (tmp_path / "pack" / "best.safetensors").is_file()

    carry_run.unpack(tmp_path / "pack", tmp_path / "second")
    restored = torch.load(tmp_path / "second" / "state.pt", weights_only=True)
    assert int(restored["step"]) == 3 and float(restored["train_seconds"]) == float(first["train_seconds"])
    for name, tensor in first["net"].items():
        assert restored["net"][name].dtype == tensor.dtype
        assert torch.equal(restored["net"][name], tensor)  # the raw weights travel exactly
    for name, tensor in first["ema"].items():
        torch.testing.assert_close(restored["ema"][name], tensor, rtol=1e-3, atol=1e-5)

    resumed = _train(config, tmp_path / "second", 6)
    assert int(resumed["step"]) == 6 and float(resumed["train_seconds"]) > float(first["train_seconds"])
    num = sum(float((resumed["net"][k] - straight["net"][k]).norm() ** 2) for k in straight["net"]) ** 0.5
    moved = sum(float((straight["net"][k] - first["net"][k]).norm() ** 2) for k in straight["net"]) ** 0.5
    assert num < 0.01 * moved, (num, moved)  # the moments' rounding is small beside what three steps move
    steps = [line for line in (tmp_path / "second" / "log.jsonl").read_text().splitlines()]
    assert len(steps) > len((tmp_path / "first" / "log.jsonl").read_text().splitlines())


def test_unpack_refuses_an_older_pack_and_a_broken_one(bank, tmp_path):
    config = _write_config(tmp_path / "cfg.yaml", bank)
    _train(config, tmp_path / "run", 3)
    carry_run.pack(tmp_path / "run", tmp_path / "pack")
    _train(config, tmp_path / "run", 6)
    with pytest.raises(SystemExit, match="step 6, the pack at step 3"):
        carry_run.unpack(tmp_path / "pack", tmp_path / "run")
    packed = tmp_path / "pack" / carry_run.PACKED_STATE
    packed.write_bytes(packed.read_bytes()[:1000])
    with pytest.raises(SystemExit, match="cannot read training state"):
        carry_run.unpack(tmp_path / "pack", tmp_path / "elsewhere")
