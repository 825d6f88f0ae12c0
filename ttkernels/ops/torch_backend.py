"""The ``torch`` backend: the efficient factor path in plain PyTorch (any device, any float dtype).

It follows the backend contract in :mod:`ttkernels.backends`. It never forms the m x n ΔW: the adapter costs
two skinny GEMMs, ``z = x Aᵀ`` (T x R) and ``z Bᵀ`` (T x m). Low-precision inputs run their GEMMs in the
activation dtype (fp32 accumulation inside the BLAS), with A and B cast once per call; z is kept in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .contract import accumulation_dtype

NAME = "torch"


def available() -> str | None:
    return None


def not_supported_reasons(
    x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, bias: torch.Tensor | None
) -> list[str]:
    reasons = []
    if not x.is_floating_point():
        reasons.append(f"x must be a floating-point tensor, got {x.dtype}")
    return reasons


def _as(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # .to() with the tensor's own dtype is a no-op that still costs a dispatch (~0.5 µs on the small-T path)
    return t if t.dtype == dtype else t.to(dtype)


# Outputs are built with addmm into one buffer (no separate T x m "delta" temporaries): this keeps the peak
# memory of a training step at the level of the base layer's own.


def linear_fwd(
    x: torch.Tensor,  # (T, n)
    weight: torch.Tensor,  # (m, n)
    bias: torch.Tensor | None,  # (m,)
    A: torch.Tensor,  # (R, n)
    B: torch.Tensor,  # (m, R)
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    z = x @ _as(A, x.dtype).t()  # (T, R)
    y = F.linear(x, weight, bias)
    y.addmm_(z, _as(B, x.dtype).t(), alpha=alpha)
    return y, _as(z, accumulation_dtype(x.dtype))


def adapter_fwd(
    x: torch.Tensor,  # (T, n)
    base_out: torch.Tensor,  # (T, m)
    A: torch.Tensor,
    B: torch.Tensor,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    z = x @ _as(A, x.dtype).t()
    y = torch.addmm(base_out, _as(z, base_out.dtype), _as(B, base_out.dtype).t(), alpha=alpha)
    return y, _as(z, accumulation_dtype(x.dtype))


def linear_bwd(
    dy: torch.Tensor,  # (T, m)
    x: torch.Tensor,  # (T, n)
    z: torch.Tensor,  # (T, R) fp32
    weight: torch.Tensor | None,  # (m, n) or None for the adapter-only path
    A: torch.Tensor,
    B: torch.Tensor,
    alpha: float,
    need_dx: bool,
    need_dA: bool,
    need_dB: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    dx = dA = dB = None
    dy = _as(dy, x.dtype)
    if need_dx or need_dA:
        dyB = dy @ _as(B, dy.dtype)  # (T, R)
    if need_dx:
        A_act = _as(A, dy.dtype)
        if weight is not None:
            dx = dy @ _as(weight, dy.dtype)
            dx.addmm_(dyB, A_act, alpha=alpha)
        else:
            dx = (dyB @ A_act).mul_(alpha)
    if need_dA:
        dA = _as((dyB.t() @ x).mul_(alpha), A.dtype)  # GEMM in the activation dtype: no T x n upcast copy
    if need_dB:
        dB = _as((dy.t() @ _as(z, dy.dtype)).mul_(alpha), B.dtype)
    return dx, dA, dB
