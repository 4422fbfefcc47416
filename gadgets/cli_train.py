"""``dps-gadgetron train MODE --config CONFIG.yaml``: pretrain, finetune, joint or scratch.

Flags override the YAML; the resolved configuration is printed (``--dry-run``
stops there) and written as ``config.yaml`` in the run directory. A run
directory that holds ``state.pt`` is resumed. For several processes use
``torchrun --nproc_per_node N -m gadgets.cli train ...``.
"""

import logging
from pathlib import Path

import yaml

from models.training.config import DEFAULT_LR, MODES, TrainConfig

log = logging.getLogger(__name__)

HELP = "train the prior: pretrain, finetune, joint or scratch (YAML config, resumable)"


def add_arguments(parser):
    parser.add_argument("mode", choices=MODES, help="which training (see the method's comparison)")
    parser.add_argument("--config", type=Path, required=True, help="YAML file of TrainConfig fields")
    parser.add_argument("--data", help="slice bank (HDF5) with the training slices")
    parser.add_argument("--val-data", help="slice bank with the validation slices (a real individual)")
    parser.add_argument("--init-checkpoint", help="finetune: the pre-trained prior (.safetensors)")
    parser.add_argument("--warm-start", help="pretrain/joint/scratch: continue from this checkpoint's weights and "
                        "step count (fresh optimiser)")
    parser.add_argument("--steps", type=int, dest="total_steps", help="total optimisation steps")
    parser.add_argument("--lr", type=float, help="learning rate (default: " +
                        ", ".join(f"{m} {lr:g}" for m, lr in DEFAULT_LR.items()) + ")")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--preset", help="U-Net size preset: tiny, cpu-small, gpu-base")
    parser.add_argument("--val-every", type=int)
    parser.add_argument("--val-metric", choices=("denoise", "dps"))
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--run-dir", type=Path, help="run directory (resumed if it holds state.pt); "
                        "default: runs/NNNNN-MODE-PRESET")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved configuration and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")


def resolve_config(args) -> TrainConfig:
    overrides = {name: getattr(args, name, None) for name in
                 ("data", "val_data", "init_checkpoint", "warm_start", "total_steps", "lr", "batch_size", "preset",
                  "val_every", "val_metric", "seed", "device")}
    return TrainConfig.from_yaml(args.config, mode=args.mode, **overrides)


def run(args) -> int:
    from models.training.loop import Trainer, next_run_dir  # torch-heavy, import on use

    config = resolve_config(args)
    print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")  # resolved config on stdout
    if args.dry_run:
        return 0
    run_dir = args.run_dir or next_run_dir(Path("runs"), f"{config.mode}-{config.preset}")
    result = Trainer(config, run_dir).run(progress=not args.no_progress)
    log.info("finished %s in %s: step %d, best validation %.5f at step %d", config.mode, run_dir,
             result["step"], result["best_score"], result["best_step"])
    return 0
