"""Cartesian phase-encode undersampling masks (fastMRI semantics).

A mask selects whole phase-encode lines, i.e. columns of the last k-space axis
``W`` (see :mod:`models.mri.fft`). Every mask keeps a fully sampled centre of
``num_acs`` calibration (ACS) lines. ``acceleration`` is the *nominal* factor R;
the *effective* factor ``W / lines_sampled`` (ACS included) is reported with
every mask, because that is what a scanner user compares.

- ``equispaced``: every R-th line plus the ACS block (as a scanner acquires
  GRAPPA/SENSE data; the lattice passes through the k-space centre unless
  ``random_offset``). Effective R is below nominal R.
- ``random``: ACS block plus lines drawn uniformly so that the expected total is
  ``W / R`` (fastMRI ``RandomMaskFunc``).
- ``variable_density``: ACS block plus lines drawn with a probability decaying
  polynomially away from the centre, scaled so that the expected total is ``W / R``.

Masks are seeded through a ``torch.Generator`` and built with
:func:`create_mask_func`; calling a mask function returns a :class:`MaskResult`.
"""

from typing import NamedTuple, Optional

import torch

from models.errors import MaskError


class MaskResult(NamedTuple):
    """A 1D phase-encode mask and its statistics."""

    mask: torch.Tensor  # bool [W]
    acceleration: float  # nominal R
    effective_acceleration: float  # W / number of sampled lines
    num_acs: int
    acs_start: int  # first ACS column; ACS is [acs_start, acs_start + num_acs)

    def as_kspace_mask(self) -> torch.Tensor:
        """The mask as float ``[1, 1, 1, W]``, broadcastable over ``[B, C, H, W]``."""
        return self.mask.to(torch.float32).view(1, 1, 1, -1)


def acs_window(num_cols: int, num_acs: int) -> tuple:
    """Start and stop column of a centred ACS block of ``num_acs`` lines."""
    start = num_cols // 2 - num_acs // 2
    return start, start + num_acs


