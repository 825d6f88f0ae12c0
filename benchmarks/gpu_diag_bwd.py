"""GPU diagnostic: which fused-kernel launch of the Triton dx (backward with a weight) faults, config by config.

On an H200 (triton 3.6, 2026-11-26) the autotuned dx launch of ``linear_bwd`` with a weight hit "illegal memory
access" for fp16/bf16 (T=100, n=150, m=90, R=11 and T=37, n=45, m=70, R=5); the forward with the same configs and
the weight-less dx did not. Each case here runs in its own process (a fault poisons the CUDA context), with one
autotune config forced at a time, in three designs: g accumulated in the K loop (the default), g from the skinny
pre-pass, and no dA (g not stored). Prints one line per case and a summary table::

    python -m benchmarks.gpu_diag_bwd                 # all cases, 8 processes at a time
    python -m benchmarks.gpu_diag_bwd --one CASE_JSON # one case (used by the above)
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import subprocess
import sys
import time

SHAPES = [(100, 150, 90, 11), (37, 45, 70, 5)]
DTYPES = ["float16", "bfloat16"]
DESIGNS = ["g_in_loop", "g_prepass", "no_dA"]  # no_dA for float16 only


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"  # cpu: a dry run under TRITON_INTERPRET=1


def _cases() -> list[dict]:
    import torch

    from ttkernels.ops.triton import configs

    out = []
    for T, n, m, R in SHAPES:
        decode = configs.token_bucket(T) <= configs.DECODE_MAX_TOKENS
        cfgs = configs.decode_autotune_configs(True) if decode else configs.fused_autotune_configs(True)
        for dtype in DTYPES:
            for design in DESIGNS if dtype == "float16" else DESIGNS[:2]:
                probe = {
                    "x_ptr": torch.empty(1, dtype=getattr(torch, dtype), device=_device()),
                    "T_BUCKET": configs.token_bucket(T), "R_PAD": configs.r_pad(R), "HAS_W": True,
                    "Z_IN_LOOP": design != "g_prepass",
                }  # fmt: skip
                for cfg in configs.prune_fused(cfgs, probe):
                    fused = dict(cfg.kwargs, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
                    out.append({"shape": [T, n, m, R], "dtype": dtype, "design": design, "fused": fused})
        out.append({"shape": [T, n, m, R], "dtype": "float16", "design": "autotune", "fused": None})
    return out


def run_one(case: dict) -> dict:
    import torch

    from ttkernels.ops import triton as tb
    from ttkernels.ops.triton import configs

    T, n, m, R = case["shape"]
    dtype = getattr(torch, case["dtype"])
    g = torch.Generator().manual_seed(0)
    dev = _device()
    dy = torch.randn(T, m, generator=g).to(dtype).to(dev)
    x = torch.randn(T, n, generator=g).to(dtype).to(dev)
    w = (torch.randn(m, n, generator=g) * n**-0.5).to(dtype).to(dev)
    A = (torch.randn(R, n, generator=g) * n**-0.5).to(dev)
    B = (torch.randn(m, R, generator=g) * R**-0.5).to(dev)
    z = (x.float() @ A.T).contiguous()
    need_dA = case["design"] != "no_dA"
    force = {} if case["fused"] is None else {"fused": case["fused"], "z_in_loop": case["design"] != "g_prepass"}
    with configs.force(**force):
        dx, _, _ = tb.linear_bwd(dy, x, z, w, A, B, 0.75, True, need_dA, False)
    if dev == "cuda":
        torch.cuda.synchronize()
    ref = dy.double() @ w.double() + 0.75 * (dy.double() @ B.double()) @ A.double()
    return {"rel_err": float((dx.double() - ref).norm() / ref.norm())}


def _spawn(case: dict, timeout: float) -> dict:
    t0 = time.time()
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_diag_bwd", "--one", json.dumps(case)],
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {**case, "status": "timeout", "s": round(time.time() - t0, 1)}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode == 0 and lines:
        res = json.loads(lines[-1][7:])
        return {**case, "status": "ok", **res, "s": round(time.time() - t0, 1)}
    err = (proc.stderr.strip().splitlines() or ["?"])[-1][:160]
    return {**case, "status": "FAULT" if "illegal" in proc.stderr else "error", "why": err,
            "s": round(time.time() - t0, 1)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one")
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--budget", type=float, default=150.0, help="seconds; cases not started by then are skipped")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_one(json.loads(args.one))), flush=True)
        return
    deadline = time.time() + args.budget
    cases = _cases()
    print(f"{len(cases)} cases", flush=True)
    results = []
    with cf.ThreadPoolExecutor(args.jobs) as pool:
        futs = [pool.submit(lambda c: _spawn(c, 60) if time.time() < deadline else {**c, "status": "skipped"}, c)
                for c in cases]  # fmt: skip
        for fut in cf.as_completed(futs):
            r = fut.result()
            results.append(r)
            print(json.dumps(r), flush=True)
    with open(os.path.join(args.out, "gpu_diag_bwd.jsonl"), "w") as f:
        for r in results:
            f.write(json.dumps(r) + "\n")
    print("\nshape            dtype     design     BMxBNxBK  w s  status  rel_err")
    for r in sorted(results, key=lambda r: (r["shape"], r["dtype"], r["design"], str(r["fused"]))):
        c = r["fused"] or {}
        tile = f"{c.get('BLOCK_M')}x{c.get('BLOCK_N')}x{c.get('BLOCK_K')}" if c else "autotune"
        print(f"{r['shape']!s:16s} {r['dtype']:9s} {r['design']:10s} {tile:10s} {c.get('num_warps', '-')} "
              f"{c.get('num_stages', '-')}  {r['status']:6s} {r.get('rel_err', r.get('why', ''))}")  # fmt: skip


if __name__ == "__main__":
    main()
