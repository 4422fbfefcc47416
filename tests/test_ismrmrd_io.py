"""Reading ISMRMRD raw files: round trip, the C++ tools' phantom, and every bad-input case."""

import re
from pathlib import Path
import shutil
import subprocess

import h5py
import ismrmrd
import numpy as np
import pytest

from models.data.ismrmrd_io import flag_bit, read_header, read_raw, remove_readout_oversampling
from models.data.raw_simulator import RawProtocol, build_header, make_raw_file
from models.errors import (IncompleteSliceError, NonFiniteDataError, NonFiniteRawDataError, RawFileError,
                           RawHeaderError, ShapeError)
from models.mri.fft import fft2c_np, ifft2c_np

H, W, C, S = 32, 32, 4, 2


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    path = tmp_path_factory.mktemp("io") / "raw.h5"
    sim = make_raw_file(path, matrix=(H, W), num_coils=C, num_slices=S, acceleration=4, num_acs=8, seed=11)
    return sim, path


def _copy(src, tmp_path, name="copy.h5"):
    dst = tmp_path / name
    shutil.copy(src, dst)
    return dst


def _rewrite_xml(path, xml):
    with h5py.File(path, "r+") as f:
        del f["dataset/xml"]
        f["dataset"].create_dataset("xml", data=[xml.encode()], dtype=h5py.special_dtype(vlen=bytes))


