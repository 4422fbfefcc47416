"""Intensity classes and partial-volume fractions on synthetic data."""

import importlib.util

import numpy as np
import pytest

from models.data import segmentation as G

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                   reason="scikit-learn (the 'data' extra) is not installed: pip install -e '.[data]'")


@needs_sklearn
def test_mixture_recovers_class_means():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(0.3, 0.03, 3000), rng.normal(0.6, 0.03, 5000), rng.normal(0.85, 0.03, 6000)])
    cl = G.fit_intensity_classes(v, ("csf", "gm", "wm"), seed=0)
    np.testing.assert_allclose(cl.means, [0.3, 0.6, 0.85], atol=0.02)
    assert cl.labels == ("csf", "gm", "wm")


def test_partial_volume_hats_sum_to_one():
    cl = G.IntensityClasses(("csf", "gm", "wm"), np.array([0.2, 0.5, 0.8]))
    x = np.linspace(0, 1, 101)
    pv = G.partial_volume(x, cl)
    np.testing.assert_allclose(sum(pv.values()), 1.0, atol=1e-6)
    assert pv["gm"][50] == pytest.approx(1.0)
    assert pv["gm"][65] == pytest.approx(0.5, abs=1e-6) and pv["wm"][65] == pytest.approx(0.5, abs=1e-6)
    assert pv["csf"][0] == 1.0 and pv["wm"][100] == 1.0


@needs_sklearn
def test_segment_phantom_head():
    # sphere of "brain" (WM core, GM shell, CSF rim) inside a fat/muscle scalp shell
    n = 48
    g = np.mgrid[:n, :n, :n] - (n - 1) / 2
    r = np.sqrt((g ** 2).sum(0))
    img = np.zeros((n, n, n), np.float32)
    img[r < 21] = 0.55  # muscle
    img[r < 19] = 0.9   # fat
    img[r < 17] = 0.05  # skull
    img[r < 15] = 0.25  # csf
    img[r < 14] = 0.5   # gm
    img[r < 10] = 0.7   # wm
    rng = np.random.default_rng(0)
    img = np.clip(img + rng.normal(0, 0.01, img.shape).astype(np.float32), 0, None)
    seg = G.segment(img, (2.0, 2.0, 2.0), "T1w", brain=r < 15, has_head=True)
    np.testing.assert_allclose(seg.brain_classes.means, [0.25, 0.5, 0.7], atol=0.05)
    assert seg.head_mask[r < 20].mean() > 0.95 and not seg.head_mask[r > 23].any()
    fr = G.tissue_fractions(img, seg.brain_mask.astype(np.float32), seg.head_mask.astype(np.float32), seg)
    np.testing.assert_allclose(fr.sum(0), 1.0, atol=1e-5)
    lab = np.argmax(fr, 0)
    assert (lab[r < 9] == G.TISSUES.index("wm")).mean() > 0.95
    assert (lab[(r > 15.5) & (r < 16.5)] == G.TISSUES.index("background")).mean() > 0.9
    assert (lab[(r > 17.5) & (r < 18.5)] == G.TISSUES.index("fat")).mean() > 0.9


def test_brain_mask_of_phantom_excludes_scalp():
    n = 48
    g = np.mgrid[:n, :n, :n] - (n - 1) / 2
    r = np.sqrt((g ** 2).sum(0))
    img = np.where(r < 21, 0.6, 0.0) * (r >= 17) + np.where(r < 15, 0.7, 0.0)
    img = img.astype(np.float32)
    head = G.head_mask(img, (2.0, 2.0, 2.0))
    brain = G.brain_mask(img, (2.0, 2.0, 2.0), head, erode_mm=6.0)
    assert brain[r < 12].mean() > 0.95
    assert not brain[r > 17.5].any()
