"""The training loop shared by pretrain / finetune / joint / scratch (plain torch + DDP).

One step: a batch of normalised complex slices (two real channels) and their
contrast labels -> EDM loss with augmentation -> Adam (lr ramp-up, gradient
clipping) -> EMA update. At intervals: validation with the EMA weights (keep the
best as ``best.safetensors``), a shippable checkpoint (``last.safetensors``) and
the resumable state (``state.pt``: raw and EMA weights, optimiser, step, RNG
states, best score; read back with ``torch.load(weights_only=True)``, so no code
is unpickled). A run directory holds ``config.yaml`` and ``log.jsonl``.
"""

import functools
import json
import logging
import time
from pathlib import Path
from typing import Optional

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from models.devices import cpu_has_native_bf16
from models.errors import ReconInputError
from models.prior.augment import AugmentPipe
from models.prior.checkpoint import load_prior, read_metadata, save_prior
from models.prior.contrasts import ContrastVocabulary, add_contrast_slot
from models.prior.ema import EMA
from models.prior.loss import EDMLoss
from models.prior.normalization import IntensityNormalization
from models.prior.patches import (POSITION_CHANNELS, PatchPrecond, choose_patch_size, patch_loss,
                                  patches_per_image, whole_image_prior)
from models.prior.precond import EDMPrecond
from models.prior.unet import UNet, count_parameters, unet_preset
from models.training.batches import DeviceBatches
from models.training.config import TrainConfig
from models.training.distributed import DistInfo, barrier, init_distributed, shutdown
from models.data.slice_bank import SliceBank, read_slice_bank
from models.training.validation import denoising_score, dps_score

log = logging.getLogger(__name__)


def build_model(config: TrainConfig, augment_dim: int):
    """New prior for pretrain/joint/scratch; pre-trained prior + new target slot for finetune."""
    if config.mode == "finetune":
        precond, meta = load_prior(config.init_checkpoint, device="cpu")
        precond.requires_grad_(True).train()
        if meta.prior["kind"] != config.prior["kind"]:
            raise ReconInputError(f"the pre-trained prior is a {meta.prior['kind']} prior, the config asks for "
                                  f"{config.prior['kind']}: set prior: {{kind: {meta.prior['kind']}}}")
        if config.target_contrast in meta.contrasts:
            raise ReconInputError(f"the pre-trained prior already has a {config.target_contrast!r} slot")
        precond.vocabulary = add_contrast_slot(precond, meta.vocabulary, config.target_contrast)
        if meta.unet.get("augment_dim", 0) != augment_dim:
            raise ReconInputError("the pre-trained prior was trained with another augmentation dimension")
        return precond
    if config.mode == "scratch":
        names = [config.target_contrast]
    elif config.mode == "joint":
        names = list(config.source_contrasts) + [config.target_contrast]
    else:
        names = list(config.source_contrasts)
    vocabulary = ContrastVocabulary(names)
    if config.prior["kind"] == "patch":  # the U-Net sees patches, at most the largest, plus two position channels
        sizes = config.prior["patch_sizes"]
        unet_config = unet_preset(config.preset, max(sizes), label_dim=len(vocabulary), augment_dim=augment_dim,
                                  in_channels=2 + POSITION_CHANNELS)
        return PatchPrecond(UNet(unet_config), patch_sizes=sizes, sigma_data=config.sigma_data, vocabulary=vocabulary)
    unet_config = unet_preset(config.preset, config.image_size, label_dim=len(vocabulary), augment_dim=augment_dim)
    return EDMPrecond(UNet(unet_config), sigma_data=config.sigma_data, vocabulary=vocabulary)


