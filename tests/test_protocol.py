"""Our gadgets behind gadgetron-python's own socket ``Connection``, driven by a peer speaking Gadgetron's side.

The peer (:class:`gadgets.peer.GadgetronPeer`) sends CONFIG, HEADER, messages and CLOSE with
gadgetron-python's writers and reads replies with its readers; the relay test passes what the
coil node sent, re-serialized, to the reconstruction node, as Gadgetron does between two externals.
"""

import copy
import socket
import threading
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from gadgetron.external import constants

from gadgets.coil_sensitivity import coil_sensitivity
from gadgets.dps_recon import dps_recon
from gadgets.peer import GadgetronPeer
from gadgets.server import GadgetServer
from gadget_data import write_raw
from test_gadgets import buffers


def cfg(**props):
    root = ET.Element("configuration")
    for k, v in props.items():
        ET.SubElement(root, "property", name=k, value=str(v))
    return ET.tostring(root)


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    return buffers(write_raw(tmp_path_factory.mktemp("p") / "s.h5", acceleration=2, mode="inline"))


@pytest.fixture
def server_factory():
    servers = []

    def start(handler):
        server = GadgetServer(handler, host="127.0.0.1", port=0, idle_timeout=20)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return server

    yield start
    for server, thread in servers:
        server.shutdown()
        thread.join(timeout=10)


def test_server_binds_loopback(server_factory):
    server = server_factory(coil_sensitivity)
    assert server.address[0] == "127.0.0.1"


def test_two_nodes_relay_maps_and_data_over_sockets(scan, server_factory):
    _, header_bytes, recon = scan
    coil = server_factory(coil_sensitivity)
    first = GadgetronPeer.connect("127.0.0.1", coil.port, timeout=60).run(cfg(method="walsh"), header_bytes, recon)
    assert first.closed_normally and not first.errors and first.failure is None
    assert [type(i).__name__ for i in first.items] == ["ImageArray", "ReconData"] * 2
    assert first.items[0].data.shape == (32, 32, 1, 4, 1, 1, 1)
    recon_node = server_factory(dps_recon)
    second = GadgetronPeer.connect("127.0.0.1", recon_node.port, timeout=60).run(
        cfg(method="cg_sense", acceleration=2), header_bytes, first.items)
    assert second.closed_normally and not second.errors
    assert len(second.items) == 2
    image = second.items[0]
    assert image.data.dtype == np.float32 and image.meta["GADGETRON_DataRole"] == "Image"
    assert tuple(image.read_dir) == (1.0, 0.0, 0.0) and image.slice == 0 and second.items[1].slice == 1


def test_lost_slice_surfaces_as_gadgetron_error_message(scan, server_factory):
    _, header_bytes, recon = scan
    bad = copy.deepcopy(recon[1])  # the scan fixture is shared by the module's tests: never change it
    data = np.array(bad.bits[0].data.data)
    data[3, :, 0, 0, 0, 0, 0] = np.nan  # every line: far more than a slice can lose
    bad.bits[0].data.data = data
    coil = server_factory(coil_sensitivity)
    result = GadgetronPeer.connect("127.0.0.1", coil.port, timeout=60).run(cfg(method="walsh"), header_bytes,
                                                                           [recon[0], bad])
    assert result.closed_normally
    assert len(result.items) == 2  # slice 0 still went through
    assert len(result.errors) == 1 and "slice 1" in result.errors[0] and "NaN" in result.errors[0]


def test_bad_config_reported_before_close(scan, server_factory):
    _, header_bytes, recon = scan
    node = server_factory(dps_recon)
    result = GadgetronPeer.connect("127.0.0.1", node.port, timeout=60).run(cfg(contrast=""), header_bytes, recon)
    assert result.items == [] and result.errors and "contrast" in result.errors[0]


