"""Our gadgets and the standard-gadget twins, in-process (no socket)."""

import xml.etree.ElementTree as ET

import ismrmrd
import numpy as np
import pytest
from gadget_data import tiny_prior, write_raw
from gadgetron.types.recon_data import ReconData

from gadgets.coil_sensitivity import coil_sensitivity
from gadgets.connection import InProcessConnection
from gadgets.dps_recon import dps_recon, is_coil_map
from gadgets.errors import ChainConfigError, HeaderError
from gadgets.replay import read_raw
from gadgets.settings import CoilSensitivitySettings, DpsReconSettings, properties
from gadgets.standard import TWINS
from models.errors import CheckpointError, UnknownContrastError
from models.recon_settings import ReconSettings
from models.sampler.zeta import default_zeta

CHAIN_PROPS = {"AcquisitionAccumulateTriggerGadget": {"trigger_dimension": "repetition", "sorting_dimension": "slice"},
               "BucketToBufferGadget": {"split_slices": "true"}}


def config(**props):
    root = ET.Element("configuration")
    for k, v in props.items():
        ET.SubElement(root, "property", name=k, value=str(v))
    return root


def buffers(path):
    raw = read_raw(path)
    stream = raw.acquisitions()
    for name in ("NoiseAdjustGadget", "RemoveROOversamplingGadget", "AcquisitionAccumulateTriggerGadget",
                 "BucketToBufferGadget"):
        stream = TWINS[name](raw.header, CHAIN_PROPS.get(name, {})).process(stream)
    out = list(stream)
    header, header_bytes = raw.header, raw.header_bytes
    raw.close()
    return header, header_bytes, out


def run_gadget(gadget, items, header, cfg, **kwargs):
    out = []
    conn = InProcessConnection(items, header, cfg, out.append)
    gadget(conn, **kwargs)
    return out, conn


@pytest.fixture(scope="module")
def inline_scan(tmp_path_factory):
    return buffers(write_raw(tmp_path_factory.mktemp("raw") / "inline.h5", acceleration=2, mode="inline"))


@pytest.fixture(scope="module")
def maps_and_data(inline_scan):
    header, _, recon = inline_scan
    out, conn = run_gadget(coil_sensitivity, recon, header, config(method="walsh"))
    return header, out, conn


# ----------------------------------------------------------------------------- connection and settings

def test_in_process_connection_filters_to_sink():
    sink = []
    acq = ismrmrd.Acquisition.from_array(np.zeros((2, 4), np.complex64))
    image = ismrmrd.Image.from_array(np.zeros((4, 4), np.float32))
    conn = InProcessConnection([acq, image], None, None, sink.append)
    conn.filter(ismrmrd.Image)
    assert [mid for mid, _ in conn.iter_with_mids()] == [1022]
    assert sink == [acq]
    with pytest.raises(TypeError):
        conn.send(object())


def test_properties_from_element_text_and_legacy_form():
    assert properties(config(a=1, b="x")) == {"a": "1", "b": "x"}
    text = "<configuration><property><name>m</name><value>walsh</value></property></configuration>"
    assert properties(text) == {"m": "walsh"}
    assert properties(None) == {}


@pytest.mark.parametrize("props, word", [({"num_steps": "-1"}, "num_steps"), ({"device": "gpu"}, "device"),
                                         ({"method": "magic"}, "method"), ({"stepz": "5"}, "stepz"),
                                         ({"ushort": "maybe"}, "ushort")])
def test_bad_dps_properties_name_the_property(props, word):
    with pytest.raises(ChainConfigError, match=word):
        DpsReconSettings.from_config(config(**props))


