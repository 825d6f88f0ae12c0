"""Every backend through the op layer (torch.library ops + autograd) against float64 math.

Shapes include odd sizes below and above one kernel block, a single token and ranks 1..16. On a CPU machine
the Triton backend runs under TRITON_INTERPRET=1 (set in conftest), so shapes stay small.
"""

import pytest
import torch
from conftest import DEVICE
from utils import assert_close_verbose, max_rel_err

from ttkernels import use_backend
from ttkernels.ops import tt_adapter, tt_linear

# (T tokens, n in, m out, R)
OP_SHAPES = [
    (1, 16, 8, 1),
    (3, 40, 24, 4),
    (17, 33, 65, 5),
    (64, 96, 80, 8),
    (5, 130, 70, 16),
    (130, 72, 136, 3),
]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _inputs(T, n, m, R, dtype, bias):
    x = torch.randn(T, n, device=DEVICE, dtype=dtype)
    W = (torch.randn(m, n, device=DEVICE) / n**0.5).to(dtype)
    b = torch.randn(m, device=DEVICE, dtype=dtype) if bias else None
    A = torch.randn(R, n, device=DEVICE) / n**0.5
    B = torch.randn(m, R, device=DEVICE) / R**0.5
    return x, W, b, A, B


def _reference(x, W, b, A, B, alpha):
    z = x.double() @ A.double().t()
    y = x.double() @ W.double().t() + alpha * z @ B.double().t()
    return y if b is None else y + b.double()


def _backward_and_compare(backend, y, y64, pairs, dtype, label):
    """Backpropagate the same random dy through y (backend) and y64 (float64); compare each (tensor, ref, name)."""
    dy = torch.randn(*y64.shape, device=DEVICE, dtype=torch.float64)
    with use_backend(backend):
        y.backward(dy.to(dtype))
    y64.backward(dy)
    for t, ref, name in pairs:
        assert_close_verbose(t.grad, ref.grad, dtype, f"{label} {name}", grad=True)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", OP_SHAPES, ids=lambda s: "T{}-n{}-m{}-R{}".format(*s))
def test_tt_linear_forward_and_grads(backend, shape, dtype, bias):
    T, n, m, R = shape
    alpha = 1.5
    x, W, b, A, B = _inputs(T, n, m, R, dtype, bias)
    x.requires_grad_(True)
    A.requires_grad_(True)
    B.requires_grad_(True)
    with use_backend(backend):
        y = tt_linear(x, W, b, A, B, alpha)
    assert y.dtype == dtype and y.shape == (T, m)

    x64, A64, B64 = (t.detach().double().requires_grad_(True) for t in (x, A, B))
    y64 = _reference(x64, W, b, A64, B64, alpha)
    assert_close_verbose(y, y64, dtype, f"{backend} y")

    _backward_and_compare(backend, y, y64, [(x, x64, "dx"), (A, A64, "dA"), (B, B64, "dB")], dtype, backend)
    assert W.grad is None

    if dtype != torch.float32 and backend != "torch":  # low precision: no worse than 2x the torch backend
        with use_backend("torch"):
            y_torch = tt_linear(x.detach(), W, b, A.detach(), B.detach(), alpha)
        assert max_rel_err(y, y64) <= 2 * max_rel_err(y_torch, y64) + 1e-3


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", OP_SHAPES[::2], ids=lambda s: "T{}-n{}-m{}-R{}".format(*s))
def test_tt_adapter_forward_and_grads(backend, shape, dtype):
    T, n, m, R = shape
    alpha = 0.75
    x, W, _, A, B = _inputs(T, n, m, R, dtype, False)
    x.requires_grad_(True)
    A.requires_grad_(True)
    B.requires_grad_(True)
    base_out = torch.tanh(x @ W.t())  # any non-linear base
    with use_backend(backend):
        y = tt_adapter(x, base_out, A, B, alpha)
    x64, A64, B64 = (t.detach().double().requires_grad_(True) for t in (x, A, B))
    y64 = torch.tanh(x64 @ W.double().t()) + alpha * (x64 @ A64.t()) @ B64.t()
    assert_close_verbose(y, y64, dtype, f"{backend} adapter y")
    pairs = [(x, x64, "dx"), (A, A64, "dA"), (B, B64, "dB")]
    _backward_and_compare(backend, y, y64, pairs, dtype, f"{backend} adapter")


def test_leading_dims_and_no_input_grad(backend):
    x, W, b, A, B = _inputs(6, 24, 16, 4, torch.float32, True)
    A.requires_grad_(True)
    x3 = x.reshape(2, 3, 24)  # x needs no grad: the backward must skip dx
    with use_backend(backend):
        y = tt_linear(x3, W, b, A, B, 2.0)
        y.sum().backward()
    assert y.shape == (2, 3, 16)
    assert_close_verbose(y.reshape(6, 16), _reference(x, W, b, A, B, 2.0), torch.float32, "3-D y")
    assert A.grad is not None and x.grad is None
