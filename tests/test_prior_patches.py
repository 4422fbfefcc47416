"""The patch prior's pieces: positions, training patches, the patch denoiser and the whole-image assembly."""

import pytest
import torch

from models.errors import ShapeError
from models.prior.patches import (AssembledDenoiser, PatchPrecond, choose_patch_size, position_channels,
                                  random_patches)
from models.prior.unet import UNet, unet_preset


def test_positions_span_the_slice_and_tile_into_the_whole_grid():
    whole = position_channels(torch.tensor([0]), torch.tensor([0]), 8, 8, 8)[0]
    assert whole[0, 0, 0] == pytest.approx(-7 / 8) and whole[0, -1, 0] == pytest.approx(7 / 8)
    assert whole[1, 0, -1] == pytest.approx(7 / 8) and torch.all(whole[0, :, 3] == whole[0, :, 0])
    tiles = position_channels(torch.tensor([0, 0, 4, 4]), torch.tensor([0, 4, 0, 4]), 4, 8, 8)
    assert torch.equal(tiles[3], whole[:, 4:, 4:]) and torch.equal(tiles[1], whole[:, :4, 4:])


def test_random_patches_carry_their_own_positions():
    """An image whose channels are its own position grid: every patch must equal its positions inside the
    slice and be zero in the padding."""
    h, w = 24, 20
    grid = position_channels(torch.tensor([0]), torch.tensor([0]), max(h, w), max(h, w), max(h, w))
    image = position_channels(torch.tensor([0]), torch.tensor([0]), 24, h, w)[:, :, :h, :w].repeat(3, 1, 1, 1)
    assert grid.shape[-1] == 24
    patches, positions = random_patches(image, 16, per_image=5, generator=torch.Generator().manual_seed(1))
    assert patches.shape == (15, 2, 16, 16) and positions.shape == (15, 2, 16, 16)
    inside = (positions.abs() < 1).all(dim=1, keepdim=True).expand_as(patches)
    assert inside.any() and (~inside).any()  # padding was cut into too
    assert torch.allclose(patches[inside], positions[inside], atol=1e-6)
    assert torch.all(patches[~inside] == 0)


def test_a_patch_as_large_as_the_slice_is_the_whole_slice():
    """Full-size patches are not padded: each is the slice itself with the slice's own positions, exactly
    what the chains' ``whole`` tiling gives the network."""
    image = torch.randn(3, 2, 16, 16)
    patches, positions = random_patches(image, 16, per_image=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(patches, image.repeat_interleave(2, dim=0))
    expected = position_channels(torch.tensor([0]), torch.tensor([0]), 16, 16, 16)
    assert torch.equal(positions, expected.expand(6, -1, -1, -1))


def test_patch_sizes_follow_their_probabilities():
    g = torch.Generator().manual_seed(0)
    draws = [choose_patch_size(g) for _ in range(2000)]
    assert abs(draws.count(64) / 2000 - 0.5) < 0.05 and abs(draws.count(16) / 2000 - 0.2) < 0.05


class ShiftOnly(torch.nn.Module):
    """A stand-in patch prior: returns x + 10 * row position, so a wrongly placed tile shows."""
    patch_sizes = (8,)
    net = type("N", (), {"config": type("C", (), {"size_multiple": 2})()})()
    sigma_data = 0.5

    def forward(self, x, sigma, labels=None, augment=None, positions=None):
        return x + 10 * positions[:, :1]


def test_assembly_puts_every_tile_back_in_place_whatever_the_shift():
    x = torch.randn(2, 2, 21, 19)
    want = x + 10 * position_channels(torch.tensor([0]), torch.tensor([0]), 21, 21, 19)[:, :1, :21, :19]
    denoiser = AssembledDenoiser(ShiftOnly(), seed=3)
    for _ in range(5):  # five different offsets
        assert torch.allclose(denoiser(x, 0.3), want, atol=1e-5)
    assert denoiser.sigma_data == 0.5  # the prior's attributes show through


def tiny_patch_prior():
    config = unet_preset("tiny", 16, label_dim=3, in_channels=4)
    return PatchPrecond(UNet(config), patch_sizes=(8, 16)).eval()


def test_patch_prior_denoises_patches_and_needs_their_positions():
    prior = tiny_patch_prior()
    x = torch.randn(4, 2, 16, 16)
    labels = torch.eye(3)[[0, 1, 2, 0]]
    positions = position_channels(torch.zeros(4), torch.zeros(4), 16, 32, 32)
    assert prior(x, torch.full((4,), 0.5), labels, None, positions).shape == x.shape
    with pytest.raises(ShapeError, match="positions"):
        prior(x, 0.5, labels)
    with pytest.raises(ShapeError, match="input channels"):
        PatchPrecond(UNet(unet_preset("tiny", 16, label_dim=3)))


def test_assembled_denoiser_is_a_whole_image_prior_and_repeatable():
    prior = tiny_patch_prior()
    denoiser = AssembledDenoiser(prior, seed=0)
    x = torch.randn(1, 2, 40, 36)
    label = torch.eye(3)[:1]
    with torch.no_grad():
        first = denoiser(x, 1.0, label)
        denoiser.reseed(0)
        again = denoiser(x, 1.0, label)
        other = denoiser(x, 1.0, label)  # a new offset: seams elsewhere, a slightly different estimate
    assert first.shape == x.shape and torch.isfinite(first).all()
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert denoiser.label_dim == 3 and denoiser.sigma_max == prior.sigma_max
    assert denoiser.denoise_complex(torch.randn(1, 40, 36, dtype=torch.complex64), 1.0, label).shape == (1, 40, 36)


class CountingShiftOnly(ShiftOnly):
    """:class:`ShiftOnly` that records the tile shapes it was called with."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, sigma, labels=None, augment=None, positions=None):
        self.calls.append(tuple(x.shape))
        return super().forward(x, sigma, labels, augment, positions)


def test_whole_tiling_runs_the_network_once_on_the_whole_image_with_its_positions():
    x = torch.randn(2, 2, 21, 19)
    want = x + 10 * position_channels(torch.tensor([0]), torch.tensor([0]), 21, 21, 19)[:, :1, :21, :19]
    prior = CountingShiftOnly()
    denoiser = AssembledDenoiser(prior, tiling="whole")
    first = denoiser(x, 0.3)
    assert torch.allclose(first, want, atol=1e-5)
    assert prior.calls == [(2, 2, 22, 22)]  # one tile per slice: the image padded to the U-Net's multiple (2)
    assert torch.equal(denoiser(x, 0.3), first)  # no random offset: the same estimate every call
    with pytest.raises(ValueError, match="tiling"):
        AssembledDenoiser(prior, tiling="mosaic")


def test_whole_tiling_is_chosen_through_the_reconstruction_settings():
    from models.recon_settings import ReconSettings
    from models.sampler.denoisers import PriorDenoiser
    from models.errors import SettingsError

    assert ReconSettings().patch_tiling == "shifted"
    assert ReconSettings(patch_tiling="whole").patch_tiling == "whole"
    with pytest.raises(SettingsError, match="patch_tiling"):
        ReconSettings(patch_tiling="mosaic")
    denoiser = PriorDenoiser(tiny_patch_prior(), torch.eye(3)[:1], patch_tiling="whole")
    assert denoiser.precond.tiling == "whole"
    assert denoiser(torch.randn(1, 40, 36, dtype=torch.complex64), torch.tensor([1.0])).shape == (1, 40, 36)
