"""The shipped chains under a real Gadgetron against ``dps-gadgetron replay``: agreement and seconds per
scan, in streaming mode and in server mode (``gadgetron`` + ``gadgetron_ismrmrd_client`` with the MRD
storage stand-in), and the ``<connect>`` chain with ``dps-gadgetron serve``. Needs a build of
``tools/build_gadgetron.sh`` (``DPS_GADGETRON_PREFIX``); the build's seconds come from its
``build/timings.log``.

    python benchmarks/real_gadgetron.py --out benchmarks/results/real_gadgetron.md
"""

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))

import test_real_gadgetron as real  # noqa: E402  (its helpers: home, server, client, output reader)
from mrd_storage_server import make_server  # noqa: E402

CASES = {"dps_r4 (as shipped)": ("flair_R4.h5", "dps_r4.xml"), "dps_r6 (as shipped)": ("flair_R6.h5", "dps_r6.xml"),
         "reference_fully_sampled": ("flair_full.h5", "reference_fully_sampled.xml")}


def compare(real_path, twin_path):
    a, b = real.read_images(real_path), real.read_images(twin_path)
    return a.shape, np.linalg.norm(a - b) / np.linalg.norm(b), np.abs(a - b).max() / np.abs(b).max()


def timed_replay(raw, chain, out):
    start = time.perf_counter()
    assert real.replay(raw, chain, out, progress=False).ok
    return time.perf_counter() - start


def streaming_rows():
    rows = []
    for name, (raw_name, chain) in CASES.items():
        raw = real.RAW.parent / raw_name
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / chain).write_text((ROOT / "config_xml" / chain).read_text())
            start = time.perf_counter()
            real.run_streaming(tmp, chain, raw, tmp / "g.h5")
            t_real = time.perf_counter() - start
            t_replay = timed_replay(raw, tmp / chain, tmp / "r.h5")
            real.assert_same_output(tmp / "g.h5", tmp / "r.h5", raw)  # headers, meta, geometry too
            rows.append(("streaming", name, raw_name, *compare(tmp / "g.h5", tmp / "r.h5"), t_real, t_replay))
    return rows


def server_rows():
    """Server mode: one Gadgetron, the storage stand-in, every chain by name, one client per scan."""
    storage = make_server("127.0.0.1", 0)
    threading.Thread(target=storage.serve_forever, daemon=True).start()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        chains = {chain: (ROOT / "config_xml" / chain).read_text() for _, chain in CASES.values()}
        server = real.GadgetronServer(tmp, chains, storage=real.storage_url(storage))
        try:
            for name, (raw_name, chain) in CASES.items():
                raw = real.RAW.parent / raw_name
                start = time.perf_counter()
                code, output = server.client(raw, chain, tmp / f"g_{chain}.h5")
                t_real = time.perf_counter() - start
                assert code == 0, output[-2000:]
                (tmp / chain).write_text(chains[chain])
                t_replay = timed_replay(raw, tmp / chain, tmp / f"r_{chain}.h5")
                real.assert_same_output(tmp / f"g_{chain}.h5", tmp / f"r_{chain}.h5", raw)
                rows.append(("server", name, raw_name, *compare(tmp / f"g_{chain}.h5", tmp / f"r_{chain}.h5"),
                             t_real, t_replay))
        finally:
            server.stop()
            storage.shutdown()
    return rows


