"""The fastMRI reader on small synthetic files written in fastMRI's layout."""

import h5py
import ismrmrd
import numpy as np
import pytest
import torch

from models.data.fastmri import FASTMRI_CONTRASTS, coil_combined_images, read_fastmri, rss_images
from models.data.raw_simulator import RawProtocol, build_header
from models.errors import NonFiniteRawDataError, RawFileError, RawHeaderError, ShapeError
from models.mri.coil_simulation import brain_phantom, simulate_coil_maps
from models.mri.fft import fft2c_np

S, C, H, W = 3, 4, 32, 24  # recon matrix H x W; the file's readout is 2H


def _volume(seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = np.stack([brain_phantom((H, W), generator=generator).image.numpy() for _ in range(S)])
    maps = simulate_coil_maps(C, (H, W), generator=generator).numpy()  # RSS-normalised
    coil = maps[None] * images[:, None]  # [S, C, H, W]
    padded = np.zeros((S, C, 2 * H, W), np.complex64)
    padded[:, :, H // 2:H // 2 + H] = coil
    padded_maps = np.zeros((S, C, 2 * H, W), np.complex64)
    padded_maps[:, :, H // 2:H // 2 + H] = maps
    return images, padded_maps, fft2c_np(padded).astype(np.complex64)


def _write(path, kspace, rss=None, mask=None, acquisition="AXFLAIR", header=None):
    header = header or ismrmrd.xsd.ToXML(build_header(RawProtocol(), C, (H, W), S))
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=kspace)
        f.create_dataset("ismrmrd_header", data=header.encode())  # scalar bytes, as fastMRI stores it
        if rss is not None:
            f.create_dataset("reconstruction_rss", data=rss)
        if mask is not None:
            f.create_dataset("mask", data=mask)
        f.attrs["acquisition"] = acquisition
        f.attrs["patient_id"] = "abc123"
        f.attrs["max"] = float(np.abs(rss).max()) if rss is not None else 0.0
        f.attrs["norm"] = 1.0


@pytest.fixture(scope="module")
def fastmri_file(tmp_path_factory):
    images, maps, kspace = _volume()
    path = tmp_path_factory.mktemp("fastmri") / "file_brain_AXFLAIR_000.h5"
    _write(path, kspace, rss=np.abs(images).astype(np.float32))
    return path, images, maps, kspace


def test_reads_kspace_header_and_attributes(fastmri_file):
    path, _, _, kspace = fastmri_file
    volume = read_fastmri(path)
    assert volume.kspace.shape == (S, C, 2 * H, W) and volume.kspace.dtype == np.complex64
    assert np.array_equal(volume.kspace, kspace)
    assert volume.encoding.encoded_matrix == (2 * H, W, 1) and volume.encoding.recon_matrix == (H, W, 1)
    assert volume.acquisition == "AXFLAIR" and volume.contrast == "FLAIR"
    assert volume.attrs["patient_id"] == "abc123"
    assert volume.reconstruction_rss.shape == (S, H, W) and volume.mask is None
    assert volume.slice_indices == (0, 1, 2)
    assert volume.acquired_columns == (0, W)


def test_coil_combination_reproduces_the_reference_rss(fastmri_file):
    path, images, maps, _ = fastmri_file
    volume = read_fastmri(path)
    rss = coil_combined_images(volume)
    assert rss.shape == (S, H, W)
    assert np.abs(rss - volume.reconstruction_rss).max() < 1e-4
    combined = coil_combined_images(volume, maps)  # complex, with the true maps
    assert np.abs(combined - images).max() < 1e-4
    with pytest.raises(ShapeError):
        coil_combined_images(volume, maps[:, :2])


def test_slice_subset(fastmri_file):
    path, images, _, kspace = fastmri_file
    volume = read_fastmri(path, slices=[2, 0])
    assert volume.slice_indices == (2, 0)
    assert np.array_equal(volume.kspace[0], kspace[2]) and np.array_equal(volume.kspace[1], kspace[0])
    assert np.allclose(volume.reconstruction_rss[0], np.abs(images[2]))
    with pytest.raises(RawFileError, match="out of range"):
        read_fastmri(path, slices=[S])


def test_raw_slices_of_a_test_file_with_mask(tmp_path):
    _, _, kspace = _volume(1)
    mask = np.zeros(W, bool)
    mask[1::4] = True
    mask[W // 2 - 3:W // 2 + 3] = True
    path = tmp_path / "test_file.h5"
    _write(path, kspace * mask, mask=mask.astype(np.float32), acquisition="AXT1POST")
    volume = read_fastmri(path)
    assert volume.reconstruction_rss is None and volume.contrast == FASTMRI_CONTRASTS["AXT1POST"]
    assert np.array_equal(volume.sampling_mask(), mask)
    slices = volume.to_raw_slices()
    assert len(slices) == S and [s.slice for s in slices] == [0, 1, 2]
    first = slices[0]
    assert first.kspace.shape == (C, 2 * H, W) and np.array_equal(first.mask, mask)
    assert first.acs_range == (W // 2 - 3, W // 2 + 3)
    assert np.array_equal(np.flatnonzero(first.reference_mask), np.arange(W // 2 - 3, W // 2 + 3))
    assert np.array_equal(first.kspace[:, :, mask], kspace[0][:, :, mask])
    # Without a 'mask' dataset the sampled lines are the non-zero columns.
    _write(tmp_path / "nomask.h5", kspace * mask)
    assert np.array_equal(read_fastmri(tmp_path / "nomask.h5").sampling_mask(), mask)


def test_rss_images_crop():
    _, _, kspace = _volume(2)
    full = rss_images(kspace)
    assert full.shape == (S, 2 * H, W)
    assert np.allclose(rss_images(kspace, (H, W)), full[:, H // 2:H // 2 + H])


def test_padded_columns_from_encoding_limits(tmp_path):
    """fastMRI convention: columns outside the encoding limits are zero padding."""
    header = build_header(RawProtocol(), C, (H, W), S)
    limits = header.encoding[0].encodingLimits.kspace_encoding_step_1
    limits.maximum, limits.center = W - 5, W // 2 - 2  # 20 lines acquired, 2 padded on each side
    _, _, kspace = _volume()
    _write(tmp_path / "pad.h5", kspace, header=ismrmrd.xsd.ToXML(header))
    assert read_fastmri(tmp_path / "pad.h5").acquired_columns == (2, W - 2)


def test_bad_files(tmp_path, fastmri_file):
    with pytest.raises(RawFileError, match="does not exist"):
        read_fastmri(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(RawFileError, match="not an HDF5"):
        read_fastmri(tmp_path / "text.h5")
    with h5py.File(tmp_path / "nok.h5", "w") as f:
        f["ismrmrd_header"] = b"<x/>"
    with pytest.raises(RawFileError, match="no 'kspace'"):
        read_fastmri(tmp_path / "nok.h5")
    _write(tmp_path / "real.h5", np.zeros((1, C, 2 * H, W), np.float32))
    with pytest.raises(RawFileError, match="complex"):
        read_fastmri(tmp_path / "real.h5")
    _, _, kspace = _volume()
    _write(tmp_path / "badxml.h5", kspace, header="<ismrmrdHeader><oops")
    with pytest.raises(RawHeaderError):
        read_fastmri(tmp_path / "badxml.h5")
    poisoned = kspace.copy()
    poisoned[1, 0, 3, 4] = np.nan
    _write(tmp_path / "nan.h5", poisoned)
    with pytest.raises(NonFiniteRawDataError, match="slice 1"):
        read_fastmri(tmp_path / "nan.h5")
    _write(tmp_path / "mask.h5", kspace, mask=np.ones(W + 1))
    with pytest.raises(RawFileError, match="'mask' has"):
        read_fastmri(tmp_path / "mask.h5")
    path = tmp_path / "trunc.h5"
    path.write_bytes(fastmri_file[0].read_bytes()[: fastmri_file[0].stat().st_size // 2])
    with pytest.raises(RawFileError):
        read_fastmri(path)
