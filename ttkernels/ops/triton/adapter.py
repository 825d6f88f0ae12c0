"""Adapter-only forward for bases that are not a plain dense Linear: ``y = base_out + α (x Aᵀ) Bᵀ``.

Same fused kernel with HAS_W = False and HAS_BASE = True: each output tile loads its base_out tile in the
epilogue, adds α·z Bᵀ in fp32 and stores y once (no separate delta tensor).

* T <= 64 (decode): one launch; each tile accumulates z = x Aᵀ itself over K = n (x and A are tiny and hit L2).
* T > 64: a skinny pre-pass writes z (T x R fp32, x read once), then the epilogue-only kernel streams base_out -> y.
  Recomputing z per column block would read x m / BLOCK_N times.
"""

from __future__ import annotations

import torch

from . import configs
from ._common import check, check_factors, shrink, strided_ok
from .kernels import launch_fused


def tt_adapter_fwd_triton(
    x: torch.Tensor,  # (T, n)
    base_out: torch.Tensor,  # (T, m)
    A: torch.Tensor,  # (R, n) fp32
    B: torch.Tensor,  # (m, R) fp32
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns y (T, m) in base_out.dtype (as the torch backend; normally x.dtype) and z = x Aᵀ (T, R) fp32."""
    check(
        x.dim() == 2 and base_out.dim() == 2,
        f"x and base_out must be 2-D, got {tuple(x.shape)}, {tuple(base_out.shape)}",
    )
    T, n = x.shape
    check(base_out.shape[0] == T, f"base_out must have T={T} rows, got {tuple(base_out.shape)}")
    m = base_out.shape[1]
    R = check_factors(A, B, n, m)
    x, base_out, A, B = strided_ok(x), strided_ok(base_out), A.contiguous(), B.contiguous()
    y = torch.empty((T, m), device=x.device, dtype=base_out.dtype)
    if T == 0 or m == 0:
        return y, shrink(x, A, (A.stride(1), A.stride(0)), R)
    common = dict(
        W=None, W_strides=(0, 0), E=B, E_strides=(B.stride(1), B.stride(0)),
        out=y, N=m, R=R, alpha=alpha, base=base_out,
    )  # fmt: skip
    if configs.adapter_z_in_loop(T):
        z = torch.empty((T, R), device=x.device, dtype=torch.float32)
        launch_fused(X=x, L=A, L_strides=(A.stride(1), A.stride(0)), z_out=z, **common)
    else:
        z = shrink(x, A, (A.stride(1), A.stride(0)), R)
        launch_fused(X=x, L=None, L_strides=(0, 0), z_in=z, **common)
    return y, z
