"""EDM preconditioning: coefficients and the small / large sigma limits."""

import math

import pytest
import torch

from models.errors import ShapeError
from models.prior.channels import channels_to_complex, complex_to_channels
from models.prior.precond import EDMPrecond
from models.prior.unet import UNet, unet_preset


@pytest.fixture(scope="module")
def precond():
    torch.manual_seed(2)
    return EDMPrecond(UNet(unet_preset("tiny", 16, label_dim=2)), sigma_data=0.5).eval()


LAB = torch.eye(2)[:1]


def test_coefficients_at_sigma_data(precond):
    c_skip, c_out, c_in, c_noise = precond.coefficients(torch.tensor(0.5, dtype=torch.float64))
    assert c_skip.item() == pytest.approx(0.5)
    assert c_out.item() == pytest.approx(0.5 / math.sqrt(2))
    assert c_in.item() == pytest.approx(1 / (0.5 * math.sqrt(2)))
    assert c_noise.item() == pytest.approx(math.log(0.5) / 4)
    # c_in makes the network input unit-variance: c_in^2 (sigma_data^2 + sigma^2) = 1
    s = torch.tensor([0.01, 1.0, 30.0], dtype=torch.float64)
    c_skip, c_out, c_in, _ = precond.coefficients(s)
    # and the effective training target of F unit-variance: (1 - c_skip)^2 sd^2 + c_skip^2 s^2 = c_out^2
    torch.testing.assert_close((1 - c_skip) ** 2 * 0.25 + c_skip ** 2 * s ** 2, c_out ** 2)
    torch.testing.assert_close(c_in ** 2 * (0.25 + s ** 2), torch.ones_like(s))


def test_forward_equals_formula(precond):
    x = torch.randn(2, 2, 16, 16)
    sigma = torch.tensor([0.1, 3.0])
    d = precond(x, sigma, LAB)
    s = sigma.view(-1, 1, 1, 1)
    c_skip, c_out, c_in, c_noise = precond.coefficients(s)
    f = precond.net(c_in * x, c_noise.flatten(), LAB)
    torch.testing.assert_close(d, c_skip * x + c_out * f)


def test_small_sigma_returns_input(precond):
    x = torch.randn(2, 2, 16, 16) * 0.5
    d = precond(x, 1e-6, LAB)
    assert (d - x).abs().max() < 1e-5
    assert (d - x).abs().max() > 0  # but the network is still in the loop


def test_large_sigma_output_is_c_out_times_f(precond):
    sigma = 1e4
    x = torch.randn(2, 2, 16, 16) * sigma  # a pure-noise input at that level
    d = precond(x, sigma, LAB)
    c_skip, c_out, c_in, c_noise = precond.coefficients(torch.tensor(sigma))
    f = precond.net(c_in * x, c_noise.reshape(1), LAB)
    torch.testing.assert_close(d, c_out * f, rtol=1e-4, atol=1e-4)  # c_skip x is ~2.5e-9 * x
    assert d.norm() / x.norm() < 1e-3
    assert d.abs().max() < 10 * 0.5 * f.abs().max()


def test_scalar_and_batch_sigma_agree_and_shape_checks(precond):
    x = torch.randn(3, 2, 16, 16)
    torch.testing.assert_close(precond(x, 0.7, LAB), precond(x, torch.full((3,), 0.7), LAB))
    with pytest.raises(ShapeError, match="sigma has 2 entries"):
        precond(x, torch.ones(2), LAB)
    with pytest.raises(ShapeError):
        precond(x[0], 0.7, LAB)


def test_denoise_complex_matches_channels(precond):
    z = torch.randn(2, 16, 16, dtype=torch.complex64)
    out = precond.denoise_complex(z, 0.3, LAB)
    assert out.dtype == torch.complex64 and out.shape == z.shape
    torch.testing.assert_close(complex_to_channels(out), precond(complex_to_channels(z), 0.3, LAB))


def test_channel_helpers_roundtrip():
    z = torch.randn(3, 8, 4, dtype=torch.complex64)
    ch = complex_to_channels(z)
    assert ch.shape == (3, 2, 8, 4) and ch.dtype == torch.float32
    assert torch.equal(ch[:, 0], z.real) and torch.equal(ch[:, 1], z.imag)
    assert torch.equal(channels_to_complex(ch), z)
    with pytest.raises(ShapeError):
        complex_to_channels(z.real)
    with pytest.raises(ShapeError):
        channels_to_complex(torch.zeros(3, 3, 8, 4))


def test_gradient_flows_to_input_of_frozen_prior(precond):
    """DPS differentiates D(x) with respect to x while the weights stay frozen."""
    frozen = EDMPrecond(precond.net, sigma_data=0.5).requires_grad_(False)
    x = torch.randn(1, 2, 16, 16, requires_grad=True)
    frozen(x, 0.5, LAB).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in frozen.parameters())
