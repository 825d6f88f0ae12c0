"""Timing, memory and machine helpers shared by the benchmarks, the report and gpu_check.sh.

Timing (see /work/.library/device/METHOD.md): every timed call ends with ``torch.cuda.synchronize()`` on CUDA
(pytest-benchmark reads a host clock), warm-up rounds run first, the median is reported, inputs are fresh random
tensors (never zeros), several input sets are rotated so that together they exceed the last-level cache, and on
CUDA the L2 cache is flushed (a 256 MiB buffer is zeroed, as ``triton.testing.do_bench`` does) in the untimed
setup of every round, so the weights come from HBM as they do in a real model.

Peak memory of a pass, net of what was allocated before it (weights, inputs):
  cuda: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``;
  cpu:  the running sum of the allocation/free events recorded by ``torch.profiler`` (profile_memory=True),
        i.e. the CPU allocator's own accounting (RSS and tracemalloc do not see it reliably).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import platform
import re
import time
from collections.abc import Callable
from functools import cache

import torch

FLUSH_BYTES = 256 * 2**20


def bench_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def bench_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPU, fp32 on CPU; ``TTKERNELS_BENCH_DTYPE=float32|bfloat16|float16`` overrides."""
    name = os.environ.get("TTKERNELS_BENCH_DTYPE", "").strip().lower()
    if name:
        dtype = getattr(torch, name, None)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"TTKERNELS_BENCH_DTYPE={name!r} is not a torch floating-point dtype")
        return dtype
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cache_bytes(device: torch.device) -> int:
    """L2 size on CUDA; the CPU's last-level cache from sysfs (32 MiB if unknown)."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).L2_cache_size)
    best = 0
    for path in sorted(_glob("/sys/devices/system/cpu/cpu0/cache/index*/size")):
        with contextlib.suppress(OSError, ValueError):
            text = open(path).read().strip().upper()
            scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
            best = max(best, int(text.rstrip("KMG")) * scale)
    return best or 32 * 2**20


def _glob(pattern: str) -> list[str]:
    import glob

    return glob.glob(pattern)


def rotation_sets(bytes_per_set: int, device: torch.device, cap: int = 8) -> int:
    """How many input sets to rotate so that together they are at least twice the cache (1..cap)."""
    return max(1, min(cap, math.ceil(2 * cache_bytes(device) / max(1, bytes_per_set))))


class L2Flusher:
    """Zero a 256 MiB buffer (CUDA only) to evict the L2 before a timed call; a no-op on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.buffer = (
            torch.empty(FLUSH_BYTES // 4, dtype=torch.int32, device=device) if device.type == "cuda" else None
        )

    def __call__(self) -> None:
        if self.buffer is not None:
            self.buffer.zero_()


def peak_memory(fn: Callable[[], object], device: torch.device) -> tuple[int, str]:
    """(peak bytes allocated during ``fn()`` above what was allocated before it, how it was measured)."""
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return int(torch.cuda.max_memory_allocated(device) - before), "cuda max_memory_allocated - allocated before"
    from torch.profiler import ProfilerActivity, profile

    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
    events = [
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and str(e.device_type()).endswith("CPU")
    ]
    running = peak = 0
    for _, nbytes in sorted(events):
        running += nbytes
        peak = max(peak, running)
    return int(peak), "torch.profiler CPU allocation events (running sum of allocs - frees)"


def _best_time(fn: Callable[[], object], device: torch.device, reps: int) -> float:
    """The fastest of ``reps`` synchronised calls: a ceiling is what the machine can do, not what it usually does."""
    times = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


@cache
def measured_rates(device_type: str, dtype_name: str) -> dict:
    """Copy bandwidth (bytes read + written per second) and matmul rate measured once on this machine.

    CUDA: a 1 GiB device-to-device copy and an 8192³ matmul in the benchmark dtype, random data, best of 5.
    CPU: a 256 MiB copy and a 2048³ matmul, best of 5 (indicative only: shared cores, no roofline meaning).
    """
    device = torch.device(device_type)
    dtype = getattr(torch, dtype_name)
    cuda = device.type == "cuda"
    reps = 5
    numel = (2**30 if cuda else 2**28) // 4
    pair = (torch.rand(numel, device=device), torch.empty(numel, device=device))
    pair[1].copy_(pair[0])
    copy_s = _best_time(lambda: pair[1].copy_(pair[0]), device, reps)
    size = 8192 if cuda else 2048
    mats = [torch.randn(size, size, device=device, dtype=dtype) for _ in range(2)]
    mats[0] @ mats[1]
    mm_s = _best_time(lambda: mats[0] @ mats[1], device, reps)
    pair, mats = (), []
    return {
        "bandwidth": 2 * numel * 4 / copy_s,
        "peak_flops": 2 * size**3 / mm_s,
        "how": f"measured here: a {numel * 4 / 2**20:.0f} MiB copy (bytes read + written) and a {size}³ "
        f"{dtype_name} matmul, random data, best of {reps}",
    }


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def card_name(device: torch.device) -> str:
    """'NVIDIA H100 80GB HBM3' on CUDA, the CPU model (with core count) on CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({os.cpu_count()} cores visible, torch threads {torch.get_num_threads()})"


def machine_slug(device: torch.device) -> str:
    """File-name tag: 'cpu-amd-epyc', 'nvidia-h100-80gb-hbm3', ..."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu-" + cpu_model()
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def result_stem(device: torch.device) -> str:
    return f"{machine_slug(device)}-{_dt.date.today().isoformat()}"


def versions() -> dict:
    import importlib.metadata as md

    out = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version()}
    for pkg in ("ttkernels", "triton", "peft", "transformers", "pytest-benchmark"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    with contextlib.suppress(Exception):
        import ttkernels

        out["ttkernels"] = ttkernels.__version__
    return out
