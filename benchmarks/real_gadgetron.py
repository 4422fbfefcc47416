"""The shipped chains under a real Gadgetron (streaming mode) against ``dps-gadgetron replay``: agreement
and seconds per scan. Needs a build of ``tools/build_gadgetron.sh`` (``DPS_GADGETRON_PREFIX``).

    python benchmarks/real_gadgetron.py --out benchmarks/results/real_gadgetron.md
"""

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import test_real_gadgetron as real  # noqa: E402  (its helpers: home, streaming run, image reader)

CASES = {"dps_r4 (as shipped)": ("flair_R4.h5", "dps_r4.xml"), "dps_r6 (as shipped)": ("flair_R6.h5", "dps_r6.xml"),
         "reference_fully_sampled": ("flair_full.h5", "reference_fully_sampled.xml")}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "real_gadgetron.md")
    args = p.parse_args(argv)
    if real.PREFIX is None:
        sys.exit("no Gadgetron build found (tools/build_gadgetron.sh; DPS_GADGETRON_PREFIX)")
    commit = (real.PREFIX / "build" / "src" / "gadgetron" / ".source-commit").read_text().strip()
    rows = []
    for name, (raw_name, chain) in CASES.items():
        raw = real.RAW.parent / raw_name
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / chain).write_text((ROOT / "config_xml" / chain).read_text())
            start = time.perf_counter()
            real.run_streaming(tmp, chain, raw, tmp / "g.h5")
            t_real = time.perf_counter() - start
            start = time.perf_counter()
            assert real.replay(raw, tmp / chain, tmp / "r.h5", progress=False).ok
            t_replay = time.perf_counter() - start
            a, b = real.read_images(tmp / "g.h5"), real.read_images(tmp / "r.h5")
            rows.append((name, raw_name, a.shape, np.linalg.norm(a - b) / np.linalg.norm(b),
                         np.abs(a - b).max() / np.abs(b).max(), t_real, t_replay))
    lines = ["# The chains under a real Gadgetron", "",
             f"Made by `python benchmarks/real_gadgetron.py` on {platform.machine()} ({os.cpu_count()} cores); "
             f"Gadgetron {commit[:10]} (github.com/gadgetron/gadgetron, MIT) and ISMRMRD v1.14.1 built by "
             "`tools/build_gadgetron.sh` (CPU only; 198 build steps in 411 s at nice 19 -j2 with ccache cold, "
             "ISMRMRD with its utilities 37 s more).", "",
             "Streaming mode: `ismrmrd_hdf5_to_stream -i RAW --use-stdout | gadgetron -G HOME --from_stream -c CHAIN "
             "--parameter noisecovarianceout=FILE -d 1 | ismrmrd_stream_to_hdf5 --use-stdin -o OUT`; Gadgetron's C++ "
             "NoiseAdjust, AsymmetricEchoAdjustRO, RemoveROOversampling, AcquisitionAccumulateTrigger and "
             "BucketToBuffer, our gadgets as external Python gadgets. Compared with `dps-gadgetron replay` of the same "
             "file and chain (Python twins of the standard gadgets), same seed. Seconds include start-up "
             "(Gadgetron starts two Python interpreters; replay one, in-process).", "",
             "| chain | raw file | images | NRMSE real vs replay | max diff / max | s Gadgetron | s replay |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {n} | {r} | {s[0]} x {s[-2]}x{s[-1]} | {e:.1e} | {m:.1e} | {tr:.1f} | {tp:.1f} |"
              for n, r, s, e, m, tr, tp in rows]
    lines += ["", "Server mode (`gadgetron` + `gadgetron_ismrmrd_client`) is not yet measured here: Gadgetron's "
              "NoiseAdjust stores the noise covariance in its storage server, and without one it forwards no "
              "data; `gadgets.dps_recon` now reports that (`no slice arrived`) instead of ending as if it had "
              "succeeded."]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
