"""Partial-volume tissue maps from one reference image (T1w or T2w).

Method (cheap, no registration):

1. Head mask: Otsu threshold of the smoothed image, largest connected
   component, holes filled.
2. Brain mask (when the source ships none): threshold at 0.55 x the 95th
   intensity percentile inside the head,
   erode by ``erode_mm`` to cut the brain from scalp and neck, keep the largest
   component, dilate back, fill holes (ventricles), close small gaps.
3. Intensity classes: a 3-component Gaussian mixture (scikit-learn) fitted to
   the intensities inside the brain (CSF / GM / WM) and, separately, in the head
   outside the brain (air-and-bone / muscle-and-skin / fat-and-marrow). Only
   the class means are kept.
4. Partial volume: a voxel whose intensity lies between two adjacent class
   means is a linear mixture of those two classes ("hat" membership). Applied
   to the interpolated intensity at any sample point, so every intensity
   detail of the real image (sulci, vessels, texture) becomes a change in
   tissue fractions and survives into every synthesised contrast.

Morphology runs on a 2 mm copy of the volume to stay fast.
"""

from __future__ import annotations

import logging
from typing import Mapping, NamedTuple

import numpy as np
from scipy import ndimage

from models.errors import DataSourceError

logger = logging.getLogger(__name__)

#: Tissue classes in the order used by fraction arrays ``[T, ...]``.
TISSUES: tuple[str, ...] = ("background", "csf", "gm", "wm", "fat", "muscle")

_BRAIN_ORDER = {"T1w": ("csf", "gm", "wm"), "T2w": ("wm", "gm", "csf")}
_HEAD_ORDER = ("background", "muscle", "fat")  # T1w: bone/air dark, muscle grey, fat bright


class IntensityClasses(NamedTuple):
    """Class labels sorted by increasing mean reference intensity, and their means."""

    labels: tuple[str, ...]
    means: np.ndarray  # float64 [K], strictly increasing


class Segmentation(NamedTuple):
    """Tissue model of one volume.

    Attributes:
        brain_mask: bool ``[X, Y, Z]``.
        head_mask: bool ``[X, Y, Z]`` (brain included).
        brain_classes: intensity classes inside the brain.
        head_classes: intensity classes in the head outside the brain (None when
            the source has no head).
    """

    brain_mask: np.ndarray
    head_mask: np.ndarray
    brain_classes: IntensityClasses
    head_classes: IntensityClasses | None


def _resample_to(x: np.ndarray, shape: tuple[int, ...], order: int = 1) -> np.ndarray:
    factors = [s / d for s, d in zip(shape, x.shape)]
    out = ndimage.zoom(x.astype(np.float32), factors, order=order, mode="nearest", grid_mode=True)
    if out.shape != tuple(shape):  # rounding guard
        pad = [(0, max(0, s - o)) for s, o in zip(shape, out.shape)]
        out = np.pad(out, pad, mode="edge")[tuple(slice(0, s) for s in shape)]
    return out


def _coarse(image: np.ndarray, voxel_mm: tuple[float, ...], target_mm: float = 2.0) -> tuple[np.ndarray, float]:
    """Downsample to about ``target_mm`` isotropic (never upsample); returns (image, voxel size)."""
    factors = [min(1.0, v / target_mm) for v in voxel_mm]
    if all(f == 1.0 for f in factors):
        return image.astype(np.float32), float(max(voxel_mm))
    small = ndimage.zoom(image.astype(np.float32), factors, order=1, grid_mode=True, mode="nearest")
    return small, float(target_mm)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = ndimage.sum_labels(mask, lab, index=np.arange(1, n + 1))
    return lab == (1 + int(np.argmax(sizes)))


def _ball(radius_vox: int) -> np.ndarray:
    r = max(1, int(radius_vox))
    g = np.mgrid[-r:r + 1, -r:r + 1, -r:r + 1]
    return (g ** 2).sum(0) <= r * r


def _otsu(values: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(values))


