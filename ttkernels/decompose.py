"""TT-SVD: the tensor train of given shape and ranks closest to a dense update (Oseledets 2011, Alg. 1).

Uses: start TT-LoRA from an existing update (a merged LoRA adapter, a full fine-tuning diff) with
:meth:`ttkernels.TTLinear.init_from_delta`, and measure how much of such an update a shape/rank can hold
(:func:`tt_relative_error`) before training anything.
"""

from __future__ import annotations

import math

import torch

from .ops.reference import dense_delta_weight
from .shapes import resolve_ranks, validate_shape


def tt_svd(
    delta: torch.Tensor, shape: list[int], rank: int | list[int] | str, *, dtype: torch.dtype | None = None
) -> list[torch.Tensor]:
    """Cores C_i (r_{i-1}, k_i, r_i) of a TT approximation of ``delta`` (m x n) reshaped row-major to ``shape``.

    Sequential truncated SVDs in float64; the error is at most sqrt(Σ_k ε_k²), ε_k the Frobenius norm of the
    singular values dropped at bond k, and zero when the ranks reach the tensor's TT ranks. A bond whose
    unfolding has lower rank than asked is padded with zero slices, so the cores always have the asked ranks.
    ``rank`` is an int, the d-1 inner ranks, or "r/R" (as in TTLinear). Cores come back in ``dtype``
    (default: delta's dtype).
    """
    if delta.dim() != 2:
        raise ValueError(f"tt_svd: delta must be a matrix (m x n), got shape {tuple(delta.shape)}")
    m, n = delta.shape
    shape = validate_shape(shape, m, n, name="tt_svd")
    ranks = resolve_ranks(rank, shape, m, name="tt_svd")
    out_dtype = dtype or delta.dtype
    rest = delta.detach().to(torch.float64).reshape(1, -1)
    cores = []
    for i, k in enumerate(shape[:-1]):
        rest = rest.reshape(ranks[i] * k, -1)
        U, S, Vh = torch.linalg.svd(rest, full_matrices=False)
        r = min(ranks[i + 1], S.numel())
        core = U[:, :r]
        rest = S[:r, None] * Vh[:r]
        if r < ranks[i + 1]:  # pad to the asked rank; the zero slices contribute nothing
            core = torch.cat([core, core.new_zeros(core.shape[0], ranks[i + 1] - r)], dim=1)
            rest = torch.cat([rest, rest.new_zeros(ranks[i + 1] - r, rest.shape[1])], dim=0)
        cores.append(core.reshape(ranks[i], k, ranks[i + 1]))
    cores.append(rest.reshape(ranks[-2], shape[-1], 1))
    return [c.to(out_dtype) for c in cores]


def tt_relative_error(delta: torch.Tensor, shape: list[int], rank: int | list[int] | str) -> float:
    """‖delta − TT-SVD(delta)‖_F / ‖delta‖_F: the share of an update a shape/rank cannot hold (0 = all of it)."""
    if delta.dim() != 2:
        raise ValueError(f"tt_relative_error: delta must be a matrix (m x n), got shape {tuple(delta.shape)}")
    reference = delta.detach().to(torch.float64)
    norm = torch.linalg.norm(reference).item()
    if norm == 0.0 or not math.isfinite(norm):
        raise ValueError(f"tt_relative_error: delta has Frobenius norm {norm}; nothing to compare against")
    approx = dense_delta_weight(tt_svd(reference, shape, rank), *delta.shape)
    return torch.linalg.norm(reference - approx).item() / norm
