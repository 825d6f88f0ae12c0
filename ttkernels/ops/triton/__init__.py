"""The ``triton`` backend: fused Triton kernels for TT-LoRA (see the backend contract in ``ttkernels.backends``).

* ``linear_fwd``  one fused GEMM: y = x W0ᵀ (+ b) + α (x Aᵀ) Bᵀ with z = x Aᵀ accumulated on chip  (:mod:`.linear_fwd`)
* ``adapter_fwd`` y = base_out + α (x Aᵀ) Bᵀ, the expand fused with the add of base_out  (:mod:`.adapter`)
* ``linear_bwd``  dx = dy W0 + α (dy B) A fused the same way; dA, dB as skinny K = T GEMMs  (:mod:`.linear_bwd`)

Runs on CUDA tensors (Ampere or newer; tuned for Hopper) and on CPU tensors under ``TRITON_INTERPRET=1``, which must
be set before this package is imported (triton decides at kernel definition time). Activations fp32/bf16/fp16;
A, B fp32 (any float but float64); rank R <= 64 (:data:`configs.MAX_RANK`). Importing this package never fails: when
triton is missing or broken, :func:`available` gives the reason and the entry points raise it.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from ttkernels.ops._checks import operand_reasons  # absolute: tests load this file as a top-level module

NAME = "triton"

_TRUE = ("1", "true", "on", "yes")

_LOAD_ERROR: str | None
try:
    import triton
    import triton.language  # noqa: F401
except Exception as exc:  # ImportError, or a broken install
    _LOAD_ERROR = (
        "triton is not installed" if isinstance(exc, ModuleNotFoundError) else f"triton failed to import: {exc}"
    )
else:
    try:
        from . import configs, kernels
        from .adapter import tt_adapter_fwd_triton
        from .linear_bwd import tt_linear_bwd_triton
        from .linear_fwd import tt_linear_fwd_triton

        _LOAD_ERROR = None
    except Exception as exc:
        _LOAD_ERROR = f"the triton kernels failed to load: {type(exc).__name__}: {exc}"

if _LOAD_ERROR is not None:

    def _unavailable(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"ttkernels triton backend is unavailable: {_LOAD_ERROR} (pip install 'triton>=3.0')")

    tt_linear_fwd_triton = tt_adapter_fwd_triton = tt_linear_bwd_triton = _unavailable  # type: ignore[assignment]

__all__ = [
    "NAME",
    "adapter_fwd",
    "available",
    "linear_bwd",
    "linear_fwd",
    "not_supported_reasons",
    "tt_adapter_fwd_triton",
    "tt_linear_bwd_triton",
    "tt_linear_fwd_triton",
]


def _interpret_env() -> bool:
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in _TRUE


def available() -> str | None:
    """None when triton imports and the kernels are defined, else the reason."""
    return _LOAD_ERROR


def not_supported_reasons(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, bias: torch.Tensor | None) -> list[str]:
    """Why these inputs cannot run here (device, dtype, rank limit). Looks at metadata only, never at values."""
    if _LOAD_ERROR is not None:
        return [_LOAD_ERROR]
    reasons: list[str] = []
    device = x.device.type
    if device == "cpu":
        if not _interpret_env():
            reasons.append("CPU tensors need TRITON_INTERPRET=1")
        elif not kernels.BUILT_FOR_INTERPRETER:
            reasons.append(
                "TRITON_INTERPRET=1 was set after ttkernels.ops.triton was imported; set it before the import"
            )
    elif device == "cuda":
        if not kernels.BUILT_FOR_INTERPRETER:
            cap = torch.cuda.get_device_capability(x.device)
            if cap < (7, 5):
                reasons.append(f"compute capability {cap[0]}.{cap[1]} is below 7.5")
            elif x.dtype == torch.bfloat16 and cap < (8, 0):
                reasons.append(f"bfloat16 needs compute capability >= 8.0, got {cap[0]}.{cap[1]}")
    else:
        reasons.append(f"{device} tensors are not supported (CUDA, or CPU under TRITON_INTERPRET=1)")
    reasons += operand_reasons("triton", x, A, B, bias, max_rank=configs.MAX_RANK)
    return reasons


def linear_fwd(
    x: torch.Tensor,  # (T, n)
    weight: torch.Tensor,  # (m, n)
    bias: torch.Tensor | None,  # (m,)
    A: torch.Tensor,  # (R, n)
    B: torch.Tensor,  # (m, R)
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """y = x @ weight.T + bias + alpha * z @ B.T (T, m) in x.dtype; z = x @ A.T (T, R) fp32."""
    return tt_linear_fwd_triton(x, weight, bias, A, B, alpha)


def adapter_fwd(
    x: torch.Tensor,  # (T, n)
    base_out: torch.Tensor,  # (T, m)
    A: torch.Tensor,
    B: torch.Tensor,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """y = base_out + alpha * z @ B.T (T, m) in base_out.dtype; z = x @ A.T (T, R) fp32."""
    return tt_adapter_fwd_triton(x, base_out, A, B, alpha)


def linear_bwd(
    dy: torch.Tensor,  # (T, m)
    x: torch.Tensor,  # (T, n)
    z: torch.Tensor,  # (T, R) fp32
    weight: torch.Tensor | None,  # (m, n) or None
    A: torch.Tensor,
    B: torch.Tensor,
    alpha: float,
    need_dx: bool,
    need_dA: bool,
    need_dB: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """dx = dy @ weight + alpha (dy B) A; dA = alpha (dy B)ᵀ x; dB = alpha dyᵀ z; unrequested entries are None."""
    return tt_linear_bwd_triton(dy, x, z, weight, A, B, alpha, need_dx, need_dA, need_dB)
