"""Subjects and their 2D slices: anatomy source + random deformation + contrast.

A *subject* is one anatomy source under one smooth random deformation (affine
plus a low-frequency elastic field), one tissue-parameter draw, one bias field
and one lesion set, identified by ``subject_id = "<source>-<index:04d>"`` and a
seed. All its slices and contrasts share these draws. Slices are computed on
the fly: the output pixel grid is mapped into the source volume and only
those points are interpolated, so a slice costs milliseconds once the source
is prepared (cached per process).

Image convention (stated once): ``Sample.image`` is complex64 ``[H, W]``;
axial slices are displayed radiologically (row 0 anterior, column 0 the
patient's right); magnitude scaled so that the 99th percentile inside the
brain is 1 (scalp fat may exceed 1); phase smooth (a constant, linear ramps and low-order terms, up to a few
radians across the field of view).
"""

from __future__ import annotations

import functools
import logging
import zlib
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from models.data import contrasts as C
from models.data import lesions as L
from models.data import segmentation as G
from models.data import sources as S
from models.errors import DataSourceError

logger = logging.getLogger(__name__)

#: Label values of ``Sample.labels``: the tissue index in :data:`segmentation.TISSUES`, plus lesion.
LABELS: tuple[str, ...] = G.TISSUES + ("lesion",)


class Sample(NamedTuple):
    """One 2D slice of one subject in one contrast.

    Attributes:
        image: complex64 ``[H, W]``, normalised (see module docstring).
        contrast: contrast name (:data:`contrasts.CONTRASTS`).
        subject_id: ``"<source>-<index:04d>"``.
        source: anatomy source name.
        slice_index: index among the subject's kept slices.
        labels: uint8 ``[H, W]``: dominant tissue (index in :data:`LABELS`).
        lesion: float32 ``[H, W]`` lesion fraction in [0, 1].
    """

    image: np.ndarray
    contrast: str
    subject_id: str
    source: str
    slice_index: int
    labels: np.ndarray
    lesion: np.ndarray


def stable_seed(*parts) -> int:
    """A 32-bit seed from strings/ints, identical across processes and runs."""
    return zlib.crc32("|".join(str(p) for p in parts).encode())


# ----------------------------------------------------------------------------- prepared sources

@dataclass
class PreparedSource:
    """A source volume cropped to the head with float32 maps ready to interpolate.

    All maps ``[X, Y, Z]`` share ``voxel_mm``; ``centre_mm`` is the brain's centre
    of mass and ``brain_lo``/``brain_hi`` its bounding box (source mm).
    """

    name: str
    image: np.ndarray
    brain: np.ndarray
    head: np.ndarray
    enhancing: np.ndarray
    shipped: dict | None
    seg: G.Segmentation
    voxel_mm: np.ndarray
    slice_axis: int
    centre_mm: np.ndarray
    brain_lo: np.ndarray
    brain_hi: np.ndarray
    lesion_candidates_mm: np.ndarray


def _enhancing_map(seg: G.Segmentation, image: np.ndarray, voxel_mm) -> np.ndarray:
    """Weight in [0, 1] of gadolinium uptake: a 0-4 mm dural shell around the brain
    (meninges and venous sinuses) and 10 % of deep (ventricular) CSF (choroid plexus).
    Computed on a 2 mm grid and interpolated back."""
    small, vs = G._coarse(image, tuple(voxel_mm))
    brain = G._resample_to(seg.brain_mask, small.shape) > 0.5
    head = G._resample_to(seg.head_mask, small.shape) > 0.5
    for z in range(brain.shape[2]):
        brain[:, :, z] = ndimage.binary_fill_holes(brain[:, :, z])
    outside = ndimage.distance_transform_edt(~brain, sampling=vs)
    dura = np.clip(1.0 - outside / 4.0, 0.0, 1.0) * (~brain) * head
    inside = ndimage.distance_transform_edt(brain, sampling=vs)
    csf = G.partial_volume(small, seg.brain_classes)["csf"]
    choroid = 0.1 * csf * (inside > 15.0)
    return np.clip(G._resample_to(dura + choroid, image.shape), 0.0, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=None)