class MaskFunc:
    """Base class: validate parameters once, build masks per call."""

    kind = "base"

    def __init__(self, acceleration: float, num_acs: int):
        if not acceleration >= 1:
            raise MaskError(f"{self.kind} mask: acceleration must be >= 1, got {acceleration}")
        if num_acs < 0:
            raise MaskError(f"{self.kind} mask: num_acs must be >= 0, got {num_acs}")
        self.acceleration = float(acceleration)
        self.num_acs = int(num_acs)

    def __call__(self, num_cols: int, generator: Optional[torch.Generator] = None) -> MaskResult:
        if num_cols < 2:
            raise MaskError(f"{self.kind} mask: need at least 2 phase-encode lines, got {num_cols}")
        if self.num_acs > num_cols:
            raise MaskError(f"{self.kind} mask: {self.num_acs} ACS lines do not fit in {num_cols} lines")
        mask = torch.zeros(num_cols, dtype=torch.bool)
        start, stop = acs_window(num_cols, self.num_acs)
        mask[start:stop] = True
        mask |= self._outer_lines(num_cols, mask, generator)
        lines = int(mask.sum())
        return MaskResult(mask, self.acceleration, num_cols / lines, self.num_acs, start)

    def _outer_lines(self, num_cols, acs_mask, generator) -> torch.Tensor:
        raise NotImplementedError

    def _fill_probability(self, num_cols: int, acs_mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Per-line probabilities proportional to ``weights`` outside the ACS, so the
        expected number of lines (ACS included) is ``num_cols / R``."""
        target = num_cols / self.acceleration - int(acs_mask.sum())
        weights = weights.masked_fill(acs_mask, 0.0)
        if target <= 0 or weights.sum() == 0:
            return torch.zeros(num_cols)
        # Scale, then redistribute probability that exceeds 1 (a few iterations suffice).
        prob = weights * (target / weights.sum())
        for _ in range(20):
            over = prob > 1
            if not over.any():
                break
            excess = float((prob[over] - 1).sum())
            prob[over] = 1
            free = (~over) & (prob > 0) & (prob < 1)
            if not free.any():
                break
            prob[free] += excess * prob[free] / prob[free].sum()
        return prob.clamp(0, 1)


class EquispacedMaskFunc(MaskFunc):
    """Every R-th line (R must be an integer) plus the ACS block."""

    kind = "equispaced"

    def __init__(self, acceleration: float, num_acs: int, random_offset: bool = False):
        super().__init__(acceleration, num_acs)
        if self.acceleration != int(self.acceleration):
            raise MaskError(f"equispaced mask: acceleration must be an integer, got {acceleration}")
        self.random_offset = random_offset

    def _outer_lines(self, num_cols, acs_mask, generator):
        step = int(self.acceleration)
        if self.random_offset:
            offset = int(torch.randint(step, (1,), generator=generator))
        else:
            offset = (num_cols // 2) % step  # lattice passes through the centre line
        lines = torch.zeros(num_cols, dtype=torch.bool)
        lines[offset::step] = True
        return lines


class RandomMaskFunc(MaskFunc):
    """ACS block plus uniformly random lines, expected total ``W / R``."""

    kind = "random"

    def _outer_lines(self, num_cols, acs_mask, generator):
        prob = self._fill_probability(num_cols, acs_mask, torch.ones(num_cols))
        return torch.rand(num_cols, generator=generator) < prob


class VariableDensityMaskFunc(MaskFunc):
    """ACS block plus random lines with density ``(1 - |k| / k_max) ** power``."""

    kind = "variable_density"

    def __init__(self, acceleration: float, num_acs: int, power: float = 2.0):
        super().__init__(acceleration, num_acs)
        if power < 0:
            raise MaskError(f"variable_density mask: power must be >= 0, got {power}")
        self.power = power

    def _outer_lines(self, num_cols, acs_mask, generator):
        k = torch.arange(num_cols, dtype=torch.float32) - num_cols // 2
        weights = (1 - k.abs() / (k.abs().max() + 1)) ** self.power
        prob = self._fill_probability(num_cols, acs_mask, weights)
        return torch.rand(num_cols, generator=generator) < prob


MASK_FUNCS = {cls.kind: cls for cls in (EquispacedMaskFunc, RandomMaskFunc, VariableDensityMaskFunc)}


def create_mask_func(kind: str, acceleration: float, num_acs: int, **options) -> MaskFunc:
    """Build a mask function by name: ``equispaced``, ``random`` or ``variable_density``."""
    try:
        cls = MASK_FUNCS[kind]
    except KeyError:
        raise MaskError(f"unknown mask type {kind!r}; known: {sorted(MASK_FUNCS)}") from None
    return cls(acceleration, num_acs, **options)


def acs_columns_from_mask(mask: torch.Tensor) -> tuple:
    """Largest contiguous run of sampled lines containing the centre column.

    Returns ``(start, stop)``; ``stop - start`` is 0 if the centre line is missing.
    Used to find calibration lines in data whose mask was not generated here.
    """
    mask = torch.as_tensor(mask).reshape(-1).bool()
    centre = mask.numel() // 2
    if not mask[centre]:
        return centre, centre
    start = centre
    while start > 0 and mask[start - 1]:
        start -= 1
    stop = centre + 1
    while stop < mask.numel() and mask[stop]:
        stop += 1
    return start, stop


def mask_from_acquisitions(shape: tuple, lines) -> "np.ndarray":
    """The sampling mask of a slice, from what was acquired (never from non-zero samples).

    Args:
        shape: ``(H, W)``, readout samples by phase-encode lines of the k-space grid.
        lines: iterable of ``(e1, ro_start, ro_stop)``: a measured phase-encode line
            at grid column ``e1`` holding readout samples ``[ro_start, ro_stop)``
            (a partial echo holds fewer than ``H``).
    Returns:
        bool ``[H, W]``; ``True`` where k-space was measured.
    Raises:
        MaskError: a line outside the grid.
    """
    import numpy as np

    height, width = shape
    mask = np.zeros((height, width), dtype=bool)
    for e1, start, stop in lines:
        if not (0 <= e1 < width and 0 <= start < stop <= height):
            raise MaskError(f"acquired line e1={e1} with readout samples [{start}, {stop}) lies outside the "
                            f"{height} x {width} k-space grid")
        mask[start:stop, e1] = True
    return mask
