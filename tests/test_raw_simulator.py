"""The raw ISMRMRD simulator: header, lines, flags, noise and the forward model.

Files are read back with the ``ismrmrd`` package itself (not our reader) where the
test is about what the file holds, and with the ISMRMRD C++ tools when installed.
"""

import math
import shutil
import subprocess

import h5py
import ismrmrd
import numpy as np
import pytest
import torch

from models.data.fastmri import rss_images
from models.data.ismrmrd_io import read_raw
from models.data.raw_simulator import (RawProtocol, build_header, make_raw_file, plan_lines,
                                       random_noise_covariance, simulate_raw)
from models.errors import ReconInputError, ShapeError
from models.mri.fft import ifft2c_np
from models.mri.masks import acs_window
from models.mri.prewhiten import noise_covariance, noise_scale_factor

H, W, C, S = 64, 48, 8, 2
R, ACS = 4, 16


def _acquisitions(path):
    with ismrmrd.Dataset(str(path), "dataset", mode="r") as dataset:
        header = ismrmrd.xsd.CreateFromDocument(dataset.read_xml_header())
        acqs = [dataset.read_acquisition(i) for i in range(dataset.number_of_acquisitions())]
    return header, acqs


def _flags(acq):
    return {f for f in range(1, 65) if acq.is_flag_set(f)}


@pytest.fixture(scope="module")
def undersampled(tmp_path_factory):
    path = tmp_path_factory.mktemp("raw") / "us.h5"
    sim = make_raw_file(path, matrix=(H, W), num_coils=C, num_slices=S, acceleration=R, num_acs=ACS, seed=7)
    return sim, _acquisitions(path)


@pytest.fixture(scope="module")
def fully_sampled(tmp_path_factory):
    path = tmp_path_factory.mktemp("raw") / "fs.h5"
    sim = make_raw_file(path, matrix=(H, W), num_coils=C, num_slices=S, acceleration=R, num_acs=ACS,
                        fully_sampled=True, seed=7)
    return sim, path


