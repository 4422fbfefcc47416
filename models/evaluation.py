"""Scoring reconstructions of held-out slices: the engine behind benchmarks and ``evaluate``.

Test scans are simulated from the clean slices of a slice bank (seeded coil
arrays, noise and equispaced masks with ACS lines, see
:mod:`models.mri.scan_simulation`); coil maps are estimated from the ACS lines
as the product does, and every method reconstructs the same k-space with the
same maps. Scores are fastMRI's NRMSE / PSNR / SSIM of the magnitude against
the clean slice.
"""

import logging
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import torch

from models.data.slice_bank import read_slice_bank
from models.mri.coil_maps import estimate_coil_maps
from models.mri.metrics import nrmse, psnr, ssim
from models.mri.scan_simulation import UndersampledScan, simulate_undersampled_scan
from models.reconstruction import ReconSettings, reconstruct

log = logging.getLogger(__name__)


class TestCase(NamedTuple):
    truth: torch.Tensor  # complex [H, W], normalised clean slice
    scan: UndersampledScan  # one slice
    maps: torch.Tensor  # [1, C, H, W] estimated from the ACS lines
    name: str  # subject/slice


class Score(NamedTuple):
    nrmse: float
    psnr: float
    ssim: float
    seconds: float


def load_test_slices(bank_path, contrast: str, count: int) -> List[tuple]:
    """``count`` evenly spaced ``(image, name)`` slices of ``contrast`` from a bank."""
    record = read_slice_bank(bank_path)
    idx = np.flatnonzero(record.contrast == contrast)
    if len(idx) == 0:
        raise ValueError(f"{bank_path} holds no {contrast} slices")
    picks = idx[np.unique(np.linspace(0, len(idx) - 1, min(count, len(idx))).round().astype(int))]
    return [(torch.from_numpy(record.images[i]), f"{record.subject[i]}/{record.slice_index[i]}") for i in picks]


def make_test_cases(slices, acceleration: int, num_acs: int = 24, coils: int = 12, snr: float = 30.0,
                    seed: int = 0, coil_method: Optional[str] = None) -> List[TestCase]:
    """Simulated scans of ``slices`` at ``acceleration`` (seeded per slice), maps from the ACS lines."""
    cases = []
    for k, (image, name) in enumerate(slices):
        g = torch.Generator().manual_seed(seed * 100003 + k)
        scan = simulate_undersampled_scan(image, acceleration, num_acs=num_acs, coils=coils, snr=snr, generator=g)
        maps = estimate_coil_maps(scan.kspace, method=coil_method, acs=scan.acs)
        cases.append(TestCase(image, scan, maps, name))
    return cases


def score(truth, image, seconds: float) -> Score:
    return Score(nrmse(truth, image), psnr(truth, image), ssim(truth, image), seconds)


def run_method(cases: Sequence[TestCase], settings: ReconSettings, prior=None) -> List[Score]:
    """Reconstruct each case with ``settings``; one :class:`Score` per case."""
    scores = []
    for case in cases:
        start = time.perf_counter()
        out = reconstruct(case.scan.kspace, case.maps, case.scan.mask.mask, settings, prior=prior)
        scores.append(score(case.truth, out.image[0], time.perf_counter() - start))
    return scores


def run_callable(cases: Sequence[TestCase], recon: Callable[[TestCase], torch.Tensor]) -> List[Score]:
    """Score an arbitrary reconstruction function ``case -> image [H, W]`` (e.g. BART)."""
    scores = []
    for case in cases:
        start = time.perf_counter()
        image = recon(case)
        scores.append(score(case.truth, image, time.perf_counter() - start))
    return scores


def summarize(scores: Sequence[Score]) -> Dict[str, float]:
    """Mean and std over cases of every field."""
    arr = np.array([tuple(s) for s in scores], dtype=np.float64)
    out = {}
    for i, name in enumerate(Score._fields):
        out[name] = float(arr[:, i].mean())
        out[name + "_std"] = float(arr[:, i].std(ddof=1)) if len(arr) > 1 else 0.0
    return out


def tune(cases: Sequence[TestCase], make_settings: Callable[[float], ReconSettings], values: Sequence[float],
         prior=None) -> tuple:
    """Grid search of one parameter by mean NRMSE; returns ``(best value, {value: mean NRMSE})``."""
    table = {}
    for value in values:
        table[value] = summarize(run_method(cases, make_settings(value), prior))["nrmse"]
        log.info("tune: %g -> NRMSE %.4f", value, table[value])
    return min(table, key=table.get), table
