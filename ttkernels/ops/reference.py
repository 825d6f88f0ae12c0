"""The dense oracle: materialise ΔW from the cores. For tests, merging and inspection only.

This deliberately shares no code with :mod:`ttkernels.ops.contract`: it contracts the whole train into the
d-way tensor with ``tensordot`` and reshapes it row-major to (m, n), which is the definition of TT-LoRA's ΔW.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def dense_delta_weight(cores: Sequence[torch.Tensor], m: int, n: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """ΔW (m x n): the full contraction of the train, reshaped row-major. Costs O(m·n·r) memory and time."""
    full = cores[0] if dtype is None else cores[0].to(dtype)
    for core in cores[1:]:
        full = torch.tensordot(full, core if dtype is None else core.to(dtype), dims=1)
    return full.reshape(m, n)


def tt_linear_ref(
    x: torch.Tensor,  # (..., n)
    weight: torch.Tensor,  # (m, n)
    bias: torch.Tensor | None,  # (m,)
    cores: Sequence[torch.Tensor],
    alpha: float,
) -> torch.Tensor:
    """y = x W0ᵀ + b + α·x ΔWᵀ computed in float64 through the dense ΔW (the test oracle)."""
    m, n = weight.shape
    delta = dense_delta_weight(cores, m, n, torch.float64)
    y = x.double() @ (weight.double() + alpha * delta).t()
    return y if bias is None else y + bias.double()