def _expected_lines():
    lattice = np.zeros(W, bool)
    lattice[(W // 2) % R::R] = True
    acs = np.zeros(W, bool)
    start, stop = acs_window(W, ACS)
    acs[start:stop] = True
    return lattice, acs


def test_undersampled_file_holds_exactly_the_expected_lines(undersampled):
    sim, (_, acqs) = undersampled
    lattice, acs = _expected_lines()
    data = [a for a in acqs if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    assert len(data) == S * int((lattice | acs).sum())
    for s in range(S):
        lines = [a.idx.kspace_encode_step_1 for a in data if a.idx.slice == s]
        assert len(lines) == len(set(lines))
        assert sorted(lines) == list(np.flatnonzero(lattice | acs))
    assert np.array_equal(sim.plan.imaging.numpy(), lattice)
    assert np.array_equal(sim.plan.calibration.numpy(), acs)
    # Each written line is the simulated k-space line, bit for bit.
    for a in data[:5]:
        expected = sim.kspace[a.idx.slice, :, :, a.idx.kspace_encode_step_1].numpy()
        assert np.array_equal(a.data, expected)


def test_header_fields(undersampled):
    _, (header, _) = undersampled
    enc = header.encoding[0]
    encoded, recon = enc.encodedSpace.matrixSize, enc.reconSpace.matrixSize
    assert (encoded.x, encoded.y, encoded.z) == (2 * H, W, 1)
    assert (recon.x, recon.y, recon.z) == (H, W, 1)
    assert (enc.encodedSpace.fieldOfView_mm.x, enc.encodedSpace.fieldOfView_mm.y) == (440.0, 220.0)
    assert (enc.reconSpace.fieldOfView_mm.x, enc.reconSpace.fieldOfView_mm.y, enc.reconSpace.fieldOfView_mm.z) == (
        220.0, 220.0, 5.0)
    e1 = enc.encodingLimits.kspace_encoding_step_1
    assert (e1.minimum, e1.maximum, e1.center) == (0, W - 1, W // 2)
    assert (enc.encodingLimits.slice.minimum, enc.encodingLimits.slice.maximum) == (0, S - 1)
    assert enc.trajectory.value == "cartesian"
    assert enc.parallelImaging.accelerationFactor.kspace_encoding_step_1 == R
    assert enc.parallelImaging.accelerationFactor.kspace_encoding_step_2 == 1
    assert enc.parallelImaging.calibrationMode.value == "embedded"
    system = header.acquisitionSystemInformation
    assert system.receiverChannels == C and system.relativeReceiverNoiseBandwidth == pytest.approx(0.793)
    assert len(system.coilLabel) == C
    assert header.experimentalConditions.H1resonanceFrequency_Hz == pytest.approx(127.73e6, rel=1e-3)
    seq = header.sequenceParameters
    assert (seq.TR, seq.TE, seq.TI) == ([9000.0], [120.0], [2500.0])
    assert seq.flipAngle_deg == [90.0]
    assert header.measurementInformation.patientPosition.value == "HFS"
    assert header.subjectInformation.patientID
    # The C++ library rejects a header whose <version> differs from its own: none is written.
    assert header.version is None


def test_flags_and_acquisition_headers_read_back_by_ismrmrd(undersampled):
    _, (_, acqs) = undersampled
    protocol = RawProtocol()
    lattice, acs = _expected_lines()
    noise = [a for a in acqs if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    assert len(noise) == protocol.num_noise_acquisitions
    assert acqs[:len(noise)] == noise  # noise scan first
    assert all(a.sample_time_us == protocol.noise_dwell_time_us and _flags(a) == {19} for a in noise)
    data = acqs[len(noise):]
    assert [a.scan_counter for a in acqs] == list(range(1, len(acqs) + 1))
    assert [i for i, a in enumerate(acqs) if a.is_flag_set(ismrmrd.ACQ_LAST_IN_MEASUREMENT)] == [len(acqs) - 1]
    stamps = [a.acquisition_time_stamp for a in acqs]
    assert stamps == sorted(stamps) and stamps[-1] > stamps[0]
    positions = []
    for s in range(S):
        lines = [a for a in data if a.idx.slice == s]
        assert {ismrmrd.ACQ_FIRST_IN_SLICE, ismrmrd.ACQ_FIRST_IN_ENCODE_STEP1} <= _flags(lines[0])
        assert {ismrmrd.ACQ_LAST_IN_SLICE, ismrmrd.ACQ_LAST_IN_ENCODE_STEP1} <= _flags(lines[-1])
        assert sum(a.is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE) for a in lines) == 1
        assert all(_flags(a) <= {20, 21} for a in lines[1:-1])  # nothing else set in between
        for a in lines:
            e1 = a.idx.kspace_encode_step_1
            cal = a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
            cal_imaging = a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
            assert cal == bool(acs[e1] and not lattice[e1]), e1
            assert cal_imaging == bool(acs[e1] and lattice[e1]), e1
            assert a.number_of_samples == 2 * H and a.center_sample == H and a.active_channels == C
            assert a.available_channels == C
            assert all(a.isChannelActive(c) for c in range(C)) and not a.isChannelActive(C)
            assert a.sample_time_us == protocol.dwell_time_us
            assert tuple(a.read_dir) == protocol.read_dir and tuple(a.phase_dir) == protocol.phase_dir
            assert tuple(a.slice_dir) == protocol.slice_dir
            assert tuple(a.patient_table_position) == protocol.patient_table_position
        positions.append(np.array(lines[0].position))
    step = positions[1] - positions[0]
    assert np.allclose(step, (protocol.slice_thickness_mm + protocol.slice_gap_mm) * np.array(protocol.slice_dir))
    assert np.allclose((positions[0] + positions[1]) / 2, protocol.centre_mm)


def test_fully_sampled_file_reconstructs_to_source_within_noise(fully_sampled):
    sim, path = fully_sampled
    _, acqs = _acquisitions(path)
    data = [a for a in acqs if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    assert len(data) == S * W
    assert not any(a.is_flag_set(20) or a.is_flag_set(21) for a in data)
    scan = read_raw(path, remove_oversampling=True)
    assert scan.header.encoding[0].parallelImaging is None
    for s, raw_slice in enumerate(scan.slices):
        assert raw_slice.kspace.shape == (C, H, W) and raw_slice.mask.all()
        image = sim.images[s].numpy()
        adjoint = (sim.maps[s].numpy().conj() * ifft2c_np(raw_slice.kspace)).sum(axis=0)
        rmse = np.sqrt(np.mean(np.abs(adjoint - image) ** 2))
        # Maps are RSS-normalised: the combined noise std equals the per-coil std.
        assert 0.8 < rmse / sim.noise_std < 1.2
        # RSS is noise-biased where there is no signal: compare on the object.
        inside = np.abs(image) > 0.3
        rss_error = (rss_images(raw_slice.kspace) - np.abs(image))[inside]
        assert np.sqrt(np.mean(rss_error ** 2)) < 1.5 * sim.noise_std


def test_noiseless_forward_model_is_exact(tmp_path):
    sim = make_raw_file(tmp_path / "clean.h5", matrix=(32, 24), num_coils=4, fully_sampled=True, snr=1e7, seed=1)
    k = read_raw(tmp_path / "clean.h5").slices[0].kspace  # oversampled readout kept
    image_os = ifft2c_np(k)  # [C, 64, 24]: the object sits in the central 32 rows
    assert np.abs(image_os[:, :16]).max() < 1e-4 and np.abs(image_os[:, 48:]).max() < 1e-4
    coil_images = (sim.maps[0] * sim.images[0]).numpy()
    assert np.abs(image_os[:, 16:48] - coil_images).max() < 1e-4


def test_noise_scan_gives_the_imaging_noise_covariance(fully_sampled):
    sim, path = fully_sampled
    scan = read_raw(path)
    assert scan.noise.shape == (C, RawProtocol().num_noise_acquisitions * 2 * H)
    psi = noise_covariance(scan.noise) * noise_scale_factor(scan.noise_sample_time_us, scan.sample_time_us,
                                                            scan.encoding.receiver_noise_bandwidth)
    truth = sim.noise_covariance.numpy()
    assert np.linalg.norm(psi - truth) / np.linalg.norm(truth) < 0.12
    # Correlated: off-diagonal coupling well above the estimation error.
    off = np.abs(truth - np.diag(np.diag(truth)))
    assert off.max() > 0.1 * np.abs(np.diag(truth)).mean()
    # The imaging noise has the same covariance: difference of the noisy file and the clean model.
    clean = make_raw_file(path.parent / "fs_clean.h5", matrix=(H, W), num_coils=C, num_slices=S, fully_sampled=True,
                          snr=1e9, seed=7)
    residual = (sim.kspace - clean.kspace).numpy().transpose(1, 0, 2, 3).reshape(C, -1)
    assert np.linalg.norm(noise_covariance(residual) - truth) / np.linalg.norm(truth) < 0.05


def test_seeded_and_consistent_between_variants(undersampled, fully_sampled, tmp_path):
    us, (_, us_acqs) = undersampled
    fs, _ = fully_sampled
    # Same seed: the undersampled file's lines are the fully sampled file's lines.
    assert torch.equal(us.kspace, fs.kspace)
    again = make_raw_file(tmp_path / "again.h5", matrix=(H, W), num_coils=C, num_slices=S, acceleration=R,
                          num_acs=ACS, seed=7)
    assert torch.equal(again.kspace, us.kspace)
    other = make_raw_file(tmp_path / "other.h5", matrix=(H, W), num_coils=C, num_slices=S, acceleration=R,
                          num_acs=ACS, seed=8)
    assert not torch.equal(other.kspace, us.kspace)


def test_separate_reference_scan(tmp_path):
    path = tmp_path / "sep.h5"
    sim = make_raw_file(path, matrix=(H, W), num_coils=4, num_slices=2, acceleration=R, num_acs=ACS,
                        calibration_mode="separate", seed=3)
    header, acqs = _acquisitions(path)
    assert header.encoding[0].parallelImaging.calibrationMode.value == "separate"
    lattice, acs = _expected_lines()
    for s in range(2):
        lines = [a for a in acqs if not a.is_flag_set(19) and a.idx.slice == s]
        ref = [a for a in lines if a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)]
        imaging = [a for a in lines if not a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)]
        assert lines[:len(ref)] == ref  # reference block first
        assert not any(a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING) for a in lines)
        assert [a.idx.kspace_encode_step_1 for a in ref] == list(np.flatnonzero(acs))
        assert [a.idx.kspace_encode_step_1 for a in imaging] == list(np.flatnonzero(lattice))
        assert lines[-1].is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE)
    scan = read_raw(path)
    sl = scan.slices[0]
    assert np.array_equal(sl.mask, lattice) and np.array_equal(sl.reference_mask, acs)
    assert sl.acs_range == acs_window(W, ACS)
    # A separate scan has its own noise: shared lines differ by noise only.
    both = np.flatnonzero(lattice & acs)
    diff = sl.kspace[:, :, both] - sl.reference[:, :, both]
    assert 0 < np.sqrt(np.mean(np.abs(diff) ** 2)) < 2 * math.sqrt(2) * sim.noise_std


def test_random_mask_kind_flags_every_acs_line_as_imaging_too(tmp_path):
    protocol = RawProtocol(mask_kind="random", acceleration=3, num_acs=8)
    plan = plan_lines(protocol, 40, torch.Generator().manual_seed(0))
    assert plan.imaging[plan.calibration].all()
    sim = simulate_raw(tmp_path / "rnd.h5", torch.ones(16, 40, dtype=torch.complex64), protocol=protocol, num_coils=2,
                       generator=0)
    _, acqs = _acquisitions(sim.path)
    cal_only = [a for a in acqs if a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)]
    assert not cal_only


