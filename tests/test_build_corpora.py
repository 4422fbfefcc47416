"""tools/build_corpora.py writes every corpus it names, validation ones with their own seeds."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import build_corpora  # noqa: E402
import external_corpus as corpus  # noqa: E402


def test_validation_corpora_are_written_with_their_own_seeds(tmp_path, monkeypatch):
    small = {name: corpus.small(corpus.CASES[name]) for name in ("int_acs_12c_snr30", "int_acs_8c_snr10")}
    small["three_slices"] = corpus.small(corpus.CASES["three_slices"])
    monkeypatch.setattr(corpus, "CASES", small)
    monkeypatch.setattr(build_corpora, "VALIDATION_CASES", ["int_acs_12c_snr30", "int_acs_8c_snr10", "three_slices"])
    rng = np.random.default_rng(0)
    image = (rng.random((2, 32, 32)) + 0.1).astype(np.complex64)
    monkeypatch.setattr(build_corpora, "validation_image", lambda subject_id: image)

    counts = build_corpora.build(tmp_path, only=["corpus", "corpus_val_a"])

    assert counts == {"corpus": 3, "corpus_val_a": 2}  # a 2-slice object does not fill three_slices
    assert sorted(p.name for p in (tmp_path / "corpus_val_a").glob("*.h5")) == [
        "int_acs_12c_snr30.h5", "int_acs_8c_snr10.h5"]
    with np.load(tmp_path / "val_flair_a.npz") as saved:
        np.testing.assert_array_equal(saved["image"], image)
    test_record = corpus.load_truth(tmp_path / "corpus" / "int_acs_12c_snr30.h5")[1]
    val_record = corpus.load_truth(tmp_path / "corpus_val_a" / "int_acs_12c_snr30.h5")[1]
    assert val_record["case"]["seed"] == test_record["case"]["seed"] + 100