def prepare_source(name: str, seed: int = 0) -> PreparedSource:
    """Load, segment and crop a source (cached per process; seconds for a 1 mm head)."""
    spec = S.get_source(name)
    vol = S.load_volume(name)
    seg = G.segment(vol.image, vol.voxel_mm, vol.reference_contrast, vol.brain_mask, spec.has_head, seed)
    head = seg.head_mask
    idx = np.argwhere(head)
    if idx.size == 0:
        raise DataSourceError(f"source {name!r}: empty head mask")
    lo = np.maximum(idx.min(0) - 3, 0)
    hi = np.minimum(idx.max(0) + 4, head.shape)
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    image = vol.image[crop]
    seg = G.Segmentation(seg.brain_mask[crop], head[crop], seg.brain_classes, seg.head_classes)
    vs = np.asarray(vol.voxel_mm, float)
    enhancing = _enhancing_map(seg, image, vs) if min(image.shape) > 4 else np.zeros_like(image)
    bidx = np.argwhere(seg.brain_mask).astype(float) * vs
    fr_in = G.partial_volume(image[seg.brain_mask], seg.brain_classes)
    tissue_ok = (fr_in["gm"] + fr_in["wm"]) > 0.7
    shipped = None if vol.tissues is None else {k: np.ascontiguousarray(v[crop]) for k, v in vol.tissues.items()}
    return PreparedSource(
        name=name, image=np.ascontiguousarray(image), brain=seg.brain_mask.astype(np.float32),
        head=seg.head_mask.astype(np.float32), enhancing=enhancing, shipped=shipped, seg=seg,
        voxel_mm=vs, slice_axis=vol.slice_axis, centre_mm=bidx.mean(0), brain_lo=bidx.min(0),
        brain_hi=bidx.max(0), lesion_candidates_mm=bidx[tissue_ok][:: max(1, int(tissue_ok.sum()) // 20000)])


# ----------------------------------------------------------------------------- random smooth fields

class SmoothField(NamedTuple):
    """Sum of random plane waves: ``f(p) = sum_m a_m cos(k_m . p + phi_m)`` (p in mm)."""

    k: np.ndarray  # [M, D] rad/mm
    phi: np.ndarray  # [M]
    a: np.ndarray  # [M, C] amplitudes for C output channels

    def __call__(self, p: np.ndarray) -> np.ndarray:
        """Evaluate at points ``[..., D]``; returns ``[..., C]``."""
        return np.cos(p @ self.k.T + self.phi) @ self.a


def random_field(rng: np.random.Generator, dims: int, channels: int, wavelength_mm: tuple[float, float],
                 rms: float, terms: int = 8) -> SmoothField:
    """A smooth random field with wavelengths in ``wavelength_mm`` and about ``rms`` RMS per channel."""
    k = rng.normal(size=(terms, dims))
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    k *= 2 * np.pi / rng.uniform(*wavelength_mm, size=(terms, 1))
    a = rng.normal(size=(terms, channels)) * rms * np.sqrt(2.0 / terms)
    return SmoothField(k, rng.uniform(0, 2 * np.pi, terms), a)


def _rotation_matrix(angles_rad: np.ndarray) -> np.ndarray:
    ax, ay, az = angles_rad
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


# ----------------------------------------------------------------------------- subjects

@dataclass
class Augmentation:
    """Strength of the per-subject augmentation (defaults: strong, as the data issue asks)."""

    rotation_deg: tuple[float, float, float] = (6.0, 6.0, 12.0)  # max |angle| about R, A, S
    scale_range: tuple[float, float] = (0.88, 1.12)
    shift_mm: float = 6.0
    elastic_rms_mm: float = 3.0
    elastic_wavelength_mm: tuple[float, float] = (50.0, 140.0)
    bias_log_rms: float = 0.15
    tissue_spread: float = 0.08
    phase_rms_rad: float = 1.0


class Subject:
    """One simulated subject (see module docstring).

    Args:
        source: anatomy source name.
        index: subject number within the source.
        seed: global seed; with (source, index) it fixes every draw.
        lesion_probability: chance that the subject has stroke lesions.
        augmentation: augmentation strengths.
        slice_spacing_mm: distance between kept slices.
        min_brain_fraction: slices whose brain area is below this fraction of the
            subject's largest brain area are skipped.
    """

    def __init__(self, source: str, index: int, seed: int = 0, lesion_probability: float = 0.0,
                 augmentation: Augmentation | None = None, slice_spacing_mm: float = 5.0,
                 min_brain_fraction: float = 0.4):
        self.source = source
        self.index = int(index)
        self.seed = int(seed)
        self.subject_id = f"{source}-{self.index:04d}"
        self.prep = prepare_source(source)
        aug = augmentation or Augmentation()
        self.augmentation = aug
        rng = np.random.default_rng(stable_seed("subject", seed, source, index))
        self.rotation = _rotation_matrix(np.deg2rad(rng.uniform(-1, 1, 3) * np.asarray(aug.rotation_deg)))
        self.scale = rng.uniform(*aug.scale_range) * rng.uniform(0.97, 1.03, size=3)  # size, mild anisotropy
        self.shift = rng.uniform(-aug.shift_mm, aug.shift_mm, size=3)
        self.elastic = random_field(rng, 3, 3, aug.elastic_wavelength_mm, aug.elastic_rms_mm)
        self.bias = random_field(rng, 3, 1, (150.0, 400.0), aug.bias_log_rms, terms=4)
        self.tissues = C.draw_tissue_parameters(rng, aug.tissue_spread)
        self.lesions: list[L.Lesion] = []
        if rng.uniform() < lesion_probability and len(self.prep.lesion_candidates_mm):
            for _ in range(int(rng.integers(1, 4))):
                self.lesions.append(L.draw_lesion(rng, self.prep.lesion_candidates_mm,
                                                  self.prep.brain_lo, self.prep.brain_hi))
        self.slice_spacing_mm = float(slice_spacing_mm)
        self.min_brain_fraction = float(min_brain_fraction)
        self._positions: np.ndarray | None = None

    # -- geometry
    def _to_source_mm(self, q: np.ndarray) -> np.ndarray:
        """Subject mm ``[..., 3]`` (origin at the brain centre) -> source mm ``[..., 3]``."""
        p = (q + self.elastic(q)) * self.scale
        p = p @ self.rotation.T + self.shift + self.prep.centre_mm
        ax = self.prep.slice_axis
        if self.prep.image.shape[ax] < 16:  # thin source: no out-of-plane tilt or warp
            p[..., ax] = q[..., ax] + self.prep.centre_mm[ax]
        return p

    def _grid(self, position_mm: float, matrix: tuple[int, int], fov_mm: tuple[float, float]) -> np.ndarray:
        """Subject-mm points ``[H, W, 3]`` of a slice at ``position_mm`` along the slice axis."""
        h, w = matrix
        rows = (h / 2.0 - 0.5 - np.arange(h)) * fov_mm[0] / h  # anterior (or superior) at the top
        cols = (w / 2.0 - 0.5 - np.arange(w)) * fov_mm[1] / w  # patient's right on the left
        q = np.zeros((h, w, 3))
        if self.prep.slice_axis == 2:  # axial: rows along A, columns along R
            q[..., 1] = rows[:, None]
            q[..., 0] = cols[None, :]
        else:  # coronal: rows along S, columns along R
            q[..., 2] = rows[:, None]
            q[..., 0] = cols[None, :]
        q[..., self.prep.slice_axis] = position_mm
        return q

    def _interp(self, vol: np.ndarray, p_mm: np.ndarray, voxel_mm: np.ndarray | None = None) -> np.ndarray:
        vs = self.prep.voxel_mm if voxel_mm is None else voxel_mm
        coords = np.moveaxis(p_mm / vs, -1, 0)
        return ndimage.map_coordinates(vol, coords, order=1, mode="constant", cval=0.0)

    def slice_positions(self) -> np.ndarray:
        """Positions (subject mm along the slice axis) of the kept slices, inferior to superior."""
        if self._positions is None:
            prep = self.prep
            ax = prep.slice_axis
            half = max(prep.centre_mm[ax] - prep.brain_lo[ax], prep.brain_hi[ax] - prep.centre_mm[ax]) * 1.2
            cand = np.arange(-half, half + 1e-6, self.slice_spacing_mm) if half > 0 else np.zeros(1)
            area = []
            for z in cand:
                p = self._to_source_mm(self._grid(z, (32, 32), (256.0, 256.0)))
                area.append(float((self._interp(prep.brain, p) > 0.5).sum()))
            area = np.asarray(area)
            keep = area >= self.min_brain_fraction * max(area.max(), 1.0)
            self._positions = cand[keep & (area > 0)]
        return self._positions

    @property
    def num_slices(self) -> int:
        return len(self.slice_positions())

    # -- rendering
    def sample(self, slice_index: int, contrast: str, matrix: tuple[int, int] = (128, 128),
               fov_mm: float | tuple[float, float] = 240.0) -> Sample:
        """Render slice ``slice_index`` in ``contrast``.

        Args:
            slice_index: 0 .. num_slices - 1.
            contrast: one of :data:`contrasts.CONTRASTS`.
            matrix: output size ``(H, W)``.
            fov_mm: field of view (mm), scalar or ``(H, W)``; 240 mm holds the scalp.
        """
        pos = self.slice_positions()
        if not 0 <= slice_index < len(pos):
            raise DataSourceError(f"{self.subject_id}: slice {slice_index} out of range 0..{len(pos) - 1}")
        if contrast not in C.CONTRASTS:
            raise DataSourceError(f"unknown contrast {contrast!r}; known: {C.CONTRASTS}")
        fov = (float(fov_mm), float(fov_mm)) if np.isscalar(fov_mm) else tuple(map(float, fov_mm))
        prep = self.prep
        q = self._grid(float(pos[slice_index]), tuple(matrix), fov)
        p = self._to_source_mm(q)
        intensity = self._interp(prep.image, p)
        brain = self._interp(prep.brain, p)
        head = self._interp(prep.head, p)
        shipped = None if prep.shipped is None else {k: self._interp(v, p) for k, v in prep.shipped.items()}
        fractions = G.tissue_fractions(intensity, brain, head, prep.seg, shipped)
        enhancing = self._interp(prep.enhancing, p)
        lesion = L.lesion_fraction(p, self.lesions) if self.lesions else np.zeros(matrix, np.float32)
        lesion = np.minimum(lesion, fractions[G.TISSUES.index("gm")] + fractions[G.TISSUES.index("wm")])
        seq = C.draw_sequence(contrast, np.random.default_rng(stable_seed("seq", self.seed, self.subject_id, contrast)))
        mag = C.synthesize(contrast, fractions, self.tissues, seq, lesion=lesion, enhancing=enhancing)
        mag = mag * np.exp(self.bias(q)[..., 0])
        ref_region = brain > 0.5 if (brain > 0.5).sum() > 10 else head > 0.5
        ref = np.percentile(mag[ref_region], 99) if ref_region.sum() > 10 else mag.max()
        mag = (mag / max(float(ref), 1e-8)).astype(np.float32)
        prng = np.random.default_rng(stable_seed("phase", self.seed, self.subject_id, contrast, slice_index))
        phase = smooth_phase(prng, matrix, self.augmentation.phase_rms_rad)
        labels = np.argmax(fractions, axis=0).astype(np.uint8)
        labels[lesion > 0.5] = LABELS.index("lesion")
        return Sample((mag * np.exp(1j * phase)).astype(np.complex64), contrast, self.subject_id,
                      self.source, int(slice_index), labels, lesion.astype(np.float32))


def smooth_phase(rng: np.random.Generator, matrix: tuple[int, int], rms_rad: float = 1.0) -> np.ndarray:
    """Smooth background phase ``[H, W]`` (rad): constant + linear ramps + low-order B0-like terms."""
    h, w = matrix
    y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    phase = rng.uniform(-np.pi, np.pi) + rng.normal(0, 0.5 * rms_rad) * x + rng.normal(0, 0.5 * rms_rad) * y
    field = random_field(rng, 2, 1, (1.0, 3.0), rms_rad)  # wavelengths in units of half the FOV
    return (phase + field(np.stack([y, x], -1))[..., 0]).astype(np.float32)


def make_subject(subject_id: str, seed: int = 0, **kwargs) -> Subject:
    """Build a :class:`Subject` from ``"<source>-<index>"`` (as returned by the splits)."""
    source, _, idx = subject_id.rpartition("-")
    if not source or not idx.isdigit():
        raise DataSourceError(f"subject id {subject_id!r} is not '<source>-<index>'")
    return Subject(source, int(idx), seed=seed, **kwargs)
