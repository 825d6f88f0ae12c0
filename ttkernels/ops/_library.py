"""The op contract: ``torch.library`` custom ops that every backend serves.

``ttkernels::tt_linear_fwd(x, weight, bias, A, B, alpha, backend) -> (y, z)``
    y = x Wᵀ + b + α·(x Aᵀ) Bᵀ, z = x Aᵀ (fp32, saved for backward). x (T, n), W (m, n), A (R, n), B (m, R).
``ttkernels::tt_adapter_fwd(x, base_out, A, B, alpha, backend) -> (y, z)``
    y = base_out + α·(x Aᵀ) Bᵀ for a base layer that is not a plain dense Linear.
``ttkernels::tt_linear_bwd(dy, x, z, weight, A, B, alpha, backend, need_dx, need_dA, need_dB) -> (dx, dA, dB)``
    dx = dy W + α·(dy B) A   (weight None: adapter term only)
    dA = α·(dy B)ᵀ x,  dB = α·dyᵀ z.  Outputs not asked for are empty tensors.

The backend is chosen inside the real implementation (opaque to Dynamo, so selection never breaks a graph);
the requested name travels as the ``backend`` string. The fake kernels compute shapes only. Autograd is
registered on the forward ops; they save x, z (R-wide), A, B and the frozen weight — nothing m x n, nothing
per token wider than R except x. W and bias get gradients only if they require them (computed in PyTorch).
"""

from __future__ import annotations

import contextlib

import torch

from ..backends import select
from .contract import accumulation_dtype

_LIB = "ttkernels"


def _empty(like: torch.Tensor) -> torch.Tensor:
    return like.new_empty(0)


def autocast_on(device_type: str) -> bool:
    """Whether autocast is on for this device type (False for types autocast does not know, e.g. meta)."""
    return torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)


def no_autocast(like: torch.Tensor) -> contextlib.AbstractContextManager:
    """Autocast off for like's device, a no-op context when it is not on (entering torch.autocast costs µs). The
    wrappers already applied autocast's casts; the backend's own ops must not be recast."""
    if autocast_on(like.device.type):
        return torch.autocast(like.device.type, enabled=False)
    return contextlib.nullcontext()


