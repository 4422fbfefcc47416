"""The chains under a real Gadgetron (C++), built from source by ``tools/build_gadgetron.sh``.

Both ways Gadgetron runs a scan:

- streaming mode, as Gadgetron's own integration tests run it:
  ``ismrmrd_hdf5_to_stream | gadgetron --from_stream -c CHAIN | ismrmrd_stream_to_hdf5``;
- server mode, as a scanner does: ``gadgetron -p PORT -E STORAGE`` and ``gadgetron_ismrmrd_client``,
  with ``tools/mrd_storage_server.py`` as the storage server (NoiseAdjust stores the noise covariance
  there; without one it passes no data on).

The standard gadgets are Gadgetron's C++ ones (NoiseAdjust, AsymmetricEchoAdjustRO, RemoveROOversampling,
AcquisitionAccumulateTrigger, BucketToBuffer); our gadgets run as external Python gadgets started by
Gadgetron (``<execute>``) or in ``dps-gadgetron serve`` (``<connect>``). Images, their headers and meta
must equal ``dps-gadgetron replay`` of the same chain (its Python twins of the standard gadgets) to
float precision, and their geometry must be the raw file's.

Skipped with the reason when no build is found: set ``DPS_GADGETRON_PREFIX`` to the build's prefix
(default ``~/.cache/dps-gadgetron/gadgetron``, or ``runs/gadgetron`` of this checkout).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import ismrmrd
import numpy as np
import pytest

from gadgets.replay import replay

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "models" / "data" / "examples" / "flair_R4.h5"
CANDIDATES = [os.environ.get("DPS_GADGETRON_PREFIX"), Path.home() / ".cache" / "dps-gadgetron" / "gadgetron",
              ROOT / "runs" / "gadgetron"]


def find_prefix():
    for candidate in CANDIDATES:
        if candidate and (Path(candidate) / "build" / "gadgetron" / "apps" / "gadgetron" / "gadgetron").is_file() \
                and (Path(candidate) / "bin" / "ismrmrd_hdf5_to_stream").is_file():
            return Path(candidate)
    return None


PREFIX = find_prefix()
pytestmark = [pytest.mark.gadgetron,
              pytest.mark.skipif(PREFIX is None, reason="no Gadgetron build (tools/build_gadgetron.sh; "
                                                         "DPS_GADGETRON_PREFIX names its prefix)")]


GADGETRON = "build/gadgetron/apps/gadgetron/gadgetron"
CLIENT = "build/gadgetron/apps/clients/gadgetron_ismrmrd_client/gadgetron_ismrmrd_client"


def gadgetron_home(tmp: Path, chains: dict) -> Path:
    """A Gadgetron home: ``lib/`` with the built gadget libraries, ``share/gadgetron/config/`` with the chains
    (name -> XML text)."""
    home = tmp / "home"
    (home / "lib").mkdir(parents=True, exist_ok=True)
    (home / "share" / "gadgetron" / "config").mkdir(parents=True, exist_ok=True)
    for lib in (PREFIX / "build" / "gadgetron").rglob("*.so"):
        if not (home / "lib" / lib.name).exists():
            (home / "lib" / lib.name).symlink_to(lib)
    for name, text in chains.items():
        (home / "share" / "gadgetron" / "config" / name).write_text(text)
    return home


def gadgetron_env(home: Path) -> dict:
    return dict(os.environ, OMP_WAIT_POLICY="PASSIVE",
                LD_LIBRARY_PATH=f"{PREFIX / 'lib'}:{home / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}",
                PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")  # the Python gadgets run in this venv


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout:g} s")


def cut_chain(text: str, **props) -> str:
    """The chain with these properties of its last external node (``gadgets.dps_recon``, by execute or connect)
    changed."""
    head, marker, tail = text.rpartition("<external>")
    for name, value in props.items():
        tail, count = re.subn(rf'(<property name="{name}" value=")[^"]*(")', rf"\g<1>{value}\2", tail)
        assert count == 1, name
    return head + marker + tail


def read_output(path, group="dataset"):
    """(pixels, headers, meta) of every image in an ISMRMRD output file (all image series, in order)."""
    ds = ismrmrd.Dataset(str(path), group, create_if_needed=False)
    try:
        names = sorted(n for n in ds.list() if n.startswith("image_"))
        found = [ds.read_image(n, i) for n in names for i in range(ds.number_of_images(n))]
    finally:
        ds.close()
    if not found:
        return np.zeros((0,)), [], []
    return (np.stack([image.data for image in found]), [image.getHead() for image in found],
            [ismrmrd.Meta.deserialize(image.attribute_string) for image in found])


def read_images(path):
    return read_output(path)[0]


GEOMETRY = ("matrix_size", "field_of_view", "position", "read_dir", "phase_dir", "slice_dir", "patient_table_position")
INDICES = ("slice", "contrast", "phase", "repetition", "set", "average", "image_type", "image_index",
           "image_series_index", "data_type", "channels", "measurement_uid")


def assert_same_output(real_path, twin_path, raw: Path):
    """Pixels to float precision, headers equal, meta equal (numbers to 1e-3), geometry the raw file's."""
    real, real_heads, real_meta = read_output(real_path)
    twin, twin_heads, twin_meta = read_output(twin_path)
    assert len(real_heads) == len(twin_heads) > 0, f"{len(real_heads)} images from Gadgetron, {len(twin_heads)} replayed"
    assert real.shape == twin.shape
    nrmse = np.linalg.norm(real - twin) / np.linalg.norm(twin)
    assert nrmse < 1e-3, f"real Gadgetron and the replay differ: NRMSE {nrmse:.2e}"
    for i, (a, b) in enumerate(zip(real_heads, twin_heads)):
        for field in GEOMETRY:
            assert np.allclose(list(getattr(a, field)), list(getattr(b, field)), atol=1e-4), (i, field)
        for field in INDICES:
            assert getattr(a, field) == getattr(b, field), (i, field, getattr(a, field), getattr(b, field))
    for i, (a, b) in enumerate(zip(real_meta, twin_meta)):
        assert sorted(a.keys()) == sorted(b.keys()), (i, sorted(set(a.keys()) ^ set(b.keys())))
        for key in a.keys():
            va, vb = a[key], b[key]
            va, vb = (va if isinstance(va, list) else [va]), (vb if isinstance(vb, list) else [vb])
            try:
                assert np.allclose([float(v) for v in va], [float(v) for v in vb], rtol=1e-3), (i, key, va, vb)
            except ValueError:  # not numbers
                assert va == vb, (i, key, va, vb)
    assert_geometry_of_the_raw_file(real_heads, raw)


