"""``dps-gadgetron replay``: raw file -> chain -> ISMRMRD image file, and the bad-input catalogue."""

import argparse
import shutil
import subprocess
import threading
from pathlib import Path

import h5py
import ismrmrd
import numpy as np
import pytest

from gadgets import cli_replay
from gadgets.dps_recon import dps_recon
from gadgets.server import GadgetServer
from gadget_data import write_raw

CONFIG = Path(__file__).resolve().parents[1] / "config_xml"
FAST = ["gadgets.dps_recon.method=cg_sense"]


def replay(raw, chain, out, overrides=FAST, png=None):
    parser = argparse.ArgumentParser()
    cli_replay.add_arguments(parser)
    argv = [str(raw), "--config", str(chain), "--out", str(out), "--no-progress"]
    for item in overrides:
        argv += ["--set", item]
    if png:
        argv += ["--png", str(png)]
    return cli_replay.run(parser.parse_args(argv))


def read_images(path, series=1):
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    n = ds.number_of_images(f"image_{series}")
    images = [ds.read_image(f"image_{series}", i) for i in range(n)]
    ds.close()
    return images


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("replay")
    return {
        "prospective": write_raw(d / "r4.h5", acceleration=4, mode="separate"),
        "full": write_raw(d / "full.h5"),
        "nan": write_raw(d / "nan.h5", acceleration=2, nan_slice=1),
        "incomplete": write_raw(d / "inc.h5", acceleration=2, incomplete_slice=0),
        "dir": d,
    }


def test_prospective_replay_writes_images(files, capsys, caplog):
    out = files["dir"] / "out.h5"
    png = files["dir"] / "preview.png"
    assert replay(files["prospective"], CONFIG / "dps_r4.xml", out, png=png) == 0
    images = read_images(out)
    assert len(images) == 2 and images[1].slice == 1 and png.stat().st_size > 0
    assert "replay: 2/2 slices reconstructed" in (capsys.readouterr().err + caplog.text)


def test_fully_sampled_is_undersampled_by_the_chain_and_close_to_the_reference(files):
    ref, r4 = files["dir"] / "ref.h5", files["dir"] / "retro.h5"
    assert replay(files["full"], CONFIG / "reference_fully_sampled.xml", ref, overrides=[]) == 0
    assert replay(files["full"], CONFIG / "dps_r4.xml", r4) == 0
    a, b = read_images(ref)[0].data[0, 0], read_images(r4)[0].data[0, 0]
    assert int(read_images(r4)[0].meta["DPS_Lines"]) == 26  # of 32: 24 ACS (chain) + every 4th line outside
    nrmse = np.linalg.norm(a - b) / np.linalg.norm(a)
    assert nrmse < 0.25


def test_nan_line_is_dropped_and_the_slice_still_reconstructed(files, capsys, caplog):
    out = files["dir"] / "nan_out.h5"
    assert replay(files["nan"], CONFIG / "dps_r2.xml", out) == 0
    images = read_images(out)
    assert [im.slice for im in images] == [0, 1]
    meta = {im.slice: ismrmrd.Meta.deserialize(im.attribute_string) for im in images}
    assert "DPS_DroppedLines" not in meta[0]
    ds = ismrmrd.Dataset(str(files["nan"]), "dataset", create_if_needed=False, mode="r")
    acquisitions = [ds.read_acquisition(i) for i in range(ds.number_of_acquisitions())]
    ds.close()
    bad = [int(a.idx.kspace_encode_step_1) for a in acquisitions if not np.isfinite(a.data).all()]
    assert len(bad) == 1
    assert meta[1]["DPS_DroppedLines"] == str(bad[0])  # the one line holding NaN, by its E1
    assert "NaN" in str(meta[1]["GADGETRON_ImageComment"])
    err = (capsys.readouterr().err + caplog.text)
    assert "slice 1" in err and f"E1 [{bad[0]}]" in err and "LOST" not in err


def test_incomplete_slice_is_named(files, capsys, caplog):
    assert replay(files["incomplete"], CONFIG / "dps_r2.xml", files["dir"] / "inc_out.h5") == 1
    err = (capsys.readouterr().err + caplog.text)
    assert "slice 0" in err and "never completed" in err


def test_truncated_and_foreign_files(files, capsys, caplog):
    truncated = files["dir"] / "truncated.h5"
    data = Path(files["full"]).read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    assert replay(truncated, CONFIG / "dps_r4.xml", files["dir"] / "t.h5") == 2
    text = files["dir"] / "notes.h5"
    text.write_text("not an ismrmrd file")
    assert replay(text, CONFIG / "dps_r4.xml", files["dir"] / "t.h5") == 2
    other = files["dir"] / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    assert replay(other, CONFIG / "dps_r4.xml", files["dir"] / "t.h5") == 2
    err = (capsys.readouterr().err + caplog.text)
    assert "truncated" in err and "not an ISMRMRD raw file" in err


