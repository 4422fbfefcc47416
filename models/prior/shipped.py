"""Finding, loading and caching the prior a chain names (``checkpoint``, ``contrast``, ``device``).

``checkpoint="shipped"`` means the prior shipped in ``models/weights/``
(``prior.safetensors``, or the only ``*.safetensors`` there). Loading goes
through :func:`models.prior.checkpoint.load_prior`; the cache keeps one model
per ``(path, device)`` so the resident server loads it once, not per scan.
"""

import logging
import threading
from pathlib import Path
from typing import Optional

from models.errors import CheckpointError

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
SHIPPED_NAME = "prior.safetensors"

_cache = {}
_lock = threading.Lock()


def shipped_checkpoint(weights_dir: Optional[Path] = None) -> Path:
    """Path of the shipped prior; :class:`CheckpointError` naming the folder if there is none."""
    folder = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    preferred = folder / SHIPPED_NAME
    if preferred.is_file():
        return preferred
    candidates = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if len(candidates) == 1:
        return candidates[0]
    found = ", ".join(c.name for c in candidates) or "none"
    raise CheckpointError(f"checkpoint 'shipped': no single prior in {folder} (expected {SHIPPED_NAME}; found "
                          f"{found}); name a checkpoint file with the chain property 'checkpoint'")


def load_cached(path: Path, device):
    """``(prior, metadata)`` for a checkpoint on a device, loaded once per process."""
    from models.prior.checkpoint import load_prior

    key = (str(Path(path).resolve()), str(device))
    with _lock:
        if key not in _cache:
            prior, meta = load_prior(path, device)
            _cache[key] = (prior, meta)
            log.info("prior %s loaded on %s", path, device)
        return _cache[key]


def load_shipped_prior(device="cpu"):
    """The shipped prior (``EDMPrecond``) on ``device``, cached (for benchmarks and scripts)."""
    return load_cached(shipped_checkpoint(), device)[0]


def clear_cache():
    with _lock:
        _cache.clear()
