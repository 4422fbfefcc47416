"""What enters the data term: masks from acquisitions, partial echoes, the noise level, CG-SENSE's weight,
and the header faults that must stop a scan instead of reconstructing from a guessed mask."""

import ismrmrd
import numpy as np
import pytest
import torch

import external_corpus as corpus
from gadgets.errors import HeaderError
from gadgets.replay import replay
from gadgets.standard.asymmetric_echo import AsymmetricEchoAdjustRO
from gadgets.standard.noise_adjust import NoiseAdjust
from models.errors import MaskError
from models.mri.fft import fft2c
from models.mri.masks import mask_from_acquisitions
from models.mri.metrics import nrmse
from models.mri.noise import kspace_noise_variance, prewhitened_variance, resolve_noise_variance
from models.mri.recon import cg_sense, tikhonov_weight

from test_replay import CONFIG


def test_mask_from_acquisitions_marks_lines_and_their_readout_samples():
    mask = mask_from_acquisitions((6, 5), [(0, 0, 6), (3, 2, 6)])
    assert mask.dtype == bool and mask.shape == (6, 5)
    assert mask[:, 0].all() and not mask[:2, 3].any() and mask[2:, 3].all()
    assert mask.sum() == 6 + 4
    with pytest.raises(MaskError, match="e1=5"):
        mask_from_acquisitions((6, 5), [(5, 0, 6)])


def header(readout=16):
    xml = corpus.HEADER.format(name="t", coils=2, ro2=readout, ro=readout // 2, pe=8, fov_ro2=400, fov_ro=200,
                               fov_pe=200, e1_min=0, e1_max=7, e1_centre=4, ave_max=0, slice_max=0, r=2,
                               mode="embedded")
    return ismrmrd.xsd.CreateFromDocument(xml)


def acquisition(samples, centre, noise=False, dwell=5.0):
    acq = ismrmrd.Acquisition.from_array((np.arange(2 * samples) + 1).reshape(2, samples).astype(np.complex64))
    acq.center_sample = centre
    acq.sample_time_us = dwell
    if noise:
        acq.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    return acq


def test_asymmetric_echo_is_padded_where_the_samples_are_missing():
    twin = AsymmetricEchoAdjustRO(header(16), {})
    early, late, centred = (next(twin.process([a])) for a in (acquisition(12, 2), acquisition(12, 10),
                                                                acquisition(16, 8)))
    assert early.number_of_samples == 16 and early.center_sample == 8
    assert (early.discard_pre, early.discard_post) == (4, 0)
    assert np.all(early.data[:, :4] == 0) and np.all(early.data[:, 4:] != 0)
    assert (late.discard_pre, late.discard_post) == (0, 4) and np.all(late.data[:, 12:] == 0)
    assert centred.number_of_samples == 16 and centred.discard_pre == 0  # nothing to do
    noise = next(twin.process([acquisition(12, 2, noise=True)]))
    assert noise.number_of_samples == 12  # noise passes unchanged


def test_noise_scan_without_dwell_time_is_an_error_naming_it():
    noise = acquisition(64, 32, noise=True, dwell=0.0)
    noise.data[:] = np.random.default_rng(0).standard_normal((2, 64))
    noise.scan_counter = 7
    with pytest.raises(HeaderError, match="scan_counter 7.*sample_time_us"):
        list(NoiseAdjust(header(), {}).process([noise, acquisition(16, 8)]))
    whitened = list(NoiseAdjust(header(), {"noise_dwell_time_us_preset": "5"}).process([noise, acquisition(16, 8)]))
    assert len(whitened) == 1  # the preset supplies the noise dwell time


def test_noise_level_of_prewhitened_and_of_raw_data():
    generator = torch.Generator().manual_seed(0)
    variance = prewhitened_variance(0.793)
    noise = torch.randn(4, 64, 32, dtype=torch.complex64, generator=generator) * np.sqrt(variance)
    mask = torch.zeros(1, 32)
    mask[:, ::2] = 1
    estimate = kspace_noise_variance(noise * mask, mask)
    assert abs(estimate / variance - 1) < 0.15
    assert resolve_noise_variance(noise * mask, mask, 0.793).source == "prewhitened"
    raw = resolve_noise_variance(noise * mask * 1e3, mask, 0.793)  # scanner units: not prewhitened
    assert raw.source == "estimated" and abs(raw.variance / (variance * 1e6) - 1) < 0.15


def test_tikhonov_weight_follows_the_noise_and_improves_cg_sense():
    generator = torch.Generator().manual_seed(1)
    h = w = 48
    y, x = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    image = ((x ** 2 / 0.6 + y ** 2 / 0.8) < 1).to(torch.complex64)[None]
    maps = torch.stack([torch.exp(-((x - cx) ** 2 + (y - cy) ** 2)) for cx, cy in
                        ((1, 0), (-1, 0), (0, 1), (0, -1))]).to(torch.complex64)
    maps = (maps / maps.abs().pow(2).sum(0).sqrt())[None]
    mask = torch.zeros(1, 1, 1, w)
    mask[..., ::4] = 1
    mask[..., w // 2 - 4:w // 2 + 4] = 1
    clean = fft2c(maps * image[:, None]) * mask
    sigma2 = 1e-3
    noisy = clean + (torch.randn(clean.shape, dtype=torch.complex64, generator=generator) * sigma2 ** 0.5) * mask
    weight = tikhonov_weight(noisy, maps, mask, sigma2)
    assert weight.shape == (1,) and weight[0] > 0
    assert torch.allclose(tikhonov_weight(noisy, maps, mask, 4 * sigma2), 4 * weight)
    assert tikhonov_weight(noisy, maps, torch.ones(1, 1, 1, w), sigma2)[0] == 0  # fully sampled
    regularised = cg_sense(noisy, maps, mask, iterations=20, l2_weight=weight)
    plain = cg_sense(noisy, maps, mask, iterations=20)
    assert nrmse(image, regularised) < nrmse(image, plain)


def test_lines_outside_the_encoded_matrix_stop_the_scan(tmp_path):
    path = corpus.write_case(corpus.small(corpus.CASES["int_acs_12c_snr30"]), tmp_path)
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    xml = ds.read_xml_header().decode()
    ds.write_xml_header(xml.replace("<y>32</y>", "<y>24</y>", 1))  # the encoded matrix no longer holds every line
    ds.close()
    summary = replay(path, CONFIG / "dps_r4.xml", tmp_path / "o.h5", progress=False)
    assert summary.slices == 0
    assert any("outside the" in e and "kspace_encode_step_1" in e for e in summary.errors)
