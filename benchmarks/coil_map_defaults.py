"""Which coil-map method and support give the lowest CG-SENSE error?

Simulated scans of the brain phantom with scalp (``models.mri.coil_simulation``),
R-fold equispaced undersampling with a block of ACS lines, several SNRs, coil
counts and head sizes. For each scan, maps come from each method / setting and
CG-SENSE (``models.mri.recon.cg_sense``) reconstructs the image; NRMSE is taken
on magnitudes against the noiseless phantom (the simulated maps have unit RSS,
so the phantom is the target). Also printed: how much of the scalp the maps
keep (mean ``sum_c |S_c|^2`` over the scalp shell).

Prints a table and writes ``benchmarks/results/coil_map_defaults.md``.

    python benchmarks/coil_map_defaults.py            # full grid (a few minutes on 2 cores)
    python benchmarks/coil_map_defaults.py --quick    # one seed, one coil count
"""

import argparse
import logging
import os
import platform
import sys
import time
from collections import defaultdict

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models.mri.coil_maps import estimate_coil_maps  # noqa: E402
from models.mri.coil_simulation import brain_phantom, simulate_coil_maps, simulate_kspace  # noqa: E402
from models.mri.masks import create_mask_func  # noqa: E402
from models.mri.metrics import nrmse  # noqa: E402
from models.mri.recon import cg_sense  # noqa: E402

log = logging.getLogger("coil_map_defaults")

SETTINGS = [
    ("true maps (oracle)", None, {}),
    ("true maps x head support (oracle)", "support", {}),
    ("ESPIRiT hard crop 0.8 (BART default)", "espirit", {"crop": 0.8, "crop_mode": "hard"}),
    ("ESPIRiT hard crop 0.5", "espirit", {"crop": 0.5, "crop_mode": "hard"}),
    ("ESPIRiT hard crop 0.2", "espirit", {"crop": 0.2, "crop_mode": "hard"}),
    ("ESPIRiT soft 0.8 (BART -S)", "espirit", {"crop": 0.8, "crop_mode": "soft"}),
    ("ESPIRiT soft 0.5", "espirit", {"crop": 0.5, "crop_mode": "soft"}),
    ("ESPIRiT no crop", "espirit", {"crop_mode": "none"}),
    ("Walsh, no support", "walsh", {"support": 0.0}),
    ("Walsh, soft support 0.05", "walsh", {"support": 0.05}),
]


def hardware() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__} (CPU), {torch.get_num_threads()} threads"


def run(args):
    mask = create_mask_func("equispaced", args.acceleration, args.num_acs)(args.size)
    kmask = mask.mask.view(1, 1, 1, -1).to(torch.float32)
    acs = (mask.acs_start, mask.acs_start + args.num_acs)
    rows = []  # (scale, coils, snr, seed, setting, nrmse_fov, nrmse_head, scalp_kept)
    for scale in args.scales:
        for coils in args.coils:
            for snr in args.snrs:
                for seed in range(args.seeds):
                    gen = torch.Generator().manual_seed(1000 * seed + coils)
                    phantom = brain_phantom((args.size, args.size), generator=gen, scale=scale)
                    true_maps = simulate_coil_maps(coils, (args.size, args.size), gen,
                                                   ring_axes=(1.08 * scale, 0.92 * scale))
                    scan = simulate_kspace(phantom.image, true_maps, snr=snr, generator=gen)
                    kspace = scan.kspace * kmask
                    target = phantom.image.abs()
                    for name, method, options in SETTINGS:
                        if method is None:
                            maps = true_maps
                        elif method == "support":
                            maps = true_maps * phantom.support
                        else:
                            maps = estimate_coil_maps(kspace[0], method=method, acs=acs, **options)
                        image = cg_sense(kspace, maps[None], kmask, iterations=args.iterations)[0].abs()
                        head = phantom.support
                        rows.append((scale, coils, snr, seed, name,
                                     nrmse(target, image), nrmse(target * head, image * head),
                                     float(maps.abs().pow(2).sum(0)[phantom.scalp].mean())))
                    log.info("scale %.2f, %d coils, SNR %g, seed %d done", scale, coils, snr, seed)
    return rows


def tables(rows, args):
    names = [name for name, _, _ in SETTINGS]
    by_snr = defaultdict(list)
    overall = defaultdict(list)
    head = defaultdict(list)
    scalp = defaultdict(list)
    for scale, coils, snr, seed, name, fov, inside, kept in rows:
        by_snr[(name, snr)].append(fov)
        overall[name].append(fov)
        head[name].append(inside)
        scalp[name].append(kept)
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    header = ("| maps | " + " | ".join(f"NRMSE SNR {snr:g}" for snr in args.snrs)
              + " | NRMSE mean | NRMSE in head | scalp kept |")
    lines = [header, "|" + "---|" * (len(args.snrs) + 4)]
    for name in names:
        cells = [f"{mean(by_snr[(name, snr)]):.4f}" for snr in args.snrs]
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {mean(overall[name]):.4f} | {mean(head[name]):.4f} | {mean(scalp[name]):.2f} |")
    estimated = [name for name in names if not name.startswith("true")]
    best = min(estimated, key=lambda name: mean(overall[name]))
    bart = mean(overall[estimated[0]])
    return "\n".join(lines), best, mean(overall[best]), bart


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--coils", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--snrs", type=float, nargs="+", default=[10.0, 30.0, 100.0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.8],
                        help="head size relative to the default phantom (1.0 nearly fills the FOV)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--acceleration", type=int, default=4)
    parser.add_argument("--num-acs", type=int, default=24)
    parser.add_argument("--iterations", type=int, default=20, help="CG-SENSE iterations")
    parser.add_argument("--quick", action="store_true", help="one seed, 8 coils, head scale 1.0")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "results", "coil_map_defaults.md"))
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.coils, args.scales = 1, [8], [1.0]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    start = time.time()
    rows = run(args)
    table, best, best_value, bart = tables(rows, args)
    elapsed = time.time() - start
    summary = (f"Lowest mean NRMSE: **{best}** ({best_value:.4f}); BART's default hard crop 0.8: {bart:.4f} "
               f"({100 * (bart / best_value - 1):+.1f} % relative to the best).")
    print(table)
    print(summary)
    setup = (f"{args.size}x{args.size} brain phantom with scalp, head scales {args.scales}, coils {args.coils}, "
             f"SNR {args.snrs}, {args.seeds} seed(s) each; equispaced R={args.acceleration} with "
             f"{args.num_acs} ACS lines; CG-SENSE {args.iterations} iterations; NRMSE = ||(|x| - |x_ref|)|| / "
             f"||x_ref|| over the whole FOV (column 'in head': over the head support); 'scalp kept' = mean "
             f"sum_c |S_c|^2 over the scalp shell (1 = fully kept).")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as out:
        out.write("# Coil-map method and support vs CG-SENSE NRMSE\n\n")
        out.write(f"Command: `python benchmarks/coil_map_defaults.py {' '.join(sys.argv[1:])}`\n\n")
        out.write(f"Hardware: {hardware()}; run time {elapsed:.0f} s.\n\n")
        out.write(f"Setup: {setup}\n\n{table}\n\n{summary}\n")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
