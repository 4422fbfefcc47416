"""The experiment plan: one YAML file says what is trained, with which budget, and how it is scored.

Layout (every key is checked; unknown keys are errors)::

    name: full                         # recorded in results.json
    description: ...
    banks: {KEY: PATH, ...}            # slice banks, paths relative to the bank root
    network: {preset: cpu-small, image_size: 128}   # one network for every training
    source_contrasts: [T1, T2, PD, T1post]
    target_contrast: FLAIR
    target_subjects: 20                # "the 20" target subjects
    train_defaults: {FIELD: VALUE}     # TrainConfig fields shared by every training
    trainings:                         # every training, by name (its run directory's name)
      NAME:
        mode: pretrain | finetune | joint | scratch
        data: [BANK_KEY, ...]          # several keys: the banks are concatenated
        val_data: BANK_KEY
        steps: INT                     # the stated budget (optimisation steps)
        target_subjects: INT | all     # default: the plan's target_subjects
        init_from: NAME                # finetune only: that training's best.safetensors
        lr: FLOAT                      # default: the mode's (TrainConfig.DEFAULT_LR)
        settings: {FIELD: VALUE}       # other TrainConfig fields for this training
    methods:                           # the comparison of the paper, by method number
      - {id: 4, label: ..., training: NAME, checkpoint: best | last}
    ablation:                          # fine-tuning lr x length grid, each cell a training
      base: NAME                       # a finetune training; cells copy it, changing lr and steps
      learning_rates: [5.0e-4, 1.0e-4, 5.0e-5, 1.0e-5]
      lengths: {short: INT, medium: INT, long: INT}
      acceleration: 4
      checkpoint: last                 # last shows over-fitting; best would hide it
      slices: INT                      # test slices per cell (default: evaluation.slices)
    evaluation: {...}                  # see EvaluationSpec
    zeta_sweep: {...}                  # see ZetaSweepSpec

Each method number is checked against its definition in the paper (:data:`METHOD_DEFINITIONS`):
method 4 must be a fine-tuning on the 20 target subjects, method 3 a target-only training on
all of them, and so on. Every training uses the plan's one network; the plan cannot give a
training another preset or image size.
"""

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import yaml

from models.errors import ReconInputError
from models.sampler.zeta import DEFAULT_STEPS, TABLE_STEPS, TABLES
from models.training.config import DEFAULT_LR, MODES, TrainConfig

#: Method number -> (description, training mode, target subjects: "all" or "plan").
METHOD_DEFINITIONS = {
    "1": ("all data: other contrasts and the large target set, trained jointly", "joint", "all"),
    "3": ("large target set only", "scratch", "all"),
    "4": ("pre-trained on the other contrasts, fine-tuned on the 20 target subjects (ours)", "finetune", "plan"),
    "5": ("the 20 target subjects only", "scratch", "plan"),
    "6": ("joint: other contrasts plus the 20 target subjects", "joint", "plan"),
}
BASELINES = ("zero_filled", "cg_sense", "cs", "bart")
BASELINE_LABELS = {"zero_filled": "zero-filled", "cg_sense": "CG-SENSE", "cs": "L1-wavelet CS (ours)",
                   "bart": "BART pics -l1"}
CHECKPOINTS = ("best", "last")
#: TrainConfig fields the plan sets itself; ``settings`` / ``train_defaults`` may not.
PLAN_OWNED_FIELDS = ("mode", "data", "val_data", "init_checkpoint", "preset", "image_size", "total_steps", "lr",
                     "num_target_subjects", "source_contrasts", "target_contrast", "device")


class ExperimentPlanError(ReconInputError):
    """A plan file that is missing, not valid YAML, or inconsistent (the message names the key)."""


@dataclass(frozen=True)
class TrainingSpec:
    """One training of the plan; ``steps`` is its budget. ``target_subjects=None`` means all."""

    name: str
    mode: str
    data: Tuple[str, ...]
    val_data: str
    steps: int
    target_subjects: Optional[int]
    init_from: Optional[str] = None
    lr: Optional[float] = None
    settings: Dict = field(default_factory=dict)


