"""One identity battery for the SENSE operator (adjoint, linearity, normal) plus its error cases."""

import pytest
import torch

from models.errors import CoilMismatchError, ShapeError
from models.mri.masks import create_mask_func
from models.mri.operators import SenseOperator


def _crandn(shape, g, dtype):
    real = torch.randn(shape, generator=g, dtype=torch.float64)
    imag = torch.randn(shape, generator=g, dtype=torch.float64)
    return torch.complex(real, imag).to(dtype)


def _operator(device, dtype, batch=3, coils=6, h=20, w=16, per_slice_masks=False):
    g = torch.Generator().manual_seed(0)
    maps = _crandn((batch, coils, h, w), g, dtype)
    if per_slice_masks:
        func = create_mask_func("random", 3, 4)
        mask = torch.stack([func(w, g).as_kspace_mask()[0] for _ in range(batch)])
    else:
        mask = create_mask_func("equispaced", 3, 4)(w).mask
    return SenseOperator(maps.to(device), mask.to(device)), g


def _inner(a, b):
    return (a.conj() * b).sum()


@pytest.mark.parametrize("dtype,tol", [(torch.complex64, 1e-5), (torch.complex128, 1e-12)])
@pytest.mark.parametrize("per_slice_masks", [False, True])
def test_adjointness(device, dtype, tol, per_slice_masks):
    op, g = _operator(device, dtype, per_slice_masks=per_slice_masks)
    x = _crandn(op.image_shape, g, dtype).to(device)
    y = _crandn(op.kspace_shape, g, dtype).to(device)
    lhs, rhs = _inner(op.forward(x), y), _inner(x, op.adjoint(y))
    assert abs(lhs - rhs) / abs(lhs) < tol


def test_linearity(device):
    op, g = _operator(device, torch.complex64)
    x1, x2 = (_crandn(op.image_shape, g, torch.complex64).to(device) for _ in range(2))
    a = complex(0.3, -1.7)
    torch.testing.assert_close(op(a * x1 + x2), a * op(x1) + op(x2), atol=1e-4, rtol=1e-4)


def test_normal_is_adjoint_of_forward(device):
    op, g = _operator(device, torch.complex128)
    x = _crandn(op.image_shape, g, torch.complex128).to(device)
    torch.testing.assert_close(op.normal(x), op.adjoint(op.forward(x)), atol=1e-10, rtol=1e-10)
    assert (_inner(x, op.normal(x)).real > 0) and abs(_inner(x, op.normal(x)).imag) < 1e-8


def test_forward_is_zero_on_unsampled_lines(device):
    op, g = _operator(device, torch.complex64)
    k = op(_crandn(op.image_shape, g, torch.complex64).to(device))
    unsampled = ~op.mask.bool().reshape(-1)
    assert torch.count_nonzero(k[..., unsampled]) == 0
    assert torch.count_nonzero(k[..., ~unsampled]) > 0


def test_shape_errors_name_the_problem():
    op, g = _operator("cpu", torch.complex64)
    with pytest.raises(ShapeError, match="forward: expected shape"):
        op.forward(torch.zeros(3, 20, 15, dtype=torch.complex64))
    with pytest.raises(CoilMismatchError, match="6 coils but k-space has 5"):
        op.adjoint(torch.zeros(3, 5, 20, 16, dtype=torch.complex64))
    with pytest.raises(ShapeError, match="maps must be"):
        SenseOperator(torch.zeros(6, 20, 16, dtype=torch.complex64), torch.ones(16))
    with pytest.raises(ShapeError, match="does not broadcast"):
        SenseOperator(torch.zeros(1, 6, 20, 16, dtype=torch.complex64), torch.ones(17))
