"""Simulated coil arrays, a brain-like test phantom, and noisy multi-coil k-space.

Test data for the physics code until real anatomy arrives from ``models.data``.
Everything is pure torch, complex64, on the caller's device, seeded through a
``torch.Generator``.

Geometry: the grid is ``[H, W]`` (``H`` readout rows, ``W`` phase-encode columns,
see :mod:`models.mri.fft`); positions are normalised so that ``y`` (rows) and
``x`` (columns) run over ``[-1, 1)`` across the field of view, centre pixel
``(H // 2, W // 2)`` at ``(0, 0)``.

Coil model: small circular loops on one or two rings around the head (a
"birdcage-like" receive array). The magnitude follows the on-axis Biot-Savart
fall-off of a loop of radius ``a``, ``(a^2 / (a^2 + d^2))^(3/2)`` with ``d`` the
3D distance to the loop centre; the phase is a per-coil offset plus a smooth
ramp along the ring tangent (the B1- field turning around the loop). See
Roemer et al., "The NMR phased array", MRM 16:192 (1990) for arrays of this kind.
"""

import math
from typing import NamedTuple, Optional

import torch

from models.errors import ReconInputError, ShapeError
from models.mri.checks import require_finite
from models.mri.fft import fft2c


def _grid(shape, device):
    """Normalised coordinates ``(y, x)``, each ``[H, W]`` float32 in ``[-1, 1)``."""
    height, width = shape
    y = (torch.arange(height, device=device, dtype=torch.float32) - height // 2) / (height / 2)
    x = (torch.arange(width, device=device, dtype=torch.float32) - width // 2) / (width / 2)
    return torch.meshgrid(y, x, indexing="ij")


def _uniform(generator, low, high, size=(), device=None):
    return low + (high - low) * torch.rand(size, generator=generator, device=device or "cpu")


def simulate_coil_maps(num_coils: int, shape, generator: Optional[torch.Generator] = None,
                       ring_axes=(1.08, 0.92), loop_radius: float = 0.35, normalize: str = "rss",
                       device=None) -> torch.Tensor:
    """Smooth complex sensitivities of ``num_coils`` loops around the object.

    Coils sit on an elliptical ring with semi-axes ``ring_axes = (rows, columns)``
    in half-FOV units, by default ~0.15 outside the scalp of :func:`brain_phantom`
    (a close-fitting head array, so sensitivity changes fastest in the scalp);
    more than 12 coils are split over two rings at ``z = +-0.4`` with staggered
    angles. The generator jitters angles (up to a quarter spacing), ring size
    (5 %), per-coil phase offsets and phase-ramp slopes.

    Args:
        num_coils: number of receive coils ``C`` (>= 1).
        shape: ``(H, W)``.
        generator: CPU ``torch.Generator`` for the jitter; ``None`` uses a fixed seed.
        ring_axes, loop_radius: geometry in half-FOV units.
        normalize: ``"rss"`` scales the maps to ``sum_c |S_c|^2 = 1`` at every pixel
            (the convention of ESPIRiT maps, so an image reconstructed with
            estimated maps is comparable with the simulated one); ``"peak"``
            keeps the physical shading and scales the maximum RSS to 1.
        device: device of the result.
    Returns:
        maps ``[C, H, W]`` complex64.
    """
    if num_coils < 1:
        raise ShapeError(f"simulate_coil_maps: need at least one coil, got {num_coils}")
    if normalize not in ("rss", "peak"):
        raise ReconInputError(f"simulate_coil_maps: normalize must be 'rss' or 'peak', got {normalize!r}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    y, x = _grid(shape, device)
    rings = 2 if num_coils > 12 else 1
    maps = []
    for c in range(num_coils):
        ring = c % rings
        per_ring = math.ceil(num_coils / rings)
        index = c // rings
        spacing = 2 * math.pi / per_ring
        angle = index * spacing + ring * spacing / 2 + float(_uniform(generator, -0.25, 0.25)) * spacing
        scale = float(_uniform(generator, 0.95, 1.05))
        z = 0.0 if rings == 1 else (0.4 if ring == 0 else -0.4)
        py, px = scale * ring_axes[0] * math.sin(angle), scale * ring_axes[1] * math.cos(angle)
        dist2 = (y - py) ** 2 + (x - px) ** 2 + z ** 2
        magnitude = (loop_radius ** 2 / (loop_radius ** 2 + dist2)) ** 1.5
        # Tangent direction of the ring at the coil: the phase ramps along it.
        ty, tx = math.cos(angle), -math.sin(angle)
        slope = float(_uniform(generator, 0.5, 1.5))
        offset = float(_uniform(generator, 0.0, 2 * math.pi))
        phase = offset + slope * ((y - py) * ty + (x - px) * tx)
        maps.append(torch.polar(magnitude, phase))
    maps = torch.stack(maps).to(torch.complex64)
    rss = maps.abs().pow(2).sum(dim=0).sqrt()
    if normalize == "rss":
        return maps / rss
    return maps / rss.max()


class BrainPhantom(NamedTuple):
    """A brain-like test object and its masks (all ``[H, W]``)."""

    image: torch.Tensor  # complex64, magnitude in [0, 1]
    support: torch.Tensor  # bool, the whole head (scalp included)
    scalp: torch.Tensor  # bool, the scalp shell alone


def _ellipse(y, x, centre, axes, angle=0.0, radial_ripple=None):
    """Boolean inside-mask of a rotated ellipse; ``radial_ripple=(amp, n)`` makes
    the border wavy (gyri-like)."""
    cy, cx = centre
    ay, ax = axes
    cos, sin = math.cos(angle), math.sin(angle)
    dy, dx = y - cy, x - cx
    u = dx * cos + dy * sin
    v = -dx * sin + dy * cos
    r = torch.sqrt((u / ax) ** 2 + (v / ay) ** 2)
    limit = torch.ones_like(r)
    if radial_ripple is not None:
        amp, n = radial_ripple
        limit = limit + amp * torch.sin(n * torch.atan2(v, u))
    return r <= limit


def brain_phantom(shape, generator: Optional[torch.Generator] = None, scale: float = 1.0,
                  device=None) -> BrainPhantom:
    """Axial-head-like phantom: scalp shell, dark skull ring, CSF rim, wavy grey /
    white matter boundary, ventricles, small fine structures and a lesion, with a
    smooth (low-order polynomial) phase.

    Intensities are T2/FLAIR-like but only indicative (scalp fat 0.8, skull 0.03,
    CSF 1.0, grey matter 0.65, white matter 0.45). The scalp is ~3 % of the FOV
    thick, i.e. thinner than the resolution of a 24-line calibration region on a
    96-line grid, which is what makes map support matter.

    Args:
        shape: ``(H, W)``.
        generator: draws the phase coefficients and a small geometry jitter;
            ``None`` gives a fixed phantom.
        scale: head size relative to the default, which spans 92 % of the FOV in
            the readout and 76 % in the phase-encode direction.
        device: device of the result.
    """
    y, x = _grid(shape, device)
    y, x = y / scale, x / scale
    if generator is None:
        jitter = lambda: 0.0  # noqa: E731
        coeffs = (0.3, 0.5, -0.4, 0.6)
    else:
        jitter = lambda: float(_uniform(generator, -0.02, 0.02))  # noqa: E731
        coeffs = tuple(float(v) for v in _uniform(generator, -0.8, 0.8, (4,)))
    head = _ellipse(y, x, (0.0, 0.0), (0.92, 0.76))
    skull_out = _ellipse(y, x, (0.0, 0.0), (0.86, 0.70))
    skull_in = _ellipse(y, x, (0.0, 0.0), (0.80, 0.64))
    brain = _ellipse(y, x, (0.0, 0.0), (0.77, 0.61))
    white = _ellipse(y, x, (0.02 + jitter(), 0.0), (0.60, 0.46), radial_ripple=(0.06, 14))
    mag = torch.zeros_like(y)
    mag[head] = 0.8
    mag[skull_out] = 0.03
    mag[skull_in] = 1.0  # CSF rim
    mag[brain] = 0.65
    mag[white] = 0.45
    for side in (-1.0, 1.0):  # lateral ventricles
        mag[_ellipse(y, x, (-0.05 + jitter(), side * (0.09 + jitter())), (0.22, 0.06), angle=side * 0.25)] = 1.0
    for cy, cx, r in ((0.35, -0.25, 0.03), (0.38, -0.15, 0.02), (0.40, -0.07, 0.015),
                      (-0.45, 0.2, 0.025), (0.1, 0.33, 0.02)):  # fine dots
        mag[_ellipse(y, x, (cy + jitter(), cx), (r, r))] = 0.9
    mag[_ellipse(y, x, (0.25 + jitter(), 0.28), (0.08, 0.05), angle=0.6)] = 0.95  # lesion
    mag[(y.abs() < 0.35) & ((x - 0.0).abs() < 0.012) & brain] = 0.8  # thin midline structure
    a, b, c, d = coeffs
    phase = a + b * x + c * y + d * (x ** 2 + y ** 2)
    image = torch.polar(mag, phase).to(torch.complex64)
    scalp = head & ~skull_out
    return BrainPhantom(image, head, scalp)


class SimulatedScan(NamedTuple):
    """Fully sampled multi-coil k-space and the noise level that was added."""

    kspace: torch.Tensor  # [B, C, H, W] complex64
    noise_std: float  # std of the complex noise per sample (real and imag each std / sqrt(2))


def simulate_kspace(image: torch.Tensor, maps: torch.Tensor, snr: Optional[float] = None,
                    generator: Optional[torch.Generator] = None) -> SimulatedScan:
    """Multi-coil k-space ``F(S x) + n`` with complex white Gaussian noise.

    SNR definition: mean RSS magnitude of the noiseless coil images over pixels
    above 10 % of their maximum, divided by the per-coil, per-sample complex
    noise std (the orthonormal FFT makes image and k-space noise equal).

    Args:
        image: ``[H, W]`` or ``[B, H, W]`` complex.
        maps: ``[C, H, W]`` or ``[B, C, H, W]`` complex.
        snr: as defined above; ``None`` adds no noise.
        generator: generator on the tensors' device (CPU generator for CPU tensors).
    Returns:
        :class:`SimulatedScan` with k-space ``[B, C, H, W]``.
    """
    require_finite("image", image)
    require_finite("maps", maps)
    if image.ndim == 2:
        image = image.unsqueeze(0)
    if maps.ndim == 3:
        maps = maps.unsqueeze(0)
    if image.ndim != 3 or maps.ndim != 4 or tuple(image.shape[-2:]) != tuple(maps.shape[-2:]):
        raise ShapeError(f"simulate_kspace: image [B, H, W] {tuple(image.shape)} and maps [B, C, H, W] "
                         f"{tuple(maps.shape)} do not match")
    coil_images = maps.to(torch.complex64) * image.to(torch.complex64).unsqueeze(-3)
    kspace = fft2c(coil_images)
    if snr is None:
        return SimulatedScan(kspace, 0.0)
    if not snr > 0:
        raise ReconInputError(f"simulate_kspace: snr must be positive, got {snr}")
    rss = coil_images.abs().pow(2).sum(dim=-3).sqrt()
    signal = float(rss[rss > 0.1 * rss.max()].mean())
    std = signal / snr
    noise = torch.randn(kspace.shape + (2,), generator=generator, device=kspace.device)
    noise = torch.view_as_complex(noise) * (std / math.sqrt(2))
    return SimulatedScan(kspace + noise, std)
