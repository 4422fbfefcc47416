"""Provenance figures of a prior: unconditional samples per contrast and validation NRMSE.

Writes into OUT_DIR: ``samples.png`` (rows = contrasts, unconditional samples of
the prior; ``pretrain_samples.png`` likewise for ``--pretrained``) and
``validation.md`` (DPS vs CG-SENSE / CS NRMSE at R = 4 on the
validation individual's slices, with the prior's metadata and the hardware).

Usage: python tools/make_provenance.py PRIOR OUT_DIR
       [--val-bank banks/flair_val.h5] [--contrast FLAIR] [--slices 4]
"""

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.evaluation import load_test_slices, make_test_cases, run_method, summarize  # noqa: E402
from models.prior.checkpoint import load_prior  # noqa: E402
from models.reconstruction import ReconSettings  # noqa: E402
from models.sampler.unconditional import sample_prior  # noqa: E402
from models.tilings import PATCH_TILINGS  # noqa: E402

CHAIN_R4 = Path(__file__).resolve().parents[1] / "config_xml" / "dps_r4.xml"


def chain_settings(chain_path: Path = CHAIN_R4) -> ReconSettings:
    """The :class:`ReconSettings` a chain's ``gadgets.dps_recon`` runs with (the XML is their one source)."""
    from gadgets.chain import ExternalNode, parse_chain
    from gadgets.settings import parse_gadget_properties

    node = next(n for n in parse_chain(chain_path).nodes
                if isinstance(n, ExternalNode) and n.module == "gadgets.dps_recon")
    return parse_gadget_properties(node.module, node.configuration).recon


def chain_words(r: ReconSettings) -> str:
    """The chain's sampler settings in a few words, for a table row."""
    start = f"warm start at {r.sigma_start:g}" if r.sigma_start is not None else "from pure noise"
    return (f"{r.num_samples} draws of {r.num_steps} steps, eta {r.dds_eta:g}, churn {r.dds_churn:g}, {start}, "
            f"tiling {r.patch_tiling}")


def samples_png(prior, meta, path, per_contrast=4, steps=32, tiling="whole"):
    rows = []
    for k, contrast in enumerate(meta.contrasts):
        images = sample_prior(prior, contrast, per_contrast, tuple(meta.image_size), num_steps=steps,
                              generator=torch.Generator().manual_seed(k), patch_tiling=tiling).abs().numpy()
        rows.append(np.concatenate([np.clip(im / 1.1, 0, 1) for im in images], axis=1))
    grid = (np.concatenate(rows, axis=0) * 255).astype(np.uint8)
    Image.fromarray(grid).save(path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("prior")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--val-bank", default="banks/flair_val.h5")
    p.add_argument("--contrast", default="FLAIR")
    p.add_argument("--slices", type=int, default=4)
    p.add_argument("--steps", type=int, default=100, help="DPS steps (the table zeta is tuned for 100)")
    p.add_argument("--pretrained", help="the pre-trained prior it was fine-tuned from: its samples go to "
                   "pretrain_samples.png (fine-tuning moves every slot, so the source contrasts show best there)")
    p.add_argument("--no-samples", action="store_true", help="only validation.md (the sample grids are slow)")
    p.add_argument("--tiling", choices=PATCH_TILINGS, default="whole",
                   help="a patch prior's tiling for the samples (default: the chains' patch_tiling, whole)")
    args = p.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    prior, meta = load_prior(args.prior)
    if not args.no_samples:
        samples_png(prior, meta, args.out_dir / "samples.png", tiling=args.tiling)
    if args.pretrained and not args.no_samples:
        samples_png(*load_prior(args.pretrained), args.out_dir / "pretrain_samples.png", tiling=args.tiling)
    cases = make_test_cases(load_test_slices(args.val_bank, args.contrast, args.slices), 4, seed=1)
    chain = chain_settings()
    rows = {
        "CG-SENSE (8 it)": ReconSettings(method="cg_sense", cg_iterations=8),
        "L1-wavelet CS (lam 2e-3)": ReconSettings(method="cs", cs_lambda=2e-3),
        f"DPS, the paper's step ({args.steps} steps, table zeta)": ReconSettings(
            method="dps", sampler="dps", contrast=args.contrast, acceleration=4, num_steps=args.steps),
        "DDS with the API's defaults (20 steps, eta 1, 1 sample, table zeta)": ReconSettings(
            method="dps", sampler="dds", contrast=args.contrast, acceleration=4, num_steps=20),
        f"DDS as the chains run it ({CHAIN_R4.name}'s settings: {chain_words(chain)})":
            chain.with_changes(contrast=args.contrast, acceleration=4),
    }
    lines = [f"# Validation of `{Path(args.prior).name}`", "",
             f"Steps {meta.steps}; contrasts {meta.contrasts}; training {json.dumps(meta.training)}", "",
             f"R = 4 equispaced + 24 ACS, 12 simulated coils, SNR 30, ESPIRiT maps; {len(cases)} slices of "
             f"{args.val_bank} (validation individual, never trained on).", "",
             "| method | NRMSE | PSNR | SSIM | s/slice |", "|---|---|---|---|---|"]
    for name, settings in rows.items():
        s = summarize(run_method(cases, settings, prior))
        lines.append(f"| {name} | {s['nrmse']:.4f} ± {s['nrmse_std']:.4f} | {s['psnr']:.2f} | {s['ssim']:.4f} | "
                     f"{s['seconds']:.2f} |")
    lines += ["", f"Hardware: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
              f"({torch.get_num_threads()} threads)."]
    (args.out_dir / "validation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