def head_mask(image: np.ndarray, voxel_mm: tuple[float, float, float]) -> np.ndarray:
    """Boolean head (or brain, for brain-only sources) mask ``[X, Y, Z]`` of a reference image."""
    small, vs = _coarse(image, voxel_mm)
    sm = ndimage.gaussian_filter(small, 1.0)
    thr = 0.5 * _otsu(sm[sm > 0]) if np.any(sm > 0) else 0.0
    m = _largest_component(sm > thr)
    m = ndimage.binary_closing(m, _ball(round(4 / vs)), border_value=0)
    m = ndimage.binary_fill_holes(m)
    for z in range(m.shape[2]):  # close openings (mouth, ear canals) slice by slice
        m[:, :, z] = ndimage.binary_fill_holes(m[:, :, z])
    return _resample_to(m, image.shape) > 0.5


def brain_mask(image: np.ndarray, voxel_mm: tuple[float, float, float], head: np.ndarray,
               erode_mm: float = 7.0, threshold_fraction: float = 0.55) -> np.ndarray:
    """Approximate boolean brain mask (CSF included) of a T1w head ``[X, Y, Z]``.

    Morphological, see the module docstring; good enough for simulating
    contrasts, not for morphometry.
    """
    small, vs = _coarse(image, voxel_mm)
    head_s = _resample_to(head, small.shape) > 0.5
    sm = ndimage.gaussian_filter(small, 0.7)
    vals = sm[head_s]
    if vals.size < 100:
        raise DataSourceError("head mask is (almost) empty: cannot extract a brain")
    # GM/WM lie above ~half the bright end of the head's intensities; CSF and bone below
    # (fraction tuned on the sources with shipped masks: Dice 0.95 Colin27, 0.98 MNI152)
    tissue = (sm > threshold_fraction * np.percentile(vals, 95)) & head_s
    core = ndimage.binary_erosion(tissue, _ball(round(erode_mm / vs)))
    # keep the component nearest the head's centre of mass among the large ones
    core = _largest_component(core)
    brain = ndimage.binary_dilation(core, _ball(round(erode_mm / vs))) & tissue
    brain = ndimage.binary_closing(brain, _ball(round(4 / vs)), border_value=0)
    brain = ndimage.binary_fill_holes(brain)
    for z in range(brain.shape[2]):  # fill sulcal/ventricular gaps open only along z
        brain[:, :, z] = ndimage.binary_fill_holes(brain[:, :, z])
    brain = ndimage.binary_dilation(brain, _ball(1)) & head_s  # include the outer CSF rim
    return _resample_to(brain, image.shape) > 0.5


def fit_intensity_classes(values: np.ndarray, labels: tuple[str, ...], seed: int = 0,
                          max_samples: int = 20000) -> IntensityClasses:
    """Fit a Gaussian mixture with ``len(labels)`` components to 1D intensities.

    Args:
        values: intensities (any shape, flattened).
        labels: class names in order of increasing expected mean intensity.
        seed: seeds the subsampling and the mixture's initialisation.
    Returns:
        IntensityClasses with strictly increasing means.
    """
    try:
        from sklearn.mixture import GaussianMixture
    except ImportError:
        raise DataSourceError(
            "tissue segmentation needs scikit-learn: run `pip install scikit-learn` "
            "(version pinned in requirements-data.txt)"
        ) from None
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size < 10 * len(labels):
        raise DataSourceError(f"too few voxels ({v.size}) to fit {len(labels)} intensity classes")
    rng = np.random.default_rng(seed)
    if v.size > max_samples:
        v = rng.choice(v, max_samples, replace=False)
    init = np.quantile(v, np.linspace(0.15, 0.85, len(labels)))[:, None]
    gm = GaussianMixture(len(labels), means_init=init, random_state=seed, max_iter=200).fit(v[:, None])
    means = np.sort(gm.means_.ravel())
    # keep means strictly increasing so the hat functions are defined
    for i in range(1, len(means)):
        means[i] = max(means[i], means[i - 1] + 1e-3)
    return IntensityClasses(tuple(labels), means)