def assert_geometry_of_the_raw_file(heads, raw: Path):
    """Each image sits where the raw file's acquisitions of its slice were (not only where the replay put it)."""
    ds = ismrmrd.Dataset(str(raw), "dataset", create_if_needed=False)
    try:
        header = ismrmrd.xsd.CreateFromDocument(ds.read_xml_header())
        by_slice = {}
        for i in range(ds.number_of_acquisitions()):
            acq = ds.read_acquisition(i)
            if not acq.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
                by_slice.setdefault(acq.idx.slice, acq.getHead())
    finally:
        ds.close()
    space = header.encoding[0].reconSpace
    for head in heads:
        acq = by_slice[head.slice]
        for field in ("position", "read_dir", "phase_dir", "slice_dir", "patient_table_position"):
            assert np.allclose(list(getattr(head, field)), list(getattr(acq, field)), atol=1e-4), field
        assert list(head.matrix_size[:2]) == [space.matrixSize.x, space.matrixSize.y]
        assert np.allclose(list(head.field_of_view), [space.fieldOfView_mm.x, space.fieldOfView_mm.y,
                                                      space.fieldOfView_mm.z])


def run_streaming(tmp: Path, chain_name: str, raw: Path, out: Path, check: bool = True):
    """Gadgetron's log (stderr) of the run; with ``check``, the pipeline must exit 0."""
    home = gadgetron_home(tmp, {chain_name: (tmp / chain_name).read_text()})
    command = (f"'{PREFIX}/bin/ismrmrd_hdf5_to_stream' -i '{raw}' --use-stdout | "
               f"'{PREFIX}/{GADGETRON}' -G '{home}' -W '{tmp}/work' --from_stream "
               f"-c {chain_name} --parameter noisecovarianceout='{tmp}/noise.bin' -d 1 | "
               f"'{PREFIX}/bin/ismrmrd_stream_to_hdf5' --use-stdin -o '{out}'")
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], env=gadgetron_env(home), capture_output=True,
                          text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done.returncode, done.stderr