def test_settings_parse_typed_values():
    s = DpsReconSettings.from_config(config(acceleration="4", zeta="auto", num_samples="3", ushort="true"))
    assert s.recon.acceleration == 4.0 and s.recon.zeta is None and s.recon.num_samples == 3 and s.ushort is True
    s = DpsReconSettings.from_config(config(acceleration="header", noise_variance="none", batch_slices="auto"))
    assert s.recon.acceleration is None and s.noise_variance == "none" and s.batch_slices is None
    s = DpsReconSettings.from_config(config(noise_variance="0.5", batch_slices="3", sigma_start="2", zeta=""))
    assert s.noise_variance == 0.5 and s.batch_slices == 3 and s.recon.sigma_start == 2.0
    assert s.recon.zeta is None  # empty: the default's word (auto)
    with pytest.raises(ChainConfigError, match="num_steps: empty value"):
        DpsReconSettings.from_config(config(num_steps=""))
    assert CoilSensitivitySettings.from_config(config(method="walsh")).method == "walsh"


# ----------------------------------------------------------------------------- standard twins

def test_noise_adjust_whitens_correlated_noise(tmp_path):
    header, _, _ = buffers(write_raw(tmp_path / "n.h5", slices=1))
    rng = np.random.default_rng(1)
    mix = np.array([[1.0, 0.0], [0.8, 0.6]])
    noise = ismrmrd.Acquisition.from_array((mix @ (rng.standard_normal((2, 4000)) + 1j * rng.standard_normal((2, 4000))))
                                           .astype(np.complex64))
    noise.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    noise.sample_time_us = 5.0
    data = ismrmrd.Acquisition.from_array((mix @ (rng.standard_normal((2, 4000)) + 1j * rng.standard_normal((2, 4000))))
                                          .astype(np.complex64))
    data.sample_time_us = 10.0
    out = list(TWINS["NoiseAdjustGadget"](header, {}).process([noise, data]))
    assert len(out) == 1  # the noise scan is consumed
    cov = np.cov(out[0].data)
    expected = 2 * 10.0 / 5.0 * 0.793  # Gadgetron's bandwidth scale, squared
    assert np.allclose(cov, expected * np.eye(2), atol=0.15 * expected)


def test_remove_oversampling_halves_readout_and_keeps_centre(tmp_path):
    header, _, _ = buffers(write_raw(tmp_path / "o.h5", slices=1))
    image = np.zeros((1, 64), np.complex64)
    image[0, 16:48] = np.arange(32)
    from models.mri.fft import fft2c_np, ifft2c_np

    acq = ismrmrd.Acquisition.from_array(fft2c_np(image[:, None, :])[:, 0, :].astype(np.complex64))
    acq.center_sample = 32
    out = next(TWINS["RemoveROOversamplingGadget"](header, {}).process([acq]))
    assert out.number_of_samples == 32 and out.center_sample == 16
    back = ifft2c_np(np.asarray(out.data)[:, None, :])[0, 0]
    assert np.allclose(back, np.arange(32), atol=1e-3)


def test_accumulate_routes_calibration_lines():
    def acq(flag=None, e1=0, slice_=0):
        a = ismrmrd.Acquisition.from_array(np.ones((1, 4), np.complex64))
        a.idx.kspace_encode_step_1, a.idx.slice = e1, slice_
        if flag:
            a.set_flag(flag)
        return a

    items = [acq(ismrmrd.ACQ_IS_NOISE_MEASUREMENT), acq(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION, 1),
             acq(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING, 2), acq(None, 3), acq(None, 4, slice_=1)]
    twin = TWINS["AcquisitionAccumulateTriggerGadget"](None, {"trigger_dimension": "slice",
                                                              "sorting_dimension": "slice"})
    first, second = list(twin.process(items))
    assert [a.idx.kspace_encode_step_1 for a in first.ref] == [1, 2]
    assert [a.idx.kspace_encode_step_1 for a in first.data] == [2, 3]
    assert [a.idx.kspace_encode_step_1 for a in second.data] == [4]
    with pytest.raises(ChainConfigError, match="n_acquisitions"):
        TWINS["AcquisitionAccumulateTriggerGadget"](None, {"trigger_dimension": "n_acquisitions"})


