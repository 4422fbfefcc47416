"""The chains on raw files from an independent writer (tests/external_corpus.py).

Three things are checked on every file of the corpus (small versions of its cases):

1. the sampling mask the DPS gadget hands to the reconstruction is exactly what the
   writer acquired (lines, calibration-only lines in embedded mode, readout samples
   of a partial echo), not what a reader or the non-zero samples suggest;
2. chain = API: the image through ``dps-gadgetron replay`` equals
   :func:`models.reconstruction.reconstruct` on k-space read and prewhitened by the
   project's file reader (:mod:`models.data.ismrmrd_io`, another code path than the
   chain's twins), the writer's mask and maps from the reader's calibration lines;
3. zero-filled through the chain is no worse than the RSS of all acquired lines.
"""

import shutil
import subprocess

import ismrmrd
import numpy as np
import pytest
import torch

import external_corpus as corpus
from chain_capture import ReconCapture
from gadgets.replay import replay
from gadgets.standard.noise_adjust import bandwidth_scale, receiver_bandwidth
from gadget_data import tiny_prior
from models.data.ismrmrd_io import read_raw as read_raw_arrays
from models.mri.coil_maps import estimate_coil_maps
from models.mri.metrics import nrmse_scaled
from models.mri.prewhiten import noise_covariance, prewhiten, whitening_matrix
from models.mri.recon import zero_filled_rss
from models.reconstruction import reconstruct

from test_replay import CONFIG, read_images

CASES = sorted(corpus.CASES)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return {name: corpus.write_case(corpus.small(corpus.CASES[name]), folder) for name in CASES}


@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    return tiny_prior(tmp_path_factory.mktemp("prior") / "tiny.safetensors")


def expected_mask(record, shape) -> np.ndarray:
    """``[H, W]`` from what the writer did: every imaging line, calibration-only lines when embedded."""
    case = record["case"]
    lines = list(record["imaging_lines"])
    if case["calibration"] == "embedded":
        lines += record["calibration_only_lines"]
    mask = np.zeros(shape, dtype=bool)
    first = record["readout_first_sample"] // 2  # the readout oversampling halves the sample positions
    mask[first:, lines] = True
    return mask


def api_inputs(path):
    """Per slice ``(kspace [C, H, W], reference [C, H, W])``: read, prewhitened and cropped by the reader."""
    scan = read_raw_arrays(str(path), remove_oversampling=True)
    scale = bandwidth_scale(scan.sample_time_us, scan.noise_sample_time_us, receiver_bandwidth(scan.header))
    whitener = whitening_matrix(noise_covariance(scan.noise)) * scale
    out = []
    for sl in scan.slices:
        kspace, _ = sl.with_reference() if scan.encoding.calibration_mode == "embedded" else (sl.kspace, sl.mask)
        out.append((prewhiten(kspace, whitener), prewhiten(sl.reference, whitener)))
    return out


def run_chain(path, out, overrides):
    with ReconCapture() as capture:
        summary = replay(path, CONFIG / "dps_r4.xml", out, overrides=overrides, progress=False)
    return summary, capture


