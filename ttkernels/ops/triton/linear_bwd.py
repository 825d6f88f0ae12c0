"""Backward of a TT-LoRA linear layer (weight frozen). With g = dy B (T x R, fp32)::

    g  = dy B                   skinny GEMM, K = m: reads dy once
    dx = dy W0 + α g A          fused GEMM: X = dy, W = W0 (K = m), E = A; g added in the epilogue
    dA = α gᵀ x                 skinny GEMM, K = T: reads x once
    dB = α dyᵀ z                skinny GEMM, K = T: reads dy once

``weight=None`` (adapter-only bases): dx = α g A only, written by the epilogue-only kernel. Where
:func:`configs.bwd_g_in_loop` says so, g is accumulated in the fused kernel's K loop instead of the pre-pass (one
launch and one pass over dy fewer), reading B through a K-contiguous copy of Bᵀ (the default; see
:func:`configs.bwd_g_in_loop_enabled`).
Nothing m x n (and no T x n besides dx) is formed. Supports R <= 64.
"""

from __future__ import annotations

import torch

from . import configs
from ._common import check, check_factors, shrink, strided_ok
from .kernels import launch_fused, launch_skinny


def tt_linear_bwd_triton(
    dy: torch.Tensor,  # (T, m)
    x: torch.Tensor,  # (T, n)
    z: torch.Tensor,  # (T, R) fp32, saved by the forward
    weight: torch.Tensor | None,  # (m, n), or None for the adapter-only path
    A: torch.Tensor,  # (R, n) fp32
    B: torch.Tensor,  # (m, R) fp32
    alpha: float,
    need_dx: bool,
    need_dA: bool,
    need_dB: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Returns (dx in x.dtype, dA in A.dtype, dB in B.dtype); entries not asked for are None."""
    check(dy.dim() == 2 and x.dim() == 2, f"dy and x must be 2-D, got {tuple(dy.shape)}, {tuple(x.shape)}")
    T, m = dy.shape
    n = x.shape[1]
    check(x.shape[0] == T, f"x must have T={T} rows like dy, got {tuple(x.shape)}")
    R = check_factors(A, B, n, m)
    check(tuple(z.shape) == (T, R), f"z must be (T={T}, R={R}), got {tuple(z.shape)}")
    if weight is not None:
        check(tuple(weight.shape) == (m, n), f"weight must be (m={m}, n={n}), got {tuple(weight.shape)}")
        weight = strided_ok(weight)
        if dy.dtype != weight.dtype:
            dy = dy.to(weight.dtype)
    dy, x, z, A, B = strided_ok(dy), strided_ok(x), z.contiguous(), A.contiguous(), B.contiguous()
    dev = dy.device
    dx = dA = dB = None
    g = None
    if need_dx:
        dx = torch.empty((T, n), device=dev, dtype=x.dtype)
        w_strides = (0, 0) if weight is None else (weight.stride(0), weight.stride(1))  # W0 as (K=m, N=n)
        common = dict(X=dy, W=weight, W_strides=w_strides, E=A, E_strides=(A.stride(0), A.stride(1)), out=dx, N=n,
                      R=R, alpha=alpha)  # fmt: skip
        if T == 0 or n == 0:
            g = shrink(dy, B, (B.stride(0), B.stride(1)), R) if need_dA else None
        elif configs.bwd_g_in_loop(T, R, weight is not None):
            g = torch.empty((T, R), device=dev, dtype=torch.float32) if need_dA else None
            # B as a K-contiguous (K = m, R) view of Bᵀ (m x R copied once), the layout the forward's in-loop z
            # reads A in; the R-contiguous view of B itself gave wrong dx on the H200 (configs.bwd_g_in_loop_enabled)
            Bt = B.t().contiguous()
            launch_fused(L=Bt, L_strides=(Bt.stride(1), Bt.stride(0)), z_out=g, **common)
        else:
            g = shrink(dy, B, (B.stride(0), B.stride(1)), R)
            launch_fused(L=None, L_strides=(0, 0), z_in=g, **common)
    elif need_dA:
        g = shrink(dy, B, (B.stride(0), B.stride(1)), R)
    if need_dA:
        assert g is not None
        dA32 = torch.empty((R, n), device=dev, dtype=torch.float32)
        if n:
            launch_skinny(
                Lmat=x, L_strides=(x.stride(1), x.stride(0)),  # xᵀ as (P=n, K=T)
                Rmat=g, R_strides=(g.stride(0), g.stride(1)),
                out=dA32, out_strides=(dA32.stride(1), dA32.stride(0)),  # dAᵀ as (P=n, R)
                P=n, K=T, R=R, alpha=alpha,
            )  # fmt: skip
        dA = dA32 if A.dtype == torch.float32 else dA32.to(A.dtype)
    if need_dB:
        dB32 = torch.empty((m, R), device=dev, dtype=torch.float32)
        if m:
            launch_skinny(
                Lmat=dy, L_strides=(dy.stride(1), dy.stride(0)),  # dyᵀ as (P=m, K=T)
                Rmat=z, R_strides=(z.stride(0), z.stride(1)),
                out=dB32, out_strides=(dB32.stride(0), dB32.stride(1)),
                P=m, K=T, R=R, alpha=alpha,
            )  # fmt: skip
        dB = dB32 if B.dtype == torch.float32 else dB32.to(B.dtype)
    return dx, dA, dB