@dataclass(frozen=True)
class MethodSpec:
    id: str
    label: str
    training: str
    checkpoint: str = "best"


@dataclass(frozen=True)
class AblationSpec:
    base: str
    learning_rates: Tuple[float, ...]
    lengths: Dict[str, int]
    acceleration: int
    checkpoint: str = "last"
    slices: Optional[int] = None  # test slices scored per cell (None: evaluation.slices)

    def cell_name(self, lr: float, length: str) -> str:
        """Training name (and run directory) of one cell, e.g. ``ablation-lr1e-05-medium``."""
        return f"ablation-lr{lr:.0e}-{length}"


@dataclass(frozen=True)
class ScanSpec:
    """How test scans are simulated (:func:`models.evaluation.make_test_cases`)."""

    coils: int = 12
    num_acs: int = 24
    snr: float = 30.0
    coil_method: Optional[str] = None  # None: the product's default (ESPIRiT)


@dataclass(frozen=True)
class EvaluationSpec:
    """Scoring on held-out slices.

    ``sampler``: ``dds`` (the chains' default) or ``dps`` (the paper's gradient step); ``dps_steps``:
    ``None`` is that sampler's step count in the chains (20 for DDS, 100 for DPS). ``zeta``: ``None``
    uses the sampler's shipped per-R table (:mod:`models.sampler.zeta`), else ``{R: zeta}``. The two
    samplers' zetas mean different things (a likelihood weight for DDS, a step length for DPS), and
    the DPS table is tuned for 100 steps: other DPS step counts need their own ``zeta``.
    Baseline parameters (CG iterations, CS / BART lambda) are tuned on ``tuning_bank`` slices,
    never on the test slices.
    """

    bank: str
    accelerations: Tuple[int, ...]
    slices: int
    seed: int = 0
    scan: ScanSpec = ScanSpec()
    sampler: str = "dds"
    dps_steps: Optional[int] = None
    zeta: Optional[Dict[int, float]] = None
    num_samples: int = 1
    final_cg_iterations: int = 0
    baselines: Tuple[str, ...] = BASELINES
    tuning_bank: str = ""
    tuning_slices: int = 4
    cg_iterations: Tuple[int, ...] = (3, 5, 8, 12, 20)
    cs_lambdas: Tuple[float, ...] = (1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2)
    bart_lambdas: Tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2)
    paired_reference: str = "4"
    paired_against: Tuple[str, ...] = ("3", "5")
    example_acceleration: int = 6
    example_slice: int = 0

    @property
    def steps(self) -> int:
        """The sampler's step count: ``dps_steps``, else the chains' count for that sampler."""
        if self.dps_steps is not None:
            return self.dps_steps
        return TABLE_STEPS if self.sampler == "dps" else DEFAULT_STEPS


@dataclass(frozen=True)
class ZetaSweepSpec:
    """NRMSE of one method's prior over ``values`` of zeta at each R, on ``bank`` (validation) slices."""

    method: str
    bank: str
    values: Tuple[float, ...]
    slices: int
    accelerations: Tuple[int, ...]