@pytest.mark.parametrize("name", CASES)
def test_chain_mask_and_kspace_are_what_the_writer_acquired(name, files, tmp_path):
    path = files[name]
    rss, record = corpus.load_truth(path)
    summary, capture = run_chain(path, tmp_path / "o.h5", {"gadgets.dps_recon.method": "zero_filled"})
    assert summary.ok, summary.errors
    assert len(capture.calls) == record["case"]["slices"] == summary.slices
    for s, (kspace, maps, mask, _) in enumerate(capture.calls):
        want = expected_mask(record, tuple(kspace.shape[-2:]))
        got = mask.reshape(mask.shape[-2:]).numpy() > 0
        assert np.array_equal(got, want), f"{name}: the chain's mask is not what the writer acquired"
        reader_kspace, _ = api_inputs(path)[s]
        measured = np.broadcast_to(want, reader_kspace.shape)
        assert np.allclose(kspace[0].numpy()[measured], reader_kspace[measured], rtol=1e-4, atol=1e-4 * np.abs(
            reader_kspace).max())


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("method", ["cg_sense", "dps"])
def test_chain_equals_api(name, method, files, prior, tmp_path):
    path = files[name]
    _, record = corpus.load_truth(path)
    overrides = {"gadgets.dps_recon.method": method}
    if method == "dps":
        overrides.update({"gadgets.dps_recon.checkpoint": str(prior), "gadgets.dps_recon.num_steps": "3"})
    summary, capture = run_chain(path, tmp_path / "o.h5", overrides)
    assert summary.ok, summary.errors
    images = read_images(tmp_path / "o.h5")
    loaded = None
    if method == "dps":
        from models.prior.checkpoint import load_prior

        loaded, _ = load_prior(prior)
    for s, (reader_kspace, reference) in enumerate(api_inputs(path)):
        mask = torch.from_numpy(expected_mask(record, reader_kspace.shape[-2:])).float()[None, None]
        calib = reference if np.abs(reference).max() > 0 else reader_kspace
        maps = estimate_coil_maps(torch.from_numpy(calib), method="espirit")[None]
        settings = capture.calls[s][3]
        kspace = torch.from_numpy(reader_kspace * mask[0].numpy())[None]
        api = reconstruct(kspace, maps, mask, settings, prior=loaded).image[0].abs().numpy()
        chain = np.asarray(images[s].data).squeeze().T  # ISMRMRD stores [E1, RO]
        assert chain.shape == api.shape
        assert np.abs(chain - api).max() <= 1e-3 * api.max(), f"{name} slice {s}: chain and API disagree"


@pytest.mark.parametrize("name", [n for n in CASES if corpus.CASES[n].calibration == "embedded"])
def test_zero_filled_through_the_chain_no_worse_than_rss_of_all_lines(name, files, tmp_path):
    path = files[name]
    rss, record = corpus.load_truth(path)
    summary, _ = run_chain(path, tmp_path / "o.h5", {"gadgets.dps_recon.method": "zero_filled"})
    assert summary.ok
    for s, (reader_kspace, _) in enumerate(api_inputs(path)):
        chain = np.asarray(read_images(tmp_path / "o.h5")[s].data).squeeze().T
        all_lines = zero_filled_rss(torch.from_numpy(reader_kspace)).numpy()
        assert nrmse_scaled(rss[s], chain) <= nrmse_scaled(rss[s], all_lines) * 1.02


@pytest.mark.skipif(shutil.which("ismrmrd_generate_cartesian_shepp_logan") is None,
                    reason="ismrmrd-tools (Debian) not installed: no second independent writer")
def test_ismrmrd_tools_file_mask_holds_every_acquired_line(tmp_path):
    path = tmp_path / "sl.h5"
    subprocess.run(["ismrmrd_generate_cartesian_shepp_logan", "-o", str(path), "-a", "4", "-w", "16", "-c", "8",
                    "-m", "64", "-C"], check=True, capture_output=True)
    summary, capture = run_chain(path, tmp_path / "o.h5", {"gadgets.dps_recon.method": "cg_sense"})
    assert summary.ok, summary.errors
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False, mode="r")
    lines = {}  # per repetition: the tool shifts the lattice from one repetition to the next
    for i in range(ds.number_of_acquisitions()):
        acq = ds.read_acquisition(i)
        if not acq.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            lines.setdefault(int(acq.idx.repetition), set()).add(int(acq.idx.kspace_encode_step_1))
    ds.close()
    assert len(capture.calls) == len(lines) == 4
    for repetition, (_, _, mask, _) in enumerate(capture.calls):
        got = set(np.flatnonzero(mask.reshape(mask.shape[-2:]).numpy().any(axis=0)))
        assert got == lines[repetition]  # the calibration-only lines included (interleaved mode)
        assert len(got) == 64 // 4 + 16 - 16 // 4
