"""The chains under a real Gadgetron (C++), built from source by ``tools/build_gadgetron.sh``.

Streaming mode, as Gadgetron's own integration tests run it:
``ismrmrd_hdf5_to_stream | gadgetron --from_stream -c CHAIN | ismrmrd_stream_to_hdf5``. The
standard gadgets are Gadgetron's C++ ones (NoiseAdjust, AsymmetricEchoAdjustRO, RemoveROOversampling,
AcquisitionAccumulateTrigger, BucketToBuffer); our gadgets run as external Python gadgets started by
Gadgetron. The images must equal ``dps-gadgetron replay`` of the same chain (its Python twins of
the standard gadgets) to float precision.

Skipped with the reason when no build is found: set ``DPS_GADGETRON_PREFIX`` to the build's prefix
(default ``~/.cache/dps-gadgetron/gadgetron``, or ``runs/gadgetron`` of this checkout).
"""

import os
import re
import shutil
import subprocess
import sys
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


def gadgetron_home(tmp: Path, chain_name: str, chain_text: str) -> Path:
    """A Gadgetron home: ``lib/`` with the built gadget libraries, ``share/gadgetron/config/`` with the chain."""
    home = tmp / "home"
    (home / "lib").mkdir(parents=True)
    (home / "share" / "gadgetron" / "config").mkdir(parents=True)
    for lib in (PREFIX / "build" / "gadgetron").rglob("*.so"):
        (home / "lib" / lib.name).symlink_to(lib)
    (home / "share" / "gadgetron" / "config" / chain_name).write_text(chain_text)
    return home


def cut_chain(text: str, **props) -> str:
    """The chain with these ``gadgets.dps_recon`` properties changed."""
    head, marker, tail = text.partition('name="gadgets.dps_recon"')
    for name, value in props.items():
        tail, count = re.subn(rf'(<property name="{name}" value=")[^"]*(")', rf"\g<1>{value}\2", tail)
        assert count == 1, name
    return head + marker + tail


def read_images(path):
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    try:
        return np.stack([ds.read_image("image_1", i).data for i in range(ds.number_of_images("image_1"))])
    finally:
        ds.close()


def run_streaming(tmp: Path, chain_name: str, raw: Path, out: Path, check: bool = True):
    """Gadgetron's log (stderr) of the run; with ``check``, the pipeline must exit 0."""
    home = gadgetron_home(tmp, chain_name, (tmp / chain_name).read_text())
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE",
               LD_LIBRARY_PATH=f"{PREFIX / 'lib'}:{home / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}",
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")  # the Python gadgets run in this venv
    command = (f"'{PREFIX}/bin/ismrmrd_hdf5_to_stream' -i '{raw}' --use-stdout | "
               f"'{PREFIX}/build/gadgetron/apps/gadgetron/gadgetron' -G '{home}' -W '{tmp}/work' --from_stream "
               f"-c {chain_name} --parameter noisecovarianceout='{tmp}/noise.bin' -d 1 | "
               f"'{PREFIX}/bin/ismrmrd_stream_to_hdf5' --use-stdin -o '{out}'")
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], env=env, capture_output=True, text=True,
                          timeout=600)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done.returncode, done.stderr


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
    real, twin = read_images(tmp_path / "gadgetron.h5"), read_images(tmp_path / "replay.h5")
    assert real.shape == twin.shape and real.shape[0] == 2
    nrmse = np.linalg.norm(real - twin) / np.linalg.norm(twin)
    assert nrmse < 1e-3, f"real Gadgetron and the replay differ: NRMSE {nrmse:.2e}"


def test_a_bad_property_ends_the_stream_with_the_error(tmp_path):
    chain_name = "bad.xml"
    (tmp_path / chain_name).write_text(cut_chain((ROOT / "config_xml" / "dps_r4.xml").read_text(), num_steps=-1))
    code, log = run_streaming(tmp_path, chain_name, RAW, tmp_path / "gadgetron.h5", check=False)  # bounded
    assert code != 0, "Gadgetron ended the stream as if it had succeeded"
    assert "num_steps: must be >= 1" in log


def test_gadgetron_build_is_what_the_script_pins():
    pinned = re.search(r"GADGETRON_COMMIT=\$\{GADGETRON_COMMIT:-([0-9a-f]{40})",
                       (ROOT / "tools" / "build_gadgetron.sh").read_text()).group(1)
    marker = PREFIX / "build" / "src" / "gadgetron" / ".source-commit"
    if not marker.is_file():
        pytest.skip("the build's source folder carries no commit marker (built from a folder)")
    assert marker.read_text().strip() == pinned
    assert shutil.which("bash")
