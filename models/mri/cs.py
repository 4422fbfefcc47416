"""L1-wavelet compressed sensing by FISTA: the classical baseline DPS is compared with.

Solves, per slice,

    min_x  0.5 ||A x - y||_2^2 + lam_abs ||Psi_detail x||_1

with ``A`` the :class:`~models.mri.operators.SenseOperator` and ``Psi`` an orthogonal
wavelet (:mod:`models.mri.wavelets`), by FISTA (Beck & Teboulle 2009, SIAM J.
Imaging Sci. 2:183) with constant step ``1 / L``, ``L`` = largest eigenvalue of
``A^H A`` from power iteration (times a 2% safety margin). This is the model
solved by BART ``pics -l1`` (Lustig et al. 2007, MRM 58:1182; Uecker et al.).

Regularisation is *relative*: ``lam_abs = lam * max|A^H y|`` per slice, so one
``lam`` suits data of any intensity scale (both terms of the objective then
scale as ``s^2`` when ``y`` is scaled by ``s``).

Optional random cycle spinning (as BART does by default): each iteration shifts
the image circularly by a random offset below ``2**levels`` before the
wavelet shrinkage and shifts it back, which averages out blocky wavelet
artefacts. With cycle spinning off the iteration is textbook FISTA and obeys
its ``O(1/k^2)`` objective bound.

The wavelet step runs in numpy (PyWavelets): each iteration copies the image
from torch to numpy and back. That is cheap next to the FFTs on the CPU; on a
GPU it costs a device round trip per iteration.

Shapes: k-space and maps ``[B, C, H, W]``, images ``[B, H, W]``, complex64.
"""

import logging
import math
import time
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np
import torch

from models.errors import ReconInputError
from models.mri.checks import require_finite
from models.mri.metrics import nrmse
from models.mri.operators import SenseOperator
from models.mri.wavelets import WaveletTransform

logger = logging.getLogger(__name__)

SAFETY = 1.02  # power iteration approaches L from below; the step must not exceed 1/L


class CSResult(NamedTuple):
    """Output of :func:`cs_wavelet`."""

    image: torch.Tensor  # complex [B, H, W]
    lam_abs: torch.Tensor  # absolute regularisation weight per slice [B]
    lipschitz: torch.Tensor  # step-size constant L per slice [B]
    objective: Optional[list]  # per-iteration objective [B] arrays, when tracked


