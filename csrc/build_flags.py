"""Build settings of the CUDA extension ``ttkernels._C``, shared by setup.py and tests/test_csrc_build.py.

Plain Python with no imports beyond the standard library: setup.py loads it by path before torch is imported
(torch may be missing from an isolated build environment), and the compile test reuses the same flags so
that CI (CPU-only torch, nvcc present) compiles the kernels exactly as a CUDA build would.
"""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

CSRC = Path(__file__).resolve().parent

EXTENSION_NAME = "ttkernels._C"

# Hopper first (sm_90a: the arch-specific target, so Hopper-only instructions are allowed), plus the common
# Ampere/Ada cards, and PTX of sm_90 so that newer cards (Blackwell, ...) can JIT the kernels.
# Override with TORCH_CUDA_ARCH_LIST (same syntax as torch, e.g. "9.0a" or "8.0;9.0a;10.0").
DEFAULT_ARCH_LIST = "8.0;8.6;8.9;9.0a;9.0+PTX"

# Flags for the .cu files. torch's BuildExtension adds -std=c++20 (or 17 for older torch), --compiler-options
# -fPIC and TORCH_ADDED_NVCC_FLAGS itself; the compile test adds them explicitly.
NVCC_FLAGS = [
    "-O3",
    "-lineinfo",  # source lines in compute-sanitizer / Nsight reports, no runtime cost
    "--expt-relaxed-constexpr",
    "-Xptxas=-warn-spills",
]

# What torch.utils.cpp_extension adds to every nvcc command (COMMON_NVCC_FLAGS): the kernels must compile
# with the implicit half/bfloat16 operators and conversions disabled, so they only use explicit intrinsics.
TORCH_ADDED_NVCC_FLAGS = [
    "-D__CUDA_NO_HALF_OPERATORS__",
    "-D__CUDA_NO_HALF_CONVERSIONS__",
    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-D__CUDA_NO_HALF2_OPERATORS__",
    "--expt-relaxed-constexpr",
]

CXX_FLAGS = ["-O3"]

CXX_STD = "c++20"  # what torch 2.13's headers need; nvcc 12.x/13.x accept it


def sources() -> list[str]:
    """The extension's sources, relative to the repository root (setup.py's working directory)."""
    root = CSRC.parent
    files = sorted(CSRC.glob("*.cpp")) + sorted(CSRC.glob("*.cu"))
    return [str(f.relative_to(root)) for f in files]


def cu_sources() -> list[Path]:
    return sorted(CSRC.glob("*.cu"))


def cpp_sources() -> list[Path]:
    return sorted(CSRC.glob("*.cpp"))


def arch_list() -> str:
    return os.environ.get("TORCH_CUDA_ARCH_LIST") or DEFAULT_ARCH_LIST


def gencode_flags(archs: str) -> list[str]:
    """nvcc -gencode flags for a TORCH_CUDA_ARCH_LIST string, as torch.utils.cpp_extension builds them.

    "9.0a" -> -gencode=arch=compute_90a,code=sm_90a; "9.0+PTX" adds code=compute_90 (PTX for newer cards).
    """
    flags = []
    for item in archs.replace(" ", ";").split(";"):
        item = item.strip()
        if not item:
            continue
        ptx = item.endswith("+PTX")
        num = item.removesuffix("+PTX").replace(".", "")
        flags.append(f"-gencode=arch=compute_{num},code=sm_{num}")
        if ptx:
            flags.append(f"-gencode=arch=compute_{num},code=compute_{num}")
    return flags


def find_cuda_home() -> str | None:
    """The CUDA toolkit root: CUDA_HOME / CUDA_PATH, else the nvcc on PATH, else /usr/local/cuda[-X.Y]."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        value = os.environ.get(var)
        if value and Path(value, "bin", "nvcc").exists():
            return value
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(Path(nvcc).resolve().parent.parent)
    candidates.append(Path("/usr/local/cuda"))
    candidates += [Path(p) for p in sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]
    for cand in candidates:
        if (cand / "bin" / "nvcc").exists() and (cand / "include" / "cuda_runtime_api.h").exists():
            return str(cand)
    return None


def nvcc_path() -> str | None:
    home = find_cuda_home()
    if home is not None:
        return str(Path(home, "bin", "nvcc"))
    return shutil.which("nvcc")


def max_jobs(cpus: int | None = None, available_bytes: int | None = None) -> int:
    """Parallel compile jobs: one per CPU, at most one per ~3 GiB of available memory (nvcc on these
    templates peaks around 1-2 GiB per job; flash-attn caps MAX_JOBS the same way)."""
    cpus = cpus if cpus is not None else (os.cpu_count() or 1)
    if available_bytes is None:
        try:
            available_bytes = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available_bytes = 0
    by_memory = available_bytes // (3 << 30) if available_bytes else cpus
    return max(1, min(cpus, by_memory))
