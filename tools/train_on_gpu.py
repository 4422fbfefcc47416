"""Train every prior of the method's comparison in one lease of a GPU, on a time budget.

A lent GPU machine comes for minutes, bare, with no network. This script does, in
one command, what ``build_banks.sh`` plus ``dps-gadgetron train`` do over days on a
CPU:

1. renders the training banks (``build_banks.sh small`` sizes) from anatomy files
   copied to ``$DPS_ANATOMY_DIR`` (skipped for banks that exist);
2. meanwhile, measures DPS on the GPU (``benchmarks/gpu_dps_check.py``);
3. phase A, all at once on the one GPU (same U-Net, batch, seed and time budget):
   ``pretrain`` (T1/T2/PD/T1post), ``all_data`` (joint, every FLAIR subject),
   ``target_large`` (FLAIR only, every subject), ``target20`` (FLAIR, 20 subjects),
   ``joint20`` (other contrasts + 20 FLAIR subjects);
4. phase B, once ``pretrain`` is done: fine-tuning on the 20 FLAIR subjects at
   learning rates 1e-5 (the method) and 5e-5 / 1e-4 / 5e-4 (the ablation), with the
   DPS validation on the held-out individual at short intervals and the best
   checkpoint kept;
5. copies the best checkpoints and a tarball of the run logs to ``--export``.

Every training stops at its time budget (``TrainConfig.max_seconds``) with a
validation and a checkpoint; the step it reached is in its ``log.jsonl``.

Usage (from the repository root)::

    DPS_ANATOMY_DIR=... python tools/train_on_gpu.py --root gpu_runs --export OUT
"""

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Optional

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.training.loop import logged_step  # noqa: E402

log = logging.getLogger("train_on_gpu")

SOURCES = ["T1", "T2", "PD", "T1post"]
COMMON = dict(source_contrasts=SOURCES, target_contrast="FLAIR", preset="cpu-small", image_size=128,
              augment_p=0.15, ema_rampup_ratio=0.05, seed=0, fp16_export=True, amp=True, num_workers=0,
              log_every=50)
FINETUNE_LRS = {"finetune20": 1e-5, "finetune20_lr5e-5": 5e-5, "finetune20_lr1e-4": 1e-4, "finetune20_lr5e-4": 5e-4}


def render_banks(bank_dir: Path, workers: int, small: bool, pixel_mm=None):
    """The training banks; ``pixel_mm`` (lo, hi) draws each slice's pixel size, as ``PIXEL_MM`` does for
    ``build_banks.sh`` (the validation banks are not rendered here and keep the scans' pixels)."""
    from models.data.bank_builder import BankSpec, build_slice_bank
    per_source, slices = (24, 10) if small else (3, 1)
    pixel = tuple(float(v) for v in pixel_mm) if pixel_mm else None
    specs = {"pretrain": BankSpec("train", SOURCES, per_source, slices, pixel_mm_range=pixel),
             "flair_train": BankSpec("train", ["FLAIR"], per_source, slices, first_index=1000,
                                     pixel_mm_range=pixel)}
    for name, spec in specs.items():
        path = bank_dir / f"{name}.h5"
        if not path.exists():
            t = time.perf_counter()
            build_slice_bank(path, spec, workers=workers, progress=False)
            log.info("rendered %s in %.0f s", path, time.perf_counter() - t)


def unpack_anatomy(packed: Path, target: Path):
    """``packed/<source>/<file>.xz`` (xz to fit the transfer limit) -> ``target/<source>/<file>``.

    NIfTI files were packed uncompressed (``.nii.xz``) and are written back as ``.nii.gz``.
    """
    import gzip
    import lzma
    for path in sorted(packed.glob("*/*.xz")):
        name = path.name[:-3]
        data = lzma.decompress(path.read_bytes())
        out = target / path.parent.name / (name + ".gz" if name.endswith(".nii") else name)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(gzip.compress(data, compresslevel=1) if name.endswith(".nii") else data)
    log.info("unpacked anatomy files from %s into %s", packed, target)


PHASE_A = ("pretrain", "all_data", "target_large", "target20", "joint20")


def phase_a_configs(banks: Path, batch: int, seconds: float) -> dict:
    base = dict(COMMON, batch_size=batch, total_steps=1_000_000, max_seconds=seconds, lr_rampup_steps=200,
                ema_halflife_images=50_000, val_every=500, checkpoint_every=500, val_metric="dps", val_slices=8,
                val_data=str(banks / "flair_val.h5"))
    joint_bank = str(banks / "pretrain+flair_train.h5")
    return {
        "pretrain": dict(base, mode="pretrain", data=str(banks / "pretrain.h5"), val_metric="denoise",
                         val_slices=12, val_data=str(banks / "pretrain_val.h5")),
        "all_data": dict(base, mode="joint", data=joint_bank, num_target_subjects=None),
        "target_large": dict(base, mode="scratch", data=str(banks / "flair_train.h5"), num_target_subjects=None),
        "target20": dict(base, mode="scratch", data=str(banks / "flair_train.h5"), num_target_subjects=20),
        "joint20": dict(base, mode="joint", data=joint_bank, num_target_subjects=20),
    }


