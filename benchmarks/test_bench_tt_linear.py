"""TT-LoRA linear layer vs base F.linear, HF PEFT LoRA and the reference TT-LoRA methods, side by side.

One benchmark per (layer shape, token count T, mode, provider); ``benchmark.group = f"{shape}-T{T}-{mode}"`` so that
pytest-benchmark's table compares the providers of one workload. Modes:

``fwd``     forward with the adapter unmerged, under ``torch.no_grad()`` (inference without merging).
``train``   the training step of one layer: ``y = layer(x); y.backward(g)`` with a fixed random g; x requires grad
            (dx flows to the layer below), the base weight is frozen, adapter gradients are reset to None each call.
``merged``  forward after merging the adapter into W (``merge_adapter()`` for PEFT, ``TTLinear.merge()``).

Before timing, every provider's output (and dx in training) is checked against a float64 oracle of the same
function on the first tokens: a fast wrong method gets no number. ``extra_info`` carries parameters, adapter bytes,
peak memory of the pass, flops/bytes and the floor (see floor.py, harness.py).
"""

from __future__ import annotations

import itertools
import math
import os
import time
import zlib

import pytest
import torch

from .baselines import LABELS, MERGED_LABELS, Unavailable, make_inputs, prepare
from .floor import floor_info
from .harness import peak_memory, rotation_sets, sync
from .shapes import SHAPES

CHECK_TOKENS = 16
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-10}  # ‖y - ref‖ / ‖ref‖; low precision: 3e-2


def _rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    got, ref = got.detach().double(), ref.detach().double()
    if not torch.isfinite(got).all():
        return math.inf
    return float((got - ref).norm() / ref.norm().clamp_min(1e-30))


def _schedule(device: torch.device) -> tuple[int, int, int, float]:
    """(warm-up rounds, min rounds, max rounds, target seconds of timed calls per benchmark)."""
    target = float(os.environ.get("TTKERNELS_BENCH_TARGET_S", "0.15" if device.type == "cuda" else "1.0"))
    if device.type == "cuda":
        return 10, 20, 200, target
    return 2, 3, 100, target


def _make_step(mode: str, module: torch.nn.Module, trainable: list[torch.Tensor], device: torch.device):
    if mode == "train":

        def step(x: torch.Tensor, g: torch.Tensor) -> None:
            for p in trainable:
                p.grad = None
            x.grad = None
            module(x).backward(g)
            sync(device)

    else:

        def step(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                y = module(x)
            sync(device)
            return y

    return step


def _check(prep, mode: str, x: torch.Tensor, g: torch.Tensor, dtype: torch.dtype) -> dict:
    """Compare output (and dx in training) with the float64 oracle on the first CHECK_TOKENS tokens."""
    tol = TOLERANCE.get(dtype, 3e-2)
    xs = x[:CHECK_TOKENS].detach().clone().requires_grad_(mode == "train")
    gs = g[:CHECK_TOKENS]
    x64 = xs.detach().double().requires_grad_(mode == "train")
    ref = prep.reference(x64)
    if mode == "train":
        y = prep.module(xs)
        y.backward(gs)
        ref.backward(gs.double())
        for p in prep.trainable:
            p.grad = None
    else:
        with torch.no_grad():
            y = prep.module(xs)
    out = {"check_rel_err": _rel_err(y, ref), "check_tolerance": tol}
    if mode == "train":
        out["check_rel_err_dx"] = _rel_err(xs.grad, x64.grad)
    bad = {k: v for k, v in out.items() if k.startswith("check_rel") and not v <= tol}
    assert not bad, f"{prep.provider}: result differs from the float64 oracle: {bad} (tolerance {tol})"
    return out


def test_tt_linear(benchmark, bench_env, shape: str, tokens: int, mode: str, provider: str) -> None:
    env = bench_env
    device, dtype = env.device, env.dtype
    deadline = float(os.environ.get("TTKERNELS_BENCH_DEADLINE", "inf"))  # epoch seconds (gpu_check.sh sets it)
    if env.timing and time.time() > deadline:
        pytest.skip("time budget exhausted (TTKERNELS_BENCH_DEADLINE): not run")
    spec = SHAPES[shape]
    seed = zlib.crc32(shape.encode())
    try:
        prep = prepare(provider, spec, device, dtype, seed)
    except Unavailable as exc:
        pytest.skip(str(exc))

    elem = torch.empty(0, dtype=dtype).element_size()
    sets = rotation_sets(tokens * (spec.n + 2 * spec.m) * elem, device) if env.timing else 1
    inputs = make_inputs(spec, tokens, device, dtype, seed, sets)
    if mode == "merged":
        prep.merge()
    if mode == "train":
        for x, _ in inputs:
            x.requires_grad_(True)
    step = _make_step(mode, prep.module, prep.trainable, device)

    from ttkernels import BackendUnavailableError

    try:
        step(*inputs[0])  # first call: compiles/autotunes; a backend that cannot run these inputs says why
    except BackendUnavailableError as exc:
        pytest.skip(f"{provider}: {exc}")
    check = _check(prep, mode, *inputs[0], dtype)

    cycle = itertools.cycle(inputs)

    def setup():
        env.flush()
        x, g = next(cycle)
        sync(device)
        return (x, g), {}

    # Drop the gradients of the warm-up call first: freeing them inside the measured window would subtract
    # memory allocated before it and make the peak depend on what the previous call left behind.
    for p in prep.trainable:
        p.grad = None
    for x, _ in inputs:
        x.grad = None
    peak, mem_method = peak_memory(lambda: step(*inputs[0]), device)
    warmup, min_rounds, max_rounds, target = _schedule(device)
    rounds = 1
    if env.timing:
        started = time.perf_counter()
        for _ in range(warmup):
            args, _ = setup()
            step(*args)
            if time.perf_counter() - started > target / 2:  # slow calls: a few warm-ups are plenty
                break
        args, _ = setup()
        t0 = time.perf_counter()
        step(*args)
        once = time.perf_counter() - t0
        rounds = int(min(max_rounds, max(min_rounds, math.ceil(target / max(once, 1e-9)))))

    params = prep.params
    label = MERGED_LABELS.get(provider, LABELS[provider]) if mode == "merged" else LABELS[provider]
    benchmark.group = f"{shape}-T{tokens}-{mode}"
    benchmark.extra_info.update(
        provider=provider,
        label=label,
        method=prep.path,
        shape=shape,
        model=spec.model,
        tt_shape=list(spec.tt_shape),
        rank=spec.rank,
        n=spec.n,
        m=spec.m,
        tokens=tokens,
        mode=mode,
        dtype=str(dtype).removeprefix("torch."),
        device=device.type,
        card=env.card,
        params=params,
        adapter_bytes_16bit=2 * params,
        peak_mem_bytes=peak,
        mem_method=mem_method,
        rounds=rounds,
        warmup_rounds=warmup if env.timing else 0,
        rotation_sets=sets,
        l2_flush=device.type == "cuda",
        **check,
        **prep.info,
        **floor_info(
            provider,
            mode,
            spec,
            tokens,
            elem,
            env.rates and env.rates["bandwidth"],
            env.rates and env.rates["peak_flops"],
        ),
    )
    benchmark.pedantic(step, setup=setup, rounds=rounds, warmup_rounds=1 if env.timing else 0)