def test_bucket_to_buffer_layout(inline_scan):
    _, _, recon = inline_scan
    assert len(recon) == 2 and all(isinstance(r, ReconData) for r in recon)
    bit = recon[0].bits[0]
    assert bit.data.data.shape == (32, 32, 1, 4, 1, 1, 1)
    assert bit.data.data.dtype == np.complex64
    acquired = np.abs(bit.data.data).sum(axis=(0, 3))[:, 0, 0, 0, 0] > 0
    assert acquired[16] and acquired[10:22].all() and not acquired[1]  # ACS block + every 2nd line
    assert bit.ref is not None and (np.abs(bit.ref.data).sum(axis=(0, 3))[:, 0, 0, 0, 0] > 0).sum() == 12
    assert bit.data.headers[16, 0, 0, 0, 0].idx.kspace_encode_step_1 == 16
    assert list(bit.data.sampling.sampling_limits[1]) == [0, 16, 31]


def test_calibration_lines_without_parallel_imaging_is_header_error(tmp_path):
    with pytest.raises(HeaderError, match="parallelImaging"):
        buffers(write_raw(tmp_path / "p.h5", acceleration=2, parallel_imaging=False))


# ----------------------------------------------------------------------------- coil sensitivity gadget

def test_coil_sensitivity_sends_maps_then_data(maps_and_data):
    _, out, conn = maps_and_data
    assert not conn.errors
    kinds = [type(o).__name__ for o in out]
    assert kinds == ["ImageArray", "ReconData", "ImageArray", "ReconData"]
    maps = out[0]
    assert is_coil_map(maps) and maps.data.shape == (32, 32, 1, 4, 1, 1, 1) and maps.data.dtype == np.complex64
    meta = ismrmrd.Meta.deserialize(maps.meta[0])
    assert meta["DPS_MapStatus"] == "ok" and meta["DPS_MapKey"].startswith("bit=0;slice=0")
    norm = np.sqrt((np.abs(maps.data[16, 16, 0, :, 0, 0, 0]) ** 2).sum())
    assert 0.5 < norm < 1.5  # unit-norm maps inside the object
    assert out[1].bits[0].ref is not None  # the calibration lines travel on to the data term


def test_coil_sensitivity_missing_acs_loses_only_that_slice(tmp_path):
    header, _, recon = buffers(write_raw(tmp_path / "a.h5", acceleration=2, mode="inline"))
    recon[1].bits[0].ref = None
    data = np.array(recon[1].bits[0].data.data)
    data[:, 1::2] = 0  # keep every second line only: no contiguous ACS block left
    data[:, 15:17] = 0
    recon[1].bits[0].data.data = data
    out, conn = run_gadget(coil_sensitivity, recon, header, config(method="walsh"))
    assert [type(o).__name__ for o in out] == ["ImageArray", "ReconData"]
    assert len(conn.errors) == 1 and "slice 1" in conn.errors[0] and "MissingCalibration" in conn.errors[0]


# ----------------------------------------------------------------------------- reconstruction gadget

def test_dps_recon_images_have_geometry_and_meta(maps_and_data):
    header, maps_out, _ = maps_and_data
    images, conn = run_gadget(dps_recon, maps_out, header, config(method="cg_sense", acceleration=2, ushort="true"))
    assert not conn.errors and len(images) == 2
    first, second = images
    assert first.data.dtype == np.uint16 and first.data.shape == (1, 1, 32, 32)
    assert first.data.max() <= 4095 and first.data.max() > 3000
    assert tuple(first.matrix_size) == (32, 32, 1)
    assert tuple(second.position) == (0.0, 0.0, 5.0) and tuple(first.read_dir) == (1.0, 0.0, 0.0)
    assert np.allclose(tuple(first.field_of_view), (200.0, 200.0, 5.0))
    assert (first.image_index, second.image_index, first.image_series_index, second.slice) == (1, 2, 1, 1)
    meta = first.meta
    assert meta["GADGETRON_DataRole"] == "Image" and "R=2" in meta["GADGETRON_ImageComment"]
    for key in ("ImageProcessingHistory", "SeriesDescription", "WindowCenter", "WindowWidth"):
        assert key in meta
    # the phantom's inner ellipse is darker than the outer one: the image is not noise
    img = first.data[0, 0].astype(float)
    assert img[16, 16] > 0 and img[1, 1] < 0.1 * img.max()


