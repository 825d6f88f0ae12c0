"""Host-bound cost per call at one token: what a decode step or a tiny batch pays per adapted layer.

The calls are issued back to back with no synchronisation inside the loop, so on a GPU the number is the host's
issue rate (Python, dispatch, launches) whenever the device work per call is smaller than that, as it is at T=1::

    python -m benchmarks.host_cost                      # cuda if present, else cpu; 4096x4096, [16]*6 rank 5
    python -m benchmarks.host_cost --dim 256 --shape 16,16,16,16 --dtype float32 --calls 2000
    python -m benchmarks.host_cost --profile 100        # + where one training step's host time goes, per backend
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

import ttkernels
from ttkernels.backends import backend_status
from ttkernels.errors import BackendUnavailableError

from .harness import card_name, sync


def per_call_us(fn: Callable[[], object], calls: int, device: torch.device) -> float:
    """Mean microseconds per call over `calls` back-to-back calls (after a warm-up), synchronised at the ends."""
    for _ in range(max(3, calls // 10)):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync(device)
    return (time.perf_counter() - start) / calls * 1e6


def _inputs(dim: int, dtype: torch.dtype, device: torch.device) -> tuple[nn.Linear, torch.Tensor]:
    """The frozen base layer (dim x dim) and one token, drawn from seed 0."""
    torch.manual_seed(0)
    return nn.Linear(dim, dim, bias=False).to(device, dtype), torch.randn(1, dim, device=device, dtype=dtype)


def _training_step(
    base: nn.Linear, x: torch.Tensor, shape: list[int], rank: int, backend: str
) -> tuple[ttkernels.TTLinear, Callable[[], None]]:
    """A TTLinear on ``base`` and one training step of it on ``x`` (forward, sum, backward)."""
    layer = ttkernels.TTLinear(base, shape, rank, 8.0, init="gaussian", backend=backend)

    def step() -> None:
        layer(x).float().sum().backward()

    return layer, step


def _ttlinear_rows(
    base: nn.Linear, x: torch.Tensor, shape: list[int], rank: int, backend: str, calls: int, device: torch.device
) -> list[tuple[str, float]]:
    layer, step = _training_step(base, x, shape, rank, backend)
    rows = []
    with torch.no_grad():
        rows.append((f"TTLinear {backend} forward (no grad)", per_call_us(lambda: layer(x), calls, device)))
        A, B = layer.factors()
        rows.append(("  factors() alone", per_call_us(layer.factors, calls, device)))
        op = ttkernels.ops.tt_linear
        rows.append(("  tt_linear op alone", per_call_us(lambda: op(x, base.weight, None, A, B, 8.0, backend),
                                                        calls, device)))  # fmt: skip
    rows.append((f"TTLinear {backend} training step", per_call_us(step, calls, device)))
    return rows


def _short(path: str) -> str:
    parts = path.replace(os.sep, "/").split("/")
    return "/".join(parts[-2:])


def python_hotspots(stats: pstats.Stats, steps: int, top: int) -> list[tuple[str, float, float, float]]:
    """(function, calls per step, own µs per step, cumulative µs per step) of the ``top`` functions by own time."""
    rows = []
    for (path, line, func), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = func if path == "~" else f"{_short(path)}:{line}({func})"
        rows.append((where, ncalls / steps, tottime / steps * 1e6, cumtime / steps * 1e6))
    rows.sort(key=lambda r: -r[2])
    return rows[:top]


def torch_op_counts(step: Callable[[], object], steps: int, top: int) -> list[tuple[str, float, float]]:
    """(op, calls per step, self host µs per step) from the torch profiler, by self host time: aten ops, autograd
    nodes and, on CUDA, the launch API calls (cudaLaunchKernel / cuLaunchKernel{,Ex} count the kernels)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
    rows = [(e.key, e.count / steps, e.self_cpu_time_total / steps) for e in prof.key_averages()]
    rows.sort(key=lambda r: -r[2])
    return rows[:top]