def test_dropped_connection_does_not_hang_or_kill_the_server(scan, server_factory):
    _, header_bytes, recon = scan
    node = server_factory(coil_sensitivity)
    sock = socket.create_connection(("127.0.0.1", node.port), timeout=10)
    config = cfg(method="walsh")
    sock.sendall(constants.GadgetMessageIdentifier.pack(constants.GADGET_MESSAGE_CONFIG)
                 + constants.uint32.pack(len(config)) + config
                 + constants.GadgetMessageIdentifier.pack(constants.GADGET_MESSAGE_HEADER)
                 + constants.uint32.pack(len(header_bytes)) + header_bytes
                 + constants.GadgetMessageIdentifier.pack(constants.GADGET_MESSAGE_RECON_DATA) + b"\x01\x00")
    sock.close()  # dropped in the middle of a ReconData message
    deadline = time.time() + 15
    while node.failures == 0 and time.time() < deadline:
        time.sleep(0.1)
    assert node.failures == 1
    result = GadgetronPeer.connect("127.0.0.1", node.port, timeout=60).run(config, header_bytes, recon[:1])
    assert result.closed_normally and len(result.items) == 2


def test_execute_mode_under_python_m_gadgetron(scan, tmp_path):
    """What Gadgetron does for <execute>: listen, start ``python -m gadgetron PORT MODULE TARGET``, accept."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    _, header_bytes, recon = scan
    listener = socket.socket(socket.AF_INET)
    listener.bind(("127.0.0.1", 0))  # the child dials "localhost"
    listener.listen(1)
    listener.settimeout(30)
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""),
               GADGETRON_EXTERNAL_LOG_LEVEL="INFO")
    child = subprocess.Popen([sys.executable, "-m", "gadgetron", str(listener.getsockname()[1]),
                              "gadgets.coil_sensitivity", "coil_sensitivity"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        sock, _ = listener.accept()
        result = GadgetronPeer(sock, timeout=60).run(cfg(method="walsh"), header_bytes, recon[:1])
        assert result.closed_normally and [type(i).__name__ for i in result.items] == ["ImageArray", "ReconData"]
        assert child.wait(timeout=60) == 0
        assert child.stdout.read() == b""  # nothing on stdout: it would corrupt a real protocol
    finally:
        child.kill()
        listener.close()


def test_a_peer_gone_mid_scan_abandons_the_slices_held(scan, server_factory, caplog):
    """Gadgetron (or the machine under it) dies after sending a whole scan: the slices already in our socket
    buffer are abandoned at the next slice, not reconstructed for nobody (the old path reconstructed them
    all and only failed at the end, on reading past them)."""
    import logging

    from gadgets.peer import write_item

    _, header_bytes, recon = scan
    coil = server_factory(coil_sensitivity)
    relayed = GadgetronPeer.connect("127.0.0.1", coil.port, timeout=60).run(cfg(method="walsh"), header_bytes, recon)
    assert [type(i).__name__ for i in relayed.items] == ["ImageArray", "ReconData"] * 2
    node = server_factory(dps_recon)
    # room for the whole scan in the kernel's buffers (the accepted socket inherits the listener's), so the
    # close really comes before the gadget starts: otherwise it is a race with the first slice
    node.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)

    class Buffer:  # the whole scan in one send, so that the close follows it at once
        def __init__(self):
            self.data = bytearray()

        def write(self, data):
            self.data += bytes(data)

    stream = Buffer()
    config = cfg(method="cg_sense", acceleration=2, batch_slices=1)
    stream.write(constants.GadgetMessageIdentifier.pack(constants.GADGET_MESSAGE_CONFIG)
                 + constants.uint32.pack(len(config)) + config
                 + constants.GadgetMessageIdentifier.pack(constants.GADGET_MESSAGE_HEADER)
                 + constants.uint32.pack(len(header_bytes)) + header_bytes)
    for item in relayed.items:  # both slices, but no CLOSE: then the peer vanishes
        write_item(stream, item)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    sock.connect(("127.0.0.1", node.port))
    sock.sendall(stream.data)
    sock.close()
    with caplog.at_level(logging.INFO):
        deadline = time.time() + 30
        while node.failures == 0 and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.2)
    assert node.failures == 1
    text = caplog.text
    assert "PeerClosedError" in text and "abandoned" in text, text[-2000:]
    assert "reconstructed in" not in text  # not even the first slice: the peer was gone before it started
