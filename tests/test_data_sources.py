"""Anatomy source registry: lookup, missing-package errors, loading."""

import numpy as np
import pytest

from models.data import sources as S
from models.errors import DataSourceError, MissingSourcePackageError, UnknownSourceError


def test_registry_entries_are_complete():
    kinds = {s.kind for s in S.SOURCES.values()}
    assert kinds == {S.TEMPLATE, S.INDIVIDUAL}
    for name, spec in S.SOURCES.items():
        assert spec.name == name
        assert spec.manager in ("pip", "apt")
        assert spec.files and spec.licence and spec.package


def test_unknown_source_lists_known_names():
    with pytest.raises(UnknownSourceError, match="icbm152_2009a"):
        S.get_source("no_such_brain")
    with pytest.raises(DataSourceError):
        S.load_volume("no_such_brain")


def test_missing_pip_package_names_package_and_command():
    spec = S.SourceSpec("fake", S.INDIVIDUAL, "dps-gadgetron-no-such-package", "pip",
                        ("x/T1.nii.gz",), "none", "fake", S._load_plain)
    with pytest.raises(MissingSourcePackageError) as err:
        S.resolve_files(spec)
    msg = str(err.value)
    assert "dps-gadgetron-no-such-package" in msg and "pip install" in msg


def test_missing_file_in_installed_package():
    spec = S.SourceSpec("fake", S.INDIVIDUAL, "numpy", "pip", ("numpy/no/such_volume.nii.gz",),
                        "none", "fake", S._load_plain)
    with pytest.raises(MissingSourcePackageError, match="numpy"):
        S.resolve_files(spec)


def test_missing_debian_package_names_apt_command():
    spec = S.SourceSpec("fake", S.INDIVIDUAL, "no-such-deb-data", "apt",
                        ("/nonexistent/dir/ch2.nii.gz",), "none", "fake", S._load_plain)
    with pytest.raises(MissingSourcePackageError, match="apt-get install no-such-deb-data"):
        S.resolve_files(spec)
    S.SOURCES["fake_deb"] = spec
    try:
        assert not S.is_available("fake_deb")
        assert "fake_deb" not in S.available_sources()
    finally:
        del S.SOURCES["fake_deb"]


@pytest.mark.skipif(not S.is_available("icbm152_2009a"), reason="nilearn (ICBM152 files) not installed")
def test_icbm_volume_is_ras_1mm_with_tissue_maps():
    v = S.load_volume("icbm152_2009a")
    assert v.image.dtype == np.float32 and v.image.ndim == 3
    assert v.voxel_mm == (1.0, 1.0, 1.0)
    assert 0.0 <= v.image.min() and 0.9 < np.percentile(v.image[v.image > 0], 99.9) < 1.1
    assert set(v.tissues) == {"gm", "wm"}
    for m in v.tissues.values():
        assert m.shape == v.image.shape and 0 <= m.min() and m.max() <= 1.0
    # RAS: the left-right axis is the shortest of the brain's extents
    idx = np.argwhere(v.brain_mask)
    ext = idx.max(0) - idx.min(0)
    assert ext[0] < ext[1]


def test_anatomy_dir_copies_win_only_when_complete(tmp_path, monkeypatch):
    spec = S.SourceSpec("fake", S.INDIVIDUAL, "dps-gadgetron-no-such-package", "pip",
                        ("x/T1.nii.gz", "x/mask.nii.gz"), "none", "fake", S._load_plain)
    monkeypatch.setenv(S.ANATOMY_DIR_ENV, str(tmp_path))
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "T1.nii.gz").write_bytes(b"")
    with pytest.raises(MissingSourcePackageError):  # one file of two: fall back to the package
        S.resolve_files(spec)
    (tmp_path / "fake" / "mask.nii.gz").write_bytes(b"")
    assert S.resolve_files(spec) == [str(tmp_path / "fake" / "T1.nii.gz"), str(tmp_path / "fake" / "mask.nii.gz")]
