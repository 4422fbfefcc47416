"""The paper's experiments on our data, from one YAML plan: the comparison of training
strategies (methods 1, 3, 4, 5, 6), classical baselines, the fine-tuning ablation and the
zeta sweep.

- :mod:`models.experiments.plan`: the plan file (what to train, with which budget, how to score);
- :mod:`models.experiments.banks`: training data made of several slice banks;
- :mod:`models.experiments.results`: ``results.json``, written after every unit of work;
- :mod:`models.experiments.stats`: the paired test on per-slice NRMSE;
- :mod:`models.experiments.runner`: trains (resumably), evaluates, records;
- :mod:`models.experiments.report`: markdown table and PNG figures from ``results.json``.

Plans shipped: ``plans/full.yaml`` (the published table) and ``plans/reduced.yaml`` (tiny
models, few steps: what CI runs).
"""

from pathlib import Path

PLANS_DIR = Path(__file__).resolve().parent / "plans"