# The bodies of the ops, shared by the custom ops (traced by torch.compile / export) and the eager path below.
def linear_fwd_impl(x, weight, bias, A, B, alpha: float, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    impl = select(backend, x, A, B, bias)
    with no_autocast(x):
        return impl.linear_fwd(x, weight, bias, A, B, alpha)


def adapter_fwd_impl(x, base_out, A, B, alpha: float, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    impl = select(backend, x, A, B, None)
    with no_autocast(x):
        return impl.adapter_fwd(x, base_out, A, B, alpha)


def linear_bwd_impl(dy, x, z, weight, A, B, alpha: float, backend: str, need_dx: bool, need_dA: bool, need_dB: bool):
    """(dx, dA, dB), None where not asked for."""
    impl = select(backend, x, A, B, None)
    with no_autocast(x):
        return impl.linear_bwd(dy, x, z, weight, A, B, alpha, need_dx, need_dA, need_dB)


@torch.library.custom_op(f"{_LIB}::tt_linear_fwd", mutates_args=())
def tt_linear_fwd(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    A: torch.Tensor,
    B: torch.Tensor,
    alpha: float,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    return linear_fwd_impl(x, weight, bias, A, B, alpha, backend)


@tt_linear_fwd.register_fake
def _(x, weight, bias, A, B, alpha, backend):
    z = x.new_empty(x.shape[0], A.shape[0], dtype=accumulation_dtype(x.dtype))
    return x.new_empty(x.shape[0], weight.shape[0]), z


@torch.library.custom_op(f"{_LIB}::tt_adapter_fwd", mutates_args=())
def tt_adapter_fwd(
    x: torch.Tensor,
    base_out: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    alpha: float,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    return adapter_fwd_impl(x, base_out, A, B, alpha, backend)


@tt_adapter_fwd.register_fake
def _(x, base_out, A, B, alpha, backend):
    return torch.empty_like(base_out), x.new_empty(x.shape[0], A.shape[0], dtype=accumulation_dtype(x.dtype))


@torch.library.custom_op(f"{_LIB}::tt_linear_bwd", mutates_args=())
def tt_linear_bwd(
    dy: torch.Tensor,
    x: torch.Tensor,
    z: torch.Tensor,
    weight: torch.Tensor | None,
    A: torch.Tensor,
    B: torch.Tensor,
    alpha: float,
    backend: str,
    need_dx: bool,
    need_dA: bool,
    need_dB: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dx, dA, dB = linear_bwd_impl(dy, x, z, weight, A, B, alpha, backend, need_dx, need_dA, need_dB)
    return (
        dx if dx is not None else _empty(x),
        dA if dA is not None else _empty(A),
        dB if dB is not None else _empty(B),
    )


@tt_linear_bwd.register_fake
def _(dy, x, z, weight, A, B, alpha, backend, need_dx, need_dA, need_dB):
    return (
        torch.empty_like(x) if need_dx else _empty(x),
        torch.empty_like(A) if need_dA else _empty(A),
        torch.empty_like(B) if need_dB else _empty(B),
    )


def _grad_or_none(t: torch.Tensor, needed: bool) -> torch.Tensor | None:
    return t if needed else None


def _setup_linear(ctx, inputs, output):
    x, weight, bias, A, B, alpha, backend = inputs
    _, z = output
    ctx.save_for_backward(x, z, weight, A, B)
    ctx.alpha, ctx.backend = alpha, backend
    ctx.bias_dtype = None if bias is None else bias.dtype
    ctx.mark_non_differentiable(z)


def _op_bwd(*args):
    return torch.ops.ttkernels.tt_linear_bwd(*args)


def _backward_linear(ctx, dy, _dz, bwd=_op_bwd):
    x, z, weight, A, B = ctx.saved_tensors
    need_x, need_w, need_b, need_A, need_B = ctx.needs_input_grad[:5]
    dy = dy.contiguous()
    dx, dA, dB = bwd(dy, x, z, weight, A, B, ctx.alpha, ctx.backend, need_x, need_A, need_B)
    dW = (dy.t() @ x).to(weight.dtype) if need_w else None
    db = dy.sum(0).to(ctx.bias_dtype) if (need_b and ctx.bias_dtype is not None) else None
    return _grad_or_none(dx, need_x), dW, db, _grad_or_none(dA, need_A), _grad_or_none(dB, need_B), None, None


tt_linear_fwd.register_autograd(_backward_linear, setup_context=_setup_linear)


def _setup_adapter(ctx, inputs, output):
    x, _base_out, A, B, alpha, backend = inputs
    _, z = output
    ctx.save_for_backward(x, z, A, B)
    ctx.alpha, ctx.backend = alpha, backend
    ctx.mark_non_differentiable(z)


def _backward_adapter(ctx, dy, _dz, bwd=_op_bwd):
    x, z, A, B = ctx.saved_tensors
    need_x, need_base, need_A, need_B = ctx.needs_input_grad[:4]
    dy = dy.contiguous()
    dx, dA, dB = bwd(dy, x, z, None, A, B, ctx.alpha, ctx.backend, need_x, need_A, need_B)
    return (
        _grad_or_none(dx, need_x),
        dy if need_base else None,
        _grad_or_none(dA, need_A),
        _grad_or_none(dB, need_B),
        None,
        None,
    )


tt_adapter_fwd.register_autograd(_backward_adapter, setup_context=_setup_adapter)


# ------------------------------------------------------------------------------------------------ eager path
# Outside torch.compile the ops run through these autograd Functions instead: the same bodies, the same
# saved tensors and backward, without the torch.library dispatch (Python -> dispatcher -> Python) on each
# call, which is a large share of the per-call cost at small token counts (benchmarks/host_cost.py).
# Like the custom ops they are once-differentiable (double backward raises instead of silently dropping the
# terms through z), and a backward traced by compiled autograd goes through the opaque backward op.


def use_custom_ops(x: torch.Tensor) -> bool:
    """The custom ops under torch.compile/export and torch.jit.trace (one opaque node each), and for meta tensors
    (their fake kernels); the eager Functions otherwise."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or x.device.type == "meta"


def _eager_bwd(*args):
    return _op_bwd(*args) if torch.compiler.is_compiling() else linear_bwd_impl(*args)


class EagerLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, A, B, alpha, backend):
        y, z = linear_fwd_impl(x, weight, bias, A, B, alpha, backend)
        _setup_linear(ctx, (x, weight, bias, A, B, alpha, backend), (y, z))
        return y, z

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, dz):
        return _backward_linear(ctx, dy, dz, bwd=_eager_bwd)


class EagerAdapter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, base_out, A, B, alpha, backend):
        y, z = adapter_fwd_impl(x, base_out, A, B, alpha, backend)
        _setup_adapter(ctx, (x, base_out, A, B, alpha, backend), (y, z))
        return y, z

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy, dz):
        return _backward_adapter(ctx, dy, dz, bwd=_eager_bwd)
