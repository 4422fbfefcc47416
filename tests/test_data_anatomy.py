"""Subjects and slices from a real source (ICBM152 from nilearn; skipped if absent)."""

import numpy as np
import pytest

from models.data import anatomy as A
from models.data import sources as S
from models.errors import DataSourceError

SRC = "icbm152_2009a"
pytestmark = pytest.mark.skipif(not S.is_available(SRC), reason="nilearn (ICBM152 files) not installed")


@pytest.fixture(scope="module")
def subject():
    return A.Subject(SRC, 2, seed=11, lesion_probability=1.0)


def _mid(s):
    return s.num_slices // 2


def test_same_id_and_seed_give_the_same_slice(subject):
    other = A.make_subject(f"{SRC}-0002", seed=11, lesion_probability=1.0)
    a = subject.sample(_mid(subject), "T2")
    b = other.sample(_mid(other), "T2")
    np.testing.assert_array_equal(a.image, b.image)
    assert a.subject_id == b.subject_id == f"{SRC}-0002" and a.source == SRC
    c = A.Subject(SRC, 2, seed=12).sample(_mid(subject), "T2")
    assert not np.allclose(np.abs(a.image), np.abs(c.image))


def test_sample_format(subject):
    s = subject.sample(1, "T1", matrix=(64, 96), fov_mm=(200.0, 240.0))
    assert s.image.dtype == np.complex64 and s.image.shape == (64, 96)
    assert s.labels.shape == (64, 96) and s.labels.dtype == np.uint8
    assert s.contrast == "T1" and s.slice_index == 1
    mag = np.abs(s.image)
    brain = np.isin(s.labels, [1, 2, 3])
    assert np.percentile(mag[brain], 99) == pytest.approx(1.0, rel=0.1)
    ph = np.angle(s.image)[mag > 0.2]
    assert np.std(np.diff(np.unwrap(ph))) < 1.0  # smooth phase


def test_slices_skip_empty_positions(subject):
    assert 8 <= subject.num_slices <= 40
    for k in (0, subject.num_slices - 1):
        s = subject.sample(k, "PD", matrix=(32, 32))
        assert np.isin(s.labels, [1, 2, 3]).mean() > 0.05
    with pytest.raises(DataSourceError):
        subject.sample(subject.num_slices, "PD")
    with pytest.raises(DataSourceError):
        subject.sample(0, "DWI")


def _tissue_means(sample):
    mag = np.abs(sample.image)
    return {name: float(mag[sample.labels == i].mean()) if (sample.labels == i).sum() > 5 else None
            for i, name in enumerate(A.LABELS)}


def test_flair_csf_dark_and_lesion_bright(subject):
    found_lesion = False
    for k in range(subject.num_slices):
        s = subject.sample(k, "FLAIR", matrix=(96, 96))
        m = _tissue_means(s)
        if m["csf"] is not None and m["wm"] is not None:
            assert m["csf"] < 0.5 * m["wm"]
        if m["lesion"] is not None:
            found_lesion = True
            assert m["lesion"] > 1.3 * m["wm"]
    assert found_lesion


def test_contrast_order_in_a_real_slice(subject):
    k = _mid(subject)
    t1 = _tissue_means(subject.sample(k, "T1", matrix=(96, 96)))
    t2 = _tissue_means(subject.sample(k, "T2", matrix=(96, 96)))
    assert t1["wm"] > t1["gm"] > t1["csf"]
    assert t2["csf"] > t2["gm"] > t2["wm"]


def test_subjects_differ_by_deformation():
    a = A.Subject(SRC, 0).sample(3, "T1", matrix=(64, 64))
    b = A.Subject(SRC, 1).sample(3, "T1", matrix=(64, 64))
    assert (a.labels != b.labels).mean() > 0.05


def test_bad_subject_id():
    with pytest.raises(DataSourceError):
        A.make_subject("icbm152_2009a")
