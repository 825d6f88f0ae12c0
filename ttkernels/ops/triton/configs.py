"""Block sizes, autotuning configs and launch heuristics for the Triton backend, in one place.

Two kernel families (see :mod:`ttkernels.ops.triton.kernels`):

* the **fused GEMM** ``_tt_fused_lora_gemm_kernel``: a (T x N) output tile grid, a K main loop, the rank-R adapter
  term added in the epilogue. Tuned with :func:`fused_autotune_configs` (prefill / training, T > 64) and
  :func:`decode_autotune_configs` (T <= 64: small BLOCK_M, narrow BLOCK_N so that the grid covers the SMs while the
  kernel streams the weight).
* the **skinny GEMM** ``_tt_skinny_gemm_kernel``: (P x R) = L (P x K) @ Rm (K x R) with R tiny, split over K when the
  P grid alone would leave SMs idle. Used for z = x Aᵀ, g = dy B, dA = α gᵀ x and dB = α dyᵀ z.

Hopper (sm90: H100/H200) gets its own config lists (large 128x256 / 256x128 bf16 tiles, 3-4 stages, 8 warps); other
GPUs get a small conservative list. Configs whose shared memory would not fit the device are pruned before tuning.

Under ``TRITON_INTERPRET=1`` there is no autotuning: the interpreter's cost grows with the number of programs and
loop iterations, not with the block size, so :func:`interpreter_fused_config` / :func:`interpreter_skinny_config`
pick blocks as large as the problem (capped at 128). Tests can force specific blocks with :func:`force`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch

from ...utils import env_flag

try:
    import triton
except Exception:  # the package must import without triton; kernels.py is then never imported
    triton = None  # type: ignore[assignment]

#: Design limit on the adapter rank R (padded to R_PAD = 16/32/64 for tl.dot). The z = x Aᵀ accumulator
#: (BLOCK_M x R_PAD fp32) lives in registers beside the main accumulator, the per-stage A tile takes BLOCK_K x R_PAD
#: fp32 of shared memory, and the in-loop z costs R_PAD / BLOCK_N extra MMA work: 6-12 % at R <= 16 (the fast
#: range; TT ranks are ~5), which is why R > 16 switches large-T calls to the z pre-pass. Past R = 64 the z
#: accumulator (32 registers/thread at 128 rows, 8 warps) and tiles would start to spill.
MAX_RANK = 64

#: Token counts up to this take the decode configs (one launch: base GEMM + adapter; BLOCK_M 16..64).
DECODE_MAX_TOKENS = 64

#: Adapter-only forward and weight-less dx: up to this many tokens each output tile recomputes z in its K loop
#: (one launch); above it z comes from one skinny pre-pass kernel so that x is read once instead of once per
#: output column block.
ADAPTER_Z_IN_LOOP_MAX_TOKENS = 64

#: Plain linear forward / dx with a weight: with R <= 16 the z (or g) accumulation rides along in the main K loop
#: (the x tiles are already in shared memory; extra MMA work R_PAD / BLOCK_N = 6-12 %, one launch). Above this
#: token count a larger R uses the pre-pass + epilogue design instead (one skinny pass re-reads x: ~6.5 % of a
#: 4096² GEMM at T = 8192, cheaper than 25-50 % more MMA). Set to None to always keep z in the loop, or to 0 to
#: always use the pre-pass, when benchmarking on H100.
LINEAR_Z_PREPASS_MIN_TOKENS: int | None = 65
LINEAR_Z_IN_LOOP_MAX_RANK = 16

_DOT_MIN = 16  # tl.dot needs every dimension >= 16

_forced: dict[str, Any] = {}

#: Environment switch: ``TTKERNELS_TRITON_AUTOTUNE=0`` launches the first config that fits (after pruning) instead
#: of timing every config. For GPU test runs, where compiling every config of every kernel variant costs minutes;
#: ``benchmarks/gpu_diag_configs.py`` checks the configs one by one instead.
AUTOTUNE_ENV = "TTKERNELS_TRITON_AUTOTUNE"


def autotune_enabled() -> bool:
    """False when ``TTKERNELS_TRITON_AUTOTUNE`` is 0/false/off/no (:func:`~ttkernels.utils.env_flag`; unset: True).
    Read by the prune hooks, i.e. when a kernel variant is first tuned for an autotune key; the autotuner then caches
    its choice for that key in this process."""
    return env_flag(AUTOTUNE_ENV, default=True)


@contextlib.contextmanager
def force(
    *, fused: dict[str, int] | None = None, skinny: dict[str, int] | None = None, z_in_loop: bool | None = None
) -> Iterator[None]:
    """Force block sizes (tests): ``fused`` = BLOCK_M/BLOCK_N/BLOCK_K[/GROUP_M], ``skinny`` = BLOCK_P/BLOCK_K
    [/SPLIT]; either may add num_warps / num_stages (default 4 / 2). ``z_in_loop`` forces where z (or g) comes
    from. No autotuning."""
    previous = dict(_forced)
    if fused is not None:
        _forced["fused"] = dict(fused)
    if skinny is not None:
        _forced["skinny"] = dict(skinny)
    if z_in_loop is not None:
        _forced["z_in_loop"] = z_in_loop
    try:
        yield
    finally:
        _forced.clear()
        _forced.update(previous)


def forced(name: str) -> Any:
    return _forced.get(name)


def next_pow2(v: int) -> int:
    return 1 << max(int(v) - 1, 0).bit_length()


def r_pad(R: int) -> int:
    """The rank padded to a tl.dot-friendly power of two (>= 16)."""
    return max(_DOT_MIN, next_pow2(R))


def token_bucket(T: int) -> int:
    """Autotune key for the token count: powers of two, so varying sequence lengths do not retune every call."""
    return min(next_pow2(max(T, 1)), 65536)


def adapter_z_in_loop(T: int) -> bool:
    value = _forced.get("z_in_loop")
    return (T <= ADAPTER_Z_IN_LOOP_MAX_TOKENS) if value is None else bool(value)


def linear_z_in_loop(T: int, R: int) -> bool:
    value = _forced.get("z_in_loop")
    if value is not None:
        return bool(value)
    if LINEAR_Z_PREPASS_MIN_TOKENS is None or T < LINEAR_Z_PREPASS_MIN_TOKENS:
        return True
    return r_pad(R) <= LINEAR_Z_IN_LOOP_MAX_RANK


def epilogue_rounds(dtype: torch.dtype) -> bool:
    """Whether the fused kernel rounds its epilogue operands (fp32 α·z and E) to nearest TF32 before the TF32 dot:
    for 16-bit activations, whose outputs would otherwise carry the tensor cores' truncation bias (fp32 activations
    follow :func:`dot_precision`: 3xTF32 unless torch allows TF32)."""
    return dtype in (torch.float16, torch.bfloat16)


#: Backward dx (:func:`bwd_g_in_loop_enabled`): accumulate g = dy B in the fused kernel's K loop (one launch and
#: one read of dy fewer than the skinny pre-pass). B is read through a K-contiguous (K = m, R) view of a copy of Bᵀ,
#: the layout the forward reads A in. Reading B itself (R-contiguous rows of odd stride R) gave wrong dx on an H200
#: (triton 3.6, 2026-11-26; relative error 0.6 to 5e3 and illegal memory accesses under autotuning) for fp16/bf16
#: whenever BLOCK_K >= 64 and K = m was not a multiple of it. With the Bᵀ view every config was right on the
#: diagnostic's shapes on an H200 and an H100, and the GPU backward tests passed with it on (H100, 2026-11-26:
#: benchmarks/results/nvidia-h100-80gb-hbm3-2026-11-26-notes.md), so it is on by default;
#: ``TTKERNELS_BWD_G_IN_LOOP=0`` takes g from the pre-pass again (gpu_check.sh runs the backward tests both ways).
#: Tests also force either via configs.force(z_in_loop=...); benchmarks/gpu_diag_configs.py checks both designs
#: config by config. Read at each backward (like the autotune switch), so a bad value is a ValueError where it is
#: used, not a triton backend that failed to import.
BWD_G_IN_LOOP_ENV = "TTKERNELS_BWD_G_IN_LOOP"


def bwd_g_in_loop_enabled() -> bool:
    """Whether the backward may accumulate g in the fused dx kernel (``TTKERNELS_BWD_G_IN_LOOP``, default on)."""
    return env_flag(BWD_G_IN_LOOP_ENV, default=True)


def bwd_g_in_loop(T: int, R: int, has_weight: bool) -> bool:
    value = _forced.get("z_in_loop")
    if value is not None:
        return bool(value)
    if not bwd_g_in_loop_enabled():
        return False
    return linear_z_in_loop(T, R) if has_weight else adapter_z_in_loop(T)


def dot_precision(dtype: torch.dtype) -> str:
    """tl.dot input precision for fp32 operands: tf32 when torch allows it, else 3xTF32 (fp32-class accuracy)."""
    if dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest":
        return "tf32x3"
    return "tf32"


# ----------------------------------------------------------------------------------------------- device facts
@functools.cache
def _device_facts(index: int) -> tuple[tuple[int, int], int, int]:
    props = torch.cuda.get_device_properties(index)
    cap = (props.major, props.minor)
    sms = int(getattr(props, "multi_processor_count", 108))
    smem = getattr(props, "shared_memory_per_block_optin", None)
    if not smem:
        smem = {(9, 0): 227 * 1024, (8, 0): 163 * 1024}.get(cap, 99 * 1024)
    return cap, sms, int(smem)


def device_facts(device: torch.device) -> tuple[tuple[int, int], int, int]:
    """(compute capability, SM count, max shared memory per block) of a CUDA device; CPU -> a fake small GPU."""
    if device.type != "cuda":
        return (0, 0), 8, 96 * 1024
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _device_facts(index)


def is_hopper(device: torch.device) -> bool:
    return device_facts(device)[0][0] == 9


# ------------------------------------------------------------------------------------------ interpreter blocks
def interpreter_fused_config(T: int, N: int, K: int) -> dict[str, int]:
    forced_cfg = _forced.get("fused")
    cfg = {
        "BLOCK_M": min(64, max(_DOT_MIN, next_pow2(T))),
        "BLOCK_N": min(128, max(_DOT_MIN, next_pow2(N))),
        "BLOCK_K": min(128, max(_DOT_MIN, next_pow2(K))),
        "GROUP_M": 8,
    }
    if forced_cfg:
        cfg.update(forced_cfg)
    return cfg


def interpreter_skinny_config(P: int, K: int) -> dict[str, int]:
    cfg = {"BLOCK_P": min(128, max(_DOT_MIN, next_pow2(P))), "BLOCK_K": min(128, max(_DOT_MIN, next_pow2(K)))}
    forced_cfg = _forced.get("skinny")
    if forced_cfg:
        cfg.update({k: v for k, v in forced_cfg.items() if k != "SPLIT"})
    return cfg


# ------------------------------------------------------------------------------------------- GPU autotuning
def _cfg(bm: int, bn: int, bk: int, stages: int, warps: int, group: int = 8) -> Any:
    return triton.Config(
        {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": group}, num_stages=stages, num_warps=warps
    )


def fused_autotune_configs(hopper: bool) -> list[Any]:
    """Prefill/training tiles (T > 64). fp32 (tf32) inputs keep only what fits after the shared-memory prune."""
    if hopper:
        return [
            _cfg(128, 256, 64, 3, 8),
            _cfg(256, 128, 64, 3, 8),
            _cfg(128, 128, 64, 4, 8),
            _cfg(128, 128, 64, 4, 4),
            _cfg(128, 128, 128, 3, 8),
            _cfg(64, 256, 64, 4, 4),
            _cfg(128, 64, 64, 4, 4),
            _cfg(64, 128, 64, 4, 4),
            _cfg(64, 64, 64, 4, 4),
            _cfg(128, 128, 32, 4, 8),
            _cfg(64, 128, 32, 5, 4),
        ]
    return [
        _cfg(128, 128, 32, 4, 4),
        _cfg(128, 64, 32, 4, 4),
        _cfg(64, 128, 32, 4, 4),
        _cfg(64, 64, 32, 4, 4),
        _cfg(128, 256, 32, 3, 8),
        _cfg(128, 128, 64, 3, 8),
    ]


def decode_autotune_configs(hopper: bool) -> list[Any]:
    """Few tokens: the kernel streams W (and A from L2), so narrow BLOCK_N fills the SMs and deep K pipelines hide
    latency. BLOCK_M is pruned to the token bucket (16/32/64)."""
    out = []
    for bm in (16, 32, 64):
        for bn, bk, stages, warps in (
            (32, 256, 4, 4),
            (64, 128, 4, 4),
            (64, 256, 3, 4),
            (128, 128, 4, 4),
            (32, 128, 5, 4),
            (64, 64, 5, 4),
            (128, 64, 4, 8) if hopper else (128, 64, 3, 4),
            (32, 64, 4, 4),  # fp32 (tf32) and small-shared-memory GPUs
            (64, 32, 3, 4),
        ):
            out.append(_cfg(bm, bn, bk, stages, warps, 1))
    return out


def _fused_smem(cfg: Any, esize: int, rpad: int, z_in_loop: bool) -> int:
    kw = cfg.kwargs
    per_stage = (kw["BLOCK_M"] * kw["BLOCK_K"] + kw["BLOCK_K"] * kw["BLOCK_N"]) * esize
    if z_in_loop:
        per_stage += kw["BLOCK_K"] * rpad * 4
    return cfg.num_stages * per_stage


def prune_fused(configs: list[Any], named_args: dict[str, Any], **kwargs: Any) -> list[Any]:
    args = {**named_args, **kwargs}
    x = args["x_ptr"]
    _, _, smem_limit = device_facts(x.device)
    T_bucket, rpad = int(args["T_BUCKET"]), int(args["R_PAD"])
    has_k_loop = bool(args["HAS_W"]) or bool(args["Z_IN_LOOP"])
    decode = T_bucket <= DECODE_MAX_TOKENS
    keep = []
    for cfg in configs:
        kw = cfg.kwargs
        if decode and kw["BLOCK_M"] != max(_DOT_MIN, T_bucket):
            continue
        if not decode and kw["BLOCK_M"] > max(64, T_bucket):
            continue
        if has_k_loop and _fused_smem(cfg, x.element_size(), rpad, bool(args["Z_IN_LOOP"])) > smem_limit - 8192:
            continue
        if rpad >= 64 and kw["BLOCK_M"] * kw["BLOCK_N"] >= 128 * 256:  # z + main accumulators would spill
            continue
        keep.append(cfg)
    if not keep:  # nothing fits this device: one small config that always does (<= 48 KB of shared memory)
        bm = max(_DOT_MIN, T_bucket) if decode else 64
        keep = [_cfg(bm, 64, 32, 2, 4)]
    return keep if autotune_enabled() else keep[:1]


def skinny_autotune_configs(hopper: bool) -> list[Any]:
    """BLOCK_P is fixed by the launcher (it sets the grid and the split); tuning covers BLOCK_K, stages, warps."""
    if hopper:
        items = [(64, 4, 4), (128, 3, 4), (128, 4, 8), (256, 3, 8), (32, 5, 4), (64, 5, 8)]
    else:
        items = [(64, 3, 4), (128, 3, 4), (32, 4, 4), (64, 4, 8)]
    return [triton.Config({"BLOCK_K": bk}, num_stages=s, num_warps=w) for bk, s, w in items]


def prune_skinny(configs: list[Any], named_args: dict[str, Any], **kwargs: Any) -> list[Any]:
    args = {**named_args, **kwargs}
    lmat = args["l_ptr"]
    _, _, smem_limit = device_facts(lmat.device)
    bp, rpad = int(args["BLOCK_P"]), int(args["R_PAD"])
    esize = lmat.element_size()
    keep = [
        cfg
        for cfg in configs
        if cfg.num_stages * cfg.kwargs["BLOCK_K"] * (bp * esize + rpad * 4) <= smem_limit - 8192
        and (esize < 4 or bp * cfg.kwargs["BLOCK_K"] <= 64 * 64)  # fp32 (3x)TF32 tiles beyond this spill (sm90)
    ]
    keep = keep or [triton.Config({"BLOCK_K": 32}, num_stages=2, num_warps=4)]
    return keep if autotune_enabled() else keep[:1]


def skinny_block_p(P: int, k_contiguous: bool) -> int:
    """Rows per program. K-contiguous tall operands (x, dy as (T, K)) keep 64: 128 rows cost ~245 registers."""
    return 128 if P >= 4096 and not k_contiguous else 64


def skinny_split(P: int, K: int, block_p: int, device: torch.device) -> int:
    """How many K-splits: enough programs for ~2 waves on the device, each split >= 512 of K."""
    forced_cfg = _forced.get("skinny") or {}
    if "SPLIT" in forced_cfg:
        return max(1, min(int(forced_cfg["SPLIT"]), max(K, 1)))
    if device.type != "cuda":
        return 1
    _, sms, _ = device_facts(device)
    tiles = -(-P // block_p)
    want = -(-2 * sms // tiles)
    return max(1, min(want, K // 512, 64))
