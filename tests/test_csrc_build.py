"""The CUDA extension's sources, checked on a CPU-only machine (CI has nvcc and a CPU build of torch).

* every ``csrc/*.cu`` compiles with nvcc for sm_90a, with the flags setup.py uses (``csrc/build_flags.py``) plus
  the ones torch's BuildExtension adds;
* the pybind11 binding ``csrc/*.cpp`` compiles to an object file against torch's headers (the CPU wheel ships
  the c10/cuda headers but not their generated config header, which the test supplies), and every launcher it
  calls is defined, with the same signature, by the nvcc objects;
* the kernels run under a CPU emulation of the CUDA thread model (``csrc/emu``) and match float64;
* setup.py's choices: the one-line reason when it builds no extension, TTKERNELS_BUILD_CUDA validation, arch
  flags and the MAX_JOBS cap.

What needs a GPU (the built extension against the contract) is in tests/test_cuda_backend.py.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"


def _load_build_flags() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ttkernels_csrc_build_flags", CSRC / "build_flags.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FLAGS = _load_build_flags()
NVCC = FLAGS.nvcc_path()
CUDA_HOME = FLAGS.find_cuda_home()
CUDA_INCLUDE = Path(CUDA_HOME, "include") if CUDA_HOME else None
CXX = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
CU_SOURCES = FLAGS.cu_sources()
CPP_SOURCES = FLAGS.cpp_sources()

needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found (set CUDA_HOME or put nvcc on PATH)")
needs_cxx_and_cuda_headers = pytest.mark.skipif(
    CXX is None or CUDA_INCLUDE is None or not (CUDA_INCLUDE / "cuda_runtime_api.h").exists(),
    reason="needs a host C++ compiler (g++) and the CUDA toolkit headers (cuda_runtime_api.h)",
)


def _run(cmd: list[str], what: str, *, timeout: float = 600, env: dict | None = None):
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    elapsed = time.perf_counter() - start
    print(f"{what}: {elapsed:.1f}s")
    assert proc.returncode == 0, (
        f"{what} failed (exit {proc.returncode}, {elapsed:.1f}s)\n$ {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("csrc_build")


@functools.cache
def _compile_cu(source: Path, out_dir: Path) -> Path:
    obj = out_dir / f"{source.stem}.o"
    cmd = [
        NVCC,
        "-c",
        str(source),
        "-o",
        str(obj),
        f"-std={FLAGS.CXX_STD}",
        "-Xcompiler",
        "-fPIC",
        "-I",
        str(CSRC),
        *FLAGS.TORCH_ADDED_NVCC_FLAGS,
        *FLAGS.NVCC_FLAGS,
        *FLAGS.gencode_flags("9.0a"),
    ]
    _run(cmd, f"nvcc sm_90a {source.name}")
    return obj


def test_there_are_sources():
    assert CU_SOURCES, f"no .cu files under {CSRC}"
    assert CPP_SOURCES, f"no .cpp binding under {CSRC}"
    assert set(FLAGS.sources()) == {str(p.relative_to(ROOT)) for p in CU_SOURCES + CPP_SOURCES}


@needs_nvcc
@pytest.mark.parametrize("source", CU_SOURCES, ids=lambda p: p.name)
def test_cu_compiles_for_sm90a(source: Path, build_dir: Path):
    obj = _compile_cu(source, build_dir)
    assert obj.stat().st_size > 0


def _torch_include_dirs() -> list[str]:
    from torch.utils.cpp_extension import include_paths

    return include_paths()


@functools.cache
def _compile_binding(source: Path, out_dir: Path) -> Path:
    torch_includes = _torch_include_dirs()
    torch_root = Path(torch_includes[0])
    if not (torch_root / "c10" / "cuda" / "CUDAGuard.h").exists():
        pytest.skip(f"this torch ({torch_root}) ships no c10/cuda headers; the binding needs a CUDA build of torch")
    # CPU wheels omit this CMake-generated header of c10/cuda; a CUDA build generates exactly this content
    # (the shared-library export switch). Supplying it lets the real headers, and our code, compile.
    stub = out_dir / "stub_include"
    macros = stub / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
    if not (torch_root / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").exists():
        macros.parent.mkdir(parents=True, exist_ok=True)
        macros.write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
    obj = out_dir / f"{source.stem}.o"
    cmd = [
        CXX,
        f"-std={FLAGS.CXX_STD}",
        "-c",
        "-fPIC",
        "-O0",  # the code paths are checked the same; -O3 only costs time here
        "-Wall",
        "-Wextra",
        "-Werror",  # our code only: the dependencies below are -isystem
        "-DTORCH_EXTENSION_NAME=_C",
        "-DTORCH_API_INCLUDE_EXTENSION_H",
        *[arg for inc in torch_includes for arg in ("-isystem", inc)],
        "-isystem",
        str(stub),
        "-isystem",
        str(CUDA_INCLUDE),
        "-isystem",
        sysconfig.get_paths()["include"],
        "-I",
        str(CSRC),
        str(source),
        "-o",
        str(obj),
    ]
    _run(cmd, f"g++ binding {source.name}")
    return obj


@needs_cxx_and_cuda_headers
@pytest.mark.parametrize("source", CPP_SOURCES, ids=lambda p: p.name)
def test_binding_compiles_against_torch_headers(source: Path, build_dir: Path):
    pytest.importorskip("torch")
    obj = _compile_binding(source, build_dir)
    assert obj.stat().st_size > 0


def _symbols(obj: Path, *, defined: bool) -> set[str]:
    flag = "--defined-only" if defined else "--undefined-only"
    proc = _run(["nm", flag, "--format=posix", str(obj)], f"nm {obj.name}")
    return {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}


@needs_nvcc
@needs_cxx_and_cuda_headers
@pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm (binutils) to read the object files")
def test_binding_calls_only_launchers_the_kernels_define(build_dir: Path):
    """A declaration in tt_linear.h that drifts from its definition would only fail at import on a GPU box."""
    pytest.importorskip("torch")
    defined: set[str] = set()
    for source in CU_SOURCES:
        defined |= _symbols(_compile_cu(source, build_dir), defined=True)
    for source in CPP_SOURCES:
        undefined = _symbols(_compile_binding(source, build_dir), defined=False)
        needed = {s for s in undefined if s.startswith("_ZN9ttkernels")}
        assert needed, f"{source.name} calls no ttkernels:: launcher?"
        missing = needed - defined
        assert not missing, f"{source.name} calls launchers that no .cu file defines: {sorted(missing)}"


@needs_cxx_and_cuda_headers
def test_kernels_match_float64_under_cpu_emulation(tmp_path: Path):
    """Every launcher, run on the CPU one fiber per CUDA thread (csrc/emu/cuda_emu.h), against float64."""
    exe = tmp_path / "emu"
    cmd = [
        CXX,
        f"-std={FLAGS.CXX_STD}",
        "-O1",
        "-fno-strict-aliasing",  # the 16-byte vector loads reinterpret memory, as on the GPU
        "-Wall",
        "-Wno-unknown-pragmas",  # #pragma unroll
        "-DTTKERNELS_CPU_EMULATION",
        "-I",
        str(CSRC),
        "-isystem",
        str(CUDA_INCLUDE),
        "-x",
        "c++",
        *[str(s) for s in CU_SOURCES],
        str(CSRC / "emu" / "emu_main.cpp"),
        "-o",
        str(exe),
    ]
    _run(cmd, "g++ emulation build")
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    print(proc.stdout[-4000:])
    lines = proc.stdout.strip().splitlines()
    failures = [line for line in lines if line.startswith("FAIL")]
    assert proc.returncode == 0 and not failures, "\n".join(failures) or proc.stderr or proc.stdout[-2000:]
    assert lines and lines[-1].endswith(" 0 failed"), lines[-1:] or proc.stderr


# ---- setup.py ----


def _setup_py(*args: str, mode: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TTKERNELS_BUILD_CUDA"}
    if mode is not None:
        env["TTKERNELS_BUILD_CUDA"] = mode
    return subprocess.run(
        [sys.executable, "setup.py", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )


def _torch_is_cpu_only() -> bool:
    torch = pytest.importorskip("torch")
    return torch.version.cuda is None


def test_setup_without_cuda_installs_pure_python_and_says_why():
    if not _torch_is_cpu_only():
        pytest.skip("torch is a CUDA build here: setup.py would build the extension")
    import torch

    proc = _setup_py("--name", mode=None)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "ttkernels"
    lines = [line for line in proc.stderr.splitlines() if line.startswith("ttkernels:")]
    assert lines == [
        f"ttkernels: building without the CUDA extension ttkernels._C: torch {torch.__version__} is a CPU-only "
        "build (TTKERNELS_BUILD_CUDA=1 requires it)"
    ]


def test_setup_forced_cuda_fails_loudly_without_cuda():
    if not _torch_is_cpu_only():
        pytest.skip("torch is a CUDA build here")
    proc = _setup_py("--name", mode="1")
    assert proc.returncode != 0
    assert "TTKERNELS_BUILD_CUDA=1 but ttkernels._C cannot be built: torch" in proc.stderr


def test_setup_rejects_unknown_mode():
    proc = _setup_py("--name", mode="maybe")
    assert proc.returncode != 0
    assert "TTKERNELS_BUILD_CUDA must be one of auto, 0, 1, got 'maybe'" in proc.stderr


def test_setup_mode_0_skips_without_importing_torch():
    proc = _setup_py("--name", mode="0")
    assert proc.returncode == 0, proc.stderr
    assert "ttkernels: building without the CUDA extension ttkernels._C (TTKERNELS_BUILD_CUDA=0)" in proc.stderr


def test_arch_flags_follow_torch_syntax(monkeypatch):
    assert FLAGS.gencode_flags("9.0a") == ["-gencode=arch=compute_90a,code=sm_90a"]
    assert FLAGS.gencode_flags("8.0; 9.0+PTX") == [
        "-gencode=arch=compute_80,code=sm_80",
        "-gencode=arch=compute_90,code=sm_90",
        "-gencode=arch=compute_90,code=compute_90",
    ]
    assert "9.0a" in FLAGS.DEFAULT_ARCH_LIST.split(";") and "8.0" in FLAGS.DEFAULT_ARCH_LIST.split(";")
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0a")
    assert FLAGS.arch_list() == "9.0a"
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST")
    assert FLAGS.arch_list() == FLAGS.DEFAULT_ARCH_LIST


def test_max_jobs_is_capped_by_memory():
    assert FLAGS.max_jobs(cpus=16, available_bytes=7 << 30) == 2
    assert FLAGS.max_jobs(cpus=4, available_bytes=128 << 30) == 4
    assert FLAGS.max_jobs(cpus=8, available_bytes=1 << 30) == 1


def _call_args(text: str, start: int) -> list[str]:
    """The top-level comma-separated arguments of the call whose '(' is at text[start]."""
    depth, args, current, i, quote = 0, [], [], start, None
    while True:
        ch = text[i]
        if quote:
            current.append(ch)
            if ch == "\\":
                current.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
            current.append(ch)
        elif ch == "(":
            depth += 1
            if depth > 1:
                current.append(ch)
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append("".join(current).strip())
                return args
            current.append(ch)
        elif ch == "," and depth == 1:
            args.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1


# What a TORCH_CHECK message in the binding may be made of: C strings and std::strings only. Streaming numbers or
# shapes through std::ostream inside the module crashed the process on the H200 image (SIGSEGV in
# ostream::_M_insert<long>) instead of raising the error (csrc/tt_linear.cpp, the note above the checks).
_STRING_ARG = re.compile(
    r'^(?:(?:"(?:[^"\\]|\\.)*"|#\w+)\s*)+$'  # literals, possibly glued to #x stringised macro arguments
    r"|^(?:dims_str|std::to_string|c10::toString|cudaGetErrorString)\(.*\)$"
    r"|^.*\.str\(\)$"
    r"|^(?:name|dims|what)$",  # const char* parameters of the check helpers
    re.S,
)


@pytest.mark.parametrize("source", CPP_SOURCES, ids=lambda p: p.name)
def test_binding_error_messages_are_built_from_strings_only(source: Path):
    text = source.read_text().replace("\\\n", " \n")  # macro line continuations (line numbers kept)
    calls = [m.end() - 1 for m in re.finditer(r"\bTORCH_CHECK\s*\(", text)]
    assert calls, f"{source.name} has no TORCH_CHECK?"
    for start in calls:
        args = _call_args(text, start)
        bad = [a for a in args[1:] if not _STRING_ARG.match(a)]
        line = text.count("\n", 0, start) + 1
        assert not bad, f"{source.name}:{line}: TORCH_CHECK message parts that are not strings: {bad}"
