"""Training throughput of the prior: images per second for batch size, torch.compile and memory layout.

A lent GPU comes for minutes, so the pre-training should run in its fastest form.
This times the real training step (:func:`models.training.loop.optimisation_step`, the
one :class:`models.training.loop.Trainer` runs: EDM loss with the augmentation pipe,
backward, clipping, Adam, EMA) on random data in
the bank's shape, for each variant given as ``BATCH[:compile][:cl][:fp32]``
(``compile``: torch.compile of the network; ``cl``: channels-last memory format;
``fp32``: no bf16 autocast, which runs on CUDA and on a CPU with bf16 instructions).
Prints a table and writes it as Markdown and JSON.

Usage: python benchmarks/gpu_train_throughput.py [--preset cpu-small] [--seconds 8]
       [--variants 64 128 256 128:compile] [--out DIR]
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

from models.prior.augment import AugmentPipe  # noqa: E402
from models.prior.contrasts import ContrastVocabulary  # noqa: E402
from models.prior.ema import EMA  # noqa: E402
from models.prior.loss import EDMLoss  # noqa: E402
from models.prior.precond import EDMPrecond  # noqa: E402
from models.prior.unet import UNet, count_parameters, unet_preset  # noqa: E402
from models.training.config import TrainConfig  # noqa: E402
from models.training.loop import autocast_device, optimisation_step  # noqa: E402

log = logging.getLogger("gpu_train_throughput")


def parse_variant(text: str) -> dict:
    parts = text.split(":")
    flags = set(parts[1:])
    unknown = flags - {"compile", "cl", "fp32"}
    if unknown:
        raise SystemExit(f"unknown variant flags {sorted(unknown)} in {text!r}")
    return {"name": text, "batch": int(parts[0]), "compile": "compile" in flags,
            "channels_last": "cl" in flags, "amp": "fp32" not in flags}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_variant(variant: dict, preset: str, size: int, seconds: float, device: torch.device) -> dict:
    """Images per second of the training step, after warm-up (compile time reported apart)."""
    torch.manual_seed(0)
    vocabulary = ContrastVocabulary(["T1", "T2", "PD", "T1post"])
    augment = AugmentPipe(p=0.15)
    config = unet_preset(preset, size, label_dim=len(vocabulary), augment_dim=augment.augment_dim)
    model = EDMPrecond(UNet(config), sigma_data=0.5, vocabulary=vocabulary).to(device)
    if variant["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if variant["compile"] else model
    ema = EMA(model, halflife_images=50_000, rampup_ratio=0.05)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = EDMLoss()
    generator = torch.Generator(device=device).manual_seed(0)
    b = variant["batch"]
    images = torch.randn(b, 2, size, size, device=device) * 0.5
    if variant["channels_last"]:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.nn.functional.one_hot(torch.arange(b, device=device) % len(vocabulary), len(vocabulary)).float()
    autocast = autocast_device(device, variant["amp"], variant["amp"])

    def step():
        return optimisation_step(net, model, ema, optimizer, loss_fn, images, labels, augment, generator,
                                 autocast=autocast, grad_clip=TrainConfig.grad_clip)

    t0 = time.perf_counter()
    for _ in range(3):
        step()
    _sync(device)
    warmup = time.perf_counter() - t0
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        steps += 1
    _sync(device)
    elapsed = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return dict(variant, parameters=count_parameters(model), warmup_s=warmup, steps=steps,
                steps_per_s=steps / elapsed, images_per_s=steps * b / elapsed, peak_gib=peak)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seconds", type=float, default=8.0, help="timed seconds per variant")
    p.add_argument("--variants", nargs="+", default=["64", "128", "256", "128:cl", "128:compile"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, help="folder for gpu_train_throughput.md / .json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    rows = []
    for text in args.variants:
        variant = parse_variant(text)
        try:
            row = time_variant(variant, args.preset, args.size, args.seconds, device)
        except Exception as exc:  # one failing variant (e.g. compile) must not lose the others
            log.error("variant %s failed: %s", text, exc)
            row = dict(variant, error=str(exc)[:300])
        rows.append(row)
        log.info("%s", row)
    lines = [f"# Training throughput of the `{args.preset}` prior at {args.size}x{args.size}", "",
             f"Hardware: {hardware}; torch {torch.__version__}. One training step = EDM loss with augmentation, "
             "backward, Adam, EMA; bf16 autocast unless `fp32`.", "",
             "| variant | batch | compile | channels-last | bf16 | warm-up s | steps/s | images/s | peak GiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['batch']} | {r['compile']} | {r['channels_last']} | {r['amp']} | "
                         f"failed: {r['error'][:80]} | | | |")
        else:
            lines.append(f"| {r['name']} | {r['batch']} | {r['compile']} | {r['channels_last']} | {r['amp']} | "
                         f"{r['warmup_s']:.1f} | {r['steps_per_s']:.2f} | {r['images_per_s']:.0f} | "
                         f"{r['peak_gib']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_train_throughput.md").write_text(text)
        (args.out / "gpu_train_throughput.json").write_text(json.dumps({"hardware": hardware, "rows": rows},
                                                                       indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
