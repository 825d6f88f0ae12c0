"""Triton backend kernels vs a float64 oracle (CPU: under TRITON_INTERPRET=1; CUDA: compiled kernels).

Every launcher of ``ttkernels.ops.triton`` is checked on random, never-zero data: linear_fwd (y, z), adapter_fwd
(both z paths), linear_bwd (dx, dA, dB; with and without a weight; partial requests), over odd shapes smaller and
larger than one block, T = 1, ranks 1..16, fp32/bf16/fp16, bias or none. Low-precision results must also be within
2x (+ a small atol) of the torch backend's error in the same dtype, both measured against float64.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported anywhere

pytest.importorskip("triton", reason="triton is not installed")

import triton
import triton.language as tl

import ttkernels.ops.triton as tb
from ttkernels.ops import torch_backend
from ttkernels.ops.triton import configs, kernels
from ttkernels.ops.triton.kernels import _round_to_tf32

if tb.available() is not None:
    pytest.skip(f"triton backend unavailable: {tb.available()}", allow_module_level=True)
if kernels.BUILT_FOR_INTERPRETER:
    DEVICE = "cpu"
elif torch.cuda.is_available():
    DEVICE = "cuda"
else:
    pytest.skip("triton kernels were defined without TRITON_INTERPRET=1 and there is no GPU", allow_module_level=True)

#: (atol, rtol): atol relative to the reference's max |value|, rtol per element.
TOL = {
    torch.float32: (2e-5, 1e-4),
    torch.bfloat16: (1.2e-2, 2e-2),
    torch.float16: (2e-3, 4e-3),
}
#: Extra slack (relative to the reference scale) when comparing against 2x the torch backend's error.
VS_TORCH_ATOL = {torch.bfloat16: 2e-3, torch.float16: 3e-4}

DTYPES = [torch.float32, torch.bfloat16, torch.float16]

# (T, n, m, R): T = 1 (decode), sizes under one 16-block, odd sizes across interpreter blocks (64/128), K tails,
# ranks 1..16 plus two beyond (24, and the limit 64).
SHAPES = [
    (1, 16, 16, 1),
    (1, 45, 70, 5),
    (5, 8, 12, 2),
    (37, 45, 70, 5),
    (64, 33, 17, 8),
    (7, 200, 24, 3),
    (130, 96, 150, 16),
    (100, 150, 90, 11),
    (3, 130, 257, 13),
    (70, 40, 36, 24),  # R > 16 with T > 64: z / g from the skinny pre-pass by default
    (9, 40, 36, 64),  # the rank design limit
]
SMALL_BLOCKS = dict(
    fused=dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=16, GROUP_M=2), skinny=dict(BLOCK_P=16, BLOCK_K=16, SPLIT=3)
)


def _ids(shape: tuple[int, int, int, int]) -> str:
    return "T{}-n{}-m{}-R{}".format(*shape)


def _data(T: int, n: int, m: int, R: int, dtype: torch.dtype, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 7 * T + 13 * n + 17 * m + R)

    def rnd(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float32) * scale

    return {
        "x": rnd(T, n).to(dtype).to(DEVICE),
        "weight": rnd(m, n, scale=n**-0.5).to(dtype).to(DEVICE),
        "bias": rnd(m).to(dtype).to(DEVICE),
        "A": rnd(R, n, scale=n**-0.5).to(DEVICE),  # fp32 factors, entries O(1/sqrt(n)) like real TT factors
        "B": rnd(m, R, scale=R**-0.5).to(DEVICE),
        "base_out": rnd(T, m).to(dtype).to(DEVICE),
        "dy": rnd(T, m).to(dtype).to(DEVICE),
    }


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().double().cpu()


def _err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((_f64(actual) - expected).abs().max())


def _check(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    assert tuple(actual.shape) == tuple(expected.shape), (
        f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    )
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    atol, rtol = TOL[dtype]
    got = _f64(actual)
    scale = float(expected.abs().max().clamp_min(1e-12))
    err = (got - expected).abs()
    bad = err > atol * scale + rtol * expected.abs()
    if bad.any():
        idx = tuple(torch.nonzero(bad)[0].tolist())
        raise AssertionError(
            f"{what} ({dtype}): {int(bad.sum())}/{bad.numel()} out of tolerance, max err {float(err.max()):.3e} "
            f"(scale {scale:.3e}); first at {idx}: got {float(got[idx]):.6e}, want {float(expected[idx]):.6e}"
        )


def _check_vs_torch(actual: torch.Tensor, reference: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype,
                    what: str) -> None:  # fmt: skip
    """Low precision: kernel error <= 2 x torch-backend error + small atol (both against float64)."""
    if dtype == torch.float32:
        return
    scale = float(expected.abs().max().clamp_min(1e-12))
    ours, theirs = _err(actual, expected), _err(reference, expected)
    bound = 2.0 * theirs + VS_TORCH_ATOL[dtype] * scale
    assert ours <= bound, f"{what} ({dtype}): error {ours:.3e} > 2 x torch backend error {theirs:.3e} + atol"


def _oracle_fwd(d: dict[str, torch.Tensor], alpha: float, with_bias: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x, A, B = _f64(d["x"]), _f64(d["A"]), _f64(d["B"])
    z = x @ A.T
    y = x @ _f64(d["weight"]).T + alpha * z @ B.T
    if with_bias:
        y = y + _f64(d["bias"])
    return y, z


# --------------------------------------------------------------------------------------------------- forward
@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
def test_linear_fwd(shape, dtype, with_bias):
    d = _data(*shape, dtype)
    alpha = 0.75
    bias = d["bias"] if with_bias else None
    y, z = tb.linear_fwd(d["x"], d["weight"], bias, d["A"], d["B"], alpha)
    assert y.dtype == dtype and z.dtype == torch.float32
    y_ref, z_ref = _oracle_fwd(d, alpha, with_bias)
    _check(y, y_ref, dtype, "y")
    _check(z, z_ref, dtype, "z")
    y_t, z_t = torch_backend.linear_fwd(d["x"], d["weight"], bias, d["A"], d["B"], alpha)
    _check_vs_torch(y, y_t, y_ref, dtype, "y")
    _check_vs_torch(z, z_t, z_ref, dtype, "z")


@pytest.mark.parametrize("shape", [(1, 45, 70, 5), (37, 45, 70, 5), (130, 40, 33, 16)], ids=_ids)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("z_in_loop", [True, False], ids=["z_in_loop", "z_prepass"])
def test_linear_fwd_small_blocks(shape, dtype, z_in_loop):
    """Many tiles, grouped ordering, K loop with a tail, both z designs."""
    d = _data(*shape, dtype, seed=1)
    with configs.force(**SMALL_BLOCKS, z_in_loop=z_in_loop):
        y, z = tb.linear_fwd(d["x"], d["weight"], d["bias"], d["A"], d["B"], -1.25)
    y_ref, z_ref = _oracle_fwd(d, -1.25, True)
    _check(y, y_ref, dtype, "y")
    _check(z, z_ref, dtype, "z")


def test_linear_fwd_noncontiguous_inputs():
    d = _data(37, 45, 70, 5, torch.float32)
    x_t = d["x"].t().contiguous().t()  # column-major x
    w_t = d["weight"].t().contiguous().t()
    big = torch.randn(37, 90, device=DEVICE)[:, ::2]  # no unit stride: copied by the launcher
    big.copy_(d["x"])
    y_ref, z_ref = _oracle_fwd(d, 0.5, True)
    for x in (x_t, big):
        y, z = tb.linear_fwd(x, w_t, d["bias"], d["A"], d["B"], 0.5)
        _check(y, y_ref, torch.float32, "y")
        _check(z, z_ref, torch.float32, "z")


# ------------------------------------------------------------------------------------------------ adapter
@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_adapter_fwd(shape, dtype):
    d = _data(*shape, dtype)
    alpha = 1.5
    y, z = tb.adapter_fwd(d["x"], d["base_out"], d["A"], d["B"], alpha)
    assert y.dtype == dtype and z.dtype == torch.float32
    z_ref = _f64(d["x"]) @ _f64(d["A"]).T
    y_ref = _f64(d["base_out"]) + alpha * z_ref @ _f64(d["B"]).T
    _check(y, y_ref, dtype, "y")
    _check(z, z_ref, dtype, "z")
    y_t, z_t = torch_backend.adapter_fwd(d["x"], d["base_out"], d["A"], d["B"], alpha)
    _check_vs_torch(y, y_t, y_ref, dtype, "y")
    _check_vs_torch(z, z_t, z_ref, dtype, "z")


@pytest.mark.parametrize("z_in_loop", [True, False], ids=["z_in_loop", "z_prepass"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_adapter_fwd_small_blocks(z_in_loop, dtype):
    d = _data(50, 70, 40, 7, dtype, seed=2)
    with configs.force(**SMALL_BLOCKS, z_in_loop=z_in_loop):
        y, z = tb.adapter_fwd(d["x"], d["base_out"], d["A"], d["B"], 0.5)
    z_ref = _f64(d["x"]) @ _f64(d["A"]).T
    _check(y, _f64(d["base_out"]) + 0.5 * z_ref @ _f64(d["B"]).T, dtype, "y")
    _check(z, z_ref, dtype, "z")


# ----------------------------------------------------------------------------------------------- backward
def _oracle_bwd(d: dict[str, torch.Tensor], z: torch.Tensor, alpha: float, with_weight: bool):
    dy, x, A, B = _f64(d["dy"]), _f64(d["x"]), _f64(d["A"]), _f64(d["B"])
    g = dy @ B
    dx = alpha * g @ A
    if with_weight:
        dx = dx + dy @ _f64(d["weight"])
    return dx, alpha * g.T @ x, alpha * dy.T @ _f64(z)


@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("with_weight", [True, False], ids=["weight", "noweight"])
def test_linear_bwd(shape, dtype, with_weight):
    d = _data(*shape, dtype)
    alpha = 0.75
    z = (d["x"].float() @ d["A"].T).contiguous()  # what the forward saved (fp32)
    weight = d["weight"] if with_weight else None
    dx, dA, dB = tb.linear_bwd(d["dy"], d["x"], z, weight, d["A"], d["B"], alpha, True, True, True)
    assert dx.dtype == dtype and dA.dtype == d["A"].dtype and dB.dtype == d["B"].dtype
    dx_ref, dA_ref, dB_ref = _oracle_bwd(d, z, alpha, with_weight)
    _check(dx, dx_ref, dtype, "dx")
    _check(dA, dA_ref, dtype, "dA")
    _check(dB, dB_ref, dtype, "dB")
    ref = torch_backend.linear_bwd(d["dy"], d["x"], z, weight, d["A"], d["B"], alpha, True, True, True)
    for name, ours, theirs, exp in zip(("dx", "dA", "dB"), (dx, dA, dB), ref, (dx_ref, dA_ref, dB_ref), strict=True):
        _check_vs_torch(ours, theirs, exp, dtype, name)


@pytest.mark.parametrize("with_weight", [True, False], ids=["weight", "noweight"])
@pytest.mark.parametrize("z_in_loop", [True, False], ids=["g_in_loop", "g_prepass"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_linear_bwd_small_blocks(with_weight, z_in_loop, dtype):
    """Many tiles for dx; split-K partial sums (SPLIT=3) for dA/dB; both g designs for the weight-less dx."""
    d = _data(70, 40, 50, 6, dtype, seed=3)
    z = d["x"].float() @ d["A"].T
    weight = d["weight"] if with_weight else None
    with configs.force(**SMALL_BLOCKS, z_in_loop=z_in_loop):
        dx, dA, dB = tb.linear_bwd(d["dy"], d["x"], z, weight, d["A"], d["B"], 2.0, True, True, True)
    dx_ref, dA_ref, dB_ref = _oracle_bwd(d, z, 2.0, with_weight)
    _check(dx, dx_ref, dtype, "dx")
    _check(dA, dA_ref, dtype, "dA")
    _check(dB, dB_ref, dtype, "dB")


@pytest.mark.parametrize(
    "need",
    [(True, False, False), (False, True, False), (False, False, True), (False, True, True), (True, True, False)],
)
def test_linear_bwd_partial_requests(need):
    d = _data(21, 30, 26, 4, torch.float32)
    z = d["x"] @ d["A"].T
    got = tb.linear_bwd(d["dy"], d["x"], z, d["weight"], d["A"], d["B"], 0.5, *need)
    refs = _oracle_bwd(d, z, 0.5, True)
    for name, wanted, out, ref in zip(("dx", "dA", "dB"), need, got, refs, strict=True):
        if wanted:
            _check(out, ref, torch.float32, name)
        else:
            assert out is None, f"{name} was not requested but returned"


def test_empty_token_batch():
    d = _data(0, 12, 10, 3, torch.float32)
    y, z = tb.linear_fwd(d["x"], d["weight"], d["bias"], d["A"], d["B"], 1.0)
    assert y.shape == (0, 10) and z.shape == (0, 3)
    dx, dA, dB = tb.linear_bwd(d["dy"], d["x"], z, d["weight"], d["A"], d["B"], 1.0, True, True, True)
    assert dx.shape == (0, 12)
    assert torch.equal(dA, torch.zeros_like(dA)) and torch.equal(dB, torch.zeros_like(dB))


# ---------------------------------------------------------------------------------------- contract / reasons
def test_available():
    assert tb.NAME == "triton"
    assert tb.available() is None


def _meta(dtype=torch.float32, R=4, device="cpu"):
    x = torch.empty(3, 8, dtype=dtype, device=device)
    return x, torch.empty(R, 8, device=device), torch.empty(6, R, device=device), None


def test_not_supported_reasons_cpu_without_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    reasons = tb.not_supported_reasons(*_meta())
    assert "CPU tensors need TRITON_INTERPRET=1" in reasons


def test_not_supported_reasons_dtype_and_rank(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    dev = DEVICE
    reasons = tb.not_supported_reasons(*_meta(torch.float64, device=dev))
    assert any("float64" in r for r in reasons), reasons
    x, A, B, _ = _meta(device=dev)
    assert any("float64" in r and "bias" in r for r in tb.not_supported_reasons(x, A, B, x.new_empty(6).double()))
    reasons = tb.not_supported_reasons(*_meta(R=configs.MAX_RANK + 1, device=dev))
    assert any("rank" in r for r in reasons), reasons
    assert tb.not_supported_reasons(*_meta(R=configs.MAX_RANK, device=dev)) == []
    for dtype in DTYPES:
        assert tb.not_supported_reasons(*_meta(dtype, device=dev)) == []


def test_import_without_triton(monkeypatch):
    """The package imports without triton; available() and not_supported_reasons() give the reason."""
    monkeypatch.setitem(sys.modules, "triton", None)
    pkg_dir = Path(tb.__file__).parent
    spec = importlib.util.spec_from_file_location(
        "_ttk_triton_probe", pkg_dir / "__init__.py", submodule_search_locations=[str(pkg_dir)]
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.available() == "triton is not installed"
    assert module.not_supported_reasons(*_meta()) == ["triton is not installed"]
    with pytest.raises(RuntimeError, match="triton is not installed"):
        module.linear_fwd(*(None,) * 6)


# -------------------------------------------------------------------------------------------- GPU configs
@pytest.mark.parametrize("hopper", [True, False], ids=["hopper", "other"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
@pytest.mark.parametrize("rank", [5, 64])
def test_autotune_prune_keeps_fitting_configs(monkeypatch, hopper, dtype, rank):
    """The GPU config lists prune to >= 1 config that fits shared memory, for decode and prefill buckets."""
    smem = 227 * 1024 if hopper else 99 * 1024
    monkeypatch.setattr(configs, "device_facts", lambda device: ((9 if hopper else 8, 0), 132, smem))
    x = torch.empty(1, 1, dtype=dtype)
    rpad = configs.r_pad(rank)
    for T in (1, 16, 33, 64, 65, 4096, 65536):
        bucket = configs.token_bucket(T)
        decode = T <= configs.DECODE_MAX_TOKENS
        cfgs = configs.decode_autotune_configs(hopper) if decode else configs.fused_autotune_configs(hopper)
        for has_w, z_in_loop in ((True, True), (True, False), (False, True), (False, False)):
            flags = dict(R_PAD=rpad, HAS_W=has_w, Z_IN_LOOP=z_in_loop)
            kept = configs.prune_fused(cfgs, {"x_ptr": x, "T_BUCKET": bucket}, **flags)
            assert kept, (T, has_w, z_in_loop)
            for cfg in kept:
                if decode:
                    assert cfg.kwargs["BLOCK_M"] == max(16, bucket)
                if has_w or z_in_loop:
                    assert configs._fused_smem(cfg, x.element_size(), rpad, z_in_loop) <= smem
    for P, k_contiguous in ((64, True), (4096, True), (4096, False)):
        block_p = configs.skinny_block_p(P, k_contiguous)
        kept = configs.prune_skinny(configs.skinny_autotune_configs(hopper), {"l_ptr": x}, BLOCK_P=block_p, R_PAD=rpad)
        assert kept
        for cfg in kept:
            assert cfg.num_stages * cfg.kwargs["BLOCK_K"] * (block_p * x.element_size() + rpad * 4) <= smem


@pytest.mark.parametrize("value, tunes", [("0", False), ("off", False), ("1", True), (None, True)])
def test_autotune_env_switch_keeps_first_fitting_config(monkeypatch, value, tunes):
    """TTKERNELS_TRITON_AUTOTUNE=0 (GPU test runs) keeps exactly the first config the prune would have kept."""
    monkeypatch.setattr(configs, "device_facts", lambda device: ((9, 0), 132, 227 * 1024))
    x = torch.empty(1, 1, dtype=torch.bfloat16)
    monkeypatch.delenv(configs.AUTOTUNE_ENV, raising=False)
    fused_args = ({"x_ptr": x, "T_BUCKET": 4096}, {"R_PAD": 16, "HAS_W": True, "Z_IN_LOOP": True})
    full = configs.prune_fused(configs.fused_autotune_configs(True), fused_args[0], **fused_args[1])
    skinny_full = configs.prune_skinny(configs.skinny_autotune_configs(True), {"l_ptr": x}, BLOCK_P=64, R_PAD=16)
    assert len(full) > 1 and len(skinny_full) > 1
    if value is not None:
        monkeypatch.setenv(configs.AUTOTUNE_ENV, value)
    kept = configs.prune_fused(configs.fused_autotune_configs(True), fused_args[0], **fused_args[1])
    skinny = configs.prune_skinny(configs.skinny_autotune_configs(True), {"l_ptr": x}, BLOCK_P=64, R_PAD=16)
    assert configs.autotune_enabled() is tunes
    if tunes:
        assert [c.kwargs for c in kept] == [c.kwargs for c in full] and len(skinny) == len(skinny_full)
    else:
        assert [c.kwargs for c in kept] == [full[0].kwargs] and [c.kwargs for c in skinny] == [skinny_full[0].kwargs]


def test_autotune_env_switch_rejects_other_values(monkeypatch):
    monkeypatch.setenv(configs.AUTOTUNE_ENV, "fast")
    with pytest.raises(ValueError, match="TTKERNELS_TRITON_AUTOTUNE='fast' is not a boolean"):
        configs.autotune_enabled()


def test_bwd_g_in_loop_switch_is_read_where_it_is_used(monkeypatch):
    monkeypatch.delenv(configs.BWD_G_IN_LOOP_ENV, raising=False)
    assert configs.bwd_g_in_loop_enabled()  # on by default
    assert configs.bwd_g_in_loop(16, 5, True) == configs.linear_z_in_loop(16, 5)
    monkeypatch.setenv(configs.BWD_G_IN_LOOP_ENV, "0")
    assert not configs.bwd_g_in_loop(16, 5, True) and not configs.bwd_g_in_loop(16, 5, False)
    with configs.force(z_in_loop=True):  # tests force a design whatever the switch says
        assert configs.bwd_g_in_loop(16, 5, True)
    monkeypatch.setenv(configs.BWD_G_IN_LOOP_ENV, "sometimes")
    with pytest.raises(ValueError, match="TTKERNELS_BWD_G_IN_LOOP='sometimes' is not a boolean"):
        configs.bwd_g_in_loop(16, 5, True)


def test_skinny_split_heuristic(monkeypatch):
    monkeypatch.setattr(configs, "device_facts", lambda device: ((9, 0), 132, 227 * 1024))
    cuda = torch.device("cuda", 0)
    assert configs.skinny_split(4096, 8192, 128, cuda) > 1  # dB at T = 8192: 32 row tiles -> split K = T
    assert configs.skinny_split(8192, 64, 128, cuda) == 1  # short K: never split
    assert configs.skinny_split(4096, 8192, 128, torch.device("cpu")) == 1


def test_kernels_compile_for_hopper():
    """The GPU code path (native bf16 tl.dot, casts, pipelining) compiles for sm_90 and uses wgmma; no GPU needed."""
    ptxas = Path(importlib.util.find_spec("triton").origin).parent / "backends" / "nvidia" / "bin" / "ptxas"
    if not ptxas.exists():
        pytest.skip("triton's bundled ptxas is missing")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = Path(tb.__file__).resolve().parents[3]
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "ttkernels.ops.triton.aot_check", "90"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    big_tiles = [line for line in lines if line.startswith(("fwd", "dx", "skinny"))]
    assert big_tiles and all("'wgmma': 0," not in line for line in big_tiles), proc.stdout
    assert all("'stack': 0" in line for line in lines), f"register spills:\n{proc.stdout}"


# ------------------------------------------------------------------------------------------ TF32 rounding
@triton.jit
def _round_kernel(x_ptr, out_ptr, N, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    tl.store(out_ptr + offs, _round_to_tf32(tl.load(x_ptr + offs, mask=mask)), mask=mask)


def test_round_to_tf32_is_round_to_nearest():
    """The epilogue's operand rounding (16-bit activations): nearest TF32, not the tensor cores' truncation."""
    g = torch.Generator().manual_seed(5)
    v = torch.randn(4096, generator=g) * torch.logspace(-20, 20, 4096)
    v[:4] = torch.tensor([1.0, -3.0, 1.0 + 2.0**-11, 1.0 + 2.0**-11 - 2.0**-23])  # exact, exact, tie, just below
    out = torch.empty_like(v)
    x_dev, out_dev = v.to(DEVICE), out.to(DEVICE)
    _round_kernel[(triton.cdiv(v.numel(), 1024),)](x_dev, out_dev, v.numel(), BLOCK=1024)
    out = out_dev.cpu()
    bits = out.view(torch.int32)
    assert int((bits & 0x1FFF).abs().sum()) == 0, "low 13 mantissa bits must be zero"
    rel = ((out.double() - v.double()).abs() / v.double().abs()).max()
    assert rel <= 2.0**-11, f"not nearest: relative error {float(rel):.3e} > 2^-11"
    trunc = (v.view(torch.int32) & ~0x1FFF).view(torch.float32)
    assert (out != trunc).any(), "identical to truncation on every input"
    assert out[:4].tolist() == [1.0, -3.0, 1.0 + 2.0**-10, 1.0]
