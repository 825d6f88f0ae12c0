"""The torch.library op contract: opcheck, torch.compile without graph breaks, and no m x n allocation."""

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import ttkernels
from ttkernels import TTLinear

_ = ttkernels.ops  # registers the ops


def _args(T=5, n=24, m=16, R=3, dtype=torch.float32, bias=True):
    x = torch.randn(T, n, dtype=dtype, requires_grad=True)
    W = torch.randn(m, n, dtype=dtype)
    b = torch.randn(m, dtype=dtype) if bias else None
    A = torch.randn(R, n, requires_grad=True)
    B = torch.randn(m, R, requires_grad=True)
    return x, W, b, A, B


@pytest.mark.parametrize("bias", [True, False])
def test_opcheck_tt_linear_fwd(bias):
    x, W, b, A, B = _args(bias=bias)
    torch.library.opcheck(torch.ops.ttkernels.tt_linear_fwd.default, (x, W, b, A, B, 1.5, "torch"))


def test_opcheck_tt_adapter_fwd():
    x, W, _, A, B = _args()
    base_out = (x @ W.t()).detach().requires_grad_(True)
    torch.library.opcheck(torch.ops.ttkernels.tt_adapter_fwd.default, (x, base_out, A, B, 0.5, "torch"))


@pytest.mark.parametrize("with_weight", [True, False])
def test_opcheck_tt_linear_bwd(with_weight):
    x, W, _, A, B = _args()
    dy = torch.randn(5, 16)
    z = (x @ A.t()).detach()
    args = (dy, x.detach(), z, W if with_weight else None, A.detach(), B.detach(), 1.5, "torch", True, True, False)
    torch.library.opcheck(torch.ops.ttkernels.tt_linear_bwd.default, args)


def _tiny_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 48), nn.GELU(), nn.Linear(48, 32), nn.GELU(), nn.Linear(32, 8))
    ttkernels.patch(model, targets=["0", "2", "4"], rank=3, init="gaussian", backend="torch")
    return model


def test_compile_fullgraph_matches_eager():
    model = _tiny_model()
    x = torch.randn(4, 7, 32, requires_grad=True)
    eager = model(x)
    eager.sum().backward()
    grads_eager = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    x_grad_eager = x.grad.clone()
    for p in model.parameters():
        p.grad = None
    x.grad = None

    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)
    out.sum().backward()
    for g_eager, p in zip(grads_eager, [p for p in model.parameters() if p.requires_grad]):
        torch.testing.assert_close(p.grad, g_eager, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, x_grad_eager, rtol=1e-5, atol=1e-5)


def test_compile_inductor_forward():
    model = _tiny_model()
    x = torch.randn(3, 32)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)


class _LargestAllocation(TorchDispatchMode):
    """Records the largest new tensor any op produces (views of existing storage do not count)."""

    def __init__(self):
        super().__init__()
        self.largest = 0
        self.where = ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = torch.utils._pytree.tree_leaves((args, kwargs))
        existing = {t.untyped_storage().data_ptr() for t in inputs if isinstance(t, torch.Tensor)}
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if not isinstance(t, torch.Tensor) or t.untyped_storage().data_ptr() in existing:
                continue
            if t.numel() > self.largest:
                self.largest, self.where = t.numel(), str(func)
        return out


@pytest.mark.parametrize("base", ["linear", "adapter"])
def test_forward_and_backward_never_form_delta_w(base):
    m = n = 256
    T = 8  # T * max(m, n) is far below m * n
    lin = nn.Linear(n, m)
    if base == "adapter":
        class Wrapped(nn.Linear):
            def forward(self, x):
                return super().forward(x)

        lin = Wrapped(n, m)
    layer = TTLinear(lin, shape=[16, 16, 16, 16], rank=4, init="gaussian")
    x = torch.randn(T, n, requires_grad=True)
    with _LargestAllocation() as probe:
        layer(x).sum().backward()
    assert probe.largest < m * n, f"an op produced {probe.largest} elements ({probe.where}); m*n = {m * n}"
    assert all(c.grad is not None for c in layer.cores)


def test_autocast_runs_the_op_in_the_autocast_dtype():
    layer = TTLinear(nn.Linear(16, 8), shape=[8, 16], rank=2, init="gaussian")
    x = torch.randn(3, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
        expected = nn.functional.linear(x, layer.base_layer.weight, layer.base_layer.bias)
    assert y.dtype == expected.dtype == torch.bfloat16
    ref = x.double() @ (layer.base_layer.weight.double() + layer.alpha * layer.delta_weight(torch.float64)).t()
    torch.testing.assert_close(y.double(), ref + layer.base_layer.bias.double(), rtol=3e-2, atol=3e-2)
    y.float().sum().backward()
    assert x.grad.dtype == torch.float32 and all(c.grad.dtype == torch.float32 for c in layer.cores)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled Triton path needs a CUDA device")
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_compile_on_gpu_matches_eager(backend):
    from ttkernels.backends import backend_status

    if backend_status(backend) is not None:
        pytest.skip(f"{backend}: {backend_status(backend)}")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 256)).cuda().to(torch.bfloat16)
    ttkernels.patch(model, targets=["0", "2"], rank=4, init="gaussian", backend=backend)
    x = torch.randn(4, 33, 256, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    eager = model(x)
    eager.float().sum().backward()
    grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    for p in model.parameters():
        p.grad = None
    torch._dynamo.reset()
    out = torch.compile(model, fullgraph=True)(x)
    torch.testing.assert_close(out, eager, rtol=2e-2, atol=2e-2)
    out.float().sum().backward()
    for g, p in zip(grads, [p for p in model.parameters() if p.requires_grad]):
        torch.testing.assert_close(p.grad, g, rtol=2e-2, atol=2e-2)