def operator_norm(normal: Callable, shape, dtype=torch.complex64, device=None, iterations: int = 30,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Largest eigenvalue of a Hermitian PSD ``normal`` operator per slice, by power iteration.

    Returns ``[B]`` (float). Starts from a seeded complex Gaussian image of ``shape`` ``[B, H, W]``.
    """
    real = torch.randn(shape, generator=generator)
    imag = torch.randn(shape, generator=generator)
    x = torch.complex(real, imag).to(device=device, dtype=dtype)
    axes = tuple(range(1, len(shape)))
    scale = (-1,) + (1,) * (len(shape) - 1)
    eig = torch.zeros(shape[0], device=device)
    for _ in range(iterations):
        x = x / torch.linalg.vector_norm(x, dim=axes).clamp_min(1e-30).view(scale)
        y = normal(x)
        eig = (x.conj() * y).real.sum(dim=axes)
        x = y
    return eig


def cs_objective(image: torch.Tensor, op: SenseOperator, kspace: torch.Tensor, lam_abs: torch.Tensor,
                 transform: WaveletTransform) -> np.ndarray:
    """``0.5 ||A x - y||^2 + lam_abs ||Psi_detail x||_1`` per slice (numpy ``[B]``)."""
    residual = op.forward(image) - op.mask * kspace
    fidelity = 0.5 * residual.abs().pow(2).sum(dim=(-3, -2, -1)).double().cpu().numpy()
    return fidelity + lam_abs.double().cpu().numpy() * transform.detail_l1(image.detach().cpu().numpy())


def cs_wavelet(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float = 2e-3,
               iterations: int = 100, wavelet: str = "db2", levels: int = None, cycle_spin: bool = True,
               generator: Optional[torch.Generator] = None, track_objective: bool = False,
               x0: Optional[torch.Tensor] = None) -> CSResult:
    """L1-wavelet compressed-sensing SENSE reconstruction by FISTA.

    Args:
        kspace: measured multi-coil k-space ``[B, C, H, W]`` (zeros where not sampled).
        maps: coil sensitivities ``[B, C, H, W]``.
        mask: sampling mask broadcastable to ``[B, 1, H, W]``.
        lam: regularisation relative to ``max|A^H y|`` of each slice (>= 0).
        iterations: FISTA iterations.
        wavelet, levels: see :class:`~models.mri.wavelets.WaveletTransform`; the default ``db2``
            is the 4-tap Daubechies wavelet of Lustig et al. 2007 and BART's default ``dau2``.
        cycle_spin: random circular shifts per iteration (seeded by ``generator``).
        generator: seeds power iteration and cycle spinning.
        track_objective: record the objective after each iteration (one extra forward each).
        x0: optional start image ``[B, H, W]`` (default zero).
    Returns:
        :class:`CSResult` with the complex image ``[B, H, W]`` in the units of ``A^H y``.
    """
    require_finite("kspace", kspace)
    require_finite("maps", maps)
    if not lam >= 0:
        raise ReconInputError(f"cs_wavelet: lam must be >= 0, got {lam}")
    if iterations < 1:
        raise ReconInputError(f"cs_wavelet: iterations must be >= 1, got {iterations}")
    op = SenseOperator(maps, mask)
    transform = WaveletTransform(wavelet, levels)
    aty = op.adjoint(kspace)
    shape = op.image_shape
    scale = (-1, 1, 1)

    lipschitz = SAFETY * operator_norm(op.normal, shape, aty.dtype, aty.device, generator=generator)
    lam_abs = lam * aty.abs().amax(dim=(-2, -1))
    threshold = (lam_abs / lipschitz).cpu().numpy().reshape(scale)
    step = (1.0 / lipschitz).view(scale).to(aty.real.dtype)
    block = 2 ** transform.levels_for(shape)

    x = torch.zeros_like(aty) if x0 is None else x0.to(aty.dtype).clone()
    z = x.clone()
    t = 1.0
    history = [] if track_objective else None
    start = time.perf_counter()
    for _ in range(iterations):
        gradient = op.normal(z) - aty
        point = (z - step * gradient).cpu().numpy()
        if cycle_spin:
            shift = tuple(int(s) for s in torch.randint(block, (2,), generator=generator))
            point = np.roll(point, shift, axis=(-2, -1))
            point = np.roll(transform.shrink(point, threshold), (-shift[0], -shift[1]), axis=(-2, -1))
        else:
            point = transform.shrink(point, threshold)
        x_new = torch.from_numpy(np.ascontiguousarray(point)).to(aty.device)
        t_new = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        z = x_new + ((t - 1.0) / t_new) * (x_new - x)
        x, t = x_new, t_new
        if track_objective:
            history.append(cs_objective(x, op, kspace, lam_abs, transform))
    logger.debug("cs_wavelet: %d FISTA iterations on %s in %.2f s (lam=%g)", iterations, tuple(shape),
                 time.perf_counter() - start, lam)
    return CSResult(x, lam_abs, lipschitz, history)


class TuneResult(NamedTuple):
    """Outcome of :func:`tune_regularization`."""

    best: float  # parameter with the lowest NRMSE
    best_image: object  # that reconstruction
    nrmse: dict  # parameter -> NRMSE against the reference


def tune_regularization(recon: Callable[[float], object], values: Sequence[float], reference) -> TuneResult:
    """Grid search: the parameter whose ``recon(value)`` has the lowest magnitude NRMSE to ``reference``.

    Gives a baseline "its best shot" (an oracle choice: the reference is the
    ground truth). ``recon`` returns an image ``[B, H, W]`` (torch or numpy,
    complex or magnitude) on the reference's intensity scale.
    """
    if len(values) == 0:
        raise ReconInputError("tune_regularization: empty parameter grid")
    scores, best, best_image = {}, None, None
    for value in values:
        image = recon(value)
        scores[value] = nrmse(reference, image)
        logger.info("tune: parameter %g -> NRMSE %.4f", value, scores[value])
        if best is None or scores[value] < scores[best]:
            best, best_image = value, image
    return TuneResult(best, best_image, scores)


def tune_cs_lambda(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, reference,
                   lams: Sequence[float] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2), seed: int = 0,
                   **options) -> TuneResult:
    """Best relative ``lam`` of :func:`cs_wavelet` on a grid, scored by NRMSE against ``reference``.

    Every grid point runs with a fresh generator seeded by ``seed`` (same cycle
    spins), so the grid compares regularisation only.
    """
    def recon(lam):
        generator = torch.Generator().manual_seed(seed)
        return cs_wavelet(kspace, maps, mask, lam=lam, generator=generator, **options).image
    return tune_regularization(recon, list(lams), reference)
