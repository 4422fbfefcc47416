"""Prior checkpoints: safetensors weights + JSON metadata in one file, no pickle.

File layout: a ``.safetensors`` file whose tensors are the U-Net ``state_dict``
under ``net.`` (the weights used for inference: the EMA weights when an EMA is
given) and, optionally, the raw training weights under ``raw.``. The header's
string metadata holds one key, ``"dps_prior"``, a JSON document
(:class:`PriorMetadata`): architecture, contrast vocabulary, normalisation,
image size, ``sigma_data``/``sigma_min``/``sigma_max``, training description,
steps, code version, and a SHA-256 of the stored tensors.

Loading never unpickles anything. Any problem (missing file, truncated or
corrupt file, bad JSON, missing fields, checksum, missing/unexpected keys,
shape mismatch, vocabulary vs ``label_dim``) raises :class:`CheckpointError`
naming the file and the problem.
"""

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

import models
from models.errors import CheckpointError, ReconInputError
from models.prior.contrasts import ContrastVocabulary
from models.prior.ema import EMA
from models.prior.error_curve import load_curves
from models.prior.normalization import DEFAULT_NORMALIZATION, IntensityNormalization
from models.prior.patches import PATCH_SIZES, PatchPrecond
from models.prior.precond import EDMPrecond
from models.prior.unet import UNet, UNetConfig

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
METADATA_KEY = "dps_prior"
MAIN_PREFIX = "net."
RAW_PREFIX = "raw."

PathLike = Union[str, os.PathLike]


@dataclass
class PriorMetadata:
    """Everything needed to rebuild and use a prior, stored as JSON with the weights."""

    unet: dict
    contrasts: List[str]
    normalization: dict
    image_size: List[int]
    sigma_data: float
    sigma_min: float
    sigma_max: float
    weights: str = "ema"  # what the "net." tensors are: "ema" or "raw"
    dtype: str = "float32"  # storage dtype of the tensors
    augment: Optional[dict] = None
    training: dict = field(default_factory=dict)
    steps: int = 0
    prior: dict = field(default_factory=lambda: {"kind": "image"})  # or {"kind": "patch", "patch_sizes": [...]}
    code_version: str = models.__version__
    format_version: int = FORMAT_VERSION
    sha256: str = ""

    @property
    def vocabulary(self) -> ContrastVocabulary:
        return ContrastVocabulary(self.contrasts)

    @property
    def unet_config(self) -> UNetConfig:
        return UNetConfig.from_dict(self.unet)

    @property
    def intensity_normalization(self) -> IntensityNormalization:
        return IntensityNormalization.from_dict(self.normalization)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def _net_of(model: torch.nn.Module) -> UNet:
    net = getattr(model, "net", model)
    if not isinstance(net, UNet):
        raise ReconInputError(f"expected an EDMPrecond or UNet, got {type(model).__name__}")
    return net


def _digest(tensors: Dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key]
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_prior(
    path: PathLike,
    precond: EDMPrecond,
    *,
    image_size: Sequence[int],
    normalization: IntensityNormalization = DEFAULT_NORMALIZATION,
    ema: Optional[EMA] = None,
    augment: Optional[dict] = None,
    training: Optional[dict] = None,
    steps: int = 0,
    fp16: bool = False,
    include_raw: bool = False,
) -> PriorMetadata:
    """Write ``precond`` (its EMA weights if ``ema`` is given) to ``path``; returns the metadata.

    ``image_size``: ``(H, W)`` of the training images. ``fp16`` stores half-precision
    tensors for shipping (cast back to float32 on load). ``include_raw`` also stores
    the raw (non-EMA) weights under ``raw.`` for resuming training. The write is
    atomic (temporary file, then rename).
    """
    if precond.vocabulary is None:
        raise ReconInputError("save_prior needs precond.vocabulary (the contrast names of the slots)")
    net = _net_of(precond)
    if len(precond.vocabulary) != net.config.label_dim:
        raise ReconInputError(
            f"vocabulary has {len(precond.vocabulary)} contrasts but the network has {net.config.label_dim} slots"
        )
    main_net = _net_of(ema.module) if ema is not None else net
    dtype = torch.float16 if fp16 else torch.float32

    def prepare(state, prefix):
        return {prefix + k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
                for k, v in state.items()}

    tensors = prepare(main_net.state_dict(), MAIN_PREFIX)
    if include_raw:
        tensors.update(prepare(net.state_dict(), RAW_PREFIX))
    meta = PriorMetadata(
        unet=net.config.to_dict(),
        contrasts=precond.vocabulary.to_list(),
        normalization=normalization.to_dict(),
        image_size=[int(s) for s in image_size],
        sigma_data=precond.sigma_data,
        sigma_min=precond.sigma_min,
        sigma_max=precond.sigma_max,
        weights="ema" if ema is not None else "raw",
        dtype="float16" if fp16 else "float32",
        augment=augment,
        training=dict(training or {}),
        steps=int(steps),
        prior=prior_kind(precond),
        sha256=_digest(tensors),
    )
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={METADATA_KEY: meta.to_json()})
    os.replace(tmp, path)
    logger.info("saved prior to %s (%d tensors, %s, weights=%s)", path, len(tensors), meta.dtype, meta.weights)
    return meta


