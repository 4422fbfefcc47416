"""Synthetic stroke lesions: shape, placement, determinism."""

import numpy as np
import pytest

from models.data import lesions as L
from models.errors import DataSourceError


def _cands():
    g = np.stack(np.meshgrid(*(np.arange(0, 140, 4.0),) * 3, indexing="ij"), -1).reshape(-1, 3)
    return g, np.zeros(3), np.full(3, 136.0)


@pytest.mark.parametrize("territory", list(L.TERRITORIES))
def test_lesion_in_territory_with_soft_irregular_edge(territory):
    cand, lo, hi = _cands()
    les = L.draw_lesion(np.random.default_rng(0), cand, lo, hi, territory)
    assert les.territory == territory
    f_c = L.lesion_fraction(les.centres[:1], [les])
    assert f_c[0] > 0.9
    far = les.centres[0] + np.array([200.0, 0, 0])
    assert L.lesion_fraction(far[None], [les])[0] == 0.0
    rel = (les.centres[0] - lo) / (hi - lo)
    t = L.TERRITORIES[territory]
    assert t["z"][0] - 0.05 <= rel[2] <= t["z"][1] + 0.05
    # the edge has partial-volume values
    line = les.centres[0] + np.linspace(0, 60, 400)[:, None] * np.array([1.0, 0, 0])
    f = L.lesion_fraction(line, [les])
    assert np.any((f > 0.05) & (f < 0.95))


def test_lesions_are_seeded():
    cand, lo, hi = _cands()
    a = L.draw_lesion(np.random.default_rng(5), cand, lo, hi)
    b = L.draw_lesion(np.random.default_rng(5), cand, lo, hi)
    c = L.draw_lesion(np.random.default_rng(6), cand, lo, hi)
    np.testing.assert_array_equal(a.centres, b.centres)
    assert not np.array_equal(a.centres, c.centres)


def test_no_candidates_or_bad_territory():
    with pytest.raises(DataSourceError):
        L.draw_lesion(np.random.default_rng(0), np.zeros((0, 3)), np.zeros(3), np.ones(3))
    cand, lo, hi = _cands()
    with pytest.raises(DataSourceError, match="territory"):
        L.draw_lesion(np.random.default_rng(0), cand, lo, hi, "cerebellar")
