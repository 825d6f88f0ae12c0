"""Tensor-train shapes: validation, the automatic factorisation rule, and the in/out boundary.

Convention (see README "The maths"): ΔW (m x n, row-major) is reshaped to the d-way tensor ``shape``
(∏ shape = m·n). Because the reshape is row-major, the leading modes factor the output index (rows, m)
and the trailing modes factor the input index (columns, n). The *boundary* is where the row index ends:
the first p modes multiply to m. If no prefix multiplies to m but the boundary falls inside mode j
(∏ k_1..k_{j-1} = a, m = a·s and k_j = s·t), that mode is *split*: its index is (output part of size s,
input part of size t), row-major. Any other shape can only be computed through the dense ΔW.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from .errors import TTShapeError

#: shape=None factorises each side into the fewest balanced factors no larger than this (see auto_shape).
DEFAULT_MAX_MODE = 32


@dataclass(frozen=True)
class Boundary:
    """Where the output (row) modes end in a TT shape.

    ``p``: number of modes that belong wholly to the output side (modes ``0..p-1``).
    ``split``: None, or ``(s, t)`` when mode ``p`` is shared: its size is s·t, s on the output side.
    """

    p: int
    split: tuple[int, int] | None = None


def _as_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import numpy as np

            if isinstance(value, np.integer):
                return int(value)
        except ImportError:  # pragma: no cover
            pass
        raise TTShapeError(f"{what} must be an int, got {value!r} ({type(value).__name__})")
    return value


def validate_shape(shape: list[int] | tuple[int, ...], m: int, n: int, *, name: str = "layer") -> list[int]:
    """Check a TT shape for an m x n matrix and return it as a list of ints.

    Raises TTShapeError naming the layer, the product and m·n when they differ.
    """
    if not isinstance(shape, (list, tuple)) or len(shape) < 2:
        raise TTShapeError(f"{name}: a TT shape is a list of at least 2 mode sizes, got {shape!r}")
    dims = [_as_int(k, f"{name}: TT shape entry") for k in shape]
    if any(k < 1 for k in dims):
        raise TTShapeError(f"{name}: TT shape entries must be >= 1, got {dims}")
    if math.prod(dims) != m * n:
        raise TTShapeError(
            f"{name}: TT shape {dims} has product {math.prod(dims)} but the weight is {m}x{n} "
            f"(out_features x in_features), so the product must be m*n = {m * n}"
        )
    return dims


def normalize_ranks(rank: int | list[int] | tuple[int, ...], d: int, *, name: str = "layer") -> list[int]:
    """Return the full bond-rank list [1, r_1, ..., r_{d-1}, 1] from one int or the d-1 inner ranks."""
    if isinstance(rank, (list, tuple)):
        inner = [_as_int(r, f"{name}: rank") for r in rank]
        if len(inner) != d - 1:
            raise TTShapeError(f"{name}: a {d}-mode TT shape needs {d - 1} inner ranks, got {len(inner)}: {inner}")
    else:
        inner = [_as_int(rank, f"{name}: rank")] * (d - 1)
    if any(r <= 0 for r in inner):
        raise TTShapeError(f"{name}: TT ranks must be positive integers, got {inner}")
    return [1, *inner, 1]


def find_boundary(shape: list[int] | tuple[int, ...], m: int) -> Boundary | None:
    """Locate the output/input boundary of ``shape`` for a matrix with m rows; None if it cannot be split."""
    prefix = 1
    for j, k in enumerate(shape):
        if prefix == m:
            return Boundary(j)
        if prefix * k > m:
            if m % prefix:
                return None
            s = m // prefix
            if k % s:
                return None
            return Boundary(j, (s, k // s))
        prefix *= k
    return Boundary(len(shape)) if prefix == m else None


def num_parameters(shape: list[int], ranks: list[int]) -> int:
    """Σ r_{i-1}·k_i·r_i: trainable parameters of a TT with this shape and full rank list."""
    return sum(ranks[i] * k * ranks[i + 1] for i, k in enumerate(shape))


def _divisors(x: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(x) + 1) if x % d == 0]
    return sorted(set(small + [x // d for d in small]))


@lru_cache(maxsize=4096)
def balanced_factors(x: int, count: int) -> tuple[int, ...] | None:
    """Factor x into ``count`` factors >= 2 minimising the largest factor (ties: the most even); None if impossible."""
    if count == 1:
        return (x,) if x >= 2 else None
    best: tuple[int, ...] | None = None
    for d in _divisors(x):
        if d < 2 or d**count > x:  # nondecreasing factors: the smallest one is at most x^(1/count)
            continue
        rest = balanced_factors(x // d, count - 1)
        if rest is None or rest[0] < d:
            continue
        candidate = (d, *rest)
        if best is None or (max(candidate), -min(candidate)) < (max(best), -min(best)):
            best = candidate
    return best


def _largest_prime_factor(x: int) -> int:
    largest, f = 1, 2
    while f * f <= x:
        while x % f == 0:
            largest, x = f, x // f
        f += 1
    return max(largest, x) if x > 1 else largest


def factorize_side(x: int, max_mode: int = DEFAULT_MAX_MODE) -> list[int]:
    """The fewest balanced factors of x that are each <= max(max_mode, largest prime factor of x)."""
    if x < 2:
        return []
    cap = max(max_mode, _largest_prime_factor(x))
    count = 1
    while True:
        factors = balanced_factors(x, count)
        if factors is not None and max(factors) <= cap:
            return list(factors)
        count += 1


def auto_shape(m: int, n: int, max_mode: int = DEFAULT_MAX_MODE) -> list[int]:
    """The TT shape used when ``shape=None``.

    Rule: factor m (output side) and n (input side) separately into the fewest balanced factors that are
    each at most ``max_mode`` (or the largest prime factor, when that is larger), then order the output
    factors large-to-small and the input factors small-to-large, so the boundary always falls between modes
    and the largest modes sit at the two open ends of the train. Examples: 4096x4096 -> [16]*6 (the paper's
    best LLaMA shape), 1024x4096 -> [32, 32, 16, 16, 16], 768x768 -> [32, 24, 24, 32].
    """
    out_side = sorted(factorize_side(m, max_mode), reverse=True) or [1]
    in_side = sorted(factorize_side(n, max_mode)) or [1]
    return out_side + in_side


def outer_shape(m: int, n: int, max_mode: int = 64) -> list[int]:
    """An end-heavy TT shape, like the paper's best BERT-family shapes ([64, 36, 12, 64], [64, 16, 9, 64]).

    Rule: the largest divisor of m that is at most ``max_mode`` opens the train, the largest such divisor of n
    closes it, and what is left of each side is factored as in :func:`auto_shape` in between (output factors
    large-to-small, input small-to-large), so the boundary falls between modes. The two end cores then act like
    nearly free LoRA factors of the widest modes, and the small inner cores carry the bond rank. Examples:
    384x384 -> [64, 6, 6, 64], 768x768 -> [64, 12, 12, 64], 4096x4096 -> [64, 64, 64, 64], 576x192 -> [64, 9, 3, 64].
    """
    if max_mode < 2:
        raise TTShapeError(f"outer_shape: max_mode must be >= 2, got {max_mode}")

    def side(x: int) -> list[int]:  # the open-end mode first
        end = max((d for d in _divisors(x) if d <= max_mode), default=1)
        rest = sorted(factorize_side(x // end, max_mode), reverse=True)
        return ([end] if end > 1 else []) + rest or [1]

    return side(m) + side(n)[::-1]


def parse_boundary_rank(spec: str, *, name: str = "layer") -> tuple[int, int]:
    """``"r/R"`` -> (r, R), both >= 1: rank r on every bond, R on the bond between the output and input modes."""
    try:
        rank, boundary_rank = (int(part) for part in spec.split("/"))
    except ValueError:
        raise TTShapeError(f"{name}: a boundary rank is written r/R, like 2/4, got {spec!r}") from None
    if rank < 1 or boundary_rank < 1:
        raise TTShapeError(f"{name}: TT ranks must be positive integers, got {spec!r}")
    return rank, boundary_rank


def boundary_ranks(shape: list[int], m: int, rank: int, boundary_rank: int) -> list[int]:
    """Inner ranks r_1..r_{d-1}: ``rank`` on every bond but the one between the output and input modes, which gets
    ``boundary_rank`` (the rank R of the factors, ΔW = B·A). Example: 64x6x6x64 with m = 384, 2, 4 -> [2, 4, 2]."""
    boundary = find_boundary(list(shape), m)
    if boundary is None or boundary.split is not None or boundary.p in (0, len(shape)):
        raise TTShapeError(f"shape {list(shape)} has no bond between its output modes (product {m}) and its input "
                           "modes, so a boundary rank ('r/R') does not apply; give the inner ranks instead")
    ranks = [rank] * (len(shape) - 1)
    ranks[boundary.p - 1] = boundary_rank
    return ranks


def resolve_ranks(rank: int | list[int] | str, shape: list[int], m: int, *, name: str = "layer") -> list[int]:
    """Full rank list [1, r_1, ..., r_{d-1}, 1] of ``shape`` (m output rows) from one int, the d-1 inner ranks, or
    ``"r/R"`` (r on every bond, R on the bond between the output and input modes)."""
    if isinstance(rank, str):
        rank = boundary_ranks(shape, m, *parse_boundary_rank(rank, name=name))
    return normalize_ranks(rank, len(shape), name=name)
