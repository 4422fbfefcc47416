"""Thin wrapper around the BART command line, the independent reference of benchmarks and
evaluations (``bart`` on PATH: Debian package ``bart``)."""

import os
import subprocess

import numpy as np
import torch

from models.mri.cfl import kspace_to_bart, read_cfl, write_cfl


def run_bart(*args, workdir):
    done = subprocess.run(["bart", *args], cwd=workdir, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bart {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def pics(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float, workdir: str,
         regularizer: str = "l1", iterations: int = 100, wavelet: str = "dau2") -> torch.Tensor:
    """``bart pics -S -<regularizer> -r lam`` of one slice -> image ``[H, W]``.

    k-space and maps ``[C, H, W]``; mask ``[W]`` or ``[H, W]``. ``regularizer``:
    ``l1`` (wavelet sparsity) or ``l2`` (Tikhonov). BART's dims: 0 = readout (our
    H), 1 = phase encode (our W), 3 = coils. ``-S`` keeps the input intensity scale.
    """
    if regularizer not in ("l1", "l2"):
        raise ValueError(f"pics: regularizer must be l1 or l2, got {regularizer!r}")
    write_cfl(os.path.join(workdir, "ksp"), kspace_to_bart(kspace))
    write_cfl(os.path.join(workdir, "sens"), kspace_to_bart(maps))
    pattern = np.broadcast_to(mask.detach().cpu().numpy().astype(np.complex64), kspace.shape[-2:])
    write_cfl(os.path.join(workdir, "pat"), np.ascontiguousarray(pattern)[:, :, None, None])
    extra = ["--wavelet", wavelet] if regularizer == "l1" else []
    run_bart("pics", "-S", f"-{regularizer}", "-r", f"{lam:g}", "-i", str(iterations), "-p", "pat", *extra,
             "ksp", "sens", "rec", workdir=workdir)
    return torch.from_numpy(np.asarray(read_cfl(os.path.join(workdir, "rec"))).reshape(kspace.shape[-2:]))


def pics_l1(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float, workdir: str,
            iterations: int = 100, wavelet: str = "dau2") -> torch.Tensor:
    """``bart pics -S -l1 -r lam`` of one slice (see :func:`pics`)."""
    return pics(kspace, maps, mask, lam, workdir, "l1", iterations, wavelet)


def ecalib(kspace: torch.Tensor, workdir: str, calibration: int = 24) -> torch.Tensor:
    """``bart ecalib -m1 -r calibration`` maps ``[C, H, W]`` of one slice's k-space ``[C, H, W]``."""
    write_cfl(os.path.join(workdir, "ksp_cal"), kspace_to_bart(kspace))
    run_bart("ecalib", "-m1", "-r", str(calibration), "ksp_cal", "sens_cal", workdir=workdir)
    maps = np.asarray(read_cfl(os.path.join(workdir, "sens_cal"))).reshape(kspace.shape[1], kspace.shape[2], -1)
    return torch.from_numpy(np.ascontiguousarray(maps.transpose(2, 0, 1)))