def test_random_noise_covariance_is_hermitian_positive_definite():
    psi = random_noise_covariance(12, 5).to(torch.complex128)
    assert torch.allclose(psi, psi.conj().T)
    assert float(torch.linalg.eigvalsh(psi).min()) > 0
    assert float(psi.diagonal().real.mean()) == pytest.approx(1.0, rel=1e-5)
    assert torch.equal(random_noise_covariance(12, 5), random_noise_covariance(12, 5))


def test_bad_simulator_input(tmp_path):
    image = torch.ones(1, 16, 16, dtype=torch.complex64)
    with pytest.raises(ShapeError, match="maps"):
        simulate_raw(tmp_path / "x.h5", image, torch.ones(4, 16, 8, dtype=torch.complex64))
    with pytest.raises(ReconInputError, match="calibration_mode"):
        simulate_raw(tmp_path / "x.h5", image, protocol=RawProtocol(calibration_mode="interleaved"))
    with pytest.raises(ReconInputError, match="snr"):
        simulate_raw(tmp_path / "x.h5", image, snr=0.0)
    with pytest.raises(ShapeError, match="covariance"):
        simulate_raw(tmp_path / "x.h5", image, num_coils=4, noise_covariance=torch.eye(3))
    with pytest.raises(ReconInputError, match="positive definite"):
        simulate_raw(tmp_path / "x.h5", image, num_coils=2, noise_covariance=torch.ones(2, 2))


