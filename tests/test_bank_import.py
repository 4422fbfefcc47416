"""Slice banks from measured files: a synthetic fastMRI file and a simulated fully sampled ISMRMRD file."""

import numpy as np
import pytest
import torch

from models.data.bank_import import bank_from_files, centre_kspace
from models.data.raw_simulator import make_raw_file
from models.data.slice_bank import read_slice_bank
from models.errors import ReconInputError
from models.mri.fft import fft2c, ifft2c
from models.mri.metrics import nrmse
from tests.test_fastmri_reader import _volume, _write


def test_centre_kspace_crops_and_pads():
    k = torch.arange(36, dtype=torch.float32).reshape(6, 6).to(torch.complex64)
    assert torch.equal(centre_kspace(k, 2), k[2:4, 2:4])
    padded = centre_kspace(k, 8)
    assert torch.equal(padded[1:7, 1:7], k) and padded.abs().sum() == k.abs().sum()


def test_fastmri_and_ismrmrd_files_become_one_bank(tmp_path):
    images, _, kspace = _volume()
    fm = tmp_path / "file_brain_AXFLAIR_001.h5"
    _write(fm, kspace)
    raw = make_raw_file(tmp_path / "raw.h5", matrix=(32, 32), num_coils=4, num_slices=2, fully_sampled=True,
                        snr=1000.0, seed=1)
    bank = bank_from_files(tmp_path / "bank.h5", fastmri=[fm], ismrmrd=[raw.path], contrast="FLAIR",
                           matrix=images.shape[-1])
    record = read_slice_bank(bank)
    assert len(record.images) == images.shape[0] + 2
    assert set(record.source) == {"fastmri", "ismrmrd"} and set(record.contrast) == {"FLAIR"}
    assert len(set(record.subject)) == 2
    # noiseless and fully sampled: the bank images are the source images at the bank's matrix
    # (k-space truncation), up to a global phase and the intensity rule
    size = images.shape[-1]
    expected = ifft2c(centre_kspace(fft2c(torch.from_numpy(images)), size)).numpy()
    fm_images = record.images[record.source == "fastmri"]
    for got, want in zip(fm_images, expected):
        scale = np.percentile(np.abs(want), 99)
        assert nrmse(np.abs(want) / scale, np.abs(got)) < 0.1  # ESPIRiT crop zeroes the ringing outside
        assert np.percentile(np.abs(got), 99) == pytest.approx(1.0, rel=1e-3)


def test_undersampled_or_unnamed_inputs_are_rejected(tmp_path):
    raw = make_raw_file(tmp_path / "under.h5", matrix=(32, 32), num_coils=4, seed=2)
    with pytest.raises(ReconInputError, match="not fully sampled"):
        bank_from_files(tmp_path / "b.h5", ismrmrd=[raw.path], contrast="FLAIR", matrix=32)
    with pytest.raises(ReconInputError, match="contrast named explicitly"):
        bank_from_files(tmp_path / "b.h5", ismrmrd=[raw.path], matrix=32)
    with pytest.raises(ReconInputError, match="no input files"):
        bank_from_files(tmp_path / "b.h5")


def test_an_imported_fastmri_bank_trains_the_patch_prior(tmp_path):
    """``data import --fastmri`` banks feed the patch prior like rendered ones (two steps of pre-training)."""
    import yaml

    from gadgets.cli import main as cli_main
    from models.prior.checkpoint import read_metadata

    images, _, kspace = _volume()
    fm = tmp_path / "file_brain_AXT1_001.h5"
    _write(fm, kspace)
    size = images.shape[-1]
    bank = bank_from_files(tmp_path / "bank.h5", fastmri=[fm], contrast="T1", matrix=size)
    config = dict(data=str(bank), source_contrasts=["T1"], preset="tiny", image_size=size, batch_size=2,
                  total_steps=2, val_every=2, checkpoint_every=2, log_every=1, lr_rampup_steps=1, val_slices=1,
                  fp16_export=False, prior={"kind": "patch", "patch_sizes": [8, 16], "patch_probabilities": [0.5, 0.5]})
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    assert cli_main(["train", "pretrain", "--config", str(tmp_path / "cfg.yaml"), "--run-dir", str(tmp_path / "run"),
                     "--no-progress"]) == 0
    assert read_metadata(tmp_path / "run" / "best.safetensors").prior["kind"] == "patch"
