"""Metadata checks that every kernel backend (triton, cuda) makes before it takes a call.

Each backend's ``not_supported_reasons`` adds its own device checks (interpreter, compute capability) to these.
They read dtypes, devices and shapes only, never values, so the dispatcher can cache the answer.
"""

from __future__ import annotations

import torch

KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def operand_reasons(
    backend: str,
    x: torch.Tensor,  # (T, n)
    A: torch.Tensor,  # (R, n)
    B: torch.Tensor,  # (m, R)
    bias: torch.Tensor | None,  # (m,)
    *,
    max_rank: int,
    check_devices: bool = True,
) -> list[str]:
    """Why the operands cannot go to ``backend``'s kernels: dtype, a device mix, not 2-D, or R outside 1..max_rank."""
    reasons: list[str] = []
    for name, t in (("x", x), ("A", A), ("B", B), ("bias", bias)):
        if t is None:
            continue
        if t.dtype not in KERNEL_DTYPES:
            reasons.append(f"{name} has dtype {t.dtype}; the {backend} backend supports float32, float16 and bfloat16")
        if check_devices and name != "x" and t.device != x.device:
            reasons.append(f"{name} is on {t.device} but x is on {x.device}")
    if x.dim() != 2 or A.dim() != 2 or B.dim() != 2:
        reasons.append(f"x, A and B must be 2-D, got x {tuple(x.shape)}, A {tuple(A.shape)}, B {tuple(B.shape)}")
    else:
        rank = A.shape[0]
        if rank < 1:
            reasons.append(f"rank R = {rank}: nothing for the {backend} kernels to do")
        elif rank > max_rank:
            reasons.append(f"rank R = {rank} is above the {backend} backend's limit of {max_rank}")
    return reasons