def test_dps_recon_without_maps_reports_each_slice(inline_scan):
    header, _, recon = inline_scan
    images, conn = run_gadget(dps_recon, recon, header, config(method="cg_sense", acceleration=2))
    assert images == [] and len(conn.errors) == 1 and "2 slice(s) lost" in conn.errors[0]


def test_dps_with_tiny_prior_sends_std_series(maps_and_data, tmp_path):
    header, maps_out, _ = maps_and_data
    path = tiny_prior(tmp_path / "tiny.safetensors")
    cfg = config(method="dps", checkpoint=path, contrast="FLAIR", acceleration=2, num_steps=2, num_samples=2)
    images, conn = run_gadget(dps_recon, maps_out, header, cfg)
    assert not conn.errors
    assert [i.image_series_index for i in images] == [1, 2, 1, 2]
    assert images[1].meta["GADGETRON_DataRole"] == "PosteriorStd" and f"zeta={default_zeta(2, sampler='dds'):g}" in images[0].meta["GADGETRON_ImageComment"]


def test_unknown_contrast_and_missing_checkpoint_fail_the_scan(maps_and_data, tmp_path):
    header, maps_out, _ = maps_and_data
    path = tiny_prior(tmp_path / "tiny.safetensors")
    with pytest.raises(UnknownContrastError, match="DWI"):
        run_gadget(dps_recon, maps_out, header, config(checkpoint=path, contrast="DWI", acceleration=2))
    missing = tmp_path / "nothing.safetensors"
    out = []
    conn = InProcessConnection(maps_out, header, config(checkpoint=missing, acceleration=2), out.append)
    with pytest.raises(CheckpointError, match="nothing.safetensors"):
        dps_recon(conn)
    assert "nothing.safetensors" in conn.errors[0]


def test_chain_can_select_the_fast_sampler_and_cg_polish():
    from gadgets.errors import ChainConfigError
    from gadgets.settings import DpsReconSettings
    settings = DpsReconSettings.from_config({"sampler": "dds", "final_cg_iterations": "3", "acceleration": "4"})
    assert settings.recon.sampler == "dds" and settings.recon.final_cg_iterations == 3
    assert DpsReconSettings.from_config({"acceleration": "4"}).recon.sampler == "dds"
    with pytest.raises(ChainConfigError, match="sampler"):
        DpsReconSettings.from_config({"sampler": "ddim", "acceleration": "4"})


def test_gadget_properties_are_the_recon_schema():
    """gadgets.dps_recon reads ReconSettings' chain fields (one schema) plus its own; names never clash."""
    from gadgets.settings import PROPERTIES
    from models.settings_schema import schema_fields
    chain_fields = {f.name for f in schema_fields(ReconSettings, chain_only=True)}
    own = {f.name for f in schema_fields(DpsReconSettings)}
    assert chain_fields | own == set(PROPERTIES["gadgets.dps_recon"]) and not chain_fields & own
    assert {"method", "zeta", "num_steps", "sampler"} <= chain_fields and "max_batch" not in chain_fields
    defaults = DpsReconSettings.from_config({}).recon
    assert defaults == ReconSettings(), "a chain without properties must get the API's defaults"


def test_a_stream_without_slices_is_reported_not_counted_as_done(inline_scan):
    """Gadgetron's NoiseAdjust without a storage server forwards the header and nothing else: say so."""
    header, _, _ = inline_scan
    out, conn = run_gadget(dps_recon, [], header, config(method="cg_sense", acceleration=2))
    assert out == [] and conn.errors and "no slice arrived" in conn.errors[0]
