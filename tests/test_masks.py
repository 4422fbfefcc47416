import pytest
import torch

from models.errors import MaskError
from models.mri.masks import MASK_FUNCS, acs_columns_from_mask, acs_window, create_mask_func


@pytest.mark.parametrize("acceleration", [2, 4, 5, 6])
def test_equispaced_lattice_and_acs(acceleration):
    result = create_mask_func("equispaced", acceleration, 24)(128)
    mask = result.mask
    start, stop = acs_window(128, 24)
    assert mask[start:stop].all() and result.num_acs == 24 and result.acs_start == start
    outer = torch.cat([mask[:start], mask[stop:]])
    idx = torch.nonzero(mask).flatten()
    outside = idx[(idx < start) | (idx >= stop)]
    assert torch.all((outside - 64) % acceleration == 0), "lattice must pass through the centre line"
    expected_lines = len(set(range(64 % acceleration, 128, acceleration)) | set(range(start, stop)))
    assert int(mask.sum()) == expected_lines
    assert result.effective_acceleration == pytest.approx(128 / expected_lines)
    assert result.effective_acceleration < acceleration
    assert outer.any()


@pytest.mark.parametrize("kind", ["random", "variable_density"])
def test_random_masks_hit_nominal_rate_on_average(kind):
    func = create_mask_func(kind, 4, 16)
    g = torch.Generator().manual_seed(0)
    counts = torch.tensor([int(func(256, g).mask.sum()) for _ in range(200)], dtype=torch.float32)
    assert counts.mean().item() == pytest.approx(256 / 4, rel=0.05)
    assert counts.std().item() > 0  # really random


def test_variable_density_prefers_centre():
    func = create_mask_func("variable_density", 4, 8, power=3)
    g = torch.Generator().manual_seed(1)
    freq = torch.stack([func(128, g).mask.float() for _ in range(300)]).mean(0)
    near = torch.cat([freq[40:60], freq[68:88]]).mean()
    far = torch.cat([freq[:20], freq[108:]]).mean()
    assert near > 2 * far


@pytest.mark.parametrize("kind", sorted(MASK_FUNCS))
def test_seeded_masks_are_reproducible(kind):
    func = create_mask_func(kind, 4, 12, **({"random_offset": True} if kind == "equispaced" else {}))
    a = func(100, torch.Generator().manual_seed(7)).mask
    b = func(100, torch.Generator().manual_seed(7)).mask
    assert torch.equal(a, b)


def test_acs_detection_from_mask():
    mask = torch.zeros(64, dtype=torch.bool)
    mask[24:40] = True
    mask[::8] = True
    assert acs_columns_from_mask(mask) == (24, 41)
    mask[32] = False
    assert acs_columns_from_mask(mask) == (32, 32)


@pytest.mark.parametrize("kind,acc,acs,cols,match", [
    ("equispaced", 4.5, 24, 128, "integer"),
    ("random", 0.5, 24, 128, ">= 1"),
    ("random", 4, 200, 128, "do not fit"),
    ("poisson", 4, 24, 128, "unknown mask type"),
])
def test_bad_mask_requests_raise(kind, acc, acs, cols, match):
    with pytest.raises(MaskError, match=match):
        create_mask_func(kind, acc, acs)(cols)
