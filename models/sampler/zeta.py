"""Data-consistency weight ``zeta`` per acceleration factor and sampler: the one place it is stored.

Two meanings, one per sampler:

- ``sampler=dds`` (the chains' default, :mod:`models.sampler.dds`): ``zeta`` multiplies the
  likelihood of the data with the scan's measured noise, ``zeta ||A x - y||^2 / sigma_y^2``,
  against the prior's measured denoising error. It is scanner-independent: the coil count,
  SNR and matrix enter through ``A`` and ``sigma_y``, and fewer lines pull less by
  themselves. With the deterministic ODE one value served every R on validation (R 2-6, SNR
  10-100, 8-32 coils: ``benchmarks/results/tune_dds.md``); with the chains' stochastic steps
  (``dds_eta`` 1) the best value grows a little with R, 4 / 5 / 6 at R 4 / 5 / 6
  (``benchmarks/results/tune_dds_eta.md``). 1 would be Bayes' rule; larger values trust the
  data more, which brings a sample towards the posterior mean.
- ``sampler=dps`` (the paper's step, :mod:`models.sampler.dps`): ``zeta`` is a step length on
  ``||A D(x) - y||^2`` after every ODE step; it grows with R, depends on the step count and on
  the noise level of the scans it was tuned on, and the step diverges above about 1.
  Tuned by ``benchmarks/tune_zeta.py`` (``benchmarks/results/tune_zeta.md``).

Both tables were chosen on validation individuals only (never test data). Values between
entries are interpolated linearly in R; outside they are clamped to the nearest entry.
"""

from models.errors import ReconInputError

#: the step count of the default (DDS) sampler in the chains; its zeta does not depend on it
DEFAULT_STEPS = 20

#: the step count the DPS table below is tuned at (the paper's sampler, ``sampler=dps``)
TABLE_STEPS = 100

#: R -> zeta for the shipped prior and the default sampler settings: 100 steps (the chains'), DPS
#: step after each ODE step, squared-residual gradient (zeta = 0.5 is one full projection onto the
#: data when the network's Jacobian is the identity). The step applies zeta once per ODE step, so
#: the data term's total pull grows with the step count: tune zeta at the count that runs
#: (benchmarks/results/dps_schedule_probe.md).
ZETA_BY_ACCELERATION = {
    2: 0.16,
    4: 0.45,
    5: 0.6,
    6: 0.9,
}


#: R -> zeta for the DDS sampler (models/sampler/dds.py) with its default stochastic steps (dds_eta 1):
#: the likelihood weight in physical units (1 = Bayes' rule with the scan's measured noise), chosen on
#: validation scans of the independent corpus (benchmarks/results/tune_dds.md, tune_dds_eta.md).
ZETA_DDS_BY_ACCELERATION = {
    2: 4.0,
    4: 4.0,
    5: 5.0,
    6: 6.0,
}

TABLES = {"dps": ZETA_BY_ACCELERATION, "dds": ZETA_DDS_BY_ACCELERATION}


def default_zeta(acceleration: float, table: dict = None, sampler: str = "dps") -> float:
    """Interpolate ``zeta`` for acceleration factor ``acceleration`` (>= 1) from ``table`` or the sampler's."""
    table = TABLES[sampler] if table is None else table
    if not acceleration >= 1:
        raise ReconInputError(f"acceleration factor must be >= 1, got {acceleration}")
    keys = sorted(table)
    if acceleration <= keys[0]:
        return float(table[keys[0]])
    if acceleration >= keys[-1]:
        return float(table[keys[-1]])
    for low, high in zip(keys, keys[1:]):
        if low <= acceleration <= high:
            w = (acceleration - low) / (high - low)
            return float((1 - w) * table[low] + w * table[high])
    raise AssertionError("unreachable")


def zeta_table_text(table: dict = None) -> str:
    """One line for ``--help``: ``R=2: 2.0, R=4: 4.0, ...``."""
    table = ZETA_BY_ACCELERATION if table is None else table
    return ", ".join(f"R={r:g}: {z:g}" for r, z in sorted(table.items()))
