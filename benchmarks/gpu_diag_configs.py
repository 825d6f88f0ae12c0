"""GPU diagnostic: every autotune config of the fused Triton kernel, forced one at a time, against float64.

The autotuner only proves the config it picks; a config that computes garbage but is never picked stays hidden
until a new shape or card picks it. On an H200 (triton 3.6, 2026-11-26) the backward's g-in-loop design gave wrong
dx (and illegal memory accesses under autotuning) for fp16/bf16 with BLOCK_K >= 64 when K = m was not a multiple
of it, while BLOCK_K = 32 and the pre-pass design were right (see ``configs.bwd_g_in_loop_enabled``). This script checks
every design of the fused kernel that way:

    dx_g_in_loop / dx_g_prepass / dx_no_dA   linear_bwd with a weight (g accumulated, pre-pass, g not stored)
    fwd_z_in_loop / fwd_z_prepass            linear_fwd
    adapter_z_in_loop                        adapter_fwd (no weight)

Cases run in worker processes, one config after another; a fault poisons a CUDA context, so when a worker dies
the case it was running is recorded as FAULT and a fresh worker takes the rest. A case still running when the
budget ends is recorded as ``cut`` (and those not started as ``skipped``): neither counts as a failure, but a case
that hangs also ends up ``cut``, so a ``cut`` that recurs on the same config with a larger budget is worth a look::

    python -m benchmarks.gpu_diag_configs [--jobs 8] [--budget 120] [--out DIR]   # table + DIR/gpu_diag_configs.jsonl
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import subprocess
import sys
import time

SHAPES = [(100, 150, 90, 11), (37, 45, 70, 5), (300, 200, 136, 5)]  # (T, n, m, R): K tails, decode, R <= 16
DTYPES = ["float16", "bfloat16"]
DESIGNS = ["dx_g_in_loop", "dx_g_prepass", "dx_no_dA", "fwd_z_in_loop", "fwd_z_prepass", "adapter_z_in_loop"]
TOLERANCE = {"float16": 5e-3, "bfloat16": 3e-2}  # relative Frobenius error vs float64


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"  # cpu: a dry run under TRITON_INTERPRET=1


def in_use(design: str) -> bool:
    """Whether the library launches this design (the in-loop dx designs only while configs.bwd_g_in_loop_enabled())."""
    from ttkernels.ops.triton import configs

    return configs.bwd_g_in_loop_enabled() or design not in ("dx_g_in_loop", "dx_no_dA")


def _groups(designs: tuple[str, ...] | list[str] = tuple(DESIGNS)) -> list[list[dict]]:
    """One group per (shape, dtype, design): the configs the autotuner would try there."""
    import torch

    from ttkernels.ops.triton import configs

    hopper = _device() == "cuda" and configs.is_hopper(torch.device("cuda"))
    groups = []
    for T, n, m, R in SHAPES:
        decode = configs.token_bucket(T) <= configs.DECODE_MAX_TOKENS
        cfgs = configs.decode_autotune_configs(hopper) if decode else configs.fused_autotune_configs(hopper)
        for dtype in DTYPES:
            for design in designs:
                if design == "adapter_z_in_loop" and not decode:
                    continue
                probe = {
                    "x_ptr": torch.empty(1, dtype=getattr(torch, dtype), device=_device()),
                    "T_BUCKET": configs.token_bucket(T), "R_PAD": configs.r_pad(R),
                    "HAS_W": not design.startswith("adapter"), "Z_IN_LOOP": "prepass" not in design,
                }  # fmt: skip
                group = []
                for cfg in configs.prune_fused(cfgs, probe):
                    fused = dict(cfg.kwargs, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
                    group.append({"shape": [T, n, m, R], "dtype": dtype, "design": design, "fused": fused})
                groups.append(group)
    return groups


def run_case(case: dict) -> float:
    """Relative error of one forced launch against float64."""
    import torch

    from ttkernels.ops import triton as tb
    from ttkernels.ops.triton import configs

    T, n, m, R = case["shape"]
    dtype, dev, design = getattr(torch, case["dtype"]), _device(), case["design"]
    g = torch.Generator().manual_seed(T * 7919 + n * 104729 + m * 13 + R)
    dy = torch.randn(T, m, generator=g).to(dtype).to(dev)
    x = torch.randn(T, n, generator=g).to(dtype).to(dev)
    w = (torch.randn(m, n, generator=g) * n**-0.5).to(dtype).to(dev)
    base = torch.randn(T, m, generator=g).to(dtype).to(dev)
    A = (torch.randn(R, n, generator=g) * n**-0.5).to(dev)
    B = (torch.randn(m, R, generator=g) * R**-0.5).to(dev)
    d = {k: v.double().cpu() for k, v in dict(dy=dy, x=x, w=w, base=base, A=A, B=B).items()}
    alpha = 0.75
    with configs.force(fused=case["fused"], z_in_loop="prepass" not in design):
        if design.startswith("dx"):
            z = (x.float() @ A.T).contiguous()
            out = tb.linear_bwd(dy, x, z, w, A, B, alpha, True, design != "dx_no_dA", False)[0]
            ref = d["dy"] @ d["w"] + alpha * (d["dy"] @ d["B"]) @ d["A"]
        elif design.startswith("fwd"):
            out = tb.linear_fwd(x, w, None, A, B, alpha)[0]
            ref = d["x"] @ d["w"].T + alpha * (d["x"] @ d["A"].T) @ d["B"].T
        else:
            out = tb.adapter_fwd(x, base, A, B, alpha)[0]
            ref = d["base"] + alpha * (d["x"] @ d["A"].T) @ d["B"].T
    if dev == "cuda":
        torch.cuda.synchronize()
    return float((out.double().cpu() - ref).norm() / ref.norm())


def _worker(cases: list[dict]) -> None:
    for i, case in enumerate(cases):
        print(f"START {i}", flush=True)
        t0 = time.time()
        err = run_case(case)
        print(f"RESULT {i} " + json.dumps({"rel_err": err, "s": round(time.time() - t0, 2)}), flush=True)


def _run_group(group: list[dict], deadline: float) -> list[dict]:
    """Run a group in workers until every case has a result, a FAULT/error, or the deadline passed."""
    results: list[dict] = []
    todo = list(group)
    while todo:
        left = deadline - time.time()
        if left <= 5:
            results += [{**c, "status": "skipped"} for c in todo]
            break
        cmd = [sys.executable, "-m", "benchmarks.gpu_diag_configs", "--worker", json.dumps(todo)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=left)
            stdout, stderr, rc = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            stderr, rc = "the budget ended while it ran", None
        done, started = {}, None
        for line in stdout.splitlines():
            if line.startswith("START "):
                started = int(line.split()[1])
            elif line.startswith("RESULT "):
                _, i, payload = line.split(" ", 2)
                done[int(i)] = json.loads(payload)
        for i, res in done.items():
            ok = res["rel_err"] <= TOLERANCE[todo[i]["dtype"]]
            results.append({**todo[i], "status": "ok" if ok else "WRONG", **res})
        if rc == 0:
            break
        if started is None or started in done:  # died outside a case (import, compile of the probe...)
            # killed by the budget between cases (a fresh worker still importing, say): not run, not an error
            status = "skipped" if rc is None else "error"
            results += [{**c, "status": status, "why": stderr.strip()[-200:]} for j, c in enumerate(todo)
                        if j not in done]  # fmt: skip
            break
        lines = stderr.strip().splitlines() or ["?"]
        why = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln), lines[-1])[:200]
        status = "cut" if rc is None else ("FAULT" if "illegal" in stderr else "error")
        results.append({**todo[started], "status": status, "why": why})
        todo = [c for j, c in enumerate(todo) if j > started]
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--jobs", type=int, default=8, help="worker processes at a time (default 8)")
    ap.add_argument("--budget", type=float, default=120.0, help="seconds; cases not run by then are 'skipped'")
    ap.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for gpu_diag_configs.jsonl")
    ap.add_argument("--designs", nargs="+", choices=DESIGNS, default=list(DESIGNS), help="default: all")
    args = ap.parse_args()
    os.environ.pop("TTKERNELS_TRITON_AUTOTUNE", None)  # the case list is every config, whatever the caller set
    if args.worker:
        _worker(json.loads(args.worker))
        return
    deadline = time.time() + args.budget
    args.designs = list(dict.fromkeys(args.designs))  # repeated names once
    groups = _groups(args.designs)
    print(f"{sum(map(len, groups))} cases in {len(groups)} groups, {args.jobs} workers", flush=True)
    results: list[dict] = []
    with cf.ThreadPoolExecutor(args.jobs) as pool:
        for fut in cf.as_completed([pool.submit(_run_group, g, deadline) for g in groups]):
            results += fut.result()
    with open(os.path.join(args.out, "gpu_diag_configs.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in results)
    print(f"\n{'shape':18s} {'dtype':9s} {'design':17s} {'BMxBNxBK':11s} w s  status  rel_err / why")
    for r in sorted(results, key=lambda r: (r["shape"], r["dtype"], r["design"], str(r["fused"]))):
        c = r["fused"]
        tile = f"{c['BLOCK_M']}x{c['BLOCK_N']}x{c['BLOCK_K']}"
        detail = f"{r['rel_err']:.2e}" if "rel_err" in r else r.get("why", "")
        print(f"{r['shape']!s:18s} {r['dtype']:9s} {r['design']:17s} {tile:11s} {c['num_warps']} "
              f"{c['num_stages']}  {r['status']:7s} {detail}")  # fmt: skip
    states = ("ok", "WRONG", "FAULT", "error", "cut", "skipped")
    print()
    for design in args.designs:
        rows = [r for r in results if r["design"] == design]
        counts = {s: sum(r["status"] == s for r in rows) for s in states}
        use = "in use" if in_use(design) else "not launched by the library (tests force it)"
        print(f"{design:17s} " + ", ".join(f"{k} {v}" for k, v in counts.items() if v) + f"  [{use}]")
    bad = failures(results)
    print(f"summary: {len(bad)} wrong/faulting configs in the designs in use")
    sys.exit(1 if bad else 0)


def failures(results: list[dict]) -> list[dict]:
    """The results that fail the run: WRONG, FAULT or error in a design the library launches (a disabled design's
    results are only reported; a case the budget cut or never started is not a failure)."""
    return [r for r in results if r["status"] not in ("ok", "cut", "skipped") and in_use(r["design"])]


if __name__ == "__main__":
    main()