@dataclass(frozen=True)
class ExperimentPlan:
    name: str
    description: str
    path: str
    sha256: str
    banks: Dict[str, str]
    preset: str
    image_size: int
    source_contrasts: Tuple[str, ...]
    target_contrast: str
    target_subjects: int
    train_defaults: Dict
    trainings: Dict[str, TrainingSpec]
    methods: Dict[str, MethodSpec]
    ablation: Optional[AblationSpec]
    evaluation: EvaluationSpec
    zeta_sweep: Optional[ZetaSweepSpec]

    # ------------------------------------------------------------------ derived
    def all_trainings(self) -> Dict[str, TrainingSpec]:
        """The plan's trainings plus one per ablation cell, in an order where ``init_from`` comes first."""
        specs = dict(self.trainings)
        if self.ablation is not None:
            base = self.trainings[self.ablation.base]
            for lr in self.ablation.learning_rates:
                for length, steps in self.ablation.lengths.items():
                    name = self.ablation.cell_name(lr, length)
                    specs[name] = dataclasses.replace(base, name=name, lr=float(lr), steps=int(steps))
        return {name: specs[name] for name in _dependency_order(specs)}

    def bank_path(self, key: str, bank_root) -> Path:
        return Path(bank_root) / self.banks[key]

    def missing_banks(self, bank_root) -> List[str]:
        """``KEY (PATH)`` of every bank the plan names that is not a file under ``bank_root``."""
        return [f"{key} ({self.bank_path(key, bank_root)})" for key in self.banks
                if not self.bank_path(key, bank_root).is_file()]

    def train_config(self, name: str, data: str, val_data: str, init_checkpoint: str = "",
                     device: str = "auto") -> TrainConfig:
        """The resolved :class:`TrainConfig` of training ``name`` given its data files."""
        spec = self.all_trainings()[name]
        values = dict(self.train_defaults)
        values.update(spec.settings)
        values.update(mode=spec.mode, data=str(data), val_data=str(val_data), init_checkpoint=str(init_checkpoint),
                      preset=self.preset, image_size=self.image_size, total_steps=spec.steps, lr=spec.lr,
                      num_target_subjects=spec.target_subjects, source_contrasts=list(self.source_contrasts),
                      target_contrast=self.target_contrast, device=device)
        return TrainConfig(**values)

    def budget_rows(self) -> List[dict]:
        """One row per training of the plan (not the ablation cells): the stated budget."""
        batch = int(self.train_defaults.get("batch_size", TrainConfig.batch_size))
        rows = []
        for spec in self.trainings.values():
            b = int(spec.settings.get("batch_size", batch))
            rows.append({"training": spec.name, "mode": spec.mode, "data": "+".join(spec.data),
                         "target_subjects": ("-" if spec.mode == "pretrain" else
                                             "all" if spec.target_subjects is None else spec.target_subjects),
                         "init_from": spec.init_from or "-", "steps": spec.steps, "batch_size": b,
                         "images_seen": spec.steps * b, "lr": _lr_of(spec)})
        return rows


def _lr_of(spec: TrainingSpec) -> float:
    return DEFAULT_LR[spec.mode] if spec.lr is None else float(spec.lr)


def _dependency_order(specs: Dict[str, TrainingSpec]) -> List[str]:
    order, state = [], {}

    def visit(name, chain):
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise ExperimentPlanError(f"trainings: init_from forms a cycle: {' -> '.join(chain + [name])}")
        state[name] = "visiting"
        parent = specs[name].init_from
        if parent is not None:
            visit(parent, chain + [name])
        state[name] = "done"
        order.append(name)

    for name in specs:
        visit(name, [])
    return order


# ---------------------------------------------------------------------- parsing
def _take(section: dict, where: str, required=(), optional=()):
    """Check the keys of a mapping: all ``required`` present, nothing outside ``required + optional``."""
    if not isinstance(section, dict):
        raise ExperimentPlanError(f"{where} must be a mapping, got {type(section).__name__}")
    missing = [k for k in required if k not in section]
    if missing:
        raise ExperimentPlanError(f"{where}: missing keys {missing}")
    unknown = sorted(set(section) - set(required) - set(optional))
    if unknown:
        raise ExperimentPlanError(f"{where}: unknown keys {unknown}; known: {sorted(set(required) | set(optional))}")
    return section


