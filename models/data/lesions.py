"""Synthetic ischaemic stroke lesions (for the FLAIR target).

A lesion is a union of 1-4 overlapping ellipsoids around a centre chosen in a
vascular territory, with a boundary made irregular by a smooth random field.
Lesions live in the source volume's millimetre coordinates, so every slice of
a subject (and every contrast) sees the same lesion; the lesion fraction
replaces grey/white matter only (see :func:`models.data.contrasts.synthesize`).

Territories (positions relative to the brain's bounding box; sizes are
lesion radii in mm):

* ``mca``: lateral hemisphere, cortex and subcortical WM, 10-28 mm;
* ``aca``: medial frontal/parietal, upper half, 8-18 mm;
* ``pca``: occipital, lower-middle, 8-18 mm;
* ``lacunar``: deep WM / basal ganglia near the midline, 3-8 mm.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from models.errors import DataSourceError

TERRITORIES: dict[str, dict] = {
    # x: |lateral offset| / half width, y: anterior fraction (0 = posterior), z: superior fraction
    "mca": {"x": (0.45, 0.85), "y": (0.25, 0.8), "z": (0.35, 0.75), "r": (10.0, 28.0), "p": 0.45},
    "aca": {"x": (0.05, 0.3), "y": (0.5, 0.9), "z": (0.55, 0.9), "r": (8.0, 18.0), "p": 0.15},
    "pca": {"x": (0.1, 0.5), "y": (0.02, 0.25), "z": (0.25, 0.6), "r": (8.0, 18.0), "p": 0.15},
    "lacunar": {"x": (0.1, 0.4), "y": (0.35, 0.7), "z": (0.35, 0.65), "r": (3.0, 8.0), "p": 0.25},
}


class Lesion(NamedTuple):
    """One lesion in source millimetre coordinates (voxel index * voxel size).

    Attributes:
        centres: float ``[K, 3]`` lobe centres (mm).
        radii: float ``[K, 3]`` lobe semi-axes (mm).
        rotation: float ``[3, 3]`` orientation of the lobes.
        freqs: float ``[M, 3]`` spatial frequencies (rad/mm) of the boundary noise.
        phases: float ``[M]``.
        roughness: relative amplitude of the boundary noise.
        territory: territory name.
    """

    centres: np.ndarray
    radii: np.ndarray
    rotation: np.ndarray
    freqs: np.ndarray
    phases: np.ndarray
    roughness: float
    territory: str


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def draw_lesion(rng: np.random.Generator, candidates_mm: np.ndarray, brain_lo: np.ndarray,
                brain_hi: np.ndarray, territory: str | None = None) -> Lesion:
    """Draw one lesion.

    Args:
        rng: seeded generator.
        candidates_mm: float ``[N, 3]`` positions (mm) of GM/WM voxels where a lesion may sit.
        brain_lo, brain_hi: brain bounding box (mm), ``[3]`` each, axes R, A, S.
        territory: one of :data:`TERRITORIES`, or None to draw one.
    """
    names = list(TERRITORIES)
    if territory is None:
        p = np.array([TERRITORIES[n]["p"] for n in names])
        territory = names[int(rng.choice(len(names), p=p / p.sum()))]
    if territory not in TERRITORIES:
        raise DataSourceError(f"unknown territory {territory!r}; known: {names}")
    if len(candidates_mm) == 0:
        raise DataSourceError("no grey/white matter voxel to place a lesion in")
    t = TERRITORIES[territory]
    ext = np.maximum(brain_hi - brain_lo, 1e-3)
    rel = (candidates_mm - brain_lo) / ext
    lat = np.abs(rel[:, 0] - 0.5) * 2.0
    ok = ((lat >= t["x"][0]) & (lat <= t["x"][1]) & (rel[:, 1] >= t["y"][0]) & (rel[:, 1] <= t["y"][1])
          & (rel[:, 2] >= t["z"][0]) & (rel[:, 2] <= t["z"][1]))
    pool = candidates_mm[ok] if ok.any() else candidates_mm
    centre = pool[int(rng.integers(len(pool)))]
    r = float(rng.uniform(*t["r"]))
    k = int(rng.integers(1, 5))
    centres = centre + rng.normal(0.0, 0.45 * r, size=(k, 3)) * (np.arange(k)[:, None] > 0)
    radii = r * rng.uniform(0.45, 1.0, size=(k, 3))
    m = 6
    freqs = rng.normal(0.0, 1.0, size=(m, 3))
    freqs *= (2 * np.pi / rng.uniform(0.6 * r, 1.5 * r + 4.0, size=(m, 1))) / np.linalg.norm(freqs, axis=1, keepdims=True)
    return Lesion(centres, radii, _rotation(rng), freqs, rng.uniform(0, 2 * np.pi, m),
                  float(rng.uniform(0.15, 0.35)), territory)


def lesion_fraction(points_mm: np.ndarray, lesions: list[Lesion], edge_mm: float = 1.5) -> np.ndarray:
    """Lesion fraction in [0, 1] at points.

    Args:
        points_mm: float ``[..., 3]`` positions in source millimetres.
        lesions: lesions of one subject.
        edge_mm: width of the soft boundary (partial volume).
    Returns:
        float32 ``[...]``.
    """
    pts = np.asarray(points_mm, dtype=np.float64)
    out = np.zeros(pts.shape[:-1], np.float64)
    for les in lesions:
        noise = np.mean(np.cos(pts @ les.freqs.T + les.phases), axis=-1) * np.sqrt(2.0)
        best = np.full(pts.shape[:-1], np.inf)
        for c, r in zip(les.centres, les.radii):
            local = (pts - c) @ les.rotation
            d = np.sqrt(np.sum((local / r) ** 2, axis=-1))
            best = np.minimum(best, d)
        d_mm = (best * (1.0 + les.roughness * noise) - 1.0) * float(np.mean(les.radii))
        out = np.maximum(out, np.clip(0.5 - d_mm / (2.0 * edge_mm), 0.0, 1.0))
    return out.astype(np.float32)
