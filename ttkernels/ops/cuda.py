"""The ``cuda`` backend: the pybind11/CUDA C++ extension ``ttkernels._C`` (sources in ``csrc/``).

It follows the backend contract in :mod:`ttkernels.backends` on 2-D CUDA tensors:

* ``linear_fwd``  z = x Aᵀ (our kernel, fp32), y = x Wᵀ + b (cuBLAS through ATen) then y += α z Bᵀ in place
* ``adapter_fwd`` z = x Aᵀ, y = base_out + α z Bᵀ (one kernel, base_out untouched)
* ``linear_bwd``  dy·B (T x R, fp32); dx = dy W (cuBLAS) + α (dy B) A; dA = α (dy B)ᵀ x and dB = α dyᵀ z as
  split-T reductions with a deterministic second pass

Activations fp32/fp16/bf16 with fp32 accumulation; A and B in any of those dtypes (rounded to x's dtype for
the products, as the torch backend does; dA and dB come back in A's and B's dtypes). Rank design limit
:data:`MAX_RANK`. All work is queued on the current CUDA stream; nothing synchronises the host.

Importing this module never fails: when ``ttkernels._C`` is missing or broken, :func:`available` gives the
reason and the entry points raise it with the build command. ``TTKERNELS_DEBUG=1`` logs the import traceback.
"""

from __future__ import annotations

import importlib
import traceback

import torch

from ..utils import env_flag, logger
from ._checks import operand_reasons

NAME = "cuda"

#: Ranks above this run on the torch/triton paths: the kernels re-read the activations once per 64 ranks
#: and keep per-rank accumulators in registers, so very wide boundaries lose their advantage.
MAX_RANK = 256

_BUILD_HINT = "build it with: TTKERNELS_BUILD_CUDA=1 pip install -e . --no-build-isolation (see csrc/README.md)"

_C_ERROR: str | None
try:
    _C = importlib.import_module("ttkernels._C")  # `from ttkernels import _C`, with a precise ModuleNotFoundError
except Exception as exc:  # ImportError when not built; ImportError/OSError for a stale or mismatched build
    _C = None
    if isinstance(exc, ModuleNotFoundError) and exc.name == "ttkernels._C":
        _C_ERROR = f"ttkernels._C is not built ({type(exc).__name__}: {exc}); {_BUILD_HINT}"
    else:
        _C_ERROR = f"ttkernels._C failed to load ({type(exc).__name__}: {exc}); rebuild it: {_BUILD_HINT}"
    try:
        debug = env_flag("TTKERNELS_DEBUG")
    except ValueError as bad_switch:  # said, but it must not hide why _C did not load
        logger.warning("ttkernels: %s", bad_switch)
        debug = False
    if debug:
        logger.warning("ttkernels: importing ttkernels._C failed:\n%s", traceback.format_exc())
    else:
        logger.debug("ttkernels: %s", _C_ERROR)
else:
    _C_ERROR = None


def available() -> str | None:
    """None when the extension is loaded and a CUDA device is visible, else the reason."""
    if _C_ERROR is not None:
        return _C_ERROR
    if not torch.cuda.is_available():
        return "no CUDA device is available"
    return None


def not_supported_reasons(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, bias: torch.Tensor | None) -> list[str]:
    """Why these inputs cannot run here (device, dtype, rank). Looks at metadata only, never at values."""
    reasons: list[str] = []
    if x.device.type != "cuda":
        reasons.append(f"x is on {x.device.type}; the cuda backend needs CUDA tensors")
    else:
        major, minor = torch.cuda.get_device_capability(x.device)
        if major < 8:
            reasons.append(f"compute capability {major}.{minor} is below 8.0, the oldest arch of ttkernels._C")
    reasons += operand_reasons("cuda", x, A, B, bias, max_rank=MAX_RANK, check_devices=x.device.type == "cuda")
    if bias is not None and bias.dtype != x.dtype:
        reasons.append(f"bias has dtype {bias.dtype}, x has {x.dtype}; the base GEMM needs them equal")
    return reasons


def _lib():
    if _C is None:
        raise RuntimeError(f"ttkernels cuda backend is unavailable: {_C_ERROR}")
    return _C


def linear_fwd(
    x: torch.Tensor,  # (T, n)
    weight: torch.Tensor,  # (m, n)
    bias: torch.Tensor | None,  # (m,)
    A: torch.Tensor,  # (R, n)
    B: torch.Tensor,  # (m, R)
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """y = x Wᵀ + bias + α (x Aᵀ) Bᵀ in x.dtype, and z = x Aᵀ (T, R) in float32."""
    return _lib().linear_fwd(x.contiguous(), weight, bias, A.contiguous(), B.contiguous(), float(alpha))


def adapter_fwd(
    x: torch.Tensor,  # (T, n)
    base_out: torch.Tensor,  # (T, m), the output of any frozen base layer
    A: torch.Tensor,  # (R, n)
    B: torch.Tensor,  # (m, R)
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """y = base_out + α (x Aᵀ) Bᵀ in base_out.dtype, and z = x Aᵀ (T, R) in float32."""
    x, A, B = x.contiguous(), A.contiguous(), B.contiguous()
    if base_out.dtype == x.dtype:  # the usual case: one fused kernel reads base_out and writes y
        return _lib().adapter_fwd(x, base_out.contiguous(), A, B, float(alpha))
    # A base that returns another dtype (e.g. fp32 from a quantised layer): keep base_out's precision and add
    # the adapter term, rounded once to x.dtype, in base_out's dtype as the torch backend does.
    delta, z = _lib().adapter_fwd(x, x.new_zeros(base_out.shape), A, B, float(alpha))
    return base_out + delta.to(base_out.dtype), z


def linear_bwd(
    dy: torch.Tensor,  # (T, m)
    x: torch.Tensor,  # (T, n)
    z: torch.Tensor,  # (T, R) float32, saved by the forward
    weight: torch.Tensor | None,  # (m, n), or None for the adapter-only path
    A: torch.Tensor,  # (R, n)
    B: torch.Tensor,  # (m, R)
    alpha: float,
    need_dx: bool,
    need_dA: bool,
    need_dB: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """dx = dy W + α (dy B) A (x.dtype), dA = α (dy B)ᵀ x (A.dtype), dB = α dyᵀ z (B.dtype); None if not needed."""
    if not (need_dx or need_dA or need_dB):
        return None, None, None
    dx, dA, dB = _lib().linear_bwd(
        dy.to(x.dtype).contiguous(),
        x.contiguous(),
        z.to(torch.float32).contiguous(),
        weight,
        A.contiguous(),
        B.contiguous(),
        float(alpha),
        bool(need_dx),
        bool(need_dA),
        bool(need_dB),
    )
    return dx, dA, dB