def prior_kind(precond) -> dict:
    """The checkpoint's ``prior`` entry: the kind of denoiser the weights belong to."""
    if isinstance(precond, PatchPrecond):
        return {"kind": "patch", "patch_sizes": list(precond.patch_sizes)}
    return {"kind": "image"}


def _parse_metadata(path: Path, header: Optional[dict]) -> PriorMetadata:
    if not header or METADATA_KEY not in header:
        raise CheckpointError(f"{path}: no '{METADATA_KEY}' metadata in the safetensors header")
    try:
        raw = json.loads(header[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: metadata is not a JSON object")
    fields = {f.name for f in dataclasses.fields(PriorMetadata)}
    required = {f.name for f in dataclasses.fields(PriorMetadata)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing = sorted(required - set(raw))
    if missing:
        raise CheckpointError(f"{path}: metadata lacks fields {missing}")
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise CheckpointError(f"{path}: metadata has unknown fields {unknown}")
    meta = PriorMetadata(**raw)
    if meta.format_version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {meta.format_version}, this code reads {FORMAT_VERSION}")
    try:
        config = meta.unet_config
        vocab = meta.vocabulary
        meta.intensity_normalization
    except (ReconInputError, TypeError) as exc:
        raise CheckpointError(f"{path}: invalid metadata ({exc})") from None
    if meta.prior.get("kind") not in ("image", "patch"):
        raise CheckpointError(f"{path}: unknown prior kind {meta.prior.get('kind')!r} (image or patch)")
    if len(vocab) != config.label_dim:
        raise CheckpointError(
            f"{path}: {len(vocab)} contrast names {vocab.to_list()} but the architecture has label_dim={config.label_dim}"
        )
    if len(meta.image_size) != 2 or any(s % config.size_multiple for s in meta.image_size):
        raise CheckpointError(
            f"{path}: image_size {meta.image_size} is not two sizes divisible by {config.size_multiple}"
        )
    return meta


def _open(path: PathLike) -> Tuple[Path, PriorMetadata, Dict[str, torch.Tensor]]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata()
            meta = _parse_metadata(path, header)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except SafetensorError as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {exc}") from None
    except (OSError, RuntimeError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc}") from None
    digest = _digest(tensors)
    if digest != meta.sha256:
        raise CheckpointError(f"{path}: tensor checksum mismatch (file corrupt or edited)")
    return path, meta, tensors


def read_metadata(path: PathLike) -> PriorMetadata:
    """Metadata of a checkpoint (validated; the tensors are read and checksummed too)."""
    return _open(path)[1]


def _state_for(path: Path, tensors, prefix: str, net: UNet) -> Dict[str, torch.Tensor]:
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not state:
        raise CheckpointError(f"{path}: no tensors under '{prefix}'")
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the architecture in the metadata: "
            f"missing keys {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected keys {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    bad = [f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
           for k, v in state.items() if v.shape != expected[k].shape]
    if bad:
        raise CheckpointError(f"{path}: shape mismatch: {bad[:5]}")
    out = {}
    for k, v in state.items():
        v = v.to(expected[k].dtype)
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{path}: non-finite values in weight {k}")
        out[k] = v
    return out


def load_prior(
    path: PathLike, device: Union[str, torch.device] = "cpu", weights: str = "main"
) -> Tuple[EDMPrecond, PriorMetadata]:
    """Rebuild the prior: ``(EDMPrecond in eval mode on device, metadata)``.

    ``weights="main"`` loads the inference weights (EMA when saved with one);
    ``weights="raw"`` loads the raw training weights (only if saved with
    ``include_raw=True``). Weights are float32 whatever the storage dtype.
    """
    if weights not in ("main", "raw"):
        raise ReconInputError(f"weights must be 'main' or 'raw', got {weights!r}")
    path, meta, tensors = _open(path)
    net = UNet(meta.unet_config)
    state = _state_for(path, tensors, MAIN_PREFIX if weights == "main" else RAW_PREFIX, net)
    net.load_state_dict(state, strict=True)
    kwargs = dict(sigma_data=meta.sigma_data, sigma_min=meta.sigma_min, sigma_max=meta.sigma_max,
                  vocabulary=meta.vocabulary, normalization=meta.intensity_normalization,
                  error_curves=load_curves(path))
    if meta.prior["kind"] == "patch":  # samplers tile it over the image (models.prior.patches.whole_image_prior)
        precond = PatchPrecond(net, patch_sizes=meta.prior.get("patch_sizes", PATCH_SIZES), **kwargs)
    else:
        precond = EDMPrecond(net, **kwargs)
    precond.pixel_range_mm = meta.training.get("pixel_mm")  # what it was trained on (None: not recorded)
    precond = precond.to(device).eval().requires_grad_(False)
    logger.info("loaded prior %s: contrasts %s, %s weights, %d steps", path, meta.contrasts, meta.weights, meta.steps)
    return precond, meta
