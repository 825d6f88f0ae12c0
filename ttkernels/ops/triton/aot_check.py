"""Compile the kernels ahead of time for a GPU target, without a GPU: ``python -m ttkernels.ops.triton.aot_check 90``.

CPU CI runs the kernels only through the interpreter (fp32 upcasts, no autotuning), which never exercises the code
the GPU runs: native bf16/fp16 tl.dot, the fp32 -> activation-dtype casts, TF32/3xTF32, software pipelining. This
compiles representative variants through Triton's real pipeline down to a cubin (ptxas ships with triton) and
reports, per variant, whether Hopper tensor-core instructions (wgmma) were used, shared memory, registers and
spills. Must run in a process where TRITON_INTERPRET is unset (kernels defined for the compiler).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from typing import Any

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from . import kernels

_DIV16 = [["tt.divisibility", 16]]


def _compile(fn: Any, ptrs: dict[str, str | None], consts: dict[str, Any], div16: set[str], target: GPUTarget,
             num_warps: int, num_stages: int) -> Any:  # fmt: skip
    signature: dict[str, str] = {}
    constexprs: dict[str, Any] = {}
    for name in fn.arg_names:
        if name in consts:
            signature[name], constexprs[name] = "constexpr", consts[name]
        elif name in ptrs:
            dtype = ptrs[name]
            if dtype is None:
                signature[name], constexprs[name] = "constexpr", None
            else:
                signature[name] = "*" + dtype
        elif name == "alpha":
            signature[name] = "fp32"
        else:
            signature[name] = "i32"
    attrs = {(fn.arg_names.index(n),): _DIV16 for n in div16 if signature.get(n, "constexpr") != "constexpr"}
    src = ASTSource(fn, signature, constexprs, attrs)
    return triton.compile(src, target=target, options={"num_warps": num_warps, "num_stages": num_stages})


def _fused(dt: str, target: GPUTarget, *, has_w: bool = True, has_bias: bool = False, has_base: bool = False,
           z_in_loop: bool = True, prec: str = "tf32", r_pad: int = 16, bm: int = 128, bn: int = 128, bk: int = 64,
           warps: int = 8, stages: int = 3, backward: bool = False) -> Any:  # fmt: skip
    ptrs = {
        "x_ptr": dt,
        "w_ptr": dt if has_w else None,
        "bias_ptr": dt if has_bias else None,
        "base_ptr": dt if has_base else None,
        "l_ptr": "fp32" if z_in_loop else None,
        "e_ptr": "fp32",
        "z_ptr": "fp32",
        "out_ptr": dt,
    }
    consts: dict[str, Any] = {
        "HAS_W": has_w, "HAS_BIAS": has_bias, "HAS_BASE": has_base, "Z_IN_LOOP": z_in_loop, "STORE_Z": z_in_loop,
        "UPCAST": False, "PREC": prec, "EPI_RN": dt in ("fp16", "bf16"),
        "R_PAD": r_pad, "BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8,
        "stride_xk": 1, "stride_on": 1, "stride_bn": 1, "stride_zr": 1,
    }  # fmt: skip
    if has_w:  # forward reads W0ᵀ (unit stride along K); dx reads W0 (unit stride along N)
        consts["stride_wn" if backward else "stride_wk"] = 1
    div16 = {"x_ptr", "w_ptr", "bias_ptr", "base_ptr", "l_ptr", "e_ptr", "z_ptr", "out_ptr", "N", "K",
             "stride_xt", "stride_wn", "stride_wk", "stride_ot", "stride_bt"}  # fmt: skip
    if z_in_loop:  # L is K-contiguous in both designs: Aᵀ (forward) and the copied Bᵀ (in-loop dx)
        consts["stride_lk"] = 1
        div16.add("stride_lr")
    if backward:
        div16.add("stride_er")
    return _compile(kernels._tt_fused_lora_gemm_kernel, ptrs, consts, div16, target, warps, stages)


def _skinny(dt: str, target: GPUTarget, *, p_contiguous: bool, prec: str = "tf32", bp: int = 128, bk: int = 64,
            warps: int = 4, stages: int = 4) -> Any:  # fmt: skip
    ptrs = {"l_ptr": dt, "r_ptr": "fp32", "out_ptr": "fp32"}
    consts = {"UPCAST": False, "PREC": prec, "R_PAD": 16, "BLOCK_P": bp, "BLOCK_K": bk}
    consts["stride_lp" if p_contiguous else "stride_lk"] = 1
    div16 = {"l_ptr", "r_ptr", "out_ptr", "P", "stride_lp", "stride_lk", "stride_os", "K_PER_SPLIT"}
    return _compile(kernels._tt_skinny_gemm_kernel, ptrs, consts, div16, target, warps, stages)


def variants(target: GPUTarget) -> dict[str, Any]:
    """name -> thunk compiling one representative variant (forward/backward/adapter/decode/skinny)."""
    return {
        "fwd bf16 128x256x64 bias": lambda: _fused("bf16", target, has_bias=True, bn=256),
        "fwd fp32 3xtf32 128x128x32": lambda: _fused("fp32", target, prec="tf32x3", bk=32),
        "dx bf16 128x128x64 R64 (g pre-pass)": lambda: _fused("bf16", target, r_pad=64, backward=True, z_in_loop=False),
        "dx bf16 128x128x64 (g in loop)": lambda: _fused("bf16", target, backward=True),
        "decode fp16 16x64x256": lambda: _fused("fp16", target, bm=16, bn=64, bk=256, warps=4),
        "adapter decode bf16": lambda: _fused("bf16", target, has_w=False, has_base=True, bm=16, bn=64, warps=4),
        "adapter epilogue-only bf16": lambda: _fused("bf16", target, has_w=False, has_base=True, z_in_loop=False),
        "skinny dB/dA bf16": lambda: _skinny("bf16", target, p_contiguous=True),
        "skinny z/g bf16": lambda: _skinny("bf16", target, p_contiguous=False, bp=64),
        "skinny z/g fp32": lambda: _skinny("fp32", target, p_contiguous=False, prec="tf32x3", bp=64, stages=3),
    }


def _resources(cubin: bytes) -> dict[str, int]:
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True, check=False).stdout
    found = re.search(r"REG:(\d+).*?STACK:(\d+)", out, re.S)
    return {"regs": int(found.group(1)), "stack": int(found.group(2))} if found else {}


def check(arch: int = 90) -> dict[str, dict[str, Any]]:
    """Compile every variant for sm_<arch>; returns name -> {ok, wgmma, mma_sync, smem, regs, stack, error}."""
    if kernels.BUILT_FOR_INTERPRETER:
        raise RuntimeError("unset TRITON_INTERPRET: the kernels were defined for the interpreter")
    target = GPUTarget("cuda", arch, 32)
    report: dict[str, dict[str, Any]] = {}
    for name, thunk in variants(target).items():
        try:
            compiled = thunk()
        except Exception as exc:
            report[name] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:500]}"}
            continue
        ptx = compiled.asm["ptx"]
        report[name] = {
            "ok": True,
            "wgmma": len(re.findall(r"wgmma\.mma_async", ptx)),
            "mma_sync": len(re.findall(r"\bmma\.sync", ptx)),
            "smem": compiled.metadata.shared,
            **_resources(compiled.asm["cubin"]),
        }
    return report


if __name__ == "__main__":
    results = check(int(sys.argv[1]) if len(sys.argv) > 1 else 90)
    for key, value in results.items():
        print(f"{key:32s} {value}")
    sys.exit(0 if all(v["ok"] for v in results.values()) else 1)
