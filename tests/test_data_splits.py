"""Splits are by source: no anatomy in two splits."""

import pytest

from models.data import sources as S
from models.data import splits as P
from models.errors import DataSourceError


def test_no_source_in_two_splits_and_all_sources_used():
    sets = {s: set(P.split_sources(s)) for s in P.SPLITS}
    assert not sets["train"] & sets["val"]
    assert not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    assert set().union(*sets.values()) == set(S.SOURCES)


def test_validation_and_test_are_real_individuals_and_templates_train():
    assert len(P.split_sources("val")) == 1 and len(P.split_sources("test")) >= 1
    for name in P.split_sources("val") + P.split_sources("test"):
        assert S.get_source(name).kind == S.INDIVIDUAL
    templates = {n for n, s in S.SOURCES.items() if s.kind == S.TEMPLATE}
    assert templates <= set(P.split_sources("train"))
    assert any(S.get_source(n).kind == S.INDIVIDUAL for n in P.split_sources("train"))


def test_subject_ids_stay_in_their_split():
    by_split = {s: P.subject_ids(s, 3, only_available=False) for s in P.SPLITS}
    seen = {}
    for split, ids in by_split.items():
        assert len(ids) == 3 * len(P.split_sources(split)) == len(set(ids))
        for sid in ids:
            src = P.source_of(sid)
            assert src in P.split_sources(split)
            assert seen.setdefault(src, split) == split


def test_bad_split_and_ids():
    with pytest.raises(DataSourceError):
        P.split_sources("holdout")
    with pytest.raises(DataSourceError):
        P.source_of("nobody-0001")
    with pytest.raises(DataSourceError):
        P.subject_ids("train", -1)