def test_header_without_encoding(files, capsys, caplog):
    bad = files["dir"] / "noenc.h5"
    shutil.copy(files["full"], bad)
    with h5py.File(bad, "r+") as f:
        xml = f["dataset/xml"][0]
        xml = xml.decode() if isinstance(xml, bytes) else xml
        start, end = xml.index("<encoding>"), xml.index("</encoding>") + len("</encoding>")
        del f["dataset/xml"]
        f.create_dataset("dataset/xml", data=[(xml[:start] + xml[end:]).encode()], dtype=h5py.string_dtype())
    assert replay(bad, CONFIG / "dps_r4.xml", files["dir"] / "t.h5") == 2
    assert "encoding" in (capsys.readouterr().err + caplog.text)


def test_missing_shipped_checkpoint_is_named(files, capsys, caplog, monkeypatch, tmp_path):
    import models.prior.shipped as pl

    monkeypatch.setattr(pl, "WEIGHTS_DIR", tmp_path / "weights")
    assert replay(files["prospective"], CONFIG / "dps_r4.xml", files["dir"] / "t.h5", overrides=[]) == 2
    err = (capsys.readouterr().err + caplog.text)
    assert "weights" in err and "checkpoint" in err


def test_connect_chain_replays_through_the_resident_server(files, tmp_path, monkeypatch):
    import models.prior.shipped as pl

    monkeypatch.setattr(pl, "WEIGHTS_DIR", tmp_path / "no_weights")  # a scan that fails must not stop the server
    server = GadgetServer(dps_recon, port=0, idle_timeout=30)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        chain = tmp_path / "connect.xml"
        chain.write_text((CONFIG / "dps_r4_connect.xml").read_text().replace('port="9003"', f'port="{server.port}"'))
        assert replay(files["prospective"], chain, tmp_path / "c.h5", overrides=[]) == 2  # no prior found
        chain.write_text(chain.read_text().replace('value="dps"', 'value="cg_sense"'))
        assert replay(files["prospective"], chain, tmp_path / "c.h5", overrides=[]) == 0
        assert len(read_images(tmp_path / "c.h5")) == 2
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.mark.skipif(shutil.which("ismrmrd_generate_cartesian_shepp_logan") is None,
                    reason="ismrmrd-tools (Debian) not installed")
def test_shepp_logan_from_ismrmrd_tools(tmp_path):
    raw = tmp_path / "sl.h5"
    subprocess.run(["ismrmrd_generate_cartesian_shepp_logan", "-m", "64", "-c", "4", "-a", "2", "-w", "16", "-C",
                    "-o", str(raw)], check=True, capture_output=True)
    assert replay(raw, CONFIG / "dps_r2.xml", tmp_path / "sl_out.h5") == 0
    images = read_images(tmp_path / "sl_out.h5")
    assert len(images) == 2  # two repetitions, calibration lines from the reference buffer
    assert images[0].data.shape == (1, 1, 64, 64)


def test_nifti_output_has_the_scan_geometry(tmp_path):
    nibabel = pytest.importorskip("nibabel", reason="nibabel not installed (pip install 'dps-gadgetron[data]')")
    example = CONFIG.parent / "models" / "data" / "examples" / "flair_R4.h5"
    parser = argparse.ArgumentParser()
    cli_replay.add_arguments(parser)
    args = parser.parse_args([str(example), "--config", str(CONFIG / "dps_r4.xml"), "--out", str(tmp_path / "i.h5"),
                              "--nifti", str(tmp_path / "i.nii.gz"), "--no-progress", "--set",
                              FAST[0]])
    assert cli_replay.run(args) == 0
    volume = nibabel.load(str(tmp_path / "i.nii.gz"))
    assert volume.shape == (128, 128, 2)
    # bundled scan: FOV 240 mm on 128 pixels, 5 mm slices with a 1 mm gap
    np.testing.assert_allclose(volume.header.get_zooms(), (240 / 128, 240 / 128, 6.0), rtol=1e-5)
    # readout anterior -> posterior, phase encode right -> left, slices head -> feet (simulator defaults)
    assert nibabel.aff2axcodes(volume.affine) == ("P", "L", "I")
    images = read_images(tmp_path / "i.h5")
    np.testing.assert_allclose(np.asarray(volume.dataobj)[:, :, 0], images[0].data[0, 0].T, rtol=1e-6)


def test_replay_while_another_reader_has_the_raw_file_open(files):
    """Raw files are opened read-only: a second replay of the same file (or a viewer holding it)
    must not be refused by HDF5's file lock."""
    out = files["dir"] / "out_shared.h5"
    with h5py.File(files["prospective"], "r"):  # another process reading the same raw file
        assert replay(files["prospective"], CONFIG / "dps_r4.xml", out) == 0
    assert len(read_images(out)) == 2
