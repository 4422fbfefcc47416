"""Signal equations and per-subject parameter draws (no anatomy package needed)."""

import numpy as np
import pytest

from models.data import contrasts as C
from models.data.segmentation import TISSUES
from models.errors import DataSourceError

MEAN = C.TissueDraw(*(np.array([C.TISSUE_PARAMETERS[t][i] for t in TISSUES]) for i in range(3)),
                    lesion=(2200.0, 200.0, 0.87))


def _pure(tissue):
    fr = np.zeros((len(TISSUES), 1), np.float32)
    fr[TISSUES.index(tissue)] = 1.0
    return fr


def _signal(contrast, tissue, seq, lesion=None):
    return float(C.synthesize(contrast, _pure(tissue), MEAN, seq,
                              lesion=None if lesion is None else np.array([lesion]))[0])


@pytest.mark.parametrize("seed", range(5))
def test_contrast_orderings_over_random_protocols(seed):
    rng = np.random.default_rng(seed)
    s = {c: C.draw_sequence(c, rng) for c in C.CONTRASTS}
    t1 = {t: _signal("T1", t, s["T1"]) for t in ("csf", "gm", "wm")}
    assert t1["wm"] > t1["gm"] > t1["csf"]
    t2 = {t: _signal("T2", t, s["T2"]) for t in ("csf", "gm", "wm")}
    assert t2["csf"] > t2["gm"] > t2["wm"]
    fl = {t: _signal("FLAIR", t, s["FLAIR"]) for t in ("csf", "gm", "wm")}
    lesion = _signal("FLAIR", "wm", s["FLAIR"], lesion=1.0)
    assert fl["csf"] < 0.35 * fl["wm"]
    assert lesion > 1.5 * fl["wm"] and lesion > fl["gm"]
    assert _signal("T1", "fat", s["T1"]) > t1["wm"]  # fat bright on T1w
    assert _signal("PD", "background", s["PD"]) == 0.0


def test_flair_null_time_matches_protocol_range():
    ti = C.csf_null_ti(C.TISSUE_PARAMETERS["csf"][0], 9000.0)
    assert 2300 < ti < 2700
    s = C.inversion_recovery(1.0, C.TISSUE_PARAMETERS["csf"][0], 2000.0, 9000.0, 120.0, ti)
    assert abs(s) < 1e-9


def test_gadolinium_shortens_t1_only_where_enhancing():
    seq = {"tr": 500.0, "te": 10.0, "dose_mM": 1.0}
    fr = np.repeat(_pure("gm"), 2, axis=1)
    post = C.synthesize("T1post", fr, MEAN, seq, enhancing=np.array([0.0, 1.0]))
    pre = C.synthesize("T1", fr, MEAN, seq)
    assert post[0] == pytest.approx(pre[0])
    assert post[1] > 1.5 * post[0]


def test_partial_volume_is_linear_in_fractions():
    seq = C.draw_sequence("T2", np.random.default_rng(0))
    fr = np.zeros((len(TISSUES), 1))
    fr[TISSUES.index("gm")] = 0.3
    fr[TISSUES.index("csf")] = 0.7
    mix = float(C.synthesize("T2", fr, MEAN, seq)[0])
    assert mix == pytest.approx(0.3 * _signal("T2", "gm", seq) + 0.7 * _signal("T2", "csf", seq), rel=1e-5)


def test_lesion_replaces_brain_tissue_not_csf():
    seq = C.draw_sequence("FLAIR", np.random.default_rng(1))
    csf_with = _signal("FLAIR", "csf", seq, lesion=1.0)
    assert csf_with == pytest.approx(_signal("FLAIR", "csf", seq))


def test_tissue_draw_is_seeded_and_perturbed():
    a = C.draw_tissue_parameters(np.random.default_rng(3))
    b = C.draw_tissue_parameters(np.random.default_rng(3))
    c = C.draw_tissue_parameters(np.random.default_rng(4))
    np.testing.assert_array_equal(a.t1, b.t1)
    assert not np.allclose(a.t1, c.t1)
    wm = TISSUES.index("wm")
    assert 0.7 * 1084 < a.t1[wm] < 1.3 * 1084 and np.all(a.pd <= 1.0)


def test_unknown_contrast_and_bad_shape():
    with pytest.raises(DataSourceError, match="unknown contrast"):
        C.draw_sequence("DWI", np.random.default_rng(0))
    with pytest.raises(DataSourceError):
        C.synthesize("T1", np.zeros((3, 4)), MEAN, {"tr": 500.0, "te": 10.0})