@pytest.mark.skipif(shutil.which("ismrmrd_test_xml") is None, reason="ismrmrd-tools (C++) not installed")
def test_header_accepted_by_ismrmrd_cpp(tmp_path):
    xml = tmp_path / "header.xml"
    xml.write_text(ismrmrd.xsd.ToXML(build_header(RawProtocol(), 8, (64, 64), 3)))
    result = subprocess.run(["ismrmrd_test_xml", str(xml)], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path)  # the tool writes raw.xml and processed.xml into its cwd
    assert result.returncode == 0 and "terminate" not in result.stderr, result.stderr


@pytest.mark.skipif(shutil.which("ismrmrd_recon_cartesian_2d") is None, reason="ismrmrd-tools (C++) not installed")
def test_cpp_reference_recon_matches_ours(tmp_path):
    """ISMRMRD's own C++ recon (FFT, readout crop, RSS) agrees with our reading layer;
    a non-square matrix pins the axis order. (That tool ignores slices: one slice.)"""
    path = tmp_path / "one.h5"
    make_raw_file(path, matrix=(H, W), num_coils=4, fully_sampled=True, seed=2)
    copy = tmp_path / "cpp.h5"
    shutil.copy(path, copy)
    result = subprocess.run(["ismrmrd_recon_cartesian_2d", str(copy)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    with h5py.File(copy, "r") as f:
        cpp = np.asarray(f["dataset/cpp/data"][0]).squeeze()  # [E1, RO], RO fastest
    assert cpp.shape == (W, H)
    ours = rss_images(read_raw(path, remove_oversampling=True).slices[0].kspace)
    ours, cpp = ours / np.linalg.norm(ours), cpp.T / np.linalg.norm(cpp)
    assert np.abs(ours - cpp).max() < 1e-4
