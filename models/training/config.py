"""Training configuration: one dataclass, read from YAML, overridable from the CLI, written
next to every checkpoint so each run can be reproduced.

Modes (the comparisons of the method):
- ``pretrain``: several source contrasts at once, lr 1e-4.
- ``finetune``: start from a pre-trained checkpoint, add a one-hot slot for the
  target contrast, lr 1e-5, few steps, keep the best validation checkpoint.
- ``joint``: source contrasts and target data mixed from the start.
- ``scratch``: target data only.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import yaml

from models.errors import ReconInputError
from models.tilings import PATCH_TILINGS

MODES = ("pretrain", "finetune", "joint", "scratch")
DEFAULT_LR = {"pretrain": 1e-4, "finetune": 1e-5, "joint": 1e-4, "scratch": 1e-4}


PRIOR_KINDS = ("image", "patch")


def validate_prior_spec(spec, image_size: int) -> dict:
    """The ``prior:`` entry, completed with the patch defaults; a clear error for anything else."""
    from models.prior.patches import PATCH_PROBABILITIES, PATCH_SIZES

    if not isinstance(spec, dict) or spec.get("kind", "image") not in PRIOR_KINDS:
        raise ReconInputError(f"prior must be a mapping with kind one of {PRIOR_KINDS}, got {spec!r}")
    spec = dict(spec, kind=spec.get("kind", "image"))
    if spec["kind"] == "image":
        extra = sorted(set(spec) - {"kind"})
        if extra:
            raise ReconInputError(f"prior kind 'image' takes no {extra}")
        return spec
    unknown = sorted(set(spec) - {"kind", "patch_sizes", "patch_probabilities"})
    if unknown:
        raise ReconInputError(f"prior: unknown keys {unknown} (kind, patch_sizes, patch_probabilities)")
    sizes = [int(p) for p in spec.get("patch_sizes", PATCH_SIZES)]
    default_probs = PATCH_PROBABILITIES if sizes == list(PATCH_SIZES) else [1.0 / len(sizes)] * len(sizes)
    probs = [float(p) for p in spec.get("patch_probabilities", default_probs)]
    if not sizes or len(probs) != len(sizes) or min(probs) < 0 or abs(sum(probs) - 1) > 1e-6:
        raise ReconInputError(f"prior: patch_probabilities {probs} must be one per patch size {sizes}, summing to 1")
    if min(sizes) < 4 or max(sizes) > image_size:
        raise ReconInputError(f"prior: patch sizes {sizes} must lie in 4..image_size ({image_size})")
    return {"kind": "patch", "patch_sizes": sizes, "patch_probabilities": probs}


@dataclass
class TrainConfig:
    """Everything a training run depends on. ``None`` fields take per-mode defaults."""

    mode: str = "pretrain"
    data: str = ""  # slice bank file (see models.training.datasets) or a data-spec YAML
    val_data: str = ""  # slice bank of validation slices (real individual)
    source_contrasts: List[str] = field(default_factory=lambda: ["T1", "T2", "PD", "T1post"])
    target_contrast: str = "FLAIR"
    num_target_subjects: Optional[int] = 20  # None = all target subjects in the bank
    init_checkpoint: str = ""  # finetune: the pre-trained prior
    warm_start: str = ""  # pretrain/joint/scratch: continue from a checkpoint's weights and step count
                          # (a fresh optimiser; for runs whose state.pt was not kept, e.g. across sessions)
    preset: str = "cpu-small"
    # the denoiser's kind: {kind: image} (whole slices) or {kind: patch, patch_sizes: [16, 32, 64],
    # patch_probabilities: [0.2, 0.3, 0.5]} (models.prior.patches: PaDIS-style patches with positions)
    prior: dict = field(default_factory=lambda: {"kind": "image"})
    image_size: int = 128
    lr: Optional[float] = None
    batch_size: int = 8
    total_steps: int = 1000
    max_seconds: Optional[float] = None  # also stop (validate, checkpoint) after this much wall time:
                                         # a time budget on a lent machine; the step reached is logged
    budget_seconds: Optional[float] = None  # stop once this much wall time has been trained in all, summed
                                            # over resumes (the equal-CPU-budget comparisons of issue 17)
    lr_rampup_steps: int = 100
    grad_clip: float = 1.0
    ema_halflife_images: float = 5000.0
    ema_rampup_ratio: Optional[float] = 0.05  # none after a warm start (the same training, continued)
    augment_p: float = 0.15
    sigma_data: float = 0.5
    P_mean: float = -1.2
    P_std: float = 1.2
    val_every: int = 500
    val_metric: str = "denoise"  # "denoise" (EDM loss at fixed sigmas) or "dps" (NRMSE at R=4)
    val_slices: int = 8
    val_tiling: str = "shifted"  # a patch prior's whole-image tiling in validation (models/tilings.py);
                                 # whole: as the chains run it (patch_tiling=whole), so the kept checkpoint
                                 # is the best one for them
    checkpoint_every: int = 500
    log_every: int = 50
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    amp: bool = True  # on CUDA: bf16 autocast for the network (loss, skip path and optimiser stay float32)
    cpu_bf16: bool = False  # the same on a CPU with bf16 instructions (AVX512-BF16 / AMX): 8.5 -> 11.5
                            # images/s on a 2-core EPYC; ignored with a warning on other CPUs
    compile: bool = False  # torch.compile the network for training: fewer, fused kernels, for a small
                           # network on a GPU whose steps are bound by kernel launches (costs a warm-up)
    fp16_export: bool = True

    def __post_init__(self):
        if self.mode not in MODES:
            raise ReconInputError(f"unknown training mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.val_metric not in ("denoise", "dps"):
            raise ReconInputError(f"val_metric must be 'denoise' or 'dps', got {self.val_metric!r}")
        if self.val_tiling not in PATCH_TILINGS:
            raise ReconInputError(f"val_tiling must be one of {', '.join(PATCH_TILINGS)}, got {self.val_tiling!r}")
        if self.mode == "finetune" and not self.init_checkpoint:
            raise ReconInputError("finetune needs init_checkpoint (the pre-trained prior)")
        if self.mode != "finetune" and self.init_checkpoint:
            raise ReconInputError(f"init_checkpoint is only used by finetune, not {self.mode}")
        if self.mode == "finetune" and self.warm_start:
            raise ReconInputError("warm_start is for pretrain/joint/scratch; finetune starts from init_checkpoint")
        self.prior = validate_prior_spec(self.prior, self.image_size)
        if self.batch_size < 1 or self.total_steps < 1:
            raise ReconInputError("batch_size and total_steps must be >= 1")

    @property
    def learning_rate(self) -> float:
        return DEFAULT_LR[self.mode] if self.lr is None else float(self.lr)

    @property
    def training_contrasts(self) -> List[str]:
        """Contrasts whose slices this run trains on."""
        if self.mode == "pretrain":
            return list(self.source_contrasts)
        if self.mode == "joint":
            return list(self.source_contrasts) + [self.target_contrast]
        return [self.target_contrast]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["resolved_lr"] = self.learning_rate
        return d

    def save(self, path: Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_yaml(cls, path, **overrides) -> "TrainConfig":
        """Read a YAML file; ``overrides`` (not None) win over the file."""
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ReconInputError(f"training config {path} not found") from None
        except yaml.YAMLError as exc:
            raise ReconInputError(f"training config {path} is not valid YAML: {exc}") from None
        values.pop("resolved_lr", None)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ReconInputError(f"training config {path}: unknown keys {unknown}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
