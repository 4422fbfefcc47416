"""Paired comparison of two reconstruction methods on the same slices (per-slice NRMSE).

Both tests are two-sided: the Wilcoxon signed-rank test (no normality assumption; the one
quoted in the table) and the paired t-test. With fewer than two slices, or when every
difference is zero, the p-values are ``None`` / 1.0 rather than an error.
References: Wilcoxon (1945); ``scipy.stats.wilcoxon`` and ``scipy.stats.ttest_rel``.
"""

import math
import warnings
from typing import Optional, Sequence

import numpy as np

from models.errors import ReconInputError


def _finite_or_none(value) -> Optional[float]:
    value = float(value)
    return value if math.isfinite(value) else None


def paired_test(reference: Sequence[float], other: Sequence[float]) -> dict:
    """Compare per-slice scores ``reference`` and ``other`` (same slices, same order; lower is better).

    Returns ``n``, ``mean_difference`` (other - reference: positive when the reference is
    better), ``reference_better`` (slices where it is strictly lower), ``wilcoxon_p`` and
    ``ttest_p``.
    """
    a, b = np.asarray(reference, dtype=np.float64), np.asarray(other, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ReconInputError(f"paired test needs two equally long score lists, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ReconInputError("paired test: scores contain NaN/Inf")
    diff = b - a
    out = {"n": int(len(a)), "mean_difference": float(diff.mean()) if len(a) else 0.0,
           "reference_better": int((diff > 0).sum()), "wilcoxon_p": None, "ttest_p": None}
    if len(a) < 2:
        return out
    if not np.any(diff):
        out.update(wilcoxon_p=1.0, ttest_p=1.0)
        return out
    from scipy import stats
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample and tie warnings: the p-value is still defined
        out["wilcoxon_p"] = _finite_or_none(stats.wilcoxon(a, b, zero_method="wilcox").pvalue)
        out["ttest_p"] = _finite_or_none(stats.ttest_rel(a, b).pvalue) if np.std(diff) > 0 else 0.0
    return out
