"""Functional API over the op contract; accepts any number of leading dimensions.

``tt_linear(x, weight, bias, A, B, alpha)``      = x Wᵀ + b + α·(x Aᵀ) Bᵀ
``tt_adapter(x, base_out, A, B, alpha)``         = base_out + α·(x Aᵀ) Bᵀ
"""

from __future__ import annotations

import torch

from ..backends import requested_backend
from . import _library  # noqa: F401  (registers the torch.library ops)
from .contract import contract_factors
from .reference import dense_delta_weight, tt_linear_ref

__all__ = ["contract_factors", "dense_delta_weight", "tt_adapter", "tt_linear", "tt_linear_ref"]


def _check_factors(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, m: int) -> None:
    n = x.shape[-1]
    torch._check(A.dim() == 2 and A.shape[1] == n, lambda: f"A must be (R, n={n}), got {tuple(A.shape)}")
    torch._check(
        B.dim() == 2 and B.shape == (m, A.shape[0]), lambda: f"B must be (m={m}, R={A.shape[0]}), got {tuple(B.shape)}"
    )
    torch._check(
        x.device == A.device == B.device,
        lambda: f"x, A and B must be on one device, got x on {x.device}, A on {A.device}, B on {B.device}",
    )
    torch._check(x.is_floating_point(), lambda: f"x must be floating point, got {x.dtype}")


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
    torch._check(x.shape[-1] == n, lambda: f"x has {x.shape[-1]} features but weight is {m}x{n} (expects {n})")
    torch._check(
        x.dtype == weight.dtype, lambda: f"x is {x.dtype} but the base weight is {weight.dtype}; cast one of them"
    )
    _check_factors(x, A, B, m)
    lead = x.shape[:-1]
    y, _ = torch.ops.ttkernels.tt_linear_fwd(
        x.reshape(-1, n).contiguous(), weight, bias, A, B, float(alpha), requested_backend(backend)
    )
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
    torch._check(
        base_out.shape[:-1] == x.shape[:-1],
        lambda: f"base_out leading dims {tuple(base_out.shape[:-1])} differ from x's {tuple(x.shape[:-1])}",
    )
    _check_factors(x, A, B, m)
    lead = x.shape[:-1]
    y, _ = torch.ops.ttkernels.tt_adapter_fwd(
        x.reshape(-1, n).contiguous(),
        base_out.reshape(-1, m).contiguous(),
        A,
        B,
        float(alpha),
        requested_backend(backend),
    )
    return y.reshape(*lead, m)
