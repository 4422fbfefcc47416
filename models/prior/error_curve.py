"""The prior's denoising error per noise level, measured on validation images and stored beside the weights.

The DDS sampler (:mod:`models.sampler.dds`) weighs the data against the denoised
estimate by ``v_t``, the per-real-channel error variance ``E|D(x0 + t n) - x0|^2 / 2``
of the denoiser at noise level ``t``. A Gaussian prior of variance ``sigma_data^2``
would give ``t^2 sigma_data^2 / (t^2 + sigma_data^2)``; the trained network does far
better (on the shipped prior's validation FLAIR: 3-50 % of that, least around
``t = 0.5``), so the surrogate trusts the denoised estimate too little and the data too
much, and the best weight then depends on the SNR. The measured curve, interpolated
log-log, is what the sampler uses when a checkpoint has one.

Stored as ``<checkpoint stem>.error_curve.json`` beside the checkpoint: per contrast
the noise levels, the measured ``v_t`` and how it was measured (subjects, slices,
seed). Write it with ``python -m models.prior.error_curve CHECKPOINT`` (validation
split only: the test individuals are never used).
"""

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from models.errors import CheckpointError
from models.tilings import PATCH_TILINGS

log = logging.getLogger(__name__)

#: noise levels at which the curve is measured (EDM's sigma range, log-spaced)
CURVE_SIGMAS = tuple(float(s) for s in np.geomspace(0.002, 80.0, 16))


class ErrorCurve:
    """``v_t`` as a function of ``t``: log-log linear interpolation, extrapolated linearly in log-log."""

    def __init__(self, sigmas: Sequence[float], variances: Sequence[float]):
        sigmas, variances = np.asarray(sigmas, float), np.asarray(variances, float)
        if sigmas.ndim != 1 or sigmas.shape != variances.shape or len(sigmas) < 2:
            raise CheckpointError("error curve: need matching 1-D lists of at least 2 noise levels and variances")
        if not (np.all(np.diff(sigmas) > 0) and np.all(variances > 0) and np.all(np.isfinite(variances))):
            raise CheckpointError("error curve: noise levels must increase and variances be finite and > 0")
        self.sigmas, self.variances = sigmas, variances
        self._log_s, self._log_v = np.log(sigmas), np.log(variances)

    def __call__(self, t: float) -> float:
        x = math.log(t)
        i = int(np.clip(np.searchsorted(self._log_s, x) - 1, 0, len(self._log_s) - 2))
        x0, x1, y0, y1 = self._log_s[i], self._log_s[i + 1], self._log_v[i], self._log_v[i + 1]
        return float(math.exp(y0 + (y1 - y0) * (x - x0) / (x1 - x0)))

    def to_dict(self) -> dict:
        return {"sigmas": self.sigmas.tolist(), "variances": self.variances.tolist()}


@torch.inference_mode()
def measure(denoiser, images: torch.Tensor, sigmas: Sequence[float] = CURVE_SIGMAS, seed: int = 0,
            repeats: int = 2) -> ErrorCurve:
    """``v_t`` of ``denoiser`` (``(x, sigma) -> D``) on clean complex images ``[N, H, W]`` in the prior's units."""
    generator = torch.Generator().manual_seed(seed)
    values = []
    for t in sigmas:
        total = 0.0
        for _ in range(repeats):
            noise = torch.complex(torch.randn(images.shape, generator=generator),
                                  torch.randn(images.shape, generator=generator))
            denoised = denoiser(images + t * noise, torch.full((images.shape[0],), t))
            total += float((denoised - images).abs().pow(2).mean()) / 2
        values.append(total / repeats)
    return ErrorCurve(sigmas, values)


def sidecar_path(checkpoint) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".error_curve.json")


def load_curves(checkpoint) -> Dict[str, ErrorCurve]:
    """The curves stored beside ``checkpoint`` (``{}`` when it has none); a broken file is an error."""
    path = sidecar_path(checkpoint)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        return {name: ErrorCurve(entry["sigmas"], entry["variances"]) for name, entry in data["contrasts"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a valid error-curve file ({exc}); rewrite it with "
                              f"`python -m models.prior.error_curve {checkpoint}`") from exc


def validation_images(contrast: str, normalization, subjects: int = 2, slices: Sequence[int] = (5, 7, 9, 11),
                      seed: int = 1) -> torch.Tensor:
    """Normalised complex FLAIR/T1/... slices ``[N, 128, 128]`` of VALIDATION-split subjects."""
    from models.data.anatomy import make_subject
    from models.data.splits import subject_ids

    images = []
    for subject_id in subject_ids("val", subjects):
        subject = make_subject(subject_id, seed=seed)
        for k in slices:
            if k < subject.num_slices:
                image = subject.sample(k, contrast).image
                images.append(torch.from_numpy(image * normalization.scale_from_image(image)))
    if not images:
        raise CheckpointError(f"no validation slices for {contrast}")
    return torch.stack(images).to(torch.complex64)


def main(argv: Optional[Sequence[str]] = None):
    parser = argparse.ArgumentParser(description="Measure the prior's denoising error per noise level on "
                                                 "validation images; write <checkpoint>.error_curve.json.")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--contrasts", nargs="*", help="default: every contrast of the checkpoint")
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tiling", choices=PATCH_TILINGS, default="whole",
                        help="a patch prior's whole-image tiling (measure it as the chains run it: their "
                             "patch_tiling, whole)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from models.prior.checkpoint import load_prior
    from models.sampler.denoisers import PriorDenoiser

    prior, meta = load_prior(args.checkpoint, "cpu")
    contrasts = args.contrasts or list(meta.contrasts)
    out = {"about": "per-real-channel error variance of the denoiser, E|D(x0 + t n) - x0|^2 / 2, on "
                    "validation-split slices (models/prior/error_curve.py)",
           "subjects": args.subjects, "seed": args.seed, "tiling": args.tiling, "contrasts": {}}
    for contrast in contrasts:
        images = validation_images(contrast, prior.normalization, subjects=args.subjects, seed=args.seed)
        denoiser = PriorDenoiser(prior, prior.vocabulary.one_hot([contrast]), patch_tiling=args.tiling)
        curve = measure(denoiser, images, seed=args.seed)
        out["contrasts"][contrast] = dict(curve.to_dict(), slices=int(images.shape[0]))
        log.info("%s: %d slices, v_t from %.3g (t = %.3g) to %.3g (t = %.3g)", contrast, images.shape[0],
                 curve.variances[0], curve.sigmas[0], curve.variances[-1], curve.sigmas[-1])
    path = sidecar_path(args.checkpoint)
    path.write_text(json.dumps(out, indent=1) + "\n")
    log.info("wrote %s", path)


if __name__ == "__main__":
    main()