def set_pretrain_options(configs: dict, warm_start: Optional[Path], lr: Optional[float]) -> None:
    """The pre-training alone continues from ``warm_start`` and may take another learning rate;
    the other phase-A trainings of the comparison keep their defaults."""
    if warm_start:
        configs["pretrain"]["warm_start"] = str(Path(warm_start).resolve())
    if lr:
        configs["pretrain"]["lr"] = float(lr)


def phase_b_configs(banks: Path, init: Path, batch: int, seconds: float, val_every: int) -> dict:
    base = dict(COMMON, mode="finetune", data=str(banks / "flair_train.h5"), val_data=str(banks / "flair_val.h5"),
                init_checkpoint=str(init), num_target_subjects=20, batch_size=batch, total_steps=1_000_000,
                max_seconds=seconds, lr_rampup_steps=5, ema_halflife_images=2000, val_every=val_every,
                checkpoint_every=10 * val_every, val_metric="dps", val_slices=8,
                compile=False)  # a short run: compiling would cost more than it saves
    return {name: dict(base, lr=lr) for name, lr in FINETUNE_LRS.items()}


SMOKE = False
VAL_METRIC = "dps"


def launch(root: Path, name: str, config: dict) -> subprocess.Popen:
    if SMOKE:  # CPU test of this script: validate on two slices
        config = dict(config, val_slices=2)
    if VAL_METRIC != "dps":
        config = dict(config, val_metric=VAL_METRIC)
    run_dir = root / name
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "launch.yaml"
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONUNBUFFERED="1")
    out = open(run_dir / "train.log", "w")
    cmd = [sys.executable, "-m", "gadgets.cli", "train", config["mode"], "--config", str(cfg_path),
           "--run-dir", str(run_dir), "--no-progress"]
    log.info("launch %s: %s", name, " ".join(cmd))
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=Path("gpu_runs"), help="run directories go here")
    p.add_argument("--banks", type=Path, default=Path("banks"))
    p.add_argument("--export", type=Path, required=True, help="folder for the checkpoints and logs to keep")
    p.add_argument("--phase-a-seconds", type=float, default=300)
    p.add_argument("--phase-b-seconds", type=float, default=90)
    p.add_argument("--finetune-val-every", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="torch.compile the networks (TrainConfig.compile)")
    p.add_argument("--margin", type=float, default=60,
                   help="seconds kept free for start-ups, validations and the export")
    p.add_argument("--batch", type=int, default=64, help="batch of the phase-A trainings (256 with --compile "
                   "ran fastest on an H200: benchmarks/results/gpu_train_throughput.md)")
    p.add_argument("--finetune-batch", type=int, help="batch of the phase-B fine-tunings (default: --batch)")
    p.add_argument("--prior", choices=("image", "patch"), default="image",
                   help="the denoiser's kind for every training: whole slices, or PaDIS-style patches "
                        "(models/prior/patches.py; sizes 16/32/64)")
    p.add_argument("--pixel-mm", type=float, nargs=2, metavar=("LO", "HI"),
                   help="draw each training slice's pixel size in this range (the shipped patch prior: 0.9 2.0)")
    p.add_argument("--preset", default="cpu-small", help="U-Net preset (tiny for a CPU test of this script)")
    p.add_argument("--deadline", type=float, default=540, help="kill whatever still runs after this many seconds")
    p.add_argument("--render-workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    p.add_argument("--smoke", action="store_true", help="tiny banks (CPU test of this script)")
    p.add_argument("--trainings", nargs="+", default=list(PHASE_A),
                   help="phase-A trainings to run (default: all five); 'pretrain' alone gives the shipped "
                        "prior the GPU to itself")
    p.add_argument("--finetunes", nargs="+", default=list(FINETUNE_LRS), choices=list(FINETUNE_LRS),
                   help="phase-B fine-tunings to run (default: all four learning rates)")
    p.add_argument("--pretrain-warm-start", type=Path, help="continue the pre-training from these weights "
                   "(e.g. models/weights/provenance/pretrain_gpu_step986.safetensors)")
    p.add_argument("--pretrain-lr", type=float, help="learning rate of the pre-training (default: the "
                   "method's 1e-4); the provenance README says why a batch of 256 takes more")
    p.add_argument("--packed-anatomy", type=Path, help="folder of .xz anatomy files to unpack into "
                   "$DPS_ANATOMY_DIR first")
    p.add_argument("--check-steps", type=int, default=100, help="DPS steps of the GPU check (0: skip it)")
    args = p.parse_args(argv)
    COMMON["preset"] = args.preset
    COMMON["prior"] = {"kind": args.prior}
    COMMON["compile"] = args.compile
    global SMOKE
    SMOKE = args.smoke
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    args.root.mkdir(parents=True, exist_ok=True)
    args.export.mkdir(parents=True, exist_ok=True)

    if args.packed_anatomy:
        from models.data.sources import ANATOMY_DIR_ENV
        unpack_anatomy(args.packed_anatomy, Path(os.environ[ANATOMY_DIR_ENV]))
    check = None
    if args.check_steps:
        check = subprocess.Popen([sys.executable, "benchmarks/gpu_dps_check.py", "--bank",
                                  str(args.banks / "flair_val.h5"), "--steps", str(args.check_steps),
                                  "--slices", "24" if not args.smoke else "2", "--out", str(args.root)],
                                 cwd=REPO, stdout=open(args.root / "gpu_dps_check.log", "w"),
                                 stderr=subprocess.STDOUT)
    render_banks(args.banks, args.render_workers, small=not args.smoke, pixel_mm=args.pixel_mm)
    from models.experiments.banks import concatenate_banks
    joint = args.banks / "pretrain+flair_train.h5"
    if not joint.exists() and {"all_data", "joint20"} & set(args.trainings):
        concatenate_banks([args.banks / "pretrain.h5", args.banks / "flair_train.h5"], joint)
    global VAL_METRIC
    if check is not None and check.wait() != 0:
        # DPS on this device failed (see gpu_dps_check.log): validate by the denoising loss instead
        # of losing every training at its first validation
        log.error("GPU DPS check failed: trainings validate with the denoising loss")
        VAL_METRIC = "denoise"
    log.info("banks and GPU check done at %.0f s", time.perf_counter() - start)

    # phase A gets what is left once phase B and a margin for validation, export and a late
    # start are set aside (bank rendering time varies with the machine)
    elapsed = time.perf_counter() - start
    phase_a = min(args.phase_a_seconds, args.deadline - elapsed - args.phase_b_seconds - args.margin)
    if phase_a < 30:
        log.error("only %.0f s left for phase A: increase --deadline", phase_a)
        return 1
    log.info("phase A: %.0f s per training", phase_a)
    configs = phase_a_configs(args.banks, args.batch, phase_a)
    set_pretrain_options(configs, args.pretrain_warm_start, args.pretrain_lr)
    procs = {name: launch(args.root, name, configs[name]) for name in args.trainings}
    try:
        wait(procs, args, start)
    finally:
        summary = {name: {"returncode": proc.poll(), "step": logged_step(args.root / name)}
                   for name, proc in procs.items()}
        summary["seconds"] = time.perf_counter() - start
        summary["phase_a_seconds"] = phase_a
        (args.root / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        log.info("summary: %s", summary)
        export(args.root, args.export)
    return 0


def wait(procs: dict, args, start: float) -> None:
    """Start phase B when pretrain ends; return when all have ended or at the deadline."""
    phase_b_started = False
    while True:
        elapsed = time.perf_counter() - start
        if not phase_b_started and "pretrain" in procs and procs["pretrain"].poll() is not None:
            phase_b_started = True
            init = args.root / "pretrain" / "best.safetensors"
            if init.exists():
                for name, cfg in phase_b_configs(args.banks, init, args.finetune_batch or args.batch,
                                                 args.phase_b_seconds,
                                                 args.finetune_val_every).items():
                    if name in args.finetunes:
                        procs[name] = launch(args.root, name, cfg)
            else:
                log.error("pretrain left no best.safetensors: no fine-tuning")
        if all(proc.poll() is not None for proc in procs.values()):
            break
        if elapsed > args.deadline:
            for name, proc in procs.items():
                if proc.poll() is None:
                    log.error("deadline: killing %s at step %d", name, logged_step(args.root / name))
                    proc.kill()
            break
        time.sleep(2)


def export(root: Path, out: Path):
    """Best checkpoints (fp16, ~8.6 MB each) and every log, within the lease's 8 files back."""
    keep = ["pretrain", "finetune20", "all_data", "target_large", "target20", "joint20"]
    from models.prior.checkpoint import read_metadata
    others = [n for n in FINETUNE_LRS if n != "finetune20" and (root / n / "best.safetensors").exists()]
    if others:  # the best-validated of the other fine-tuning learning rates
        keep.append(min(others, key=lambda n: read_metadata(root / n / "best.safetensors").training["best_score"]))
    for name in keep:
        src = root / name / "best.safetensors"
        if src.exists():
            shutil.copy(src, out / f"{name}.safetensors")
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix not in (".pt", ".safetensors", ".h5", ".tmp"):
                tar.add(path, arcname=str(path.relative_to(root)))


if __name__ == "__main__":
    sys.exit(main())
