"""The ``cuda`` backend (ttkernels.ops.cuda over the extension ttkernels._C) against float64 math.

The GPU tests need a CUDA device and a built extension (TTKERNELS_BUILD_CUDA=1 pip install -e .
--no-build-isolation); elsewhere they are skipped with the reason. The CPU tests check what a machine without
the extension sees: an import that never fails, a reason that says how to build, and clear refusals.
Kernel arithmetic is also checked without a GPU, under emulation, in tests/test_csrc_build.py.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
from pathlib import Path

import pytest
import torch
from utils import assert_close_verbose, max_rel_err

from ttkernels.ops import cuda as cuda_backend
from ttkernels.ops import torch_backend

GPU_REASON = cuda_backend.available()
_skip_without_gpu = pytest.mark.skipif(GPU_REASON is not None, reason=f"cuda backend unavailable: {GPU_REASON}")


def needs_gpu(test):
    """Marked `gpu` (pyproject's marker) and skipped, with the reason, where the extension cannot run."""
    return pytest.mark.gpu(_skip_without_gpu(test))


DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# (T tokens, n in, m out): a single token, odd sizes (scalar path), tails of every tile, 16-byte aligned widths
SHAPES = [(1, 64, 48), (1, 33, 65), (7, 33, 65), (64, 96, 80), (130, 256, 136), (257, 520, 1000)]
RANKS = [1, 2, 5, 8, 16]


# ---- CPU: what a machine without the extension or a GPU sees ----


def test_contract_surface_matches_torch_backend():
    assert cuda_backend.NAME == "cuda"
    for name in ("available", "not_supported_reasons", "linear_fwd", "adapter_fwd", "linear_bwd"):
        ours = inspect.signature(getattr(cuda_backend, name))
        ref = inspect.signature(getattr(torch_backend, name))
        assert list(ours.parameters) == list(ref.parameters), f"{name}{ours} != torch backend's {name}{ref}"


def test_module_does_not_import_the_registry():
    tree = ast.parse(Path(cuda_backend.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    assert not any(m and m.endswith("backends") for m in imported), imported


def test_available_gives_an_actionable_reason():
    reason = cuda_backend.available()
    if cuda_backend._C is None:
        assert reason is not None and "ttkernels._C" in reason
        assert "TTKERNELS_BUILD_CUDA=1 pip install -e . --no-build-isolation" in reason
    elif not torch.cuda.is_available():
        assert reason == "no CUDA device is available"
    else:
        assert reason is None


def test_not_supported_reasons_on_cpu_tensors_say_why():
    x, A, B = torch.randn(3, 8), torch.randn(2, 8), torch.randn(5, 2)
    reasons = cuda_backend.not_supported_reasons(x, A, B, None)
    assert reasons == ["x is on cpu; the cuda backend needs CUDA tensors"]


def test_not_supported_reasons_dtype_and_rank():
    x = torch.randn(3, 8, dtype=torch.float64)
    reasons = cuda_backend.not_supported_reasons(x, torch.randn(300, 8), torch.randn(5, 300), torch.randn(5))
    joined = "\n".join(reasons)
    assert "x has dtype torch.float64; the cuda backend supports float32, float16 and bfloat16" in joined
    assert "bias has dtype torch.float32, x has torch.float64" in joined
    assert f"rank R = 300 is above the cuda backend's limit of {cuda_backend.MAX_RANK}" in joined
    zero_rank = cuda_backend.not_supported_reasons(torch.randn(3, 8), torch.randn(0, 8), torch.randn(5, 0), None)
    assert "rank R = 0: nothing for the cuda kernels to do" in zero_rank


@pytest.mark.skipif(cuda_backend._C is not None, reason="ttkernels._C is built here")
def test_calls_without_the_extension_raise_with_the_build_command():
    x, W, A, B = torch.randn(3, 8), torch.randn(5, 8), torch.randn(2, 8), torch.randn(5, 2)
    not_built = r"cuda backend is unavailable: ttkernels\._C is not built.*TTKERNELS_BUILD_CUDA=1"
    with pytest.raises(RuntimeError, match=not_built):
        cuda_backend.linear_fwd(x, W, None, A, B, 1.0)
    with pytest.raises(RuntimeError, match=not_built):
        cuda_backend.linear_bwd(torch.randn(3, 5), x, torch.randn(3, 2), W, A, B, 1.0, True, True, True)


@pytest.mark.skipif(cuda_backend._C is not None, reason="ttkernels._C is built here: no import error to log")
def test_debug_env_logs_the_import_traceback(monkeypatch, caplog):
    monkeypatch.setenv("TTKERNELS_DEBUG", "1")
    with caplog.at_level(logging.DEBUG, logger="ttkernels"):
        importlib.reload(cuda_backend)
    assert "importing ttkernels._C failed" in caplog.text and "Traceback" in caplog.text
    monkeypatch.delenv("TTKERNELS_DEBUG")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ttkernels"):
        importlib.reload(cuda_backend)  # quiet without the flag
    assert caplog.text == ""
    monkeypatch.setenv("TTKERNELS_DEBUG", "2")  # a bad switch is said, and the import error stays the reason
    with caplog.at_level(logging.WARNING, logger="ttkernels"):
        importlib.reload(cuda_backend)
    assert "TTKERNELS_DEBUG='2' is not a boolean" in caplog.text
    assert cuda_backend._C is None and "ttkernels._C is not built" in cuda_backend._C_ERROR
    monkeypatch.delenv("TTKERNELS_DEBUG")
    importlib.reload(cuda_backend)


# ---- GPU: the built extension against float64 ----


def _inputs(T, n, m, R, dtype, *, bias=True, factor_dtype=torch.float32, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)

    def randn(*shape, scale=1.0, dt=dtype):
        return (torch.randn(*shape, device="cuda", generator=g) * scale).to(dt)

    x = randn(T, n)
    W = randn(m, n, scale=n**-0.5)
    b = randn(m) if bias else None
    A = randn(R, n, scale=n**-0.5, dt=factor_dtype)
    B = randn(m, R, scale=R**-0.5, dt=factor_dtype)
    return x, W, b, A, B


def _ref_fwd(x, W, b, A, B, alpha):
    z = x.double() @ A.double().t()
    y = alpha * z @ B.double().t()
    if W is not None:
        y = y + x.double() @ W.double().t()
    if b is not None:
        y = y + b.double()
    return y, z


def _ref_bwd(dy, x, z, W, A, B, alpha):
    dy64 = dy.double()
    dyB = dy64 @ B.double()
    dx = alpha * dyB @ A.double()
    if W is not None:
        dx = dx + dy64 @ W.double()
    return dx, alpha * dyB.t() @ x.double(), alpha * dy64.t() @ z.double()


def _no_worse_than_torch(ours, torch_out, ref, what, slack=2.0):
    """Low precision: our error vs float64 is at most `slack` x the same-dtype torch path's (FA rule)."""
    err, err_torch = max_rel_err(ours, ref), max_rel_err(torch_out, ref)
    assert err <= slack * err_torch + 1e-6, f"{what}: rel err {err:.3e} > {slack} x torch's {err_torch:.3e}"


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}_n{}_m{}".format(*s))
@pytest.mark.parametrize("R", RANKS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_linear_fwd_matches_float64(dtype, shape, R, bias):
    T, n, m = shape
    x, W, b, A, B = _inputs(T, n, m, R, dtype, bias=bias)
    alpha = 1.5
    y, z = cuda_backend.linear_fwd(x, W, b, A, B, alpha)
    assert y.dtype == dtype and y.shape == (T, m) and z.dtype == torch.float32 and z.shape == (T, R)
    y_ref, z_ref = _ref_fwd(x, W, b, A, B, alpha)
    assert_close_verbose(z, z_ref, dtype, "z")  # z comes from the dtype-rounded A
    assert_close_verbose(y, y_ref, dtype, "y")
    if dtype != torch.float32:
        y_torch, _ = torch_backend.linear_fwd(x, W, b, A, B, alpha)
        _no_worse_than_torch(y, y_torch, y_ref, "y")


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES[:4], ids=lambda s: "T{}_n{}_m{}".format(*s))
@pytest.mark.parametrize("R", [1, 5, 16])
@pytest.mark.parametrize("base_dtype", ["same", "float32"])
def test_adapter_fwd_matches_float64(dtype, shape, R, base_dtype):
    T, n, m = shape
    x, _, _, A, B = _inputs(T, n, m, R, dtype, bias=False)
    base_out = torch.randn(T, m, device="cuda", dtype=dtype if base_dtype == "same" else torch.float32)
    base_copy = base_out.clone()
    y, z = cuda_backend.adapter_fwd(x, base_out, A, B, -0.5)
    assert y.dtype == base_out.dtype and y.shape == (T, m)
    assert torch.equal(base_out, base_copy), "adapter_fwd wrote into base_out"
    y_ref, z_ref = _ref_fwd(x, None, None, A, B, -0.5)
    assert_close_verbose(z, z_ref, dtype, "z")
    assert_close_verbose(y, y_ref + base_out.double(), dtype, "y")


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}_n{}_m{}".format(*s))
@pytest.mark.parametrize("R", RANKS)
@pytest.mark.parametrize("with_weight", [True, False], ids=["linear", "adapter_only"])
def test_linear_bwd_matches_float64(dtype, shape, R, with_weight):
    T, n, m = shape
    x, W, _, A, B = _inputs(T, n, m, R, dtype, bias=False)
    W = W if with_weight else None
    alpha = 0.75
    z = (x.float() @ A.float().t()).contiguous()
    dy = torch.randn(T, m, device="cuda").to(dtype)
    dx, dA, dB = cuda_backend.linear_bwd(dy, x, z, W, A, B, alpha, True, True, True)
    assert dx.dtype == dtype and dA.dtype == A.dtype and dB.dtype == B.dtype
    dx_ref, dA_ref, dB_ref = _ref_bwd(dy, x, z, W, A, B, alpha)
    assert_close_verbose(dx, dx_ref, dtype, "dx", grad=True)
    assert_close_verbose(dA, dA_ref, dtype, "dA", grad=True)
    assert_close_verbose(dB, dB_ref, dtype, "dB", grad=True)
    if dtype != torch.float32:
        t_dx, t_dA, t_dB = torch_backend.linear_bwd(dy, x, z, W, A, B, alpha, True, True, True)
        for what, ours, theirs, ref in (("dx", dx, t_dx, dx_ref), ("dA", dA, t_dA, dA_ref), ("dB", dB, t_dB, dB_ref)):
            _no_worse_than_torch(ours, theirs, ref, what)


@needs_gpu
@pytest.mark.parametrize("R", [17, 33, 64, 70, 256])
def test_wide_ranks_chunk_correctly(R):
    """Ranks past one register tile (16/32/64) and past one shared-memory chunk (32) take other code paths."""
    x, W, b, A, B = _inputs(37, 264, 136, R, torch.float32)
    y, z = cuda_backend.linear_fwd(x, W, b, A, B, 1.0)
    y_ref, z_ref = _ref_fwd(x, W, b, A, B, 1.0)
    assert_close_verbose(z, z_ref, torch.float32, "z")
    assert_close_verbose(y, y_ref, torch.float32, "y")
    dy = torch.randn_like(y)
    dx, dA, dB = cuda_backend.linear_bwd(dy, x, z, W, A, B, 1.0, True, True, True)
    for what, got, ref in zip(("dx", "dA", "dB"), (dx, dA, dB), _ref_bwd(dy, x, z, W, A, B, 1.0), strict=True):
        assert_close_verbose(got, ref, torch.float32, what, grad=True)


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
def test_large_token_counts_and_decode(dtype):
    """T = 4096 splits the dA/dB reductions; T = 1 with n = 4096 splits K over the warps of a block."""
    for T, n, m in ((4096, 512, 384), (1, 4096, 4096)):
        x, W, b, A, B = _inputs(T, n, m, 16, dtype)
        y, z = cuda_backend.linear_fwd(x, W, b, A, B, 2.0)
        assert_close_verbose(y, _ref_fwd(x, W, b, A, B, 2.0)[0], dtype, f"y T={T}")
        dy = torch.randn(T, m, device="cuda").to(dtype)
        grads = cuda_backend.linear_bwd(dy, x, z, W, A, B, 2.0, True, True, True)
        for what, got, ref in zip(("dx", "dA", "dB"), grads, _ref_bwd(dy, x, z, W, A, B, 2.0), strict=True):
            assert_close_verbose(got, ref, dtype, f"{what} T={T}", grad=True)


@needs_gpu
def test_factor_dtype_may_differ_from_activations():
    x, W, b, A, B = _inputs(33, 72, 40, 5, torch.bfloat16, factor_dtype=torch.float32)
    y, z = cuda_backend.linear_fwd(x, W, b, A, B, 1.0)
    assert_close_verbose(y, _ref_fwd(x, W, b, A, B, 1.0)[0], torch.bfloat16, "y")
    x32, W32, _, A16, B16 = _inputs(33, 72, 40, 5, torch.float32, factor_dtype=torch.float16)
    dy = torch.randn(33, 40, device="cuda")
    z = x32 @ A16.float().t()
    _, dA, dB = cuda_backend.linear_bwd(dy, x32, z, W32, A16, B16, 1.0, False, True, True)
    assert dA.dtype == torch.float16 and dB.dtype == torch.float16
    _, dA_ref, dB_ref = _ref_bwd(dy, x32, z, W32, A16, B16, 1.0)
    assert_close_verbose(dA, dA_ref, torch.float16, "dA (fp16 factor, fp32 activations)", grad=True)
    assert_close_verbose(dB, dB_ref, torch.float16, "dB (fp16 factor, fp32 activations)", grad=True)


@needs_gpu
def test_only_requested_grads_are_returned():
    x, W, _, A, B = _inputs(9, 40, 24, 4, torch.float32, bias=False)
    z = x @ A.t()
    dy = torch.randn(9, 24, device="cuda")
    assert cuda_backend.linear_bwd(dy, x, z, W, A, B, 1.0, False, False, False) == (None, None, None)
    dx, dA, dB = cuda_backend.linear_bwd(dy, x, z, W, A, B, 1.0, False, False, True)
    assert dx is None and dA is None and dB is not None
    dx, dA, dB = cuda_backend.linear_bwd(dy, x, z, W, A, B, 1.0, True, False, False)
    assert dx is not None and dA is None and dB is None


@needs_gpu
def test_empty_batch():
    x, W, b, A, B = _inputs(0, 40, 24, 4, torch.bfloat16)
    y, z = cuda_backend.linear_fwd(x, W, b, A, B, 1.0)
    assert y.shape == (0, 24) and z.shape == (0, 4)
    dx, dA, dB = cuda_backend.linear_bwd(
        torch.empty(0, 24, device="cuda", dtype=torch.bfloat16), x, z, W, A, B, 1.0, True, True, True
    )
    assert dx.shape == (0, 40) and torch.count_nonzero(dA) == 0 and torch.count_nonzero(dB) == 0


@needs_gpu
def test_backward_is_deterministic():
    x, W, _, A, B = _inputs(3000, 256, 192, 8, torch.bfloat16, bias=False)
    z = x.float() @ A.float().t()
    dy = torch.randn(3000, 192, device="cuda").to(torch.bfloat16)
    first = cuda_backend.linear_bwd(dy, x, z, W, A, B, 1.0, True, True, True)
    second = cuda_backend.linear_bwd(dy, x, z, W, A, B, 1.0, True, True, True)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


@needs_gpu
def test_runs_on_the_current_stream_without_host_sync():
    x, W, b, A, B = _inputs(515, 264, 136, 8, torch.bfloat16)
    expected, _ = cuda_backend.linear_fwd(x, W, b, A, B, 1.0)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call in our path raises
    try:
        with torch.cuda.stream(stream):
            torch.cuda._sleep(10_000_000)  # keep the side stream busy: a kernel on the wrong stream would race
            y, z = cuda_backend.linear_fwd(x, W, b, A, B, 1.0)
            dy = torch.ones_like(y)
            grads = cuda_backend.linear_bwd(dy, x, z, W, A, B, 1.0, True, True, True)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    stream.synchronize()
    assert torch.equal(y, expected)
    assert all(g is not None for g in grads)


@needs_gpu
def test_binding_errors_name_the_tensor_and_the_values():
    from ttkernels import _C

    x, W, b, A, B = _inputs(5, 16, 8, 3, torch.float32)
    with pytest.raises(RuntimeError, match=r"A must have shape \(R, n\) = \[3, 16\], got \[3, 15\]"):
        _C.linear_fwd(x, W, b, A[:, :15].contiguous(), B, 1.0)
    with pytest.raises(RuntimeError, match="x must be contiguous"):
        _C.linear_fwd(torch.randn(16, 5, device="cuda").t(), W, b, A, B, 1.0)
    with pytest.raises(RuntimeError, match="x must be a CUDA tensor, got device cpu"):
        _C.linear_fwd(x.cpu(), W, b, A, B, 1.0)
    with pytest.raises(RuntimeError, match="weight must have dtype Half, got Float"):
        _C.linear_fwd(x.half(), W, None, A, B, 1.0)
    with pytest.raises(RuntimeError, match="z must have dtype Float, got BFloat16"):
        _C.linear_bwd(torch.randn(5, 8, device="cuda"), x, (x @ A.t()).bfloat16(), W, A, B, 1.0, True, True, True)
    with pytest.raises(RuntimeError, match="x must be float32, float16 or bfloat16, got Double"):
        _C.adapter_fwd(x.double(), torch.randn(5, 8, device="cuda"), A, B, 1.0)
