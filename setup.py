"""Build script. The pure-Python package always installs; the CUDA extension ttkernels._C is optional.

Metadata lives in pyproject.toml; this file only decides whether to add the extension.

TTKERNELS_BUILD_CUDA=auto (default) builds it when torch is a CUDA build and a CUDA toolkit is found, and
falls back to the pure-Python package if the build fails; =1 forces it (fails loudly if impossible or if the
build fails); =0 skips it. In every skipped case one line on stderr says why (pip shows it with -v).
TORCH_CUDA_ARCH_LIST overrides the target GPUs (default in csrc/build_flags.py: Hopper sm_90a + Ampere/Ada),
MAX_JOBS the compile parallelism (default: capped by free memory). See csrc/README.md.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from setuptools import setup

ROOT = Path(__file__).resolve().parent
_MODES = ("auto", "0", "1")


def _say(message: str) -> None:
    print(f"ttkernels: {message}", file=sys.stderr, flush=True)


def _load_build_flags() -> ModuleType | None:
    path = ROOT / "csrc" / "build_flags.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("_ttkernels_build_flags", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _why_not(flags: ModuleType | None) -> str | None:
    """None when the extension can be built here, else the reason."""
    if flags is None:
        return "csrc/ is not part of this source tree"
    try:
        import torch
    except Exception as exc:  # missing, or broken: either way there is nothing to build against
        return (
            f"torch is not importable in the build environment ({type(exc).__name__}: {exc}); "
            "install torch first and pass --no-build-isolation to pip"
        )
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    if flags.find_cuda_home() is None:
        return "no CUDA toolkit found (set CUDA_HOME, or put nvcc on PATH)"
    return None


def _extension_kwargs(mode: str) -> dict[str, Any]:
    if mode == "0":
        _say("building without the CUDA extension ttkernels._C (TTKERNELS_BUILD_CUDA=0)")
        return {}
    flags = _load_build_flags()
    reason = _why_not(flags)
    if reason is not None:
        if mode == "1":
            raise SystemExit(f"ttkernels: TTKERNELS_BUILD_CUDA=1 but ttkernels._C cannot be built: {reason}")
        _say(f"building without the CUDA extension ttkernels._C: {reason} (TTKERNELS_BUILD_CUDA=1 requires it)")
        return {}
    assert flags is not None

    # torch.utils.cpp_extension reads these when it is imported: set them first.
    os.environ.setdefault("CUDA_HOME", flags.find_cuda_home())
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", flags.DEFAULT_ARCH_LIST)
    os.environ.setdefault("MAX_JOBS", str(flags.max_jobs()))
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    class _BuildExt(BuildExtension):
        """In auto mode a failed compile leaves the pure-Python install intact, and says so."""

        def build_extension(self, ext: Any) -> None:
            try:
                super().build_extension(ext)
            except Exception as exc:
                if mode == "1":
                    raise
                _say(
                    f"building the CUDA extension ttkernels._C failed ({type(exc).__name__}: {exc}); installing "
                    "the pure-Python package (TTKERNELS_BUILD_CUDA=1 makes this an error)"
                )

    _say(
        f"building the CUDA extension ttkernels._C for TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']} "
        f"with MAX_JOBS={os.environ['MAX_JOBS']}"
    )
    extension = CUDAExtension(
        name=flags.EXTENSION_NAME,
        sources=flags.sources(),
        include_dirs=[str(ROOT / "csrc")],
        extra_compile_args={"cxx": list(flags.CXX_FLAGS), "nvcc": list(flags.NVCC_FLAGS)},
    )
    return {"ext_modules": [extension], "cmdclass": {"build_ext": _BuildExt.with_options(use_ninja=True)}}


def main() -> None:
    mode = (os.environ.get("TTKERNELS_BUILD_CUDA") or "auto").strip().lower()
    if mode not in _MODES:
        raise SystemExit(f"ttkernels: TTKERNELS_BUILD_CUDA must be one of {', '.join(_MODES)}, got {mode!r}")
    setup(**_extension_kwargs(mode))


main()
