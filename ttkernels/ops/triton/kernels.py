"""The two Triton kernels of the backend and their (autotuned) launch helpers. Imported only when triton is.

``_tt_fused_lora_gemm_kernel`` — one output tile of a GEMM with a rank-R adapter fused in::

    out[t, j] = Σ_k X[t, k] · W[k, j]  (+ bias[j])  (+ base[t, j])  +  α · Σ_r Z[t, r] · E[r, j]
    Z[t, r]   = Σ_k X[t, k] · L[k, r]        (accumulated in the same K loop, or loaded from z_ptr)

Every operand is addressed through strides, so the same kernel runs

* the forward    y  = x W0ᵀ + b + α (x Aᵀ) Bᵀ :  X = x,  W = W0ᵀ, L = Aᵀ, E = Bᵀ, Z = z
* the backward   dx = dy W0 + α (dy B) A      :  X = dy, W = W0,  L = B,  E = A,  Z = g = dy B
* adapter-only   y  = base + α (x Aᵀ) Bᵀ      :  HAS_W = False, HAS_BASE = True

The z accumulator is BLOCK_M x R_PAD fp32 and sits in registers beside the main accumulator; the x tile it
multiplies is the one already staged in shared memory for the main GEMM, so z costs R_PAD / BLOCK_N extra MMA work
and no extra HBM traffic. Each output tile of the first column block (pid_n == 0) writes z out (forward: the saved
activation; backward: g for dA). The adapter term is one more tl.dot in the epilogue (K = R_PAD), added to the fp32
accumulator before the single store of the output tile: nothing T x m besides y itself and nothing m x n is
formed. Fast up to R <= 16 (R_PAD = 16: 6-12 % extra MMA); supported up to R <= 64 (:data:`configs.MAX_RANK`),
where large-T calls move z to the skinny pre-pass; beyond that the z accumulator and the per-stage A tile would
compete with the main tile for registers and shared memory.

``_tt_skinny_gemm_kernel`` — out (P x R) = α · L (P x K) @ Rm (K x R) for R <= 64, P large, any K; one program per
BLOCK_P rows and per K-split (partial sums go to a (SPLIT, ...) fp32 workspace that the launcher sums, so results
are deterministic, no atomics). It computes z = x Aᵀ (pre-pass), g = dy B, dA = α gᵀ x and dB = α dyᵀ z: all
memory-bound passes that read their tall operand exactly once.

Precision: on GPU, bf16/fp16 operands go to tl.dot natively with fp32 accumulation; in the K loop the fp32 factor
(A or B) is cast to the activation dtype first, exactly as the torch backend does. The epilogue's fp32 dot (α·z
times E, K = R_PAD) is TF32; for 16-bit activations its operands are rounded to nearest TF32 first, because a TF32
dot on Hopper truncates them to 10 mantissa bits, and that bias alone put fp16 outputs 2 ulps off (measured on an
H200, 2026-11-26; 3xTF32 there instead made the 128x256 tile spill). fp32 activations use TF32 (or 3xTF32
when ``torch.get_float32_matmul_precision() == "highest"``). Under ``TRITON_INTERPRET=1`` (``UPCAST``) everything
is upcast to fp32 before tl.dot, because the interpreter's bf16 arithmetic is wrong.

Ideas (not code) from: LoRAFusion's split at s = xA with the expand fused into the GEMM epilogue
(https://github.com/CentML/lorafusion), vLLM's shrink/expand LoRA kernels, and the Triton matmul tutorial's grouped
tile ordering (https://triton-lang.org/main/getting-started/tutorials/03-matrix-multiplication.html).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import torch
import triton
import triton.language as tl

from . import configs

try:
    from triton import knobs as _knobs

    BUILT_FOR_INTERPRETER = bool(_knobs.runtime.interpret)
except Exception:  # older triton
    import os

    BUILT_FOR_INTERPRETER = os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


@triton.jit
def _round_to_tf32(v):
    """fp32 -> the nearest TF32 value (10 mantissa bits, ties away from zero), kept in fp32. A TF32 tl.dot on
    Hopper drops those bits (truncation), a bias that adds up over the R terms of the epilogue; rounding first
    makes its error unbiased, at the cost of two integer ops per element of small tiles."""
    bits = v.to(tl.uint32, bitcast=True)
    bits = (bits + 0x1000) & 0xFFFFE000
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _tt_fused_lora_gemm_kernel(
    x_ptr, w_ptr, bias_ptr, base_ptr, l_ptr, e_ptr, z_ptr, out_ptr,
    T, N, K, R, alpha,
    stride_xt, stride_xk,
    stride_wk, stride_wn,
    stride_lk, stride_lr,
    stride_er, stride_en,
    stride_zt, stride_zr,
    stride_bt, stride_bn,
    stride_ot, stride_on,
    T_BUCKET,  # autotune key only (token count rounded up to a power of two)
    HAS_W: tl.constexpr,  # main GEMM X @ W (False: adapter-only / weight-less dx)
    HAS_BIAS: tl.constexpr,
    HAS_BASE: tl.constexpr,  # add base[t, j] (adapter-only forward)
    Z_IN_LOOP: tl.constexpr,  # accumulate Z = X @ L in the K loop; False: load Z from z_ptr
    STORE_Z: tl.constexpr,  # write Z (fp32) from the pid_n == 0 tiles
    UPCAST: tl.constexpr,  # interpreter: fp32 operands for every tl.dot
    PREC: tl.constexpr,  # tl.dot input precision for fp32 operands
    EPI_RN: tl.constexpr,  # round the epilogue's fp32 operands to nearest TF32 first (16-bit activations)
    R_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):  # fmt: skip
    """One (BLOCK_M x BLOCK_N) tile of out = X W (+ bias) (+ base) + alpha * Z E, Z = X L (T x R, fp32).

    Z is accumulated with the same X tiles as the main GEMM (Z_IN_LOOP) or loaded (pre-pass); the adapter term is a
    K = R_PAD tl.dot into the fp32 accumulator in the epilogue, so out is written once. Fast up to R <= 16 (in-loop Z
    adds R_PAD / BLOCK_N MMA work); R <= 64 supported (the BLOCK_M x R_PAD fp32 Z accumulator must fit registers).
    """
    # Grouped tile order: GROUP_M row blocks sweep the column blocks together, so W tiles are reused from L2.
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(T, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    pids_per_group = GROUP_M * num_pid_n
    group = pid // pids_per_group
    first_m = group * GROUP_M
    group_size = tl.minimum(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % pids_per_group) % group_size
    pid_n = (pid % pids_per_group) // group_size

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_r = tl.arange(0, R_PAD)
    mask_m = offs_m < T
    mask_n = offs_n < N
    mask_r = offs_r < R
    rows = offs_m.to(tl.int64)  # T * stride can pass 2**31 at 64k tokens
    cols = offs_n.to(tl.int64)

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    zacc = tl.zeros((BLOCK_M, R_PAD), dtype=tl.float32)
    if HAS_W or Z_IN_LOOP:
        offs_k = tl.arange(0, BLOCK_K)
        for k0 in range(0, K, BLOCK_K):
            ks = k0 + offs_k
            mask_k = ks < K
            ks = ks.to(tl.int64)  # K * stride can pass 2**31 for big weights
            xt = tl.load(x_ptr + rows[:, None] * stride_xt + ks[None, :] * stride_xk,
                         mask=mask_m[:, None] & mask_k[None, :], other=0.0)  # fmt: skip
            if UPCAST:
                xt = xt.to(tl.float32)
            if HAS_W:
                wt = tl.load(w_ptr + ks[:, None] * stride_wk + cols[None, :] * stride_wn,
                             mask=mask_k[:, None] & mask_n[None, :], other=0.0)  # fmt: skip
                if UPCAST:
                    wt = wt.to(tl.float32)
                acc = tl.dot(xt, wt, acc, input_precision=PREC)
            if Z_IN_LOOP:
                lt = tl.load(l_ptr + ks[:, None] * stride_lk + offs_r[None, :] * stride_lr,
                             mask=mask_k[:, None] & mask_r[None, :], other=0.0)  # fmt: skip
                lt = lt.to(xt.dtype)  # fp32 factor -> activation dtype (no-op under UPCAST)
                zacc = tl.dot(xt, lt, zacc, input_precision=PREC)

    mask_mr = mask_m[:, None] & mask_r[None, :]
    if Z_IN_LOOP:
        if STORE_Z:
            z_ptrs = z_ptr + rows[:, None] * stride_zt + offs_r[None, :] * stride_zr
            tl.store(z_ptrs, zacc, mask=mask_mr & (pid_n == 0))
    else:
        zacc = tl.load(z_ptr + rows[:, None] * stride_zt + offs_r[None, :] * stride_zr, mask=mask_mr, other=0.0)
        zacc = zacc.to(tl.float32)

    # Epilogue: the adapter term (K = R_PAD), bias, base; one store of the tile.
    et = tl.load(e_ptr + offs_r[:, None] * stride_er + cols[None, :] * stride_en,
                 mask=mask_r[:, None] & mask_n[None, :], other=0.0)  # fmt: skip
    za = zacc * alpha
    et = et.to(tl.float32)
    if EPI_RN:
        za = _round_to_tf32(za)
        et = _round_to_tf32(et)
    acc = tl.dot(za, et, acc, input_precision=PREC)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    mask_mn = mask_m[:, None] & mask_n[None, :]
    if HAS_BASE:
        base = tl.load(base_ptr + rows[:, None] * stride_bt + cols[None, :] * stride_bn, mask=mask_mn, other=0.0)
        acc += base.to(tl.float32)
    out_ptrs = out_ptr + rows[:, None] * stride_ot + cols[None, :] * stride_on
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=mask_mn)


@triton.jit
def _tt_skinny_gemm_kernel(
    l_ptr, r_ptr, out_ptr,
    P, K, R, alpha, K_PER_SPLIT,
    stride_lp, stride_lk,
    stride_rk, stride_rr,
    stride_os, stride_op, stride_or,
    K_BUCKET,  # autotune key only
    UPCAST: tl.constexpr,
    PREC: tl.constexpr,
    R_PAD: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """out[s] (P x R) = alpha * L[:, ks] @ Rm[ks, :] over this program's K-split ks; R <= 64, P and K any size.

    Memory-bound by design (2 * R_PAD flops per element of L): each program streams BLOCK_P rows of the tall
    operand once; the R-wide operand and the accumulator are tiny.
    """
    pid_p = tl.program_id(0)
    pid_s = tl.program_id(1)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_r = tl.arange(0, R_PAD)
    offs_k = tl.arange(0, BLOCK_K)
    mask_p = offs_p < P
    mask_r = offs_r < R
    rows = offs_p.to(tl.int64)
    k_start = pid_s * K_PER_SPLIT
    k_end = tl.minimum(k_start + K_PER_SPLIT, K)
    ks = (k_start + offs_k).to(tl.int64)
    l_ptrs = l_ptr + rows[:, None] * stride_lp + ks[None, :] * stride_lk
    r_ptrs = r_ptr + ks[:, None] * stride_rk + offs_r[None, :] * stride_rr
    acc = tl.zeros((BLOCK_P, R_PAD), dtype=tl.float32)
    for k0 in range(k_start, k_end, BLOCK_K):
        mask_k = (k0 + offs_k) < k_end
        lt = tl.load(l_ptrs, mask=mask_p[:, None] & mask_k[None, :], other=0.0)
        rt = tl.load(r_ptrs, mask=mask_k[:, None] & mask_r[None, :], other=0.0)
        if UPCAST:
            lt = lt.to(tl.float32)
            rt = rt.to(tl.float32)
        else:
            rt = rt.to(lt.dtype)  # fp32 factor -> activation dtype, as the torch backend does
        acc = tl.dot(lt, rt, acc, input_precision=PREC)
        l_ptrs += BLOCK_K * stride_lk
        r_ptrs += BLOCK_K * stride_rk
    out_ptrs = out_ptr + pid_s * stride_os + rows[:, None] * stride_op + offs_r[None, :] * stride_or
    tl.store(out_ptrs, (acc * alpha).to(out_ptr.dtype.element_ty), mask=mask_p[:, None] & mask_r[None, :])


# ---------------------------------------------------------------------------------------------- autotuners
@functools.cache
def _fused_tuner(hopper: bool, decode: bool) -> Any:
    cfgs = configs.decode_autotune_configs(hopper) if decode else configs.fused_autotune_configs(hopper)
    return triton.autotune(
        configs=cfgs,
        key=["T_BUCKET", "N", "K", "R_PAD", "HAS_W", "HAS_BASE", "Z_IN_LOOP", "PREC"],
        prune_configs_by={"early_config_prune": configs.prune_fused},
    )(_tt_fused_lora_gemm_kernel)


@functools.cache
def _skinny_tuner(hopper: bool) -> Any:
    return triton.autotune(
        configs=configs.skinny_autotune_configs(hopper),
        key=["P", "K_BUCKET", "R_PAD", "BLOCK_P", "PREC"],
        prune_configs_by={"early_config_prune": configs.prune_skinny},
    )(_tt_skinny_gemm_kernel)


def _on_device(t: torch.Tensor) -> Any:
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


def _strides(t: torch.Tensor | None) -> tuple[int, int]:
    return (0, 0) if t is None else (t.stride(0), t.stride(1))


def launch_fused(
    *,
    X: torch.Tensor,  # (T, K)
    W: torch.Tensor | None,  # (K, N) view (any strides)
    W_strides: tuple[int, int],
    L: torch.Tensor | None,  # (K, R) view through L_strides (None when Z comes from Z_in)
    L_strides: tuple[int, int],
    E: torch.Tensor,  # (R, N) view through E_strides
    E_strides: tuple[int, int],
    out: torch.Tensor,  # (T, N)
    N: int,
    R: int,
    alpha: float,
    bias: torch.Tensor | None = None,
    base: torch.Tensor | None = None,
    z_in: torch.Tensor | None = None,  # (T, R) fp32, when not accumulated in the loop
    z_out: torch.Tensor | None = None,  # (T, R) fp32 written by the pid_n == 0 tiles
) -> None:
    """Launch ``_tt_fused_lora_gemm_kernel`` on the grid of output tiles (autotuned on GPU)."""
    T, K = X.shape
    z_in_loop = z_in is None
    zt = z_out if z_in_loop else z_in
    rpad = configs.r_pad(R)
    prec = configs.dot_precision(X.dtype)
    args = (
        X, W, bias, base, L, E, zt, out,
        T, N, K, R, float(alpha),
        X.stride(0), X.stride(1),
        *W_strides, *L_strides, *E_strides,
        *_strides(zt), *_strides(base),
        out.stride(0), out.stride(1),
        configs.token_bucket(T),
    )  # fmt: skip
    flags = {
        "HAS_W": W is not None,
        "HAS_BIAS": bias is not None,
        "HAS_BASE": base is not None,
        "Z_IN_LOOP": z_in_loop,
        "STORE_Z": z_in_loop and z_out is not None,
        "UPCAST": BUILT_FOR_INTERPRETER,
        "PREC": prec,
        "EPI_RN": configs.epilogue_rounds(X.dtype),
        "R_PAD": rpad,
    }

    def grid(meta: dict[str, Any]) -> tuple[int]:
        return (triton.cdiv(T, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)

    if BUILT_FOR_INTERPRETER or X.device.type != "cuda" or configs.forced("fused"):
        cfg = configs.interpreter_fused_config(T, N, K)
        launch = {"num_warps": cfg.pop("num_warps", 4), "num_stages": cfg.pop("num_stages", 2)}
        with _on_device(X):
            _tt_fused_lora_gemm_kernel[grid](*args, **flags, **cfg, **launch)
        return
    tuner = _fused_tuner(configs.is_hopper(X.device), T <= configs.DECODE_MAX_TOKENS)
    with torch.cuda.device(X.device):  # triton launches on the current device
        tuner[grid](*args, **flags)


def launch_skinny(
    *,
    Lmat: torch.Tensor,  # underlying storage of L
    L_strides: tuple[int, int],  # strides of the (P, K) view
    Rmat: torch.Tensor,
    R_strides: tuple[int, int],  # strides of the (K, R) view
    out: torch.Tensor,  # fp32 output, addressed through out_strides as (P, R)
    out_strides: tuple[int, int],
    P: int,
    K: int,
    R: int,
    alpha: float,
) -> None:
    """out (P x R) = alpha * L @ Rm with K split over programs when P alone would leave SMs idle."""
    rpad = configs.r_pad(R)
    prec = configs.dot_precision(Lmat.dtype)
    forced = configs.forced("skinny")
    interp = BUILT_FOR_INTERPRETER or Lmat.device.type != "cuda"
    if interp or forced:
        blocks = configs.interpreter_skinny_config(P, K)
        launch = {"num_warps": blocks.pop("num_warps", 4), "num_stages": blocks.pop("num_stages", 2)}
        block_p = blocks["BLOCK_P"]
    else:
        blocks = None
        block_p = configs.skinny_block_p(P, L_strides[1] == 1)
    split = configs.skinny_split(P, K, block_p, Lmat.device)
    k_per_split = triton.cdiv(triton.cdiv(K, split), 256) * 256 if split > 1 else K
    if split > 1 and (interp or forced):  # keep the forced split exact for tests: multiples of BLOCK_K only
        k_per_split = triton.cdiv(triton.cdiv(K, split), blocks["BLOCK_K"]) * blocks["BLOCK_K"]
    split = triton.cdiv(K, k_per_split) if K > 0 else 1
    if split > 1:
        work = torch.empty((split, P, R), device=out.device, dtype=torch.float32)
        target, t_strides = work, (work.stride(0), work.stride(1), work.stride(2))
    else:
        target, t_strides = out, (0, *out_strides)
    args = (
        Lmat, Rmat, target,
        P, K, R, float(alpha), k_per_split,
        *L_strides, *R_strides, *t_strides,
        configs.token_bucket(K),
    )  # fmt: skip
    flags = {"UPCAST": BUILT_FOR_INTERPRETER, "PREC": prec, "R_PAD": rpad}
    grid = (triton.cdiv(P, block_p), split)
    if blocks is not None:
        with _on_device(Lmat):
            _tt_skinny_gemm_kernel[grid](*args, **flags, **blocks, **launch)
    else:
        with torch.cuda.device(Lmat.device):
            _skinny_tuner(configs.is_hopper(Lmat.device))[grid](*args, **flags, BLOCK_P=block_p)
    if split > 1:
        summed = work.sum(dim=0)  # (P, R) fp32, deterministic order
        out.as_strided((P, R), out_strides).copy_(summed)