def _positive_int(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ExperimentPlanError(f"{where} must be a positive integer, got {value!r}")
    return value


def _positive_float(value, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ExperimentPlanError(f"{where} must be a number, got {value!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise ExperimentPlanError(f"{where} must be positive, got {value!r}")
    return v


def _check_train_fields(values: dict, where: str) -> dict:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ExperimentPlanError(f"{where}: unknown TrainConfig fields {unknown}")
    owned = sorted(set(values) & set(PLAN_OWNED_FIELDS))
    if owned:
        raise ExperimentPlanError(f"{where}: {owned} are set by the plan itself (network, banks, steps, lr, "
                                  f"target_subjects), not through settings")
    return dict(values)


def _bank_key(key, banks: dict, where: str) -> str:
    if key not in banks:
        raise ExperimentPlanError(f"{where}: unknown bank {key!r}; the plan's banks are {sorted(banks)}")
    return key


def _subjects(value, default: int, where: str) -> Optional[int]:
    if value is None:
        return default
    if value == "all":
        return None
    return _positive_int(value, where)


def _parse_training(name: str, raw: dict, plan_raw: dict, banks: dict) -> TrainingSpec:
    where = f"trainings.{name}"
    _take(raw, where, required=("mode", "data", "steps"),
          optional=("val_data", "target_subjects", "init_from", "lr", "settings"))
    if raw["mode"] not in MODES:
        raise ExperimentPlanError(f"{where}.mode: unknown training mode {raw['mode']!r}; choose one of {MODES}")
    data = raw["data"] if isinstance(raw["data"], list) else [raw["data"]]
    if not data:
        raise ExperimentPlanError(f"{where}.data: name at least one bank")
    data = tuple(_bank_key(k, banks, f"{where}.data") for k in data)
    val_data = _bank_key(raw.get("val_data", data[0]), banks, f"{where}.val_data")
    init_from = raw.get("init_from")
    if (raw["mode"] == "finetune") != (init_from is not None):
        raise ExperimentPlanError(f"{where}: init_from is required for finetune and only allowed there")
    lr = None if raw.get("lr") is None else _positive_float(raw["lr"], f"{where}.lr")
    return TrainingSpec(name=name, mode=raw["mode"], data=data, val_data=val_data,
                        steps=_positive_int(raw["steps"], f"{where}.steps"),
                        target_subjects=_subjects(raw.get("target_subjects"), plan_raw["target_subjects"],
                                                  f"{where}.target_subjects"),
                        init_from=init_from, lr=lr,
                        settings=_check_train_fields(raw.get("settings") or {}, f"{where}.settings"))


def _parse_methods(raw, trainings: Dict[str, TrainingSpec]) -> Dict[str, MethodSpec]:
    if not isinstance(raw, list) or not raw:
        raise ExperimentPlanError("methods must be a non-empty list of {id, label, training, checkpoint}")
    methods = {}
    for k, entry in enumerate(raw):
        where = f"methods[{k}]"
        _take(entry, where, required=("id", "training"), optional=("label", "checkpoint"))
        method_id = str(entry["id"])
        if method_id not in METHOD_DEFINITIONS:
            raise ExperimentPlanError(f"{where}: unknown method {method_id!r}; the paper's methods are "
                                      f"{', '.join(METHOD_DEFINITIONS)}")
        if method_id in methods:
            raise ExperimentPlanError(f"{where}: method {method_id} is listed twice")
        if entry["training"] not in trainings:
            raise ExperimentPlanError(f"{where}: unknown training {entry['training']!r}; "
                                      f"the plan's trainings are {sorted(trainings)}")
        spec = trainings[entry["training"]]
        description, mode, subjects = METHOD_DEFINITIONS[method_id]
        if spec.mode != mode:
            raise ExperimentPlanError(f"{where}: method {method_id} ({description}) needs a {mode} training, "
                                      f"{spec.name} is {spec.mode}")
        if (subjects == "all") != (spec.target_subjects is None):
            raise ExperimentPlanError(f"{where}: method {method_id} ({description}) needs target_subjects "
                                      f"{'all' if subjects == 'all' else 'the plan value'}, {spec.name} has "
                                      f"{spec.target_subjects or 'all'}")
        checkpoint = entry.get("checkpoint", "best")
        if checkpoint not in CHECKPOINTS:
            raise ExperimentPlanError(f"{where}.checkpoint must be one of {CHECKPOINTS}, got {checkpoint!r}")
        methods[method_id] = MethodSpec(method_id, str(entry.get("label") or description), spec.name, checkpoint)
    return methods


def _parse_ablation(raw, trainings) -> Optional[AblationSpec]:
    if raw is None:
        return None
    _take(raw, "ablation", required=("base", "learning_rates", "lengths"),
          optional=("acceleration", "checkpoint", "slices"))
    base = raw["base"]
    if base not in trainings or trainings[base].mode != "finetune":
        raise ExperimentPlanError(f"ablation.base: {base!r} must name a finetune training of the plan")
    lrs = tuple(_positive_float(v, "ablation.learning_rates") for v in raw["learning_rates"] or [])
    lengths = raw["lengths"]
    if not lrs or not isinstance(lengths, dict) or not lengths:
        raise ExperimentPlanError("ablation: learning_rates and lengths ({name: steps}) must be non-empty")
    lengths = {str(k): _positive_int(v, f"ablation.lengths.{k}") for k, v in lengths.items()}
    checkpoint = raw.get("checkpoint", "last")
    if checkpoint not in CHECKPOINTS:
        raise ExperimentPlanError(f"ablation.checkpoint must be one of {CHECKPOINTS}, got {checkpoint!r}")
    slices = None if raw.get("slices") is None else _positive_int(raw["slices"], "ablation.slices")
    spec = AblationSpec(base, lrs, lengths, _positive_int(raw.get("acceleration", 4), "ablation.acceleration"),
                        checkpoint, slices)
    names = [spec.cell_name(lr, length) for lr in lrs for length in lengths]
    if len(set(names)) != len(names) or set(names) & set(trainings):
        raise ExperimentPlanError("ablation: cell names collide (repeated learning rates or a training of that "
                                  "name)")
    return spec


def _parse_evaluation(raw, banks, methods) -> EvaluationSpec:
    fields = [f.name for f in dataclasses.fields(EvaluationSpec)]
    _take(raw, "evaluation", required=("bank", "accelerations", "slices"),
          optional=[f for f in fields if f not in ("bank", "accelerations", "slices")])
    values = dict(raw)
    values["bank"] = _bank_key(raw["bank"], banks, "evaluation.bank")
    values["tuning_bank"] = _bank_key(raw.get("tuning_bank", raw["bank"]), banks, "evaluation.tuning_bank")
    values["accelerations"] = tuple(_positive_int(r, "evaluation.accelerations") for r in raw["accelerations"])
    values["slices"] = _positive_int(raw["slices"], "evaluation.slices")
    if "scan" in raw:
        scan_fields = [f.name for f in dataclasses.fields(ScanSpec)]
        values["scan"] = ScanSpec(**_take(raw["scan"] or {}, "evaluation.scan", optional=scan_fields))
    if values.get("sampler", "dds") not in TABLES:
        raise ExperimentPlanError(f"evaluation.sampler must be one of {sorted(TABLES)}, got {values['sampler']!r}")
    if values.get("dps_steps") is not None:
        values["dps_steps"] = _positive_int(values["dps_steps"], "evaluation.dps_steps")
    if raw.get("zeta") is not None:
        if not isinstance(raw["zeta"], dict):
            raise ExperimentPlanError("evaluation.zeta must be null (the shipped table) or {R: zeta}")
        values["zeta"] = {int(r): _positive_float(z, f"evaluation.zeta.{r}") for r, z in raw["zeta"].items()}
        missing = sorted(set(values["accelerations"]) - set(values["zeta"]))
        if missing:
            raise ExperimentPlanError(f"evaluation.zeta: no value for R = {missing}")
    unknown = sorted(set(raw.get("baselines", BASELINES)) - set(BASELINES))
    if unknown:
        raise ExperimentPlanError(f"evaluation.baselines: unknown {unknown}; known: {list(BASELINES)}")
    for key in ("baselines", "cg_iterations", "cs_lambdas", "bart_lambdas"):
        if key in raw:
            values[key] = tuple(raw[key])
            if not values[key]:
                raise ExperimentPlanError(f"evaluation.{key} must not be empty")
    values["paired_reference"] = str(raw.get("paired_reference", "4"))
    values["paired_against"] = tuple(str(m) for m in raw.get("paired_against", ("3", "5")))
    for m in (values["paired_reference"],) + values["paired_against"]:
        if m not in methods:
            raise ExperimentPlanError(f"evaluation: paired test names method {m}, which the plan does not list")
    if raw.get("example_acceleration", values["accelerations"][-1]) not in values["accelerations"]:
        raise ExperimentPlanError("evaluation.example_acceleration must be one of evaluation.accelerations")
    values.setdefault("example_acceleration", values["accelerations"][-1])
    return EvaluationSpec(**values)


def _parse_zeta_sweep(raw, banks, methods, evaluation) -> Optional[ZetaSweepSpec]:
    if raw is None:
        return None
    _take(raw, "zeta_sweep", required=("method", "values"), optional=("bank", "slices", "accelerations"))
    method = str(raw["method"])
    if method not in methods:
        raise ExperimentPlanError(f"zeta_sweep.method: method {method} is not in the plan's methods")
    values = tuple(_positive_float(v, "zeta_sweep.values") for v in raw["values"] or [])
    if len(values) < 2:
        raise ExperimentPlanError("zeta_sweep.values: give at least two values")
    return ZetaSweepSpec(method, _bank_key(raw.get("bank", evaluation.tuning_bank), banks, "zeta_sweep.bank"),
                         values, _positive_int(raw.get("slices", evaluation.tuning_slices), "zeta_sweep.slices"),
                         tuple(_positive_int(r, "zeta_sweep.accelerations")
                               for r in raw.get("accelerations", evaluation.accelerations)))


def _display_path(path: Path) -> str:
    """``path`` relative to the current folder when it lies below it (for records that get committed)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_plan(path) -> ExperimentPlan:
    """Read and check a plan file (see the module docstring); raises :class:`ExperimentPlanError`."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ExperimentPlanError(f"experiment plan {path} not found") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ExperimentPlanError(f"experiment plan {path} is not valid YAML: {exc}") from None
    _take(raw, f"plan {path}",
          required=("name", "banks", "network", "target_contrast", "source_contrasts", "trainings", "methods",
                    "evaluation"),
          optional=("description", "target_subjects", "train_defaults", "ablation", "zeta_sweep"))
    banks = _take(raw["banks"], "banks", optional=list(raw["banks"] or {}))
    if not banks:
        raise ExperimentPlanError("banks: name at least one slice bank")
    network = _take(raw["network"], "network", required=("preset", "image_size"))
    raw.setdefault("target_subjects", 20)
    _positive_int(raw["target_subjects"], "target_subjects")
    train_defaults = _check_train_fields(raw.get("train_defaults") or {}, "train_defaults")
    if not isinstance(raw["trainings"], dict) or not raw["trainings"]:
        raise ExperimentPlanError("trainings must be a non-empty mapping NAME -> training")
    trainings = {str(n): _parse_training(str(n), t, raw, banks) for n, t in raw["trainings"].items()}
    for spec in trainings.values():
        if spec.init_from is not None and spec.init_from not in trainings:
            raise ExperimentPlanError(f"trainings.{spec.name}.init_from: unknown training {spec.init_from!r}")
    _dependency_order(trainings)
    methods = _parse_methods(raw["methods"], trainings)
    evaluation = _parse_evaluation(raw["evaluation"], banks, methods)
    plan = ExperimentPlan(
        name=str(raw["name"]), description=str(raw.get("description") or "").strip(), path=_display_path(path),
        sha256=hashlib.sha256(text.encode()).hexdigest(), banks={str(k): str(v) for k, v in banks.items()},
        preset=str(network["preset"]), image_size=_positive_int(network["image_size"], "network.image_size"),
        source_contrasts=tuple(raw["source_contrasts"]), target_contrast=str(raw["target_contrast"]),
        target_subjects=raw["target_subjects"], train_defaults=train_defaults, trainings=trainings,
        methods=methods, ablation=_parse_ablation(raw.get("ablation"), trainings), evaluation=evaluation,
        zeta_sweep=_parse_zeta_sweep(raw.get("zeta_sweep"), banks, methods, evaluation))
    for name in plan.all_trainings():  # every training must resolve to a valid TrainConfig
        try:
            plan.train_config(name, data="-", val_data="-", init_checkpoint="-" if
                              plan.all_trainings()[name].init_from else "")
        except ReconInputError as exc:
            raise ExperimentPlanError(f"trainings.{name}: {exc}") from None
    return plan
