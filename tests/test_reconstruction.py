"""The single recon API: each classical method through it, and its error catalogue."""

import pytest
import torch

from models.demo import run_demo
from models.errors import CoilMismatchError, NonFiniteDataError, ReconInputError
from models.reconstruction import ReconSettings, reconstruct
from models.sampler.zeta import ZETA_BY_ACCELERATION, default_zeta


@pytest.fixture(scope="module")
def demo():
    return run_demo(size=64, coils=8, acceleration=4, num_acs=16, snr=40.0, seed=3,
                    methods=("zero_filled", "cg_sense", "cs"))


def test_demo_baselines_beat_zero_filled(demo):
    m = demo.metrics
    assert m["cg_sense"]["nrmse"] < m["zero_filled"]["nrmse"]
    assert m["cs"]["nrmse"] < m["zero_filled"]["nrmse"]
    assert all(0 < v["ssim"] <= 1 for v in m.values())
    assert demo.effective_acceleration < 4


def _small_problem():
    g = torch.Generator().manual_seed(0)
    kspace = torch.randn(2, 4, 16, 16, dtype=torch.complex64, generator=g)
    maps = torch.randn(2, 4, 16, 16, dtype=torch.complex64, generator=g)
    mask = torch.zeros(16)
    mask[::2] = 1
    return kspace * mask, maps, mask


def test_errors_name_the_problem():
    kspace, maps, mask = _small_problem()
    with pytest.raises(ReconInputError, match="method: 'grappa' is not one of"):
        ReconSettings(method="grappa")
    for bad, word in [({"num_steps": 0}, "num_steps: must be >= 1"), ({"sampler": "ddim"}, "sampler"),
                      ({"noise_variance": 0.0}, "noise_variance: must be > 0"), ({"seed": 1.5}, "seed: expected int"),
                      ({"output_std": True}, "output_std")]:
        with pytest.raises((ReconInputError, TypeError), match=word):
            ReconSettings(**bad)
    with pytest.raises(CoilMismatchError, match="4 coils but k-space has 3"):
        reconstruct(kspace[:, :3], maps, mask, ReconSettings(method="cg_sense"))
    with pytest.raises(ReconInputError, match="mask is empty"):
        reconstruct(kspace, maps, torch.zeros(16), ReconSettings(method="cg_sense"))
    bad = kspace.clone()
    bad[1, 2, 3, 4] = float("inf")
    with pytest.raises(NonFiniteDataError, match="k-space"):
        reconstruct(bad, maps, mask, ReconSettings(method="zero_filled"))
    with pytest.raises(ReconInputError, match="needs a prior"):
        reconstruct(kspace, maps, mask, ReconSettings(method="dps", acceleration=4))
    with pytest.raises(ReconInputError, match="zeta or the acceleration"):
        ReconSettings(method="dps").resolved_zeta()


def test_zeta_grows_with_acceleration_and_interpolates():
    rs = sorted(ZETA_BY_ACCELERATION)
    assert all(default_zeta(a) <= default_zeta(b) for a, b in zip(rs, rs[1:]))
    assert default_zeta(rs[-1]) > default_zeta(rs[0])
    mid = default_zeta(4.5)
    assert min(default_zeta(4), default_zeta(5)) <= mid <= max(default_zeta(4), default_zeta(5))
    assert default_zeta(100) == default_zeta(rs[-1])
    with pytest.raises(ReconInputError):
        default_zeta(0.5)


def test_out_of_gpu_memory_retries_with_smaller_chunks(monkeypatch, caplog):
    import models.sampler.posterior as posterior
    kspace, maps, mask = _small_problem()
    batches = []

    def fake_dps(kspace, maps, mask, settings, prior, progress=None):
        batches.append(settings.max_batch)
        if settings.max_batch > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return kspace[:, 0], None, {"nfe": 1}

    monkeypatch.setattr(posterior, "dps_reconstruct", fake_dps)
    with caplog.at_level("WARNING"):
        out = reconstruct(kspace, maps, mask, ReconSettings(method="dps", acceleration=2, max_batch=8))
    assert batches == [8, 4, 2] and out.image.shape == (2, 16, 16)
    assert "2 slice(s) at a time" in caplog.text


def test_out_of_memory_at_one_slice_on_the_cpu_is_raised(monkeypatch):
    import models.sampler.posterior as posterior
    kspace, maps, mask = _small_problem()

    def always_oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("out of memory (simulated)")

    monkeypatch.setattr(posterior, "dps_reconstruct", always_oom)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        reconstruct(kspace, maps, mask, ReconSettings(method="dps", acceleration=2, max_batch=2))


def test_table_zeta_at_another_step_count_warns_once(caplog):
    from models.sampler.zeta import TABLE_STEPS
    with caplog.at_level("WARNING"):
        assert ReconSettings(acceleration=4, sampler="dps", num_steps=TABLE_STEPS).resolved_zeta() == default_zeta(4)
        assert "zeta table" not in caplog.text
        ReconSettings(acceleration=4, sampler="dps", num_steps=TABLE_STEPS + 7).resolved_zeta()
        ReconSettings(acceleration=4, sampler="dps", num_steps=TABLE_STEPS + 7).resolved_zeta()
        ReconSettings(acceleration=4, sampler="dps", zeta=0.3, num_steps=TABLE_STEPS + 9).resolved_zeta()  # explicit
        ReconSettings(acceleration=4, num_steps=TABLE_STEPS + 11).resolved_zeta()  # DDS: zeta is not per step count
    assert caplog.text.count("zeta table is tuned for") == 1
    assert "pulls more" in caplog.text
