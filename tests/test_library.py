"""The torch.library op contract: opcheck, torch.compile without graph breaks, and no m x n allocation."""

import pytest
import torch
from torch import nn

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
    for g_eager, p in zip(grads_eager, [p for p in model.parameters() if p.requires_grad], strict=True):
        torch.testing.assert_close(p.grad, g_eager, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, x_grad_eager, rtol=1e-5, atol=1e-5)


def test_compile_inductor_forward():
    model = _tiny_model()
    x = torch.randn(3, 32)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)


def _largest_allocation(fn) -> int:
    """The largest single CPU allocation (bytes) made while ``fn()`` runs, from torch.profiler memory events.

    The profiler sees every allocation, including those inside the custom ops' implementations.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    sizes = [e.nbytes() for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    return max([s for s in sizes if s > 0], default=0)


class _Wrapped(nn.Linear):
    def forward(self, x):
        return super().forward(x)


@pytest.mark.parametrize("base", ["linear", "adapter"])
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_forward_and_backward_never_form_delta_w(base, backend):
    from ttkernels.backends import backend_status

    if backend_status(backend) is not None:
        pytest.skip(f"{backend}: {backend_status(backend)}")
    m = n = 256
    T = 8  # every legitimate tensor (x, y, dx: T x 256; factors: R x 256) is far below m * n
    lin = nn.Linear(n, m) if base == "linear" else _Wrapped(n, m)
    layer = TTLinear(lin, shape=[16, 16, 16, 16], rank=4, init="gaussian", backend=backend)
    x = torch.randn(T, n, requires_grad=True)
    largest = _largest_allocation(lambda: layer(x).sum().backward())
    assert largest < m * n * 2, f"an allocation of {largest} bytes was made; an m x n bf16 ΔW is {m * n * 2}"
    assert all(c.grad is not None for c in layer.cores) and x.grad is not None


def test_allocation_probe_sees_a_delta_w_inside_an_op(monkeypatch):
    """The probe must catch ΔW formed *inside* a backend (negative control)."""
    from ttkernels.ops import torch_backend

    real = torch_backend.linear_fwd

    def wasteful(x, weight, bias, A, B, alpha):
        _ = B @ A  # m x n
        return real(x, weight, bias, A, B, alpha)

    monkeypatch.setattr(torch_backend, "linear_fwd", wasteful)
    layer = TTLinear(nn.Linear(256, 256), shape=[16, 16, 16, 16], rank=4, init="gaussian", backend="torch")
    x = torch.randn(8, 256)
    assert _largest_allocation(lambda: layer(x)) >= 256 * 256 * 4


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
    for g, p in zip(grads, [p for p in model.parameters() if p.requires_grad], strict=True):
        torch.testing.assert_close(p.grad, g, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("kind", ["linear", "adapter"])
def test_eager_functions_and_custom_ops_agree_and_gradcheck(kind):
    """Eager calls run through _library.Eager* (no custom-op dispatch); compile traces the custom ops. Same
    bodies: identical outputs and gradients, and the custom-op path passes gradcheck in float64 too."""
    from ttkernels.ops import _library

    torch.manual_seed(0)
    T, n, m, R = 3, 6, 5, 2
    x = torch.randn(T, n, dtype=torch.float64, requires_grad=True)
    W = torch.randn(m, n, dtype=torch.float64)
    b = torch.randn(m, dtype=torch.float64)
    base_out = torch.randn(T, m, dtype=torch.float64, requires_grad=True)
    A = torch.randn(R, n, dtype=torch.float64, requires_grad=True)
    B = torch.randn(m, R, dtype=torch.float64, requires_grad=True)
    if kind == "linear":
        inputs = (x, A, B)
        eager = lambda x, A, B: _library.EagerLinear.apply(x, W, b, A, B, 0.7, "torch")[0]  # noqa: E731
        op = lambda x, A, B: torch.ops.ttkernels.tt_linear_fwd(x, W, b, A, B, 0.7, "torch")[0]  # noqa: E731
    else:
        inputs = (x, base_out, A, B)
        eager = lambda x, o, A, B: _library.EagerAdapter.apply(x, o, A, B, 0.7, "torch")[0]  # noqa: E731
        op = lambda x, o, A, B: torch.ops.ttkernels.tt_adapter_fwd(x, o, A, B, 0.7, "torch")[0]  # noqa: E731
    dy = torch.randn(T, m, dtype=torch.float64)
    y_eager = eager(*inputs)
    g_eager = torch.autograd.grad(y_eager, inputs, dy)
    y_op = op(*inputs)
    g_op = torch.autograd.grad(y_op, inputs, dy)
    assert torch.equal(y_eager, y_op)
    assert all(torch.equal(a, c) for a, c in zip(g_eager, g_op, strict=True))
    assert torch.autograd.gradcheck(op, inputs) and torch.autograd.gradcheck(eager, inputs)


def test_eager_calls_skip_the_custom_op_dispatch():
    from torch.profiler import ProfilerActivity, profile

    layer = TTLinear(nn.Linear(16, 8), shape=[8, 16], rank=2, init="gaussian", backend="torch")
    x = torch.randn(3, 16)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        layer(x).sum().backward()
    names = {e.name for e in prof.events()}
    assert not any(name.startswith("ttkernels::") for name in names), sorted(n for n in names if "ttkernels" in n)
    assert any("EagerLinear" in name for name in names)


def test_double_backward_raises_instead_of_dropping_terms():
    layer = TTLinear(nn.Linear(16, 8), shape=[8, 16], rank=2, init="gaussian", backend="torch")
    x = torch.randn(3, 16, requires_grad=True)
    (gx,) = torch.autograd.grad(layer(x).pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match=r"once_differentiable|twice"):
        gx.sum().backward()


@pytest.mark.parametrize("kind", ["linear", "adapter"])
def test_meta_tensors_go_through_the_fake_kernels(kind):
    from ttkernels.ops import tt_adapter, tt_linear

    x = torch.empty(2, 3, 16, device="meta")
    A, B = torch.empty(4, 16, device="meta"), torch.empty(8, 4, device="meta")
    if kind == "linear":
        y = tt_linear(x, torch.empty(8, 16, device="meta"), None, A, B, 1.0)
    else:
        y = tt_adapter(x, torch.empty(2, 3, 8, device="meta"), A, B, 1.0)
    assert y.shape == (2, 3, 8) and y.device.type == "meta"


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # the input checks compare shapes in Python
def test_jit_trace_records_the_custom_op():
    layer = TTLinear(nn.Linear(16, 8), shape=[8, 16], rank=2, init="gaussian", backend="torch").eval()
    x = torch.randn(3, 16)
    with torch.no_grad():
        traced = torch.jit.trace(layer, x)
        torch.testing.assert_close(traced(x), layer(x))
    assert "ttkernels::tt_linear_fwd" in str(traced.graph)