class GadgetronServer:
    """``gadgetron -p PORT`` on loopback with these chains installed; ``storage``: the storage server's URL,
    or None for ``-d 1`` (no storage). Its log goes to ``tmp/gadgetron.log``."""

    def __init__(self, tmp: Path, chains: dict, storage=None):
        self.tmp, self.port = tmp, free_port()
        self.home = gadgetron_home(tmp, chains)
        self.log_path = tmp / "gadgetron.log"
        storage_args = ["-E", storage] if storage else ["-d", "1"]
        self.process = subprocess.Popen([str(PREFIX / GADGETRON), "-G", str(self.home), "-W", str(tmp / "work"),
                                         "-p", str(self.port), *storage_args], env=gadgetron_env(self.home),
                                        stdout=self.log_path.open("w"), stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.process)

    def client(self, raw: Path, chain_name: str, out: Path, timeout: float = 300, wait: bool = True):
        """Run ``gadgetron_ismrmrd_client`` for one scan (the chain by name, from the server's home)."""
        command = [str(PREFIX / CLIENT), "-a", "127.0.0.1", "-p", str(self.port), "-f", str(raw), "-c", chain_name,
                   "-o", str(out), "-G", "dataset", "-t", str(int(timeout * 1000))]
        process = subprocess.Popen(command, env=gadgetron_env(self.home), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        if not wait:
            return process
        output, _ = process.communicate(timeout=timeout + 30)
        return process.returncode, output

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, *texts: str, timeout: float = 30.0) -> str:
        """The log once it holds every text: the client may return before the forked connection's Python
        gadgets have written their last lines."""
        deadline = time.monotonic() + timeout
        while not all(t in self.log() for t in texts) and time.monotonic() < deadline:
            time.sleep(0.2)
        return self.log()

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def storage():
    """The MRD storage stand-in (tools/mrd_storage_server.py) on a free loopback port, in a thread."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from mrd_storage_server import make_server
    finally:
        sys.path.pop(0)
    server = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def storage_url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


CASES = {  # name -> (raw file, chain, gadgets.dps_recon properties changed)
    "r4_dps": ("flair_R4.h5", "dps_r4.xml", {"num_steps": 3, "num_samples": 1}),
    "r4_cg_sense": ("flair_R4.h5", "dps_r4.xml", {"method": "cg_sense"}),
    "full_reference": ("flair_full.h5", "reference_fully_sampled.xml", {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_streaming_gadgetron_equals_the_replay(tmp_path, case):
    raw_name, chain, props = CASES[case]
    raw = RAW.parent / raw_name
    chain_name = f"{case}.xml"
    (tmp_path / chain_name).write_text(cut_chain((ROOT / "config_xml" / chain).read_text(), **props))
    _, log = run_streaming(tmp_path, chain_name, raw, tmp_path / "gadgetron.h5")
    assert "2 slice(s)" in log and "0 lost" in log, log[-3000:]
    ours = replay(raw, tmp_path / chain_name, tmp_path / "replay.h5", progress=False)
    assert ours.ok
    assert read_images(tmp_path / "gadgetron.h5").shape[0] == 2
    assert_same_output(tmp_path / "gadgetron.h5", tmp_path / "replay.h5", raw)


def test_a_bad_property_ends_the_stream_with_the_error(tmp_path):
    chain_name = "bad.xml"
    (tmp_path / chain_name).write_text(cut_chain((ROOT / "config_xml" / "dps_r4.xml").read_text(), num_steps=-1))
    code, log = run_streaming(tmp_path, chain_name, RAW, tmp_path / "gadgetron.h5", check=False)  # bounded
    assert code != 0, "Gadgetron ended the stream as if it had succeeded"
    assert "num_steps: must be >= 1" in log


def dps_chain(**props) -> str:
    return cut_chain((ROOT / "config_xml" / "dps_r4.xml").read_text(), **props)


def test_server_mode_with_a_storage_server_equals_the_replay(tmp_path, storage):
    (tmp_path / "r4.xml").write_text(dps_chain(num_steps=3, num_samples=1))
    server = GadgetronServer(tmp_path, {"r4.xml": (tmp_path / "r4.xml").read_text()}, storage=storage_url(storage))
    try:
        code, output = server.client(RAW, "r4.xml", tmp_path / "gadgetron.h5")
        assert code == 0, output[-2000:]
        log = server.wait_for_log("2 slice(s)", "0 lost")
    finally:
        server.stop()
    assert "2 slice(s)" in log and "0 lost" in log, log[-3000:]
    assert storage.RequestHandlerClass.store.find({"name": "noise_covariance"}), "NoiseAdjust stored nothing"
    assert replay(RAW, tmp_path / "r4.xml", tmp_path / "replay.h5", progress=False).ok
    assert_same_output(tmp_path / "gadgetron.h5", tmp_path / "replay.h5", RAW)


def test_server_mode_without_storage_says_no_slice_arrived(tmp_path):
    """NoiseAdjust cannot store the noise covariance and passes nothing on: the client still exits 0 with
    no image, so the only report is ours, in Gadgetron's log."""
    server = GadgetronServer(tmp_path, {"r4.xml": dps_chain(num_steps=3, num_samples=1)}, storage=None)
    try:
        server.client(RAW, "r4.xml", tmp_path / "gadgetron.h5")
        log = server.wait_for_log("no slice arrived")
    finally:
        server.stop()
    assert "no slice arrived" in log, log[-3000:]
    assert not (tmp_path / "gadgetron.h5").exists() or read_images(tmp_path / "gadgetron.h5").shape[0] == 0


