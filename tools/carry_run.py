#!/usr/bin/env python
"""Carry a training run across machines that do not keep ``runs/``: pack its resumable state into a
compact folder that can be committed, and unpack it into a run directory so that the same
``dps-gadgetron train ...`` command resumes where it stopped.

A working session here gets a new machine, so ``runs/<name>/state.pt`` (raw and EMA weights in
float32 and Adam's two moments: about 70 MB for the 4.3 M-parameter net) is lost between sessions.
The pack keeps all of it, step, RNG states and ``train_seconds`` included, at 5/8 of the bytes: the
raw weights stay float32 (float16's spacing at 1.0 is ten Adam steps of lr 1e-4: a norm gain would
lose its last updates), the EMA is float16 (as it is exported; the average goes on in float32) and
Adam's moments are bfloat16 (float16 would flush the small second moments to zero). Unpacking
casts back to float32. ``log.jsonl``, ``config.yaml`` and ``best.safetensors`` travel with it.

    python tools/carry_run.py pack runs/cmp_patch models/weights/candidates/patch_pretrain
    python tools/carry_run.py unpack models/weights/candidates/patch_pretrain runs/cmp_patch
"""

import argparse
import logging
import shutil
import sys
from pathlib import Path

import torch

log = logging.getLogger("carry_run")

PACKED_STATE = "state.half.pt"
CARRIED_FILES = ("log.jsonl", "config.yaml", "best.safetensors")


def _cast(tree, dtype):
    """Every floating tensor of a nested dict / list cast to ``dtype`` (integers, RNG bytes kept)."""
    if isinstance(tree, torch.Tensor):
        return tree.to(dtype) if tree.is_floating_point() and tree.ndim > 0 else tree
    if isinstance(tree, dict):
        return {k: _cast(v, dtype) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_cast(v, dtype) for v in tree)
    return tree


def _load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file must say so, not resume from garbage
        raise SystemExit(f"cannot read training state {path}: {exc}")


def pack(run_dir: Path, dest: Path) -> Path:
    """``run_dir/state.pt`` -> ``dest/state.half.pt`` plus the run's log, config and best checkpoint."""
    state = _load(run_dir / "state.pt")
    packed = dict(state)
    packed["ema"] = _cast(state["ema"], torch.float16)
    packed["optimizer"] = {"state": _cast(state["optimizer"]["state"], torch.bfloat16),
                           "param_groups": state["optimizer"]["param_groups"]}
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / (PACKED_STATE + ".tmp")
    torch.save(packed, tmp)
    tmp.replace(dest / PACKED_STATE)
    for name in CARRIED_FILES:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, dest / name)
    log.info("packed %s (step %d, %.0f s trained) into %s (%.1f MB)", run_dir, int(state["step"]),
             float(state.get("train_seconds", 0.0)), dest, (dest / PACKED_STATE).stat().st_size / 1e6)
    return dest / PACKED_STATE


def unpack(src: Path, run_dir: Path, force: bool = False) -> Path:
    """``src/state.half.pt`` -> ``run_dir/state.pt`` (float32) plus the carried files."""
    target = run_dir / "state.pt"
    packed = _load(src / PACKED_STATE)
    if target.exists() and not force:
        here = int(_load(target)["step"])
        if here >= int(packed["step"]):
            raise SystemExit(f"{target} is at step {here}, the pack at step {int(packed['step'])}: "
                             "nothing to unpack (--force overwrites)")
    state = dict(packed)
    state["ema"] = _cast(packed["ema"], torch.float32)
    state["optimizer"] = {"state": _cast(packed["optimizer"]["state"], torch.float32),
                          "param_groups": packed["optimizer"]["param_groups"]}
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in CARRIED_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, run_dir / name)
    tmp = target.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(target)
    log.info("unpacked %s into %s (step %d, %.0f s trained)", src, run_dir, int(state["step"]),
             float(state.get("train_seconds", 0.0)))
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="run directory -> compact folder (to commit)")
    p.add_argument("run_dir", type=Path)
    p.add_argument("dest", type=Path)
    u = sub.add_parser("unpack", help="compact folder -> run directory (then rerun the training command)")
    u.add_argument("src", type=Path)
    u.add_argument("run_dir", type=Path)
    u.add_argument("--force", action="store_true", help="overwrite a run directory's newer state.pt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "pack":
        pack(args.run_dir, args.dest)
    else:
        unpack(args.src, args.run_dir, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