def build_datasets(config: TrainConfig, vocabulary: ContrastVocabulary):
    """Training set from ``config.data`` and validation slices (target contrast) from ``config.val_data``."""
    limit = {config.target_contrast: config.num_target_subjects} if config.mode != "pretrain" else {}
    train_set = SliceBank(read_slice_bank(config.data), config.training_contrasts, vocabulary,
                          limit_subjects=limit, seed=config.seed)
    val_contrast = config.target_contrast if config.mode != "pretrain" else config.source_contrasts[0]
    val_source = config.val_data or config.data
    val_set = SliceBank(read_slice_bank(val_source), [val_contrast], vocabulary)
    if train_set.images.shape[-2:] != (config.image_size, config.image_size):
        raise ReconInputError(f"slice bank images are {tuple(train_set.images.shape[-2:])}, "
                              f"config.image_size is {config.image_size}")
    return train_set, val_set, val_contrast


def _infinite(loader, sampler):
    epoch = 0
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


class Trainer:
    """Owns model, EMA, optimiser and run directory; :meth:`run` trains to ``total_steps``."""

    def __init__(self, config: TrainConfig, run_dir: Path, dist_info: Optional[DistInfo] = None):
        self.config = config
        self.run_dir = Path(run_dir)
        self.dist = dist_info or init_distributed(config.device)
        torch.manual_seed(config.seed + self.dist.rank)
        self.augment = AugmentPipe(p=config.augment_p)
        self.precond = build_model(config, self.augment.augment_dim).to(self.dist.device)
        self.init_steps = read_metadata(config.init_checkpoint).steps if config.init_checkpoint else 0
        self.vocabulary = self.precond.vocabulary
        self.train_set, self.val_set, self.val_contrast = build_datasets(config, self.vocabulary)
        # EDM's EMA ramp-up caps the average at a fraction of the images seen. A warm start continues
        # the same training from trained weights: no ramp-up (counting from zero again would keep the
        # average to the last few hundred images). Fine-tuning keeps it: the network changes what it
        # models, and a short average follows that change.
        self.ema = EMA(self.precond, halflife_images=config.ema_halflife_images,
                       rampup_ratio=None if config.warm_start else config.ema_rampup_ratio)
        self.optimizer = torch.optim.Adam(self.precond.parameters(), lr=config.learning_rate, betas=(0.9, 0.999),
                                          eps=1e-8)
        self.loss_fn = EDMLoss(P_mean=config.P_mean, P_std=config.P_std, sigma_data=config.sigma_data)
        # noise and augmentation are drawn where the batch lives (a CPU generator would make
        # every CUDA step wait for host-side random numbers and a copy)
        generator_device = self.dist.device if self.dist.device.type == "cuda" else "cpu"
        self.generator = torch.Generator(device=generator_device).manual_seed(config.seed * 1000 + self.dist.rank)
        self.patch_generator = torch.Generator().manual_seed(config.seed * 1000 + 17 + self.dist.rank)  # sizes
        self.autocast_device = autocast_device(self.dist.device, config.amp, config.cpu_bf16)
        if self.dist.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.step = 0
        self.train_seconds = 0.0  # wall time trained, summed over resumes (equal-budget comparisons read it)
        self.best_score = float("inf")
        self.best_step = -1
        self.normalization = IntensityNormalization()
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            config.save(self.run_dir / "config.yaml")
        if (self.run_dir / "state.pt").exists():
            self._load_state()
        elif config.warm_start:
            self._warm_start(config.warm_start)

    # ------------------------------------------------------------------ state
    def _state_path(self):
        return self.run_dir / "state.pt"

    def _save_state(self):
        state = {
            "step": torch.tensor(self.step),
            "best_score": torch.tensor(self.best_score),
            "best_step": torch.tensor(self.best_step),
            "net": self.precond.state_dict(),
            "ema": self.ema.module.state_dict(),
            "ema_images_seen": torch.tensor(self.ema.images_seen),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "generator": self.generator.get_state(),
            "patch_generator": self.patch_generator.get_state(),
            "train_seconds": torch.tensor(self.train_seconds, dtype=torch.float64),
            "contrasts": list(self.vocabulary.names),
        }
        tmp = self._state_path().with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self._state_path())

    def _load_state(self):
        path = self._state_path()
        try:
            state = torch.load(path, map_location=self.dist.device, weights_only=True)
        except Exception as exc:  # a truncated or foreign file must not start a silent fresh run
            raise ReconInputError(f"cannot resume from {path}: {exc}") from None
        if list(state["contrasts"]) != list(self.vocabulary.names):
            raise ReconInputError(f"{path} was trained with contrasts {state['contrasts']}, "
                                  f"this run has {list(self.vocabulary.names)}")
        self.precond.load_state_dict(state["net"])
        self.ema.module.load_state_dict(state["ema"])
        self.ema.images_seen = int(state["ema_images_seen"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"].cpu())
        self.generator.set_state(state["generator"].cpu())  # (a CUDA generator's state is a CPU tensor too)
        self.train_seconds = float(state.get("train_seconds", 0.0))
        if "patch_generator" in state:  # (states written before patch priors have none)
            self.patch_generator.set_state(state["patch_generator"].cpu())
        self.step = int(state["step"])
        self.best_score = float(state["best_score"])
        self.best_step = int(state["best_step"])
        log.info("resumed %s at step %d (best %.5f at step %d)", self.run_dir, self.step, self.best_score,
                 self.best_step)

    def _warm_start(self, path):
        """Weights (raw and EMA) and step count from a checkpoint; the optimiser starts afresh."""
        source, meta = load_prior(path, device=self.dist.device)
        if list(meta.contrasts) != list(self.vocabulary.names):
            raise ReconInputError(f"warm_start {path} has contrasts {meta.contrasts}, this run has "
                                  f"{list(self.vocabulary.names)}")
        try:
            self.precond.load_state_dict(source.state_dict())
        except RuntimeError as exc:
            raise ReconInputError(f"warm_start {path} does not fit this network: {exc}") from None
        self.ema.module.load_state_dict(source.state_dict())
        self.step = meta.steps
        log.info("warm start from %s at step %d", path, self.step)

    def _export(self, name: str):
        self.precond.vocabulary = self.vocabulary
        return save_prior(self.run_dir / name, self.precond, ema=self.ema, image_size=[self.config.image_size] * 2,
                          normalization=self.normalization, augment=self.augment.to_dict(),
                          training={"mode": self.config.mode, "data": self.config.data,
                                    "init_checkpoint": self.config.init_checkpoint,
                                    "init_steps": self.init_steps,
                                    "subjects": self.train_set.num_subjects, "lr": self.config.learning_rate,
                                    "pixel_mm": self.train_set.pixel_range_mm,
                                    "batch_size": self.config.batch_size * self.dist.world_size,
                                    "best_step": self.best_step, "best_score": self.best_score,
                                    "val_metric": self.config.val_metric,
                                    "train_seconds": round(self.train_seconds, 1)},
                          steps=self.step, fp16=self.config.fp16_export)

    # ------------------------------------------------------------------ validation
    def validate(self) -> float:
        model = whole_image_prior(self.ema.module, seed=self.config.seed,  # a patch prior, tiled
                                  tiling=self.config.val_tiling)
        n = min(self.config.val_slices, len(self.val_set))
        idx = torch.linspace(0, len(self.val_set) - 1, n).round().long().tolist()
        images = torch.stack([self.val_set[i][0] for i in idx]).to(self.dist.device)
        if self.config.val_metric == "dps":
            model.vocabulary = self.vocabulary
            complex_images = torch.complex(images[:, 0], images[:, 1])
            return dps_score(model, complex_images, self.val_contrast, seed=self.config.seed)
        labels = self.vocabulary.one_hot([self.val_contrast] * n).to(self.dist.device)
        return denoising_score(model, images, labels, seed=self.config.seed)

    # ------------------------------------------------------------------ loop
    def run(self, progress: bool = True) -> dict:
        cfg, info = self.config, self.dist
        if cfg.budget_seconds is not None and self.train_seconds >= cfg.budget_seconds:
            log.info("%s has trained its budget of %.0f s already", self.run_dir, cfg.budget_seconds)
            shutdown(info)
            return {"step": self.step, "best_score": self.best_score, "best_step": self.best_step,
                    "last_loss": float("nan")}
        model = self.precond
        ddp = DistributedDataParallel(model) if info.world_size > 1 else model
        net = torch.compile(ddp) if cfg.compile else ddp  # shares the parameters; EMA and export use model
        if info.is_main:
            log.info("training %s: %d parameters, %d slices %s, lr %.1e, steps %d -> %d on %s x%d",
                     cfg.mode, count_parameters(model), len(self.train_set), self.train_set.num_subjects,
                     cfg.learning_rate, self.step, cfg.total_steps, info.device, info.world_size)
        bar = tqdm(total=cfg.total_steps, initial=self.step, disable=not (progress and info.is_main),
                   desc=cfg.mode, unit="step", dynamic_ncols=True)
        batches = self._batches()
        model.train()
        t0, images_done, last_loss, loss = time.perf_counter(), 0, float("nan"), None
        seconds_before = self.train_seconds
        while self.step < cfg.total_steps:
            images, labels = next(batches)
            images = images.to(info.device, non_blocking=True)
            one_hot = torch.nn.functional.one_hot(labels, len(self.vocabulary)).float().to(info.device)
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.learning_rate * min(1.0, (self.step + 1) / max(cfg.lr_rampup_steps, 1))
            loss_fn = self.loss_fn
            if cfg.prior["kind"] == "patch":
                size = choose_patch_size(self.patch_generator, cfg.prior["patch_sizes"],
                                         cfg.prior["patch_probabilities"])
                loss_fn = functools.partial(patch_loss, self.loss_fn, patch_size=size,
                                            per_image=patches_per_image(cfg.image_size, size))
            loss = optimisation_step(net, model, self.ema, self.optimizer, loss_fn, images, one_hot,
                                     self.augment, self.generator, autocast=self.autocast_device,
                                     grad_clip=cfg.grad_clip, world_size=info.world_size)
            self.step += 1
            self.train_seconds = seconds_before + time.perf_counter() - t0
            images_done += images.shape[0] * info.world_size
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == cfg.total_steps:
                last_loss = float(loss.detach())  # read only here: a read every step stalls a GPU
                rate = images_done / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{last_loss:.4f}", img_s=f"{rate:.1f}")
                self._log({"step": self.step, "loss": last_loss, "images_per_s": rate,
                           "train_seconds": round(self.train_seconds, 1)})
            time_up = self._time_up(t0)
            if self.step % cfg.val_every == 0 or self.step == cfg.total_steps or time_up:
                self._validate_and_keep_best()
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.total_steps or time_up:
                if info.is_main:
                    self._save_state()
                    self._export("last.safetensors")
                barrier(info)
            if time_up:
                which = "budget_seconds" if cfg.budget_seconds is not None and \
                    self.train_seconds >= cfg.budget_seconds else "max_seconds"
                log.info("time budget (%s) reached at step %d, %.0f s trained", which, self.step, self.train_seconds)
                self._log({"step": self.step, "stopped": which, "seconds": time.perf_counter() - t0,
                           "train_seconds": round(self.train_seconds, 1)})
                break
        bar.close()
        shutdown(info)
        if loss is not None:
            last_loss = float(loss.detach())
        return {"step": self.step, "best_score": self.best_score, "best_step": self.best_step,
                "last_loss": last_loss}

    def _batches(self):
        """Infinite training batches: from the bank in GPU memory on one GPU, else a (distributed) loader."""
        cfg, info = self.config, self.dist
        if info.device.type == "cuda" and info.world_size == 1:  # the bank fits the GPU: no host loader
            return iter(DeviceBatches(self.train_set, cfg.batch_size, info.device, seed=cfg.seed + self.step))
        sampler = DistributedSampler(self.train_set, num_replicas=info.world_size, rank=info.rank,
                                     seed=cfg.seed) if info.world_size > 1 else None
        loader = DataLoader(self.train_set, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                            drop_last=len(self.train_set) >= cfg.batch_size * info.world_size,
                            num_workers=cfg.num_workers,
                            generator=torch.Generator().manual_seed(cfg.seed + self.step))
        return _infinite(loader, sampler)

    def _time_up(self, t0: float) -> bool:
        """Whether ``max_seconds`` has passed (rank 0 decides, so all DDP ranks stop together)."""
        budget = self.config.budget_seconds
        if self.config.max_seconds is None and budget is None:
            return False
        up = self.config.max_seconds is not None and time.perf_counter() - t0 >= self.config.max_seconds
        up = up or (budget is not None and self.train_seconds >= budget)
        flag = torch.tensor([float(up)])
        if self.dist.world_size > 1:
            flag = flag.to(self.dist.device)
            torch.distributed.broadcast(flag, src=0)
        return bool(flag.item())

    def _validate_and_keep_best(self):
        if not self.dist.is_main:
            barrier(self.dist)
            return
        score = self.validate()
        improved = score < self.best_score
        if improved:
            self.best_score, self.best_step = score, self.step
            self._export("best.safetensors")
        self._log({"step": self.step, "val_" + self.config.val_metric: score, "best": improved,
                   "train_seconds": round(self.train_seconds, 1)})
        log.info("step %d: validation %s %.5f%s", self.step, self.config.val_metric, score,
                 " (best)" if improved else f" (best {self.best_score:.5f} at {self.best_step})")
        barrier(self.dist)

    def _log(self, record: dict):
        if self.dist.is_main:
            with open(self.run_dir / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")


def autocast_device(device: torch.device, cuda_bf16: bool, cpu_bf16: bool) -> Optional[str]:
    """The device type the training step runs under bf16 autocast on, or None for float32."""
    if device.type == "cuda":
        return "cuda" if cuda_bf16 else None
    if device.type == "cpu" and cpu_bf16:
        if cpu_has_native_bf16():
            return "cpu"
        log.warning("cpu_bf16 asked for, but this CPU has no bf16 instructions: training in float32")
    return None


def optimisation_step(net, model, ema, optimizer, loss_fn, images, one_hot, augment_pipe, generator,
                      autocast: Optional[str], grad_clip: float, world_size: int = 1) -> torch.Tensor:
    """One training step: EDM loss (bf16 autocast on the device type ``autocast``; None: float32),
    backward, clipping, Adam, EMA. ``net`` is what runs forward (DDP / compiled), ``model`` the
    module it wraps. Returns the mean loss as a tensor, unread: reading it every step would stall a GPU."""
    with torch.autocast(autocast or "cpu", dtype=torch.bfloat16, enabled=autocast is not None):
        loss = loss_fn(net, images, one_hot, augment_pipe=augment_pipe, generator=generator)
    loss = loss.float().mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    ema.update(model, batch_size=images.shape[0] * world_size)
    return loss


def logged_step(run_dir) -> int:
    """The last step a run directory's ``log.jsonl`` records (0 without a log)."""
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        return 0
    return max((json.loads(line).get("step", 0) for line in path.read_text().splitlines() if line.strip()),
               default=0)


def next_run_dir(root: Path, description: str) -> Path:
    """EDM-style ``root/00000-description`` numbering."""
    root = Path(root)
    numbers = [int(p.name.split("-")[0]) for p in root.glob("[0-9][0-9][0-9][0-9][0-9]-*") if p.is_dir()]
    return root / f"{(max(numbers) + 1) if numbers else 0:05d}-{description}"

