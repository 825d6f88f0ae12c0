"""Cores -> factors: contract the tensor train into A (R x n) and B (m x R) without forming ΔW.

ΔW = B @ A exactly. With the boundary between modes p-1 and p (see :mod:`ttkernels.shapes`):

    B[(i_1..i_p), a] = Σ C_1[1, i_1, :] C_2[:, i_2, :] ... C_p[:, i_p, a]      (m x r_p)
    A[a, (i_{p+1}..i_d)] = Σ C_{p+1}[a, i_{p+1}, :] ... C_d[:, i_d, 1]         (r_p x n)

When the boundary splits mode j (k_j = s·t, s output-side), the split core goes to the side that gives the
smaller R, and the other side becomes a Kronecker product with an identity:
    absorb into B:  B = L ×_a C_j  -> (m, t·r_j),  A = I_t ⊗ Right           (R = t·r_j)
    absorb into A:  A = C_j ×_b Right -> (s·r_{j-1}, n),  B = Left ⊗ I_s     (R = s·r_{j-1})
Cost: O((m + n)·R·r) flops, independent of the token count; autograd carries the gradients to the cores.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..shapes import Boundary


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other dtype accumulates in float32 (the z = A·x buffer, merged weights)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def contract_left(cores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Contract cores (r_0=1, k, r) left to right into a (∏k, r_last) matrix, row index row-major."""
    if not cores:
        raise ValueError("contract_left needs at least one core")
    mat = cores[0].reshape(-1, cores[0].shape[-1])  # (r_0 * k_1, r_1) with r_0 = 1
    for core in cores[1:]:
        r_in, k, r_out = core.shape
        mat = (mat @ core.reshape(r_in, k * r_out)).reshape(-1, r_out)
    return mat


def contract_right(cores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Contract cores (r, k, r_last=1) right to left into a (r_first, ∏k) matrix, column index row-major."""
    if not cores:
        raise ValueError("contract_right needs at least one core")
    mat = cores[-1].reshape(cores[-1].shape[0], -1)  # (r_{d-1}, k_d * r_d) with r_d = 1
    for core in reversed(cores[:-1]):
        r_in, k, r_out = core.shape
        mat = (core.reshape(r_in * k, r_out) @ mat).reshape(r_in, -1)
    return mat


def _ones(like: torch.Tensor) -> torch.Tensor:
    """The 1x1 factor of an empty side (a matrix with m == 1 or n == 1)."""
    return torch.ones(1, 1, dtype=like.dtype, device=like.device)


def factor_rank(shape: Sequence[int], ranks: Sequence[int], boundary: Boundary) -> int:
    """R, the inner dimension of the factors A (R x n) and B (m x R)."""
    if boundary.split is None:
        return ranks[boundary.p]
    s, t = boundary.split
    j = boundary.p
    return min(t * ranks[j + 1], s * ranks[j])


def contract_factors(cores: Sequence[torch.Tensor], boundary: Boundary) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (A: (R, n), B: (m, R)) with B @ A == ΔW (the m x n update), never forming ΔW."""
    p = boundary.p
    if boundary.split is None:
        B = contract_left(cores[:p]) if p > 0 else _ones(cores[0])
        A = contract_right(cores[p:]) if p < len(cores) else _ones(cores[0])
        return A, B

    s, t = boundary.split
    split = cores[p]
    r_in, _, r_out = split.shape
    left = contract_left(cores[:p]) if p > 0 else _ones(split)  # (a, r_in)
    right = contract_right(cores[p + 1 :]) if p + 1 < len(cores) else _ones(split)  # (r_out, n/t)
    core4 = split.reshape(r_in, s, t, r_out)
    if t * r_out <= s * r_in:
        B = (left @ core4.reshape(r_in, s * t * r_out)).reshape(-1, t * r_out)  # (a·s, t·r_out)
        eye = torch.eye(t, dtype=split.dtype, device=split.device)
        A = torch.kron(eye, right)  # (t·r_out, t·n_right): A[(u,b),(u',c)] = δ(u,u') right[b,c]
        return A, B
    A = (core4.reshape(r_in * s * t, r_out) @ right).reshape(r_in * s, -1)  # (r_in·s, t·n_right)
    eye = torch.eye(s, dtype=split.dtype, device=split.device)
    B = torch.kron(left, eye)  # (a·s, r_in·s): B[(o,v),(c,v')] = left[o,c] δ(v,v')
    return A, B
