"""Functional API over the op contract; accepts any number of leading dimensions.

Under torch.compile (and export), and for meta tensors, the calls go through the ``torch.library`` custom ops, which
Dynamo and AOTAutograd trace as opaque nodes; in eager mode through autograd Functions with the same bodies and
backward, which skip the custom-op dispatch (see :mod:`ttkernels.ops._library`).

``tt_linear(x, weight, bias, A, B, alpha)``      = x Wᵀ + b + α·(x Aᵀ) Bᵀ
``tt_adapter(x, base_out, A, B, alpha)``         = base_out + α·(x Aᵀ) Bᵀ
"""

from __future__ import annotations

import torch

from ..backends import requested_backend
from . import _library  # registers the torch.library ops; its Eager* Functions serve eager calls
from .contract import contract_factors
from .reference import dense_delta_weight, tt_linear_ref

__all__ = ["contract_factors", "dense_delta_weight", "tt_adapter", "tt_linear", "tt_linear_ref"]


def _check_factors(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, m: int) -> None:
    # Plain `if ... raise` (not torch._check with closures) so that Dynamo traces these without graph breaks.
    n = x.shape[-1]
    if A.dim() != 2 or A.shape[1] != n:
        raise ValueError(f"A must be (R, n={n}), got {tuple(A.shape)}")
    if B.dim() != 2 or B.shape[0] != m or B.shape[1] != A.shape[0]:
        raise ValueError(f"B must be (m={m}, R={A.shape[0]}), got {tuple(B.shape)}")
    if not (x.device == A.device == B.device):
        raise ValueError(f"x, A and B must be on one device, got x on {x.device}, A on {A.device}, B on {B.device}")
    if not x.is_floating_point():
        raise TypeError(f"x must be floating point, got {x.dtype}")


def _autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The autocast dtype active for x's device, if any (the ops then run in it, like F.linear would)."""
    device = x.device.type
    if x.dtype == torch.float64:  # autocast leaves float64 alone (as F.linear does)
        return None
    if _library.autocast_on(device):  # any device type autocast supports (cuda, cpu, xpu, mps, hpu, ...)
        return torch.get_autocast_dtype(device)
    return None


def tt_linear(
    x: torch.Tensor,  # (..., n)
    weight: torch.Tensor,  # (m, n)
    bias: torch.Tensor | None,  # (m,)
    A: torch.Tensor,  # (R, n)
    B: torch.Tensor,  # (m, R)
    alpha: float,
    backend: str | None = None,
) -> torch.Tensor:  # (..., m)
    """Fused frozen Linear + TT adapter: ``x @ weight.T + bias + alpha * (x @ A.T) @ B.T``."""
    m, n = weight.shape
    cast = _autocast_dtype(x)
    if cast is not None:  # autocast: activations, W0 and bias in the autocast dtype; A, B stay float32
        x, weight = x.to(cast), weight.to(cast)
        bias = None if bias is None else bias.to(cast)
    if x.shape[-1] != n:
        raise ValueError(f"x has {x.shape[-1]} features but weight is {m}x{n} (expects {n})")
    if x.dtype != weight.dtype:
        raise TypeError(f"x is {x.dtype} but the base weight is {weight.dtype}; cast one of them")
    if bias is not None and bias.dtype != x.dtype:
        raise TypeError(f"bias is {bias.dtype} but x is {x.dtype}; cast one of them")
    if x.device != weight.device:
        raise ValueError(f"x is on {x.device} but the base weight is on {weight.device}")
    _check_factors(x, A, B, m)
    lead = x.shape[:-1]
    op = torch.ops.ttkernels.tt_linear_fwd if _library.use_custom_ops(x) else _library.EagerLinear.apply
    y, _ = op(x.reshape(-1, n).contiguous(), weight, bias, A, B, float(alpha), requested_backend(backend))
    return y.reshape(*lead, m)


def tt_adapter(
    x: torch.Tensor,  # (..., n)
    base_out: torch.Tensor,  # (..., m)
    A: torch.Tensor,  # (R, n)
    B: torch.Tensor,  # (m, R)
    alpha: float,
    backend: str | None = None,
) -> torch.Tensor:  # (..., m)
    """TT adapter on top of any base output: ``base_out + alpha * (x @ A.T) @ B.T``."""
    n, m = x.shape[-1], base_out.shape[-1]
    cast = _autocast_dtype(x)
    if cast is not None:
        x = x.to(cast)
    if base_out.shape[:-1] != x.shape[:-1]:
        raise ValueError(f"base_out leading dims {tuple(base_out.shape[:-1])} differ from x's {tuple(x.shape[:-1])}")
    _check_factors(x, A, B, m)
    lead = x.shape[:-1]
    op = torch.ops.ttkernels.tt_adapter_fwd if _library.use_custom_ops(x) else _library.EagerAdapter.apply
    y, _ = op(
        x.reshape(-1, n).contiguous(),
        base_out.reshape(-1, m).contiguous(),
        A,
        B,
        float(alpha),
        requested_backend(backend),
    )
    return y.reshape(*lead, m)
