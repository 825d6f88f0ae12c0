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

import torch

from ..backends import select

_LIB = "ttkernels"


def _z_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _empty(like: torch.Tensor) -> torch.Tensor:
    return like.new_empty(0)


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
    impl = select(backend, x, A, B, bias)
    with torch.autocast(x.device.type, enabled=False):  # the wrapper already applied autocast's casts
        return impl.linear_fwd(x, weight, bias, A, B, alpha)


@tt_linear_fwd.register_fake
def _(x, weight, bias, A, B, alpha, backend):
    return x.new_empty(x.shape[0], weight.shape[0]), x.new_empty(x.shape[0], A.shape[0], dtype=_z_dtype(x))


@torch.library.custom_op(f"{_LIB}::tt_adapter_fwd", mutates_args=())
def tt_adapter_fwd(
    x: torch.Tensor,
    base_out: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    alpha: float,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    impl = select(backend, x, A, B, None)
    with torch.autocast(x.device.type, enabled=False):
        return impl.adapter_fwd(x, base_out, A, B, alpha)


@tt_adapter_fwd.register_fake
def _(x, base_out, A, B, alpha, backend):
    return torch.empty_like(base_out), x.new_empty(x.shape[0], A.shape[0], dtype=_z_dtype(x))


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
    impl = select(backend, x, A, B, None)
    with torch.autocast(x.device.type, enabled=False):
        dx, dA, dB = impl.linear_bwd(dy, x, z, weight, A, B, alpha, need_dx, need_dA, need_dB)
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


def _backward_linear(ctx, dy, _dz):
    x, z, weight, A, B = ctx.saved_tensors
    need_x, need_w, need_b, need_A, need_B = ctx.needs_input_grad[:5]
    dy = dy.contiguous()
    dx, dA, dB = torch.ops.ttkernels.tt_linear_bwd(
        dy, x, z, weight, A, B, ctx.alpha, ctx.backend, need_x, need_A, need_B
    )
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


def _backward_adapter(ctx, dy, _dz):
    x, z, A, B = ctx.saved_tensors
    need_x, need_base, need_A, need_B = ctx.needs_input_grad[:4]
    dy = dy.contiguous()
    dx, dA, dB = torch.ops.ttkernels.tt_linear_bwd(
        dy, x, z, None, A, B, ctx.alpha, ctx.backend, need_x, need_A, need_B
    )
    return (
        _grad_or_none(dx, need_x),
        dy if need_base else None,
        _grad_or_none(dA, need_A),
        _grad_or_none(dB, need_B),
        None,
        None,
    )


tt_adapter_fwd.register_autograd(_backward_adapter, setup_context=_setup_adapter)
