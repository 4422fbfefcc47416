"""Training data made of several slice banks (e.g. joint training: source contrasts + target set).

A training reads one bank file (:class:`models.training.config.TrainConfig.data`); the plan may
name several (``data: [pretrain, target_train]``), which are concatenated once into a derived
bank under the results folder and reused by every training that names the same list.
"""

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from models.data.slice_bank import read_slice_bank, write_slice_bank
from models.errors import ReconInputError

log = logging.getLogger(__name__)


def _normalization(path: Path) -> dict:
    import h5py
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs.get("normalization", "{}"))


def concatenate_banks(paths: Sequence, out) -> Path:
    """Write the slices of ``paths`` (in that order) into one bank ``out``; returns ``out``.

    The banks must agree on the image size ``[H, W]`` and on the intensity normalisation
    rule (slices normalised differently must not be mixed; the build ``spec`` each bank
    records may differ and is kept as a list). ``out`` is reused when it is newer than
    every input.
    """
    paths, out = [Path(p) for p in paths], Path(out)
    if len(paths) < 2:
        raise ReconInputError("concatenate_banks needs at least two banks")
    if out.is_file() and all(out.stat().st_mtime >= p.stat().st_mtime for p in paths if p.is_file()):
        return out
    records = [read_slice_bank(p) for p in paths]
    shapes = {tuple(r.images.shape[-2:]) for r in records}
    if len(shapes) != 1:
        raise ReconInputError(f"banks {[str(p) for p in paths]} have different image sizes {sorted(shapes)}")
    attrs = [_normalization(p) for p in paths]
    rules = [{k: v for k, v in a.items() if k != "spec"} for a in attrs]  # "spec": how each bank was built
    if any(rule != rules[0] for rule in rules):
        raise ReconInputError(f"banks {[str(p) for p in paths]} were normalised by different rules: {rules}")
    fields = {name: np.concatenate([getattr(r, name) for r in records]) for name in records[0]._fields
              if all(getattr(r, name) is not None for r in records)}
    rule = {**rules[0], "spec": [a.get("spec") for a in attrs], "concatenated_from": [p.name for p in paths]}
    write_slice_bank(out, fields["images"], fields["contrast"], fields["subject"], fields["source"],
                     fields["slice_index"], rule, pixel_mm=fields.get("pixel_mm"))
    log.info("concatenated %s into %s (%d slices)", [p.name for p in paths], out, len(fields["images"]))
    return out
