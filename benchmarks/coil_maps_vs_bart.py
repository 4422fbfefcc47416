"""Our ESPIRiT maps against BART's ``ecalib`` on the same simulated k-space.

For each coil count, a brain phantom with scalp is simulated (R-fold equispaced,
ACS block, complex noise), written as BART ``.cfl`` (``models.mri.cfl``) and
calibrated by ``bart ecalib -m1`` with matching options. Printed per case:

- ``proj diff``: ``||P_ours - P_bart|| / ||P_bart||`` over the object, with
  ``P = S S^H`` the per-pixel projector (invariant to the maps' phase convention);
- ``coil-img diff``: relative error of BART's coil images ``S_bart x`` explained by
  our maps (``models.mri.coil_maps.coil_image_error``), over the object;
- ``err vs truth``: the same measure against the simulated maps, ours / BART's;
- ``eig diff``: max |eigenvalue difference| over the object (eigenvalue maps of both);
- ``support diff``: fraction of FOV pixels where one set of maps is cropped and the other is not;
- run times (BART includes process start and file I/O).

Needs the ``bart`` executable; writes ``benchmarks/results/coil_maps_vs_bart.md``.
"""

import argparse
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models.mri.cfl import kspace_to_bart, maps_from_bart, read_cfl, write_cfl  # noqa: E402
from models.mri.coil_maps import coil_image_error, espirit  # noqa: E402
from models.mri.coil_simulation import brain_phantom, simulate_coil_maps, simulate_kspace  # noqa: E402
from models.mri.masks import create_mask_func  # noqa: E402

log = logging.getLogger("coil_maps_vs_bart")

# (label, bart ecalib flags, our espirit options or None when we have no twin)
CASES = [
    ("hard crop 0.8 (defaults)", [], {"crop": 0.8, "crop_mode": "hard"}),
    ("soft crop 0.8 (-S)", ["-S"], {"crop": 0.8, "crop_mode": "soft"}),
    ("no crop (-c 0)", ["-c", "0"], {"crop": 0.0, "crop_mode": "hard"}),
    ("SURE soft-weighted kernels (-W) vs our hard 0.8", ["-W"], {"crop": 0.8, "crop_mode": "hard"}),
]


def projector(maps, region):
    return torch.einsum("chw,dhw->cdhw", maps, maps.conj())[:, :, region]


def bart_version() -> str:
    try:
        return subprocess.run(["bart", "version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def run_bart(flags, kspace_name, workdir):
    maps_name, eig_name = os.path.join(workdir, "s"), os.path.join(workdir, "e")
    start = time.time()
    proc = subprocess.run(["bart", "ecalib", "-m1", *flags, kspace_name, maps_name, eig_name],
                          capture_output=True, text=True)
    elapsed = time.time() - start
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        return None, None, elapsed, f"exit status {proc.returncode} {' '.join(message)}".strip()
    maps = maps_from_bart(read_cfl(maps_name))
    eig = torch.from_numpy(read_cfl(eig_name).real.reshape(maps.shape[-2:]).copy())
    return maps, eig, elapsed, None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--coils", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--snr", type=float, default=30.0)
    parser.add_argument("--acceleration", type=int, default=4)
    parser.add_argument("--num-acs", type=int, default=24)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "results", "coil_maps_vs_bart.md"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if shutil.which("bart") is None:
        parser.error("the `bart` executable is not on PATH (Debian package `bart`)")
    shape = (args.size, args.size)
    mask = create_mask_func("equispaced", args.acceleration, args.num_acs)(args.size)
    acs = (mask.acs_start, mask.acs_start + args.num_acs)
    lines = ["| coils | case | proj diff | coil-img diff | err vs truth (ours / BART) | eig diff | "
             "support diff | time ours / BART (s) |", "|---|---|---|---|---|---|---|---|"]
    notes = []
    for coils in args.coils:
        gen = torch.Generator().manual_seed(coils)
        phantom = brain_phantom(shape, generator=gen)
        true_maps = simulate_coil_maps(coils, shape, gen)
        kspace = simulate_kspace(phantom.image, true_maps, snr=args.snr, generator=gen).kspace[0] * mask.mask
        region = phantom.support
        with tempfile.TemporaryDirectory() as workdir:
            kname = os.path.join(workdir, "k")
            write_cfl(kname, kspace_to_bart(kspace))
            for label, flags, options in CASES:
                theirs, their_eig, bart_time, failure = run_bart(flags, kname, workdir)
                start = time.time()
                ours = espirit(kspace, acs=acs, **options)
                our_time = time.time() - start
                if failure is not None:
                    lines.append(f"| {coils} | {label} | bart failed | | | | | {our_time:.2f} / {bart_time:.2f} |")
                    notes.append(f"`bart ecalib -m1 {' '.join(flags)}` failed with {coils} coils: {failure}")
                    continue
                proj = float((projector(ours.maps, region) - projector(theirs, region)).norm()
                             / projector(theirs, region).norm())
                image = coil_image_error(ours.maps, theirs, phantom.image, region)
                truth = (coil_image_error(ours.maps, true_maps, phantom.image, region),
                         coil_image_error(theirs, true_maps, phantom.image, region))
                eig = float((ours.eigenvalues - their_eig)[region].abs().max())
                support = float(((ours.maps.abs().sum(0) > 0) != (theirs.abs().sum(0) > 0)).float().mean())
                lines.append(f"| {coils} | {label} | {proj:.4f} | {image:.4f} | {truth[0]:.4f} / {truth[1]:.4f} "
                             f"| {eig:.3f} | {support:.4f} | {our_time:.2f} / {bart_time:.2f} |")
                log.info("%d coils, %s done", coils, label)
    table = "\n".join(lines)
    print(table)
    for note in notes:
        print(note)
    hardware = f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, torch {torch.__version__}"
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as out:
        out.write("# ESPIRiT: ours vs BART ecalib\n\n")
        out.write(f"Command: `python benchmarks/coil_maps_vs_bart.py {' '.join(sys.argv[1:])}`\n\n")
        out.write(f"Hardware: {hardware}; BART {bart_version()} (Debian package).\n\n")
        out.write(f"Data: {args.size}x{args.size} brain phantom with scalp, simulated coils, SNR {args.snr:g}, "
                  f"equispaced R={args.acceleration} with {args.num_acs} ACS lines; both calibrate on the "
                  f"centred 24x24 block with 6x6 kernels and threshold 0.001. Differences are over the head.\n\n")
        out.write(table + "\n")
        if notes:
            out.write("\n" + "\n".join(f"- {note}" for note in notes) + "\n")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