def test_a_client_killed_mid_scan_leaves_the_server_serving(tmp_path, storage):
    """The client dies while the DPS gadget works on its scan; the next scan (while the orphan may still
    run) comes back whole and equal to the replay."""
    chains = {"long.xml": dps_chain(num_steps=40, num_samples=4), "cg.xml": dps_chain(method="cg_sense")}
    for name, text in chains.items():
        (tmp_path / name).write_text(text)
    server = GadgetronServer(tmp_path, chains, storage=storage_url(storage))
    try:
        doomed = server.client(RAW, "long.xml", tmp_path / "killed.h5", wait=False)
        deadline = time.monotonic() + 120
        while "steps=40" not in server.log():  # the DPS gadget has the scan
            assert time.monotonic() < deadline and doomed.poll() is None, server.log()[-3000:]
            time.sleep(0.2)
        time.sleep(1.0)
        doomed.kill()
        doomed.wait()
        code, output = server.client(RAW, "cg.xml", tmp_path / "after.h5", timeout=120)
        assert code == 0, output[-2000:] + server.log()[-3000:]
        assert server.process.poll() is None, "the server died"
    finally:
        server.stop()
    assert replay(RAW, tmp_path / "cg.xml", tmp_path / "replay.h5", progress=False).ok
    assert_same_output(tmp_path / "after.h5", tmp_path / "replay.h5", RAW)


@pytest.fixture
def resident_server():
    """``dps-gadgetron serve`` on a free port (the prior loaded once), for ``<connect>`` chains."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "gadgets.cli", "serve", "-p", str(port), "--preload", "shipped"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(port, process, timeout=120)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def test_connect_chain_with_the_resident_server_equals_the_execute_chain(tmp_path, resident_server):
    props = dict(num_steps=3, num_samples=1)
    connect = cut_chain((ROOT / "config_xml" / "dps_r4_connect.xml").read_text(), **props)
    connect, count = re.subn(r'<connect address="localhost" port="\d+"/>',
                             f'<connect address="127.0.0.1" port="{resident_server}"/>', connect)
    assert count == 1
    (tmp_path / "connect.xml").write_text(connect)
    (tmp_path / "execute.xml").write_text(dps_chain(**props))
    _, log = run_streaming(tmp_path, "connect.xml", RAW, tmp_path / "gadgetron.h5")
    assert replay(RAW, tmp_path / "execute.xml", tmp_path / "replay.h5", progress=False).ok
    assert_same_output(tmp_path / "gadgetron.h5", tmp_path / "replay.h5", RAW)


def test_gadgetron_build_is_what_the_script_pins():
    pinned = re.search(r"GADGETRON_COMMIT=\$\{GADGETRON_COMMIT:-([0-9a-f]{40})",
                       (ROOT / "tools" / "build_gadgetron.sh").read_text()).group(1)
    marker = PREFIX / "build" / "src" / "gadgetron" / ".source-commit"
    if not marker.is_file():
        pytest.skip("the build's source folder carries no commit marker (built from a folder)")
    assert marker.read_text().strip() == pinned
    assert shutil.which("bash")