def partial_volume(intensity: np.ndarray, classes: IntensityClasses) -> dict[str, np.ndarray]:
    """Hat-function memberships of each class for the given intensities.

    Args:
        intensity: reference intensities, any shape.
        classes: sorted class means.
    Returns:
        {label: fraction} with fractions in [0, 1] summing to 1, same shape as input.
    """
    x = np.asarray(intensity, dtype=np.float32)
    m = classes.means
    out = {}
    for k, lab in enumerate(classes.labels):
        xp = list(m)
        fp = [0.0] * len(m)
        fp[k] = 1.0
        out[lab] = np.interp(x, xp, fp, left=fp[0], right=fp[-1]).astype(np.float32)
    return out


def segment(image: np.ndarray, voxel_mm: tuple[float, float, float], reference_contrast: str = "T1w",
            brain: np.ndarray | None = None, has_head: bool = True, seed: int = 0) -> Segmentation:
    """Masks and intensity classes of a reference volume (see module docstring).

    Args:
        image: float ``[X, Y, Z]`` reference image scaled to about [0, 1].
        voxel_mm: voxel size in mm.
        reference_contrast: ``"T1w"`` or ``"T2w"`` (sets the CSF/GM/WM order).
        brain: a shipped brain mask to use instead of the morphological one.
        has_head: False for brain-only sources (no scalp classes).
        seed: seeds the mixture fits.
    """
    if reference_contrast not in _BRAIN_ORDER:
        raise DataSourceError(f"unsupported reference contrast {reference_contrast!r}")
    if image.ndim != 3:
        raise DataSourceError(f"segment expects a 3D volume, got shape {image.shape}")
    head = head_mask(image, voxel_mm) if min(image.shape) > 4 else image > 0.05 * image.max()
    if brain is None:
        brain = brain_mask(image, voxel_mm, head) if has_head else head
    head = head | brain
    brain_classes = fit_intensity_classes(image[brain], _BRAIN_ORDER[reference_contrast], seed)
    head_classes = None
    if has_head and reference_contrast == "T1w":
        outside = head & ~brain
        if outside.sum() > 1000:
            head_classes = fit_intensity_classes(image[outside], _HEAD_ORDER, seed)
    logger.info("segmentation: brain %.0f%% of head, brain means %s",
                100.0 * brain.sum() / max(1, head.sum()), np.round(brain_classes.means, 3))
    return Segmentation(brain, head, brain_classes, head_classes)


def tissue_fractions(intensity: np.ndarray, brain_weight: np.ndarray, head_weight: np.ndarray,
                     seg: Segmentation, shipped: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Partial-volume fractions ``[T, ...]`` (order :data:`TISSUES`) at sample points.

    Args:
        intensity: reference intensity at the points (any shape S).
        brain_weight: interpolated brain mask in [0, 1], shape S.
        head_weight: interpolated head mask in [0, 1], shape S.
        seg: the volume's segmentation.
        shipped: optional shipped probability maps at the points ({"gm", "wm"}),
            used instead of the intensity classes inside the brain (CSF = rest).
    Returns:
        float32 ``[T, *S]``; fractions sum to 1 at every point.
    """
    shape = np.shape(intensity)
    f = {t: np.zeros(shape, np.float32) for t in TISSUES}
    b = np.clip(brain_weight, 0, 1).astype(np.float32)
    h = np.clip(np.maximum(head_weight, b), 0, 1).astype(np.float32)
    if shipped is not None:
        gm = np.clip(shipped["gm"], 0, 1)
        wm = np.clip(shipped["wm"], 0, 1)
        s = np.maximum(gm + wm, 1.0)
        gm, wm = gm / s, wm / s
        inside = {"gm": gm, "wm": wm, "csf": 1.0 - gm - wm}
    else:
        inside = partial_volume(intensity, seg.brain_classes)
    for k, v in inside.items():
        f[k] += b * v
    rest = h - b
    if seg.head_classes is not None:
        for k, v in partial_volume(intensity, seg.head_classes).items():
            f[k] += rest * v
    else:
        f["background"] += rest
    f["background"] += 1.0 - h
    return np.stack([f[t] for t in TISSUES]).astype(np.float32)
