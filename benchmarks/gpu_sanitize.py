"""A short CUDA-backend workout for ``compute-sanitizer --tool memcheck`` (run by benchmarks/gpu_check.sh).

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 1 \\
        python -m benchmarks.gpu_sanitize [--backend cuda]

Forward and backward of TTLinear with the chosen backend on small, odd shapes (token counts 1, 37, 130; bias on and
off; fp32 and bf16), each compared with the torch backend. With the caching allocator off every tensor is its own
cudaMalloc, so an out-of-bounds access lands outside an allocation where memcheck sees it. Exit status 1 on a
mismatch, 2 when the backend cannot run.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import nn


def _run(backend: str, layer_args: dict, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
    import ttkernels

    torch.manual_seed(1)
    base = nn.Linear(layer_args["n"], layer_args["m"], bias=layer_args["bias"], device="cuda", dtype=x.dtype)
    layer = ttkernels.TTLinear(base, layer_args["shape"], layer_args["rank"], 8.0, init="gaussian", backend=backend)
    xx = x.clone().requires_grad_(True)
    y = layer(xx)
    y.backward(g)
    torch.cuda.synchronize()
    return (y.detach().float(), xx.grad.float(), *(c.grad.float() for c in layer.cores))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="cuda", choices=("cuda", "triton"))
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_sanitize: no CUDA device", file=sys.stderr)
        return 2
    from ttkernels.backends import backend_status

    reason = backend_status(args.backend)
    if reason is not None:
        print(f"gpu_sanitize: backend {args.backend!r} unavailable: {reason}", file=sys.stderr)
        return 2
    layers = [
        {"n": 768, "m": 768, "shape": [12, 8, 8, 8, 8, 12], "rank": 5, "bias": True},
        {"n": 200, "m": 96, "shape": [12, 8, 10, 20], "rank": 3, "bias": False},  # non-power-of-two modes
    ]
    worst = 0.0
    for spec in layers:
        for dtype in (torch.float32, torch.bfloat16):
            for tokens in (1, 37, 130):
                gen = torch.Generator(device="cuda").manual_seed(tokens)
                x = torch.randn(tokens, spec["n"], device="cuda", generator=gen).to(dtype)
                g = torch.randn(tokens, spec["m"], device="cuda", generator=gen).to(dtype)
                got = _run(args.backend, spec, x, g)
                ref = _run("torch", spec, x, g)
                for name, a, b in zip(("y", "dx", *(f"dcore{i}" for i in range(len(ref) - 2))), got, ref, strict=True):
                    err = float((a - b).norm() / b.norm().clamp_min(1e-30))
                    worst = max(worst, err)
                    tol = 2e-3 if dtype == torch.float32 else 3e-2  # fp32: allow a TF32-class kernel
                    if not err <= tol:
                        print(f"MISMATCH {args.backend} {spec['shape']} {dtype} T={tokens} {name}: rel err {err:.3g}")
                        return 1
    print(
        f"gpu_sanitize: backend {args.backend!r} matches torch on {len(layers) * 6} cases; worst rel err {worst:.3g}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