def test_round_trip_lines_masks_and_geometry(raw):
    sim, path = raw
    scan = read_raw(path)
    assert scan.encoding.encoded_matrix == (2 * H, W, 1) and scan.encoding.recon_matrix == (H, W, 1)
    assert scan.encoding.acceleration == 4 and scan.encoding.calibration_mode == "embedded"
    assert scan.encoding.readout_oversampling == 2.0
    assert [(s.slice, s.repetition) for s in scan.slices] == [(0, 0), (1, 0)]
    assert scan.sample_time_us == RawProtocol().dwell_time_us
    assert scan.noise_sample_time_us == RawProtocol().noise_dwell_time_us
    imaging, calibration = sim.plan.imaging.numpy(), sim.plan.calibration.numpy()
    for s, sl in enumerate(scan.slices):
        truth = sim.kspace[s].numpy()
        assert sl.kspace.shape == (C, 2 * H, W) and sl.kspace.dtype == np.complex64
        assert np.array_equal(sl.mask, imaging) and np.array_equal(sl.reference_mask, calibration)
        assert np.array_equal(sl.kspace[:, :, imaging], truth[:, :, imaging])
        assert not sl.kspace[:, :, ~imaging].any()
        assert np.array_equal(sl.reference[:, :, calibration], truth[:, :, calibration])
        assert sl.acs_range == (W // 2 - 4, W // 2 + 4)
        merged, merged_mask = sl.with_reference()
        assert np.array_equal(merged_mask, imaging | calibration)
        assert np.array_equal(merged[:, :, merged_mask], truth[:, :, merged_mask])
        protocol = RawProtocol()
        expected = np.array(protocol.centre_mm) + (s - 0.5) * 6.0 * np.array(protocol.slice_dir)
        assert np.allclose(sl.geometry.position, expected)
        assert sl.geometry.read_dir == protocol.read_dir and sl.geometry.slice_dir == protocol.slice_dir
    assert scan.kspace_stack().shape == (S, C, 2 * H, W)
    cropped = read_raw(path, remove_oversampling=True)
    assert cropped.slices[0].kspace.shape == (C, H, W) and cropped.readout_oversampling_removed


def test_remove_readout_oversampling_is_exact_for_a_padded_fov():
    rng = np.random.default_rng(0)
    image = (rng.standard_normal((3, 16, 10)) + 1j * rng.standard_normal((3, 16, 10))).astype(np.complex64)
    padded = np.zeros((3, 32, 10), np.complex64)
    padded[:, 8:24] = image
    cropped = remove_readout_oversampling(fft2c_np(padded), 16)
    assert np.allclose(ifft2c_np(cropped), image, atol=1e-5)
    noise = (rng.standard_normal((4, 256, 64)) + 1j * rng.standard_normal((4, 256, 64))) / np.sqrt(2)
    assert np.var(remove_readout_oversampling(noise, 128)) == pytest.approx(1.0, rel=0.03)  # per-sample variance kept
    with pytest.raises(ShapeError):
        remove_readout_oversampling(noise, 512)


@pytest.mark.skipif(shutil.which("ismrmrd_generate_cartesian_shepp_logan") is None,
                    reason="ismrmrd-tools (C++) not installed")
def test_reads_the_cpp_shepp_logan_phantom(tmp_path):
    subprocess.run(["ismrmrd_generate_cartesian_shepp_logan", "-m", "64", "-c", "4", "-r", "1", "-C",
                    "-o", "sl.h5"], cwd=tmp_path, check=True, capture_output=True, timeout=120)
    scan = read_raw(tmp_path / "sl.h5", remove_oversampling=True)
    assert len(scan.slices) == 1 and scan.noise is not None and scan.noise.shape[0] == 4
    sl = scan.slices[0]
    assert sl.kspace.shape == (4, 64, 64) and sl.mask.all() and not sl.reference_mask.any()
    image = np.sqrt((np.abs(ifft2c_np(sl.kspace)) ** 2).sum(0))
    # Shepp-Logan: bright skull ellipse, corners with noise only.
    assert image.max() > 5 * np.median(image[:8, :8])
    if shutil.which("ismrmrd_recon_cartesian_2d"):  # ISMRMRD's own recon of the same file agrees
        shutil.copy(tmp_path / "sl.h5", tmp_path / "cpp.h5")
        subprocess.run(["ismrmrd_recon_cartesian_2d", "cpp.h5"], cwd=tmp_path, check=True, capture_output=True,
                       timeout=120)
        with h5py.File(tmp_path / "cpp.h5", "r") as f:
            cpp = np.asarray(f["dataset/cpp/data"][0]).squeeze().T
        assert np.abs(image / np.linalg.norm(image) - cpp / np.linalg.norm(cpp)).max() < 1e-5

    # Accelerated, interleaved calibration over repetitions (TSENSE-like): one slice per repetition.
    subprocess.run(["ismrmrd_generate_cartesian_shepp_logan", "-m", "64", "-c", "4", "-a", "2", "-w", "16",
                    "-o", "sl2.h5"], cwd=tmp_path, check=True, capture_output=True, timeout=120)
    scan = read_raw(tmp_path / "sl2.h5")
    assert scan.encoding.acceleration == 2 and scan.encoding.calibration_mode == "interleaved"
    assert [s.repetition for s in scan.slices] == [0, 1]
    for sl in scan.slices:
        assert sl.mask.sum() == 32
        assert np.array_equal(np.flatnonzero(sl.reference_mask), np.arange(24, 40))
        assert sl.acs_range == (24, 40)
    assert np.array_equal(scan.slices[0].mask | scan.slices[1].mask, np.ones(64, bool))


def test_missing_file(tmp_path):
    with pytest.raises(RawFileError, match="does not exist"):
        read_raw(tmp_path / "nope.h5")


def test_not_hdf5(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("not an hdf5 file")
    with pytest.raises(RawFileError, match="not an HDF5"):
        read_raw(path)


def test_hdf5_without_ismrmrd_header(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["kspace"] = np.zeros((2, 2), np.complex64)
    with pytest.raises(RawFileError, match="no /dataset/xml"):
        read_raw(path)
    with pytest.raises(RawFileError, match="no /dataset/xml"):
        read_header(path)


def test_no_acquisitions(tmp_path):
    path = tmp_path / "empty.h5"
    with ismrmrd.Dataset(str(path), "dataset", mode="w") as dataset:
        dataset.write_xml_header(ismrmrd.xsd.ToXML(build_header(RawProtocol(), 2, (8, 8), 1)).encode())
    with pytest.raises(RawFileError, match="no acquisitions"):
        read_raw(path)


def test_truncated_file(raw, tmp_path):
    path = _copy(raw[1], tmp_path)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(RawFileError, match="truncated"):
        read_raw(path)


def test_header_without_encoding(raw, tmp_path):
    path = _copy(raw[1], tmp_path)
    xml = ismrmrd.xsd.ToXML(read_header(path))
    _rewrite_xml(path, re.sub(r"<encoding>.*</encoding>", "", xml, flags=re.S))
    with pytest.raises(RawHeaderError, match="no <encoding>"):
        read_raw(path)


def test_malformed_header(raw, tmp_path):
    path = _copy(raw[1], tmp_path)
    _rewrite_xml(path, "<ismrmrdHeader><encoding>")
    with pytest.raises(RawHeaderError, match="not a readable ISMRMRD header"):
        read_raw(path)


def test_calibration_lines_without_parallel_imaging(raw, tmp_path):
    path = _copy(raw[1], tmp_path)
    header = read_header(path)
    header.encoding[0].parallelImaging = None
    _rewrite_xml(path, ismrmrd.xsd.ToXML(header))
    with pytest.raises(RawHeaderError, match="parallelImaging"):
        read_raw(path)


def _edit_acquisition(path, index, edit):
    with h5py.File(path, "r+") as f:
        record = f["dataset/data"][index]
        edit(record)
        f["dataset/data"][index] = record


def test_nan_in_an_acquisition_names_slice_and_line(raw, tmp_path):
    path = _copy(raw[1], tmp_path)
    num_noise = RawProtocol().num_noise_acquisitions
    lines_per_slice = int((raw[0].plan.imaging | raw[0].plan.calibration).sum())
    index = num_noise + lines_per_slice + 3  # 4th line of slice 1
    with h5py.File(path, "r") as f:
        line = int(f["dataset/data"][index]["head"]["idx"]["kspace_encode_step_1"])

    def poison(record):
        record["data"][5] = np.nan
    _edit_acquisition(path, index, poison)
    with pytest.raises(NonFiniteRawDataError, match=rf"slice 1, line {line}\)") as info:
        read_raw(path)
    assert isinstance(info.value, NonFiniteDataError) and isinstance(info.value, RawFileError)


def test_nan_in_the_noise_scan(raw, tmp_path):
    path = _copy(raw[1], tmp_path)

    def poison(record):
        record["data"][0] = np.inf
    _edit_acquisition(path, 2, poison)
    with pytest.raises(NonFiniteRawDataError, match="noise acquisition 2"):
        read_raw(path)


def test_slice_that_never_completes(raw, tmp_path):
    """A stream cut short: the last lines of the last slice (with ACQ_LAST_IN_SLICE) are missing."""
    path = _copy(raw[1], tmp_path)
    with h5py.File(path, "r+") as f:
        total = f["dataset/data"].shape[0]
        f["dataset/data"].resize(total - 3, axis=0)
    with pytest.raises(IncompleteSliceError, match="slice 1 .*never completes"):
        read_raw(path)
    scan = read_raw(path, require_slice_end=False)
    assert scan.slices[1].mask.sum() + scan.slices[1].reference_mask.sum() < (
        scan.slices[0].mask.sum() + scan.slices[0].reference_mask.sum())


def test_acquisitions_disagreeing_with_the_header(raw, tmp_path):
    path = _copy(raw[1], tmp_path)
    header = read_header(path)
    header.encoding[0].encodedSpace.matrixSize.x = H  # file holds 2H samples per line
    _rewrite_xml(path, ismrmrd.xsd.ToXML(header))
    with pytest.raises(RawHeaderError, match="encoded matrix x"):
        read_raw(path)

    path = _copy(raw[1], tmp_path, "e1.h5")
    header = read_header(path)
    header.encoding[0].encodedSpace.matrixSize.y = W // 2
    header.encoding[0].encodingLimits.kspace_encoding_step_1.center = W // 4
    _rewrite_xml(path, ismrmrd.xsd.ToXML(header))
    with pytest.raises(RawHeaderError, match="kspace_encode_step_1"):
        read_raw(path)

    path = _copy(raw[1], tmp_path, "ch.h5")
    header = read_header(path)
    header.acquisitionSystemInformation.receiverChannels = C + 1
    _rewrite_xml(path, ismrmrd.xsd.ToXML(header))
    with pytest.raises(RawHeaderError, match="receiverChannels"):
        read_raw(path)


def _hand_written(path, lines, header_matrix=(8, 4)):
    """A tiny file written with the ismrmrd API: lines = [(e1, flags, value)]."""
    protocol = RawProtocol(readout_oversampling=1, fully_sampled=True)
    with ismrmrd.Dataset(str(path), "dataset", mode="w") as dataset:
        dataset.write_xml_header(ismrmrd.xsd.ToXML(build_header(protocol, 2, header_matrix, 1)).encode())
        for e1, flags, value in lines:
            acq = ismrmrd.Acquisition.from_array(np.full((2, header_matrix[0]), value, np.complex64), flags=flags,
                                                 center_sample=header_matrix[0] // 2)
            acq.idx.kspace_encode_step_1 = e1
            dataset.append_acquisition(acq)


def test_repeated_lines_are_averaged_and_navigators_skipped(tmp_path):
    last = flag_bit(ismrmrd.ACQ_LAST_IN_SLICE)
    nav = flag_bit(ismrmrd.ACQ_IS_NAVIGATION_DATA)
    path = tmp_path / "avg.h5"
    _hand_written(path, [(0, 0, 1.0), (1, 0, 2.0), (1, 0, 4.0), (2, nav, 100.0), (3, last, 5.0)])
    sl = read_raw(path).slices[0]
    assert np.array_equal(sl.mask, [True, True, False, True])
    assert np.allclose(sl.kspace[:, :, 1], 3.0) and np.allclose(sl.kspace[:, :, 0], 1.0)
    assert not sl.kspace[:, :, 2].any()


def test_asymmetric_echo_is_placed_by_center_sample(tmp_path):
    path = tmp_path / "asym.h5"
    protocol = RawProtocol(readout_oversampling=1, fully_sampled=True)
    with ismrmrd.Dataset(str(path), "dataset", mode="w") as dataset:
        dataset.write_xml_header(ismrmrd.xsd.ToXML(build_header(protocol, 1, (8, 2), 1)).encode())
        for e1 in range(2):
            acq = ismrmrd.Acquisition.from_array(np.arange(1, 7, dtype=np.complex64)[None], center_sample=2,
                                                 flags=flag_bit(ismrmrd.ACQ_LAST_IN_SLICE) if e1 else 0)
            acq.idx.kspace_encode_step_1 = e1
            dataset.append_acquisition(acq)
    k = read_raw(path).slices[0].kspace
    # 6 samples whose centre is sample 2 land on rows 2..7 of an 8-sample readout (centre row 4).
    assert np.array_equal(k[0, :, 0], np.array([0, 0, 1, 2, 3, 4, 5, 6], np.complex64))


EXAMPLE = Path(__file__).resolve().parents[1] / "models" / "data" / "examples"


@pytest.mark.skipif(not (EXAMPLE / "flair_R4.h5").exists(), reason="bundled example not generated")
def test_bundled_example_scan_and_its_truth():
    scan = read_raw(EXAMPLE / "flair_R4.h5", remove_oversampling=True)
    assert scan.encoding.recon_matrix == (128, 128, 1) and scan.encoding.encoded_matrix == (256, 128, 1)
    assert scan.encoding.acceleration == 4 and scan.encoding.calibration_mode == "embedded"
    assert 8 <= scan.noise.shape[0] <= 12 and 1 <= len(scan.slices) <= 3
    truth = np.load(EXAMPLE / "flair_truth.npz")
    assert truth["image"].shape == (len(scan.slices), 128, 128)
    for sl, image in zip(scan.slices, truth["image"]):
        assert sl.reference_mask.sum() == 24 and sl.acs_range == (52, 76)
        # Low-resolution image from the ACS block vs the equally low-passed truth.
        start, stop = sl.acs_range
        low = np.zeros_like(sl.reference)
        low[:, :, start:stop] = sl.reference[:, :, start:stop]
        rss = np.sqrt((np.abs(ifft2c_np(low)) ** 2).sum(0))
        truth_k = fft2c_np(image)
        truth_low = np.zeros_like(truth_k)
        truth_low[:, start:stop] = truth_k[:, start:stop]
        assert np.corrcoef(rss.ravel(), np.abs(ifft2c_np(truth_low)).ravel())[0, 1] > 0.9


@pytest.mark.slow
def test_make_examples_is_deterministic(tmp_path):
    from models.data.make_examples import make_examples
    make_examples(str(tmp_path))
    ours, bundled = read_raw(tmp_path / "flair_R4.h5"), read_raw(EXAMPLE / "flair_R4.h5")
    for a, b in zip(ours.slices, bundled.slices):
        assert np.array_equal(a.kspace, b.kspace) and np.array_equal(a.reference, b.reference)
