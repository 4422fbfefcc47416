"""EMA of weights: closed form on a toy, half-life semantics, state round trip."""

import pytest
import torch
from torch import nn

from models.errors import ReconInputError
from models.prior.ema import EMA


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))


def test_fixed_decay_matches_closed_form():
    model = Toy()
    ema = EMA(model, decay=0.9)
    expected = torch.zeros(3)
    for step in range(1, 11):
        with torch.no_grad():
            model.w.copy_(torch.tensor([1.0, -2.0, 0.5]) * step)
            model.count.fill_(step)
        ema.update(model)
        expected = 0.9 * expected + 0.1 * model.w.detach()
    torch.testing.assert_close(ema.module.w, expected)
    assert ema.module.count.item() == 10  # integer buffers are copied
    assert not ema.module.w.requires_grad


def test_halflife_in_images():
    model = Toy()
    ema = EMA(model, halflife_images=64)
    with torch.no_grad():
        model.w.fill_(1.0)
    for _ in range(4):  # 4 batches of 16 images = one half-life
        beta = ema.update(model, batch_size=16)
    assert beta == pytest.approx(0.5 ** (16 / 64))
    torch.testing.assert_close(ema.module.w, torch.full((3,), 0.5))
    assert ema.images_seen == 64


def test_rampup_caps_halflife_early():
    model = Toy()
    ema = EMA(model, halflife_images=1e6, rampup_ratio=0.05)
    assert ema.beta(batch_size=10) == pytest.approx(0.5 ** (10 / 0.5))
    plain = EMA(model, halflife_images=1e6)
    assert plain.beta(10) == pytest.approx(0.5 ** (10 / 1e6))


def test_state_dict_roundtrip_and_validation():
    model = Toy()
    ema = EMA(model, halflife_images=100)
    with torch.no_grad():
        model.w.fill_(2.0)
    ema.update(model, batch_size=10)
    other = EMA(Toy(), halflife_images=5)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.module.w, ema.module.w)
    assert other.images_seen == 10 and other.halflife_images == 100
    with pytest.raises(ReconInputError):
        EMA(model)
    with pytest.raises(ReconInputError):
        EMA(model, decay=1.0)
