"""Flops and bytes of each pass, and the floor time they imply (the model of /work/shared/perf-notes.md §3/§6).

For a provider, mode, layer and token count T this returns:

``flops``       the arithmetic of the method's own algorithm: base GEMM(s), the adapter's skinny GEMMs, the TT
                contractions (cores -> factors, cores -> ΔW, or the per-core einsum chain) and, in training, their
                backward (2x the forward contraction flops; plus the dΔW = dyᵀx GEMM for the dense-ΔW method).
``bytes_min``   each input read once and each output written once for the pass (x, W, bias, adapter weights,
                y; in training also dy, dx, adapter gradients and the R-wide saved z), plus, for the dense-ΔW
                method, the m x n ΔW/W' it materialises by definition. The same function has the same minimum:
                every TT variant shares one ``bytes_min``.
``bytes_impl``  the op sequence as implemented, every intermediate written once and read once (eager PEFT and
                the torch backend: x re-read, z, x·Aᵀ·Bᵀ, the α-scale and the add as separate tensors; the einsum
                chain: every state; the triton/cuda backends: the fused design's extra x pass, perf-notes §3.2 (c)).
                Intermediates are counted in the activation dtype (PEFT's fp32 adapter autocast on bf16 adds more).

Two floors (see :func:`floors`): ``floor_us`` = max(flops / peak, bytes_min / bandwidth), the whole pass as one
perfectly overlapped kernel; ``floor_impl_us`` = the stages of the implementation one after another, each
max(flops / peak, bytes_impl / bandwidth). Peak and bandwidth are measured on the machine (see harness.py).
Merged inference is a plain F.linear for every method, so its cost is the base forward's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .shapes import LayerSpec

ADAPTER_BYTES = 4  # adapter params and z are fp32 (TTLinear's cores; PEFT autocasts its adapter to fp32)


@dataclass(frozen=True)
class Cost:
    flops: float
    bytes_min: float
    bytes_impl: float

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.bytes_min + other.bytes_min, self.bytes_impl + other.bytes_impl)

    def as_dict(self) -> dict:
        return asdict(self)


def _same(flops: float, nbytes: float) -> Cost:
    return Cost(flops, nbytes, nbytes)


def _ranks(spec: LayerSpec) -> list[int]:
    return [1] + [spec.rank] * (len(spec.tt_shape) - 1) + [1]


def _boundary(spec: LayerSpec) -> int | None:
    prefix = 1
    for j, k in enumerate(spec.tt_shape):
        if prefix == spec.m:
            return j
        prefix *= k
    return len(spec.tt_shape) if prefix == spec.m else None


def base_fwd(spec: LayerSpec, t: int, e: int) -> Cost:
    n, m = spec.n, spec.m
    return _same(2 * t * m * n, e * (t * n + m * n + t * m + (m if spec.bias else 0)))


def base_bwd(spec: LayerSpec, t: int, e: int) -> Cost:
    """dx = dy W only (W is frozen)."""
    n, m = spec.n, spec.m
    return _same(2 * t * m * n, e * (t * m + m * n + t * n))


def factor_contraction_flops(spec: LayerSpec) -> float:
    """cores -> A (R x n), B (m x R) as ttkernels.ops.contract does it (clean boundary)."""
    shape, ranks, p = spec.tt_shape, _ranks(spec), _boundary(spec)
    if p is None:
        return dense_contraction(spec)[0]
    flops, rows = 0.0, shape[0]
    for i in range(1, p):  # left: (rows, r_i) @ (r_i, k r_{i+1})
        flops += 2 * rows * ranks[i] * shape[i] * ranks[i + 1]
        rows *= shape[i]
    cols = shape[-1]
    for i in range(len(shape) - 2, p - 1, -1):  # right: (r_i k, r_{i+1}) @ (r_{i+1}, cols)
        flops += 2 * ranks[i] * shape[i] * ranks[i + 1] * cols
        cols *= shape[i]
    return flops


def dense_contraction(spec: LayerSpec) -> tuple[float, float]:
    """(flops, bytes of the fp32 intermediates written and read) of contracting the train into ΔW."""
    shape, ranks = spec.tt_shape, _ranks(spec)
    flops, nbytes, rows = 0.0, 0.0, shape[0]
    for i in range(1, len(shape)):
        flops += 2 * rows * ranks[i] * shape[i] * ranks[i + 1]
        rows *= shape[i]
        nbytes += 2 * ADAPTER_BYTES * rows * ranks[i + 1]
    return flops, nbytes


def einsum_chain(spec: LayerSpec) -> tuple[float, float]:
    """(flops per token, state elements per token read+written) of the per-core einsum chain."""
    shape, ranks, p = spec.tt_shape, _ranks(spec), _boundary(spec)
    assert p is not None
    flops, elems, rest = 0.0, 0.0, spec.n
    for i in range(len(shape) - 1, p - 1, -1):  # input cores, last first: (a, k, r_{i+1}) -> (a, r_i)
        k = shape[i]
        a = rest // k
        flops += 2 * a * k * ranks[i + 1] * ranks[i]
        elems += rest * ranks[i + 1] + a * ranks[i]
        rest = a
    width = 1
    for i in range(p - 1, -1, -1):  # output cores: (r_{i+1}, P) -> (r_i, k_i P)
        k = shape[i]
        flops += 2 * ranks[i + 1] * width * ranks[i] * k
        elems += ranks[i + 1] * width + ranks[i] * k * width
        width *= k
    return flops, elems


def adapter_params(provider: str, spec: LayerSpec) -> int:
    if provider == "base":
        return 0
    if provider.startswith("peft_lora_r"):
        return int(provider.removeprefix("peft_lora_r")) * (spec.n + spec.m)
    ranks = _ranks(spec)
    return sum(ranks[i] * k * ranks[i + 1] for i, k in enumerate(spec.tt_shape))


def stages(provider: str, mode: str, spec: LayerSpec, t: int, e: int) -> list[Cost]:
    """The pass as a list of stages (base GEMMs and the adapter's work around them), each a Cost."""
    n, m = spec.n, spec.m
    fwd = base_fwd(spec, t, e)
    train = mode == "train"
    if mode == "merged" or provider == "base":
        return [fwd, base_bwd(spec, t, e)] if train else [fwd]
    a = ADAPTER_BYTES
    params = adapter_params(provider, spec)

    if provider == "tt_dense" or (provider.startswith("tt_") and _boundary(spec) is None):
        c_flops, c_bytes = dense_contraction(spec)
        # ΔW (fp32) written and read as the contraction's last intermediate (in c_bytes); W' = W0 + α ΔW reads W0
        # and writes W'; the GEMM then reads W' (counted in base_fwd)
        out = [_same(c_flops + 2 * m * n, params * a + c_bytes + 2 * e * m * n), fwd]
        if train:
            # dx = dy W'; dW' = dyᵀ x (a second full GEMM); dΔW = α dW' in fp32; back through the contraction
            out += [
                base_bwd(spec, t, e),
                _same(2 * t * m * n, e * (t * m + t * n + m * n)),
                _same(m * n + 2 * c_flops, (e + a) * m * n + 2 * c_bytes + params * a),
            ]
        return out

    if provider.startswith("peft_lora_r"):
        r = int(provider.removeprefix("peft_lora_r"))
        extra_flops = 2 * t * r * (n + m)
    else:
        r = _ranks(spec)[_boundary(spec)]
        extra_flops = 2 * t * r * (n + m) + factor_contraction_flops(spec)
    factors = a * r * (n + m)  # read A and B once

    if provider == "tt_einsum":
        chain_flops, chain_elems = einsum_chain(spec)
        # every state written and read, then the α-scale (read+write) and the add (2 reads + write)
        out = [fwd, Cost(t * chain_flops + 2 * t * m, a * params, a * params + e * t * (chain_elems + 5 * m))]
        if train:
            # each einsum's backward: d(state_in) and d(core), reading d(state_out) and the saved state_in
            out += [
                base_bwd(spec, t, e),
                Cost(
                    2 * t * chain_flops + 2 * t * m,
                    2 * a * params,
                    2 * a * params + e * t * (2 * chain_elems + 2 * m + 3 * n),
                ),
            ]
        return out

    fused = provider in ("tt_triton", "tt_cuda")
    fwd_impl = e * t * n if fused else e * t * (n + 6 * m) + a * t * r  # fused: the pre-pass re-reads x
    out = [fwd, Cost(extra_flops, factors + a * t * r, factors + a * t * r + fwd_impl)]
    if train:
        bwd_flops = 4 * t * r * (n + m) + (0 if provider.startswith("peft") else 2 * factor_contraction_flops(spec))
        bwd_min = 2 * factors + a * t * r  # read A, B; write dA, dB; read z
        bwd_impl = e * t * (n + m) if fused else e * t * (5 * n + 4 * m)
        out += [base_bwd(spec, t, e), Cost(bwd_flops, bwd_min, bwd_min + bwd_impl)]
    return out


def cost(provider: str, mode: str, spec: LayerSpec, t: int, e: int) -> Cost:
    """Total flops and bytes of one pass (mode fwd | train | merged) with T = t and e-byte activations."""
    total = Cost(0.0, 0.0, 0.0)
    for stage in stages(provider, mode, spec, t, e):
        total = total + stage
    return total


def floors(
    provider: str, mode: str, spec: LayerSpec, t: int, e: int, bandwidth: float, peak_flops: float
) -> tuple[float, float]:
    """(floor, implementation floor) in seconds.

    floor: the whole pass as one perfectly overlapped kernel, max(Σ flops / peak, Σ bytes_min / bandwidth).
    implementation floor: stages run one after another (separate kernels do not overlap), each at
    max(flops / peak, bytes_impl / bandwidth) -- the model of perf-notes §3.3 (PEFT r=8 fwd ≈ 1.46x base at 4096²).
    """
    parts = stages(provider, mode, spec, t, e)
    total = cost(provider, mode, spec, t, e)
    lo = max(total.flops / peak_flops, total.bytes_min / bandwidth)
    impl = sum(max(s.flops / peak_flops, s.bytes_impl / bandwidth) for s in parts)
    return lo, impl


def floor_info(
    provider: str, mode: str, spec: LayerSpec, t: int, e: int, bandwidth: float | None, peak_flops: float | None
) -> dict:
    """extra_info entries: flops, bytes and (when the rates are known) both floors in microseconds."""
    c = cost(provider, mode, spec, t, e)
    info = {"flops": c.flops, "bytes_min": c.bytes_min, "bytes_impl": c.bytes_impl}
    if bandwidth and peak_flops:
        lo, impl = floors(provider, mode, spec, t, e, bandwidth, peak_flops)
        info.update(floor_us=lo * 1e6, floor_impl_us=impl * 1e6)
    return info


def perf_notes_check() -> dict:
    """perf-notes §3.1: flops per token of the einsum chain at 4096x4096 [16]*6 r5 is 109,120 (a self-test)."""
    from .shapes import SHAPES

    flops, _ = einsum_chain(SHAPES["llama.q-4096"])
    return {"einsum_flops_per_token_4096": flops, "expected": 109_120, "ok": math.isclose(flops, 109_120)}
