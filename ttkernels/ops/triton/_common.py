"""Small host-side helpers shared by the launchers (shape checks, layout fix-ups, the z pre-pass)."""

from __future__ import annotations

import torch

from .kernels import launch_skinny


def check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(f"ttkernels triton backend: {message}")


def strided_ok(t: torch.Tensor) -> torch.Tensor:
    """Any 2-D layout with one unit stride is used in place (row- or column-major); anything else is copied."""
    if t.stride(-1) == 1 or t.stride(0) == 1:
        return t
    return t.contiguous()


def check_factors(A: torch.Tensor, B: torch.Tensor, n: int, m: int) -> int:
    check(A.dim() == 2 and B.dim() == 2, f"A and B must be 2-D, got A {tuple(A.shape)}, B {tuple(B.shape)}")
    R = A.shape[0]
    check(A.shape[1] == n, f"A must be (R, n={n}), got {tuple(A.shape)}")
    check(tuple(B.shape) == (m, R), f"B must be (m={m}, R={R}), got {tuple(B.shape)}")
    return R


def shrink(X: torch.Tensor, F: torch.Tensor, F_strides: tuple[int, int], R: int) -> torch.Tensor:
    """Z = X @ F where X is (T, K) and F is a (K, R) view given by F_strides; Z is (T, R) fp32."""
    T, K = X.shape
    z = torch.empty((T, R), device=X.device, dtype=torch.float32)
    if T and R:
        launch_skinny(
            Lmat=X, L_strides=(X.stride(0), X.stride(1)), Rmat=F, R_strides=F_strides,
            out=z, out_strides=(z.stride(0), z.stride(1)), P=T, K=K, R=R, alpha=1.0,
        )  # fmt: skip
    return z
