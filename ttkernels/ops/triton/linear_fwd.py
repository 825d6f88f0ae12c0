"""Forward of a TT-LoRA linear layer in one fused Triton GEMM: ``y = x W0ᵀ + b + α (x Aᵀ) Bᵀ``, ``z = x Aᵀ``.

The kernel is ``_tt_fused_lora_gemm_kernel`` (see :mod:`.kernels`) with X = x, W = W0ᵀ, L = Aᵀ, E = Bᵀ:
each (BLOCK_M x BLOCK_N) tile of y runs the K = n loop over x and W0 tiles and, with the same x tiles, accumulates
the R-wide z = x Aᵀ on chip; the epilogue adds α·z Bᵀ (+ bias) to the fp32 accumulator and stores y once. z (fp32)
is written by the tiles of the first column block, for the backward. Fast up to R <= 16 (extra MMA R_PAD / BLOCK_N);
for 16 < R <= 64 and T > 64 tokens z comes from a skinny pre-pass (x re-read once) and the GEMM only adds α·z Bᵀ in
its epilogue (see :data:`configs.LINEAR_Z_PREPASS_MIN_TOKENS`).

Decode (T <= 64 tokens): the same single launch with the decode configs (BLOCK_M 16/32/64, narrow BLOCK_N, deep
BLOCK_K) — the kernel is bound by streaming W0, and narrow column blocks put a program on every SM.
"""

from __future__ import annotations

import torch

from . import configs
from ._common import check, check_factors, shrink, strided_ok
from .kernels import launch_fused


def tt_linear_fwd_triton(
    x: torch.Tensor,  # (T, n)
    weight: torch.Tensor,  # (m, n)
    bias: torch.Tensor | None,  # (m,)
    A: torch.Tensor,  # (R, n) fp32
    B: torch.Tensor,  # (m, R) fp32
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns y (T, m) in x.dtype and z = x Aᵀ (T, R) fp32."""
    check(x.dim() == 2 and weight.dim() == 2, f"x and weight must be 2-D, got {tuple(x.shape)}, {tuple(weight.shape)}")
    T, n = x.shape
    m = weight.shape[0]
    check(weight.shape[1] == n, f"weight must be (m, n={n}), got {tuple(weight.shape)}")
    check(weight.dtype == x.dtype, f"weight dtype {weight.dtype} must match x dtype {x.dtype}")
    check(
        bias is None or tuple(bias.shape) == (m,),
        f"bias must be (m={m},), got {None if bias is None else tuple(bias.shape)}",
    )
    R = check_factors(A, B, n, m)
    x, weight, A, B = strided_ok(x), strided_ok(weight), A.contiguous(), B.contiguous()
    if bias is not None:
        bias = bias.contiguous()
    y = torch.empty((T, m), device=x.device, dtype=x.dtype)
    if T == 0 or m == 0:
        return y, shrink(x, A, (A.stride(1), A.stride(0)), R)
    common = dict(
        W=weight, W_strides=(weight.stride(1), weight.stride(0)),  # W0ᵀ as (K=n, N=m)
        E=B, E_strides=(B.stride(1), B.stride(0)),  # Bᵀ as (R, N=m)
        out=y, N=m, R=R, alpha=alpha, bias=bias,
    )  # fmt: skip
    if configs.linear_z_in_loop(T, R):
        z = torch.empty((T, R), device=x.device, dtype=torch.float32)
        launch_fused(X=x, L=A, L_strides=(A.stride(1), A.stride(0)), z_out=z, **common)
    else:
        z = shrink(x, A, (A.stride(1), A.stride(0)), R)
        launch_fused(X=x, L=None, L_strides=(0, 0), z_in=z, **common)
    return y, z
