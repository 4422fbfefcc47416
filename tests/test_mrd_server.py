"""``dps-gadgetron mrd-serve`` against an MRD client this project did not write.

The client is ``../shared/thirdparty/python-ismrmrd-server/client.py`` (kspaceKelvin's
python-ismrmrd-server, MIT), run as its README says; these tests skip, saying so,
where that folder is absent.
"""

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import h5py
import ismrmrd
import numpy as np
import pytest

from gadgetron.external import constants, writers

from gadgets.mrd_server import MrdServer, ScanError, chain_path, overrides_from, parameters_from_json
from gadgets.replay import replay

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT.parent / "shared" / "thirdparty" / "python-ismrmrd-server" / "client.py"
EXAMPLE = ROOT / "models" / "data" / "examples" / "flair_R4.h5"
needs_client = pytest.mark.skipif(not CLIENT.is_file(), reason=f"third-party MRD client not found at {CLIENT}")


@pytest.fixture(scope="module")
def server():
    srv = MrdServer(port=0, idle_timeout=60)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    thread.join(timeout=30)


def run_client(port, config, out, workdir, parameters=None, raw=EXAMPLE):
    """The third-party client, from ``workdir`` (it reads ``<config>.json`` there as its configAdditional)."""
    if parameters is not None:
        (Path(workdir) / f"{config}.json").write_text(json.dumps({"parameters": parameters}))
    done = subprocess.run([sys.executable, str(CLIENT), "-a", "127.0.0.1", "-p", str(port), "-c", config,
                           "-o", str(out), "-G", "dataset", str(raw)], cwd=workdir, capture_output=True, text=True,
                          timeout=600)
    return done


def images(path, series=1):
    with h5py.File(path, "r") as f:
        if f"dataset/image_{series}" not in f:
            return []
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False, mode="r")
    out = [ds.read_image(f"image_{series}", i) for i in range(ds.number_of_images(f"image_{series}"))]
    ds.close()
    return out


@needs_client
def test_client_gets_one_flair_image_per_slice_equal_to_the_replay(server, tmp_path):
    parameters = {"num_steps": 2, "num_samples": 2}  # two samples: the std series travels too
    done = run_client(server.port, "dps_r4", tmp_path / "out.h5", tmp_path, parameters)
    assert done.returncode == 0, done.stderr[-2000:]
    got = images(tmp_path / "out.h5")
    assert [im.slice for im in got] == [0, 1]
    assert len(images(tmp_path / "out.h5", series=2)) == 2  # posterior std
    overrides = {f"gadgets.dps_recon.{k}": str(v) for k, v in parameters.items()}
    summary = replay(EXAMPLE, ROOT / "config_xml" / "dps_r4.xml", tmp_path / "replay.h5", overrides=overrides,
                     progress=False)
    assert summary.ok
    want = images(tmp_path / "replay.h5")
    for a, b in zip(got, want):
        assert np.array_equal(np.asarray(a.data), np.asarray(b.data))
        assert tuple(a.position) == tuple(b.position) and tuple(a.read_dir) == tuple(b.read_dir)
        meta = ismrmrd.Meta.deserialize(a.attribute_string)
        assert meta["GADGETRON_DataRole"] == "Image" and "FLAIR" in meta["SeriesDescription"]


def send_preamble(sock, config, header_xml):
    name = config.encode().ljust(1024, b"\0")
    sock.sendall(constants.GadgetMessageIdentifier.pack(1) + name)
    data = header_xml + b"\0"
    sock.sendall(constants.GadgetMessageIdentifier.pack(3) + constants.uint32.pack(len(data)) + data)


class _Out:
    def __init__(self, sock):
        self.sock = sock

    def write(self, data):
        self.sock.sendall(bytes(data))


@needs_client
def test_client_dropping_mid_stream_then_a_full_scan(server, tmp_path):
    ds = ismrmrd.Dataset(str(EXAMPLE), "dataset", create_if_needed=False, mode="r")
    header = ds.read_xml_header()
    acquisitions = [ds.read_acquisition(i) for i in range(20)]
    ds.close()
    failures = server.failures
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    send_preamble(sock, "dps_r4", header)
    for acq in acquisitions:
        writers.write_acquisition(_Out(sock), acq)
    sock.close()  # gone in the middle of the scan
    done = run_client(server.port, "dps_r4", tmp_path / "out.h5", tmp_path, {"method": "cg_sense"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert [im.slice for im in images(tmp_path / "out.h5")] == [0, 1]
    assert server.failures == failures  # a client that leaves is not the server's failure


@needs_client
@pytest.mark.parametrize("config, parameters, text", [
    ("no_such_chain", None, "unknown configuration 'no_such_chain'"),
    ("dps_r4", {"num_steps": "many"}, "num_steps"),
])
def test_a_failing_scan_answers_error_and_close_and_the_server_goes_on(server, tmp_path, config, parameters, text):
    done = run_client(server.port, config, tmp_path / "out.h5", tmp_path, parameters)
    assert done.returncode == 0  # the client finished: it got CLOSE
    log = done.stdout + done.stderr
    assert "ERROR" in log and text in log
    assert images(tmp_path / "out.h5") == []
    again = run_client(server.port, "reference_fully_sampled", tmp_path / "ok.h5", tmp_path,
                       raw=ROOT / "models" / "data" / "examples" / "flair_full.h5")
    assert again.returncode == 0 and len(images(tmp_path / "ok.h5")) == 2


def test_parameters_and_chain_names():
    assert parameters_from_json('{"parameters": {"zeta": 0.5}}') == {"zeta": 0.5}
    assert parameters_from_json("<configuration/>") is None and parameters_from_json("[1]") is None
    assert overrides_from({"zeta": 0.5, "output_std": True, "checkpoint": "/tmp/x", "config": "dps_r4"}) == {
        "gadgets.dps_recon.zeta": "0.5", "gadgets.dps_recon.output_std": "true"}
    assert chain_path("dps_r6").name == "dps_r6.xml" and chain_path("dps_r6.xml").name == "dps_r6.xml"
    for bad in ("../config_xml/dps_r4", "/etc/passwd", "", "nope"):
        with pytest.raises(ScanError, match="unknown configuration"):
            chain_path(bad)


def test_mrd_serve_binds_loopback_by_default():
    from gadgets.cli import build_parser

    args = build_parser().parse_args(["mrd-serve"])
    assert args.host == "127.0.0.1" and args.port == 9002
