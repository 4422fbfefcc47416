import numpy as np
import torch

from models.mri.fft import fft2c, fft2c_np, ifft2c, ifft2c_np


def _random_complex(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))


def test_fft_matches_numpy_centred_orthonormal(device):
    x = _random_complex((3, 2, 16, 12))
    expected = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x.numpy(), axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    got = fft2c(x.to(device)).cpu().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(fft2c_np(x.numpy()), expected, atol=1e-5)


def test_inverse_and_energy(device):
    x = _random_complex((2, 15, 16)).to(device)  # odd size too
    k = fft2c(x)
    torch.testing.assert_close(ifft2c(k), x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(k.abs().pow(2).sum(), x.abs().pow(2).sum(), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(ifft2c_np(fft2c_np(x.cpu().numpy())), x.cpu().numpy(), atol=1e-5)


def test_dc_of_constant_image_lands_in_centre():
    x = torch.ones(8, 10, dtype=torch.complex64)
    k = fft2c(x)
    assert k.abs().argmax().item() == 4 * 10 + 5
    assert abs(k[4, 5].real.item() - np.sqrt(80)) < 1e-4
