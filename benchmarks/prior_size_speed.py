"""How big may the prior be? DPS seconds per 128x128 slice for U-Net sizes, on this machine.

The product must reconstruct a 128x128 slice in under 30 s on 2 CPU cores at the
chains' default step count. The denoiser's cost grows with the network, so this bounds
the sizes worth comparing by validation NRMSE (issue 5: choose the model size by
validation NRMSE). Weights are random: the cost of a network does not depend on them.
It times the product's sampler (:func:`models.sampler.dps.dps_sample`, one forward and
one backward per step plus the Heun correction) with simulated coil maps and an equispaced R = 4 mask with 24 ACS lines.

A variant is ``NAME[:FIELD=VALUE,...]`` on top of ``--preset``, with ``channel_mult``
written as ``1-2-4-4``, e.g. ``wide:model_channels=24`` or ``deep:num_blocks=3``.

Usage: python benchmarks/prior_size_speed.py [--threads 2] [--steps 100]
       [--variants cpu-small wide:model_channels=24] [--out benchmarks/results/prior_size_speed.md]
"""

import argparse
import logging
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.mri.coil_simulation import simulate_coil_maps  # noqa: E402
from models.mri.masks import create_mask_func  # noqa: E402
from models.mri.operators import SenseOperator  # noqa: E402
from models.prior.augment import AugmentPipe  # noqa: E402
from models.prior.contrasts import ContrastVocabulary  # noqa: E402
from models.prior.precond import EDMPrecond  # noqa: E402
from models.prior.unet import UNet, count_parameters, unet_preset  # noqa: E402
from models.sampler.denoisers import PriorDenoiser  # noqa: E402
from models.sampler.dps import dps_sample  # noqa: E402
from models.sampler.zeta import TABLE_STEPS  # noqa: E402

log = logging.getLogger("prior_size_speed")

#: the shipped prior's slots; the conditioning's cost does not depend on which one is asked
VOCABULARY = ContrastVocabulary(["T1", "T2", "PD", "T1post", "FLAIR"])

DEFAULT_VARIANTS = ["cpu-small", "deep:num_blocks=3", "wide24:model_channels=24",
                    "wide32-top4:model_channels=32,channel_mult=1-2-4-4", "wide32:model_channels=32"]


def parse_variant(text: str) -> tuple:
    """``NAME[:FIELD=VALUE,...]`` -> ``(name, overrides)`` for :func:`unet_preset`."""
    name, _, fields = text.partition(":")
    overrides = {}
    for item in filter(None, fields.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"variant {text!r}: expected FIELD=VALUE, got {item!r}")
        overrides[key] = tuple(int(v) for v in value.split("-")) if key in ("channel_mult", "attn_resolutions") \
            else (float(value) if "." in value else int(value))
    return name, overrides


def time_variant(preset: str, overrides: dict, size: int, steps: int, coils: int) -> dict:
    augment_dim = AugmentPipe(p=0.0).augment_dim
    net = EDMPrecond(UNet(unet_preset(preset, size, label_dim=len(VOCABULARY), augment_dim=augment_dim,
                                      **overrides))).eval()
    generator = torch.Generator().manual_seed(0)
    maps = simulate_coil_maps(coils, (size, size), generator=generator).reshape(1, coils, size, size)
    mask = create_mask_func("equispaced", 4, 24)(size).mask.to(torch.float32).view(1, 1, 1, size)
    operator = SenseOperator(maps, mask)
    y = operator.forward(torch.randn(1, size, size, dtype=torch.complex64, generator=generator))
    denoiser = PriorDenoiser(net, VOCABULARY.one_hot(["FLAIR"]))
    start = time.perf_counter()
    result = dps_sample(denoiser, y, operator, zeta=0.45, num_steps=steps, generator=generator)
    return {"parameters": count_parameters(net), "seconds": time.perf_counter() - start, "nfe": result.nfe}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cpu-small", help="U-Net preset the variants start from")
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
    p.add_argument("--threads", type=int, default=2, help="torch threads (the target: 2 CPU cores)")
    p.add_argument("--steps", type=int, default=TABLE_STEPS, help="DPS steps (the chains' default)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--coils", type=int, default=12)
    p.add_argument("--budget", type=float, default=30.0, help="seconds per slice allowed")
    p.add_argument("--out", type=Path, help="write the table as Markdown here too")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    lines = [f"# DPS time per {args.size}x{args.size} slice by U-Net size", "",
             f"{args.steps} steps (NFE {2 * args.steps - 1}), {args.coils} coils, R = 4, random weights; "
             f"{platform.machine()} ({platform.processor() or 'cpu'}), torch {torch.__version__}, "
             f"{args.threads} threads. Budget: {args.budget:.0f} s per slice.", "",
             "| variant | overrides of " + args.preset + " | parameters | s/slice | within budget |",
             "|---|---|---|---|---|"]
    for text in args.variants:
        name, overrides = parse_variant(text)
        row = time_variant(args.preset, overrides, args.size, args.steps, args.coils)
        fits = "yes" if row["seconds"] <= args.budget else "no"
        lines.append(f"| {name} | {overrides or '-'} | {row['parameters'] / 1e6:.2f} M | {row['seconds']:.1f} | "
                     f"{fits} |")
        log.info("%s: %.2f M parameters, %.1f s per slice", name, row["parameters"] / 1e6, row["seconds"])
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