def connect_rows():
    """``dps_r4_connect.xml`` (streaming) with ``dps-gadgetron serve`` holding the prior, against the replay
    of ``dps_r4.xml``: the resident server pays the prior's loading once, not per scan."""
    port = real.free_port()
    serve = subprocess.Popen([sys.executable, "-m", "gadgets.cli", "serve", "-p", str(port), "--preload", "shipped"],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        real.wait_for_port(port, serve, timeout=120)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            text = (ROOT / "config_xml" / "dps_r4_connect.xml").read_text()
            text = re.sub(r'<connect address="localhost" port="\d+"/>', f'<connect address="127.0.0.1" port="{port}"/>',
                          text)
            (tmp / "connect.xml").write_text(text)
            (tmp / "dps_r4.xml").write_text((ROOT / "config_xml" / "dps_r4.xml").read_text())
            start = time.perf_counter()
            real.run_streaming(tmp, "connect.xml", real.RAW, tmp / "g.h5")
            t_real = time.perf_counter() - start
            t_replay = timed_replay(real.RAW, tmp / "dps_r4.xml", tmp / "r.h5")
            real.assert_same_output(tmp / "g.h5", tmp / "r.h5", real.RAW)
            rows.append(("streaming, `<connect>` + serve", "dps_r4_connect vs dps_r4", "flair_R4.h5",
                         *compare(tmp / "g.h5", tmp / "r.h5"), t_real, t_replay))
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    return rows


def build_timings():
    log = real.PREFIX / "build" / "timings.log"
    return log.read_text().splitlines() if log.is_file() else []


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "real_gadgetron.md")
    p.add_argument("--timings", type=Path, action="append", default=[],
                   help="more build timings.log files to list (e.g. of a cold build into another prefix)")
    args = p.parse_args(argv)
    if real.PREFIX is None:
        sys.exit("no Gadgetron build found (tools/build_gadgetron.sh; DPS_GADGETRON_PREFIX)")
    commit = (real.PREFIX / "build" / "src" / "gadgetron" / ".source-commit").read_text().strip()
    rows = streaming_rows() + server_rows() + connect_rows()
    timings = build_timings() + [line for extra in args.timings for line in extra.read_text().splitlines()]
    lines = ["# The chains under a real Gadgetron", "",
             f"Made by `python benchmarks/real_gadgetron.py` on {platform.machine()} ({os.cpu_count()} cores); "
             f"Gadgetron {commit[:10]} (github.com/gadgetron/gadgetron, MIT) and ISMRMRD v1.14.1 built by "
             "`tools/build_gadgetron.sh` (CPU only, with its two patches).", "",
             "## Build", "", "Each run of the script appends its seconds per part to `build/timings.log` "
             "(steps: build steps that ran; a resumed or ccache-warm run runs fewer or faster ones):", "", "```"]
    lines += timings or ["(no timings.log: built before the script logged its timings)"]
    lines += ["```", "", "## Runs", "",
              "Streaming mode: `ismrmrd_hdf5_to_stream -i RAW --use-stdout | gadgetron -G HOME --from_stream -c CHAIN "
              "--parameter noisecovarianceout=FILE -d 1 | ismrmrd_stream_to_hdf5 --use-stdin -o OUT`. Server mode: "
              "`python tools/mrd_storage_server.py --port S &`, `gadgetron -G HOME -p P -E http://127.0.0.1:S`, then "
              "per scan `gadgetron_ismrmrd_client -p P -f RAW -c CHAIN -o OUT -G dataset`. Gadgetron's C++ "
              "NoiseAdjust, AsymmetricEchoAdjustRO, RemoveROOversampling, AcquisitionAccumulateTrigger and "
              "BucketToBuffer, our gadgets as external Python gadgets. Compared with `dps-gadgetron replay` of the same "
              "file and chain (Python twins of the standard gadgets), same seed: pixels, and every image's header "
              "(geometry, indices, series) and meta equal, geometry that of the raw file's acquisitions "
              "(`tests/test_real_gadgetron.assert_same_output`). Seconds include start-up (Gadgetron starts two "
              "Python interpreters per scan; replay one, in-process, and its prior loading).", "",
              "| mode | chain | raw file | images | NRMSE real vs replay | max diff / max | s Gadgetron | s replay |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {mode} | {n} | {r} | {s[0]} x {s[-2]}x{s[-1]} | {e:.1e} | {m:.1e} | {tr:.1f} | {tp:.1f} |"
              for mode, n, r, s, e, m, tr, tp in rows]
    lines += ["", "Server mode needs a storage server: Gadgetron's NoiseAdjust stores each scan's noise covariance "
              "there, and with storage disabled (`-d 1`) the store throws and no data reach the reconstruction "
              "(`gadgets.dps_recon` then reports `no slice arrived`; the client still exits 0). Gadgetron's own "
              "conda environment and images ship `mrd-storage-server`, which `gadgetron` starts from PATH; "
              "`tools/mrd_storage_server.py` stands in for it where it is missing."]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