def profile_training_step(
    base: nn.Linear, x: torch.Tensor, shape: list[int], rank: int, backend: str, steps: int, top: int = 25
) -> str:
    """Where one TTLinear training step's host time goes: the Python functions by own time (cProfile) and the
    torch ops with their counts (torch.profiler), per step over ``steps`` steps after a warm-up."""
    _, step = _training_step(base, x, shape, rank, backend)
    for _ in range(max(3, steps // 10)):
        step()
    sync(x.device)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(steps):
        step()
    sync(x.device)
    prof.disable()
    lines = [f"--- TTLinear {backend} training step: Python functions by own time (cProfile, {steps} steps; "
             "profiling slows Python, compare rows with each other) ---",
             f"{'calls/step':>10s} {'own us/step':>12s} {'cum us/step':>12s}  function"]
    for where, calls, own, cum in python_hotspots(pstats.Stats(prof), steps, top):
        lines.append(f"{calls:10.1f} {own:12.1f} {cum:12.1f}  {where}")
    lines += [f"--- TTLinear {backend} training step: torch ops by self host time (torch.profiler, {steps} steps) ---",
              f"{'calls/step':>10s} {'self us/step':>12s}  op"]
    for name, calls, own in torch_op_counts(step, steps, top):
        lines.append(f"{calls:10.1f} {own:12.1f}  {name}")
    return "\n".join(lines)


def measure(
    dim: int, shape: list[int], rank: int, dtype: torch.dtype, device: torch.device, calls: int, backends: list[str]
) -> list[tuple[str, float]]:
    """(label, µs per call) rows: one launch, the bare linear, PEFT LoRA r8 if installed, TTLinear per backend."""
    base, x = _inputs(dim, dtype, device)
    tiny = torch.randn(16, device=device)
    rows = [("one elementwise op (16 floats)", per_call_us(lambda: tiny + tiny, calls, device))]
    with torch.no_grad():
        rows.append((f"F.linear {dim}x{dim}", per_call_us(lambda: F.linear(x, base.weight), calls, device)))
        try:
            from peft import LoraConfig, get_peft_model

            holder = nn.Sequential()
            holder.add_module("q", nn.Linear(dim, dim, bias=False).to(device, dtype))
            peft_model = get_peft_model(holder, LoraConfig(r=8, lora_alpha=16, target_modules=["q"]))
            rows.append(("PEFT LoRA r8 forward", per_call_us(lambda: peft_model(x), calls, device)))
        except ImportError:
            peft_model = None
    if peft_model is not None:
        rows.append(("PEFT LoRA r8 training step", per_call_us(lambda: peft_model(x).float().sum().backward(), calls,
                                                               device)))  # fmt: skip
    for backend in backends:
        reason = backend_status(backend)
        if reason is not None:
            rows.append((f"TTLinear {backend}: unavailable ({reason})"[:70], float("nan")))
            continue
        try:
            rows += _ttlinear_rows(base, x, shape, rank, backend, calls, device)
        except BackendUnavailableError as exc:
            rows.append((f"TTLinear {backend}: unavailable ({str(exc).splitlines()[-1].strip()})"[:70], float("nan")))
    return rows


def main(argv: list[str] | None = None) -> list[tuple[str, float]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--shape", default="16,16,16,16,16,16", help="TT shape, comma-separated (product = dim**2)")
    ap.add_argument("--rank", type=int, default=5)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--backends", nargs="+", default=["torch", "triton", "cuda"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--profile", type=int, default=0, metavar="STEPS",
                    help="also profile this many training steps per available backend (Python hot spots, op counts)")
    args = ap.parse_args(argv)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    shape = [int(k) for k in args.shape.split(",")]
    rows = measure(args.dim, shape, args.rank, dtype, device, args.calls, args.backends)
    print(f"host cost per call, T=1, {args.dtype}, {card_name(device)} ({args.calls} calls back to back)")
    for label, us in rows:
        print(f"{label:44s} {us:9.1f} us")
    if args.profile > 0:
        base, x = _inputs(args.dim, dtype, device)
        for backend in args.backends:
            if backend_status(backend) is None:
                print(profile_training_step(base, x, shape, args.rank, backend, args.profile))
    return rows


if __name__ == "__main__":
    main()
