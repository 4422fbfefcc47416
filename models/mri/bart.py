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


def pics_l1(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float, workdir: str,
            iterations: int = 100, wavelet: str = "dau2") -> torch.Tensor:
    """``bart pics -S -l1 -r lam`` of one slice: k-space and maps ``[C, H, W]``, mask ``[W]`` -> image ``[H, W]``.

    BART's dims: 0 = readout (our H), 1 = phase encode (our W), 3 = coils. ``-S``
    keeps the input intensity scale.
    """
    write_cfl(os.path.join(workdir, "ksp"), kspace_to_bart(kspace))
    write_cfl(os.path.join(workdir, "sens"), kspace_to_bart(maps))
    pattern = np.broadcast_to(mask.detach().cpu().numpy().astype(np.complex64), kspace.shape[-2:])
    write_cfl(os.path.join(workdir, "pat"), np.ascontiguousarray(pattern)[:, :, None, None])
    run_bart("pics", "-S", "-l1", "-r", f"{lam:g}", "-i", str(iterations), "-p", "pat", "--wavelet", wavelet,
             "ksp", "sens", "rec", workdir=workdir)
    return torch.from_numpy(np.asarray(read_cfl(os.path.join(workdir, "rec"))).reshape(kspace.shape[-2:]))
