"""DPS on a GPU: slices per second for a whole stack, bf16 against float32, determinism.

Reconstructs a stack of held-out slices (simulated 12-coil scans, equispaced with
ACS) in one call, the way the DPS gadget passes a stack, and prints / writes:
seconds per slice and slices per second for bf16 autocast (the CUDA default) and
float32, the NRMSE of each against the truth, their difference, and whether two
runs with the same seed give the same image. Runs on the CPU too (small, for a
smoke test), where bf16 does not apply.

Usage: python benchmarks/gpu_dps_check.py --bank banks/flair_val.h5 [--prior PATH]
       [--slices 24] [--steps 100] [--acceleration 4] [--out DIR]
"""

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.prior.shipped import shipped_checkpoint  # noqa: E402
from models.data.slice_bank import read_slice_bank  # noqa: E402
from models.mri.metrics import nrmse  # noqa: E402
from models.mri.scan_simulation import simulate_undersampled_scan  # noqa: E402
from models.prior.checkpoint import load_prior  # noqa: E402
from models.reconstruction import ReconSettings, reconstruct  # noqa: E402

log = logging.getLogger("gpu_dps_check")


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bank", type=Path, required=True, help="slice bank with held-out slices (FLAIR)")
    p.add_argument("--prior", type=Path, default=None, help="checkpoint (default: the shipped prior)")
    p.add_argument("--slices", type=int, default=24, help="slices in the stack (repeats the bank if short)")
    p.add_argument("--steps", type=int, default=100, help="DPS steps (the chains' default)")
    p.add_argument("--acceleration", type=int, default=4)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=None, help="folder for gpu_dps_check.json / .md")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    device = torch.device(args.device)

    record = read_slice_bank(args.bank)
    n_bank = len(record.images)
    pick = [round(i * (n_bank - 1) / max(args.slices - 1, 1)) for i in range(args.slices)]
    truth = torch.from_numpy(record.images[pick])
    scan = simulate_undersampled_scan(truth, args.acceleration, coils=12, snr=30.0,
                                      generator=torch.Generator().manual_seed(0))
    prior_path = args.prior or shipped_checkpoint()
    prior, _ = load_prior(prior_path, device=device)
    kspace, maps = scan.kspace.to(device), scan.true_maps.to(device)
    mask = scan.mask.mask.to(device)

    def run(bf16: bool, steps: int, seed: int = 0):
        settings = ReconSettings(method="dps", contrast=str(record.contrast[0]), acceleration=args.acceleration,
                                 num_steps=steps, seed=seed, max_batch=args.slices, cuda_bf16=bf16)
        _sync(device)
        t = time.perf_counter()
        out = reconstruct(kspace, maps, mask, settings, prior=prior)
        _sync(device)
        return out.image.cpu(), time.perf_counter() - t

    run(True, 2)  # warm-up: CUDA context, cuDNN autotuning
    results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
               "torch": torch.__version__, "prior": str(prior_path), "slices": args.slices, "steps": args.steps,
               "acceleration": args.acceleration, "modes": {}}
    images = {}
    for name, bf16 in (("bf16", True), ("float32", False)):
        if name == "bf16" and device.type != "cuda":
            continue
        image, seconds = run(bf16, args.steps)
        again, _ = run(bf16, args.steps)
        score = float(sum(nrmse(truth[i], image[i]) for i in range(args.slices)) / args.slices)
        images[name] = image
        results["modes"][name] = {"seconds": seconds, "seconds_per_slice": seconds / args.slices,
                                  "slices_per_second": args.slices / seconds, "nrmse": score,
                                  "same_seed_max_abs_diff": float((image - again).abs().max())}
        log.info("%s: %.2f s for %d slices (%.2f slices/s), NRMSE %.4f, rerun max |diff| %.2e", name, seconds,
                 args.slices, args.slices / seconds, score, results["modes"][name]["same_seed_max_abs_diff"])
    if len(images) == 2:
        results["bf16_vs_float32_nrmse"] = float(sum(nrmse(images["float32"][i], images["bf16"][i])
                                                     for i in range(args.slices)) / args.slices)
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_dps_check.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
