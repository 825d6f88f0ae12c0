"""TTLinear against the float64 dense-ΔW oracle (independent contraction), gradients, init, merge, bad input."""

import logging
import math
import random
import re

import pytest
import torch
from torch import nn
from utils import TOLERANCES, assert_close_verbose, max_rel_err

import ttkernels
import ttkernels.utils
from ttkernels import TTLinear, TTShapeError
from ttkernels.ops import contract_factors, dense_delta_weight
from ttkernels.shapes import find_boundary


def _random_factors(x: int, count: int, rng: random.Random) -> list[int]:
    """Split x into `count` factors >= 2 (x must have at least `count` prime factors)."""
    primes, f, y = [], 2, x
    while y > 1:
        while y % f == 0:
            primes.append(f)
            y //= f
        f += 1
    rng.shuffle(primes)
    groups = [[p] for p in primes[:count]]
    for p in primes[count:]:
        rng.choice(groups).append(p)
    return [math.prod(g) for g in groups]


def random_case(seed: int) -> dict:
    """A random TT layer case: d in 2..12, sometimes a boundary inside a mode, random inner ranks."""
    rng = random.Random(seed)
    d_out, d_in = rng.randint(1, 6), rng.randint(1, 6)
    m = rng.choice([2**d_out * 3, 2**d_out * 5, 2 ** (d_out + 1), 2**d_out * 7])
    n = rng.choice([2**d_in * 3, 2 ** (d_in + 2), 2**d_in * 5])
    out_f, in_f = _random_factors(m, d_out, rng), _random_factors(n, d_in, rng)
    if rng.random() < 0.35 and len(out_f) + len(in_f) > 2:
        shape = [*out_f[:-1], out_f[-1] * in_f[0], *in_f[1:]]  # boundary inside a mode
    else:
        shape = out_f + in_f
    ranks = [rng.randint(1, 4) for _ in range(len(shape) - 1)]
    return {"m": m, "n": n, "shape": shape, "rank": ranks, "bias": rng.random() < 0.5, "seed": seed}


CASES = [random_case(s) for s in range(24)]
CASES += [
    {"m": 2304, "n": 768, "shape": [32, 12, 3, 4, 12, 32], "rank": 3, "bias": True, "seed": 100},
    {"m": 12, "n": 10, "shape": [12, 10], "rank": 3, "bias": False, "seed": 101},
    {"m": 8, "n": 8, "shape": [2] * 6, "rank": [1, 2, 3, 3, 2], "bias": True, "seed": 102},
    {"m": 64, "n": 64, "shape": [2] * 12, "rank": 2, "bias": True, "seed": 103},
    {"m": 12, "n": 20, "shape": [3, 8, 10], "rank": [2, 3], "bias": True, "seed": 104},  # split 8 = 4 (out) x 2 (in)
]
SMALL_CASES = [c for c in CASES if c["m"] * c["n"] <= 20_000]


def make_layer(case, dtype=torch.float32, core_dtype=torch.float32, init="gaussian", **kw) -> TTLinear:
    torch.manual_seed(case["seed"])
    base = nn.Linear(case["n"], case["m"], bias=case["bias"]).to(dtype)
    return TTLinear(base, shape=case["shape"], rank=case["rank"], alpha=1.7, init=init, dtype=core_dtype, **kw)


def oracle(layer: TTLinear, x: torch.Tensor, cores=None) -> torch.Tensor:
    """y in float64 from the dense ΔW built by the independent tensordot contraction."""
    cores = [c.double() for c in (cores if cores is not None else layer.cores)]
    W = layer.base_layer.weight.double() + layer.alpha * dense_delta_weight(cores, layer.m, layer.n)
    y = x.double() @ W.t()
    return y if layer.base_layer.bias is None else y + layer.base_layer.bias.double()


@pytest.mark.parametrize("case", CASES, ids=[f"{c['m']}x{c['n']}-{c['shape']}" for c in CASES])
def test_factors_multiply_to_delta_w(case):
    layer = make_layer(case, torch.float64, torch.float64)
    boundary = find_boundary(layer.shape, layer.m)
    if boundary is None:
        pytest.skip("shape has no boundary (dense path)")
    A, B = contract_factors(list(layer.cores), boundary)
    assert A.shape == (layer.factor_rank, layer.n) and B.shape == (layer.m, layer.factor_rank)
    torch.testing.assert_close(B @ A, dense_delta_weight(list(layer.cores), layer.m, layer.n), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case", CASES, ids=[f"{c['m']}x{c['n']}-{c['shape']}" for c in CASES])
def test_forward_and_grads_match_oracle(case, dtype):
    core_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    layer = make_layer(case, dtype, core_dtype)
    lead = [(1,), (2, 3), (5,)][case["seed"] % 3]  # 1 token, 3-D input, a few tokens
    x = torch.randn(*lead, layer.n, dtype=dtype, requires_grad=True)
    y = layer(x)
    assert y.dtype == dtype and y.shape == (*lead, layer.m)

    cores64 = [c.detach().double().requires_grad_(True) for c in layer.cores]
    x64 = x.detach().double().requires_grad_(True)
    y64 = oracle(layer, x64, cores64)
    assert_close_verbose(y, y64, dtype, "y")

    g = torch.randn_like(y64)
    (y.double() * g).sum().backward()
    (y64 * g).sum().backward()
    assert_close_verbose(x.grad, x64.grad, dtype, "dx", grad=True)
    for i, (c, c64) in enumerate(zip(layer.cores, cores64, strict=True)):
        assert_close_verbose(c.grad, c64.grad, dtype, f"dcore[{i}]", grad=True)
    assert layer.base_layer.weight.grad is None
    if layer.base_layer.bias is not None:
        assert layer.base_layer.bias.grad is None


@pytest.mark.parametrize("case", [*SMALL_CASES[::3], CASES[-1]], ids=lambda c: f"{c['m']}x{c['n']}-{c['shape']}")
def test_gradcheck_float64(case):
    layer = make_layer(case, torch.float64, torch.float64)
    x = torch.randn(3, layer.n, dtype=torch.float64, requires_grad=True)
    cores = list(layer.cores)
    names = [f"cores.{i}" for i in range(len(cores))]

    def functional(x, *cs):
        return torch.func.functional_call(layer, dict(zip(names, cs, strict=True)), (x,))

    inputs = (x, *[c.detach().clone().requires_grad_(True) for c in cores])
    assert torch.autograd.gradcheck(functional, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_low_precision_error_close_to_torch_matmul():
    case = {"m": 48, "n": 40, "shape": [6, 8, 8, 5], "rank": 4, "bias": True, "seed": 7}
    layer = make_layer(case, torch.bfloat16)
    x = torch.randn(16, 40, dtype=torch.bfloat16)
    ref = oracle(layer, x)
    dense_bf16 = (x @ (layer.base_layer.weight.double() + layer.alpha * layer.delta_weight(torch.float64))
                  .to(torch.bfloat16).t() + layer.base_layer.bias)
    assert max_rel_err(layer(x), ref) <= 2 * max_rel_err(dense_bf16, ref) + TOLERANCES[torch.bfloat16][0]


def test_zero_init_is_identity_and_all_cores_learn():
    torch.manual_seed(0)
    base = nn.Linear(32, 24)
    layer = TTLinear(base, shape=[4, 6, 4, 8], rank=3, alpha=2.0)
    assert torch.count_nonzero(layer.delta_weight()) == 0
    x = torch.randn(10, 32)
    assert torch.equal(layer(x), base(x))
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    target = torch.randn(10, 24)
    grads_seen = [False] * len(layer.cores)
    for _ in range(3):
        opt.zero_grad()
        ((layer(x) - target) ** 2).mean().backward()
        for i, c in enumerate(layer.cores):
            grads_seen[i] |= bool(c.grad.abs().sum() > 0)
        opt.step()
    assert all(grads_seen), grads_seen
    assert torch.count_nonzero(layer.delta_weight()) > 0


@pytest.mark.parametrize(
    "shape,rank", [([4, 6, 4, 8], 3), ([64, 6, 6, 64], [2, 4, 2]), ([2, 3, 4, 4, 2], [1, 5, 7, 2])]
)
def test_orthogonal_init_is_zero_start_with_orthogonal_unfoldings_at_the_gaussian_scale(shape, rank):
    m = math.prod(shape[: len(shape) // 2])
    n = math.prod(shape) // m
    torch.manual_seed(0)
    layer = TTLinear(nn.Linear(n, m), shape=shape, rank=rank, init="orthogonal")
    assert torch.count_nonzero(layer.delta_weight()) == 0
    for core in layer.cores[:-1]:
        r0, k, r1 = core.shape
        unfolding = core.detach().double().reshape(r0 * k, r1)
        gram = unfolding.T @ unfolding if r0 * k >= r1 else unfolding @ unfolding.T
        # orthogonal columns (or rows where the unfolding is wide), all of one length ...
        scale = gram.diagonal().mean().item()  # float32 cores: orthogonal to float32 rounding
        torch.testing.assert_close(gram, scale * torch.eye(gram.shape[0], dtype=torch.float64),
                                   rtol=0, atol=1e-5 * scale)
        # ... and the Frobenius norm² an N(0, 1/r1) core has in expectation
        assert unfolding.pow(2).sum().item() == pytest.approx(r0 * k, rel=1e-5)
    exact = TTLinear(nn.Linear(n, m).double(), shape=shape, rank=rank, init="orthogonal", dtype=torch.float64)
    for core in exact.cores[:-1]:  # float64 cores are drawn in float64: orthogonal to float64 rounding
        unfolding = core.detach().reshape(-1, core.shape[-1])
        gram = unfolding.T @ unfolding if unfolding.shape[0] >= unfolding.shape[1] else unfolding @ unfolding.T
        off = gram - torch.diag(gram.diagonal())
        assert off.abs().max() <= 1e-12 * gram.diagonal().max()
    torch.manual_seed(0)
    again = TTLinear(nn.Linear(n, m), shape=shape, rank=rank, init="orthogonal")
    assert all(torch.equal(a, b) for a, b in zip(layer.cores, again.cores, strict=True))
    # the first step moves the zero core, and every core learns after it
    x, target = torch.randn(6, n), torch.randn(6, m)
    opt = torch.optim.SGD(layer.parameters(), lr=0.05)
    for _ in range(3):
        opt.zero_grad()
        ((layer(x) - target) ** 2).mean().backward()
        opt.step()
    assert torch.count_nonzero(layer.delta_weight()) > 0


def test_cores_are_float32_whatever_the_base_dtype():
    layer = TTLinear(nn.Linear(16, 16).to(torch.bfloat16), shape=[4, 4, 4, 4], rank=2)
    assert all(c.dtype == torch.float32 for c in layer.cores)
    assert layer(torch.randn(3, 16, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_merge_unmerge_round_trip():
    case = {"m": 24, "n": 32, "shape": [4, 6, 4, 8], "rank": 3, "bias": True, "seed": 3}
    layer = make_layer(case)
    w0 = layer.base_layer.weight.detach().clone()
    x = torch.randn(7, 32)
    y = layer(x)
    layer.merge(safe_merge=True)
    assert layer.merged
    torch.testing.assert_close(layer(x), y, atol=1e-5, rtol=1e-5)
    layer.unmerge()
    torch.testing.assert_close(layer.base_layer.weight, w0, atol=1e-6, rtol=0)
    torch.testing.assert_close(layer(x), y, atol=1e-5, rtol=1e-5)


def test_safe_merge_refuses_non_finite():
    layer = make_layer({"m": 8, "n": 8, "shape": [8, 8], "rank": 2, "bias": False, "seed": 1})
    with torch.no_grad():
        layer.cores[0].fill_(float("nan"))
    w0 = layer.base_layer.weight.detach().clone()
    with pytest.raises(ValueError, match="NaN"):
        layer.merge(safe_merge=True)
    assert torch.equal(layer.base_layer.weight, w0) and not layer.merged


def test_unmerge_without_merge_warns(caplog):
    layer = make_layer({"m": 8, "n": 8, "shape": [8, 8], "rank": 2, "bias": False, "seed": 2})
    with caplog.at_level(logging.WARNING, logger="ttkernels"):
        layer.unmerge()
    assert "not merged" in caplog.text


def test_dense_path_warns_once_and_strict_refuses(caplog, monkeypatch):
    monkeypatch.setattr(ttkernels.utils, "_warned", set())  # another test file may have built this shape first
    base = nn.Linear(768, 768)
    with caplog.at_level(logging.WARNING, logger="ttkernels"):
        layer = TTLinear(base, shape=[64, 16, 9, 64], rank=2, init="gaussian")
    assert "dense ΔW (768x768" in caplog.text
    x = torch.randn(2, 768)
    assert_close_verbose(layer(x), oracle(layer, x), torch.float32, "dense path y")
    with pytest.raises(TTShapeError, match="strict=True"):
        TTLinear(base, shape=[64, 16, 9, 64], rank=2, strict=True)


@pytest.mark.parametrize("init", ["zero", "gaussian", "orthogonal"])
def test_init_scale_multiplies_every_initial_core(init):
    shape, rank = [4, 6, 4, 8], [3, 5, 2]
    torch.manual_seed(0)
    unit = TTLinear(nn.Linear(32, 24), shape=shape, rank=rank, init=init)
    torch.manual_seed(0)
    small = TTLinear(nn.Linear(32, 24), shape=shape, rank=rank, init=init, init_scale=0.05)
    assert small.init_scale == 0.05 and unit.init_scale == 1.0
    for a, b in zip(unit.cores, small.cores, strict=True):
        torch.testing.assert_close(b.detach(), 0.05 * a.detach(), rtol=1e-6, atol=0)
    assert torch.count_nonzero(small.cores[-1]) == (small.cores[-1].numel() if init == "gaussian" else 0)
    # reset_parameters takes the layer's scale, or the one it is given
    torch.manual_seed(1)
    small.reset_parameters(init)
    torch.manual_seed(1)
    unit.reset_parameters(init, init_scale=0.05)
    assert all(torch.equal(a, b) for a, b in zip(unit.cores, small.cores, strict=True))
    assert unit.init_scale == 1.0  # a one-off scale does not change the layer's


def test_init_scale_sets_the_gaussian_std():
    torch.manual_seed(0)
    layer = TTLinear(nn.Linear(64, 64), shape=[64, 64], rank=16, init="gaussian", init_scale=0.2)
    std = layer.cores[0].detach().std().item()  # 1024 draws of N(0, 0.2² / 16)
    assert std == pytest.approx(0.2 / 4, rel=0.1)


@pytest.mark.parametrize("bad", [0, -0.5, float("nan"), float("inf"), True, "0.1", None])
def test_bad_init_scale_is_refused_by_name(bad):
    with pytest.raises(ValueError, match=rf"init_scale must be a finite number > 0, got {re.escape(repr(bad))}"):
        TTLinear(nn.Linear(16, 8), shape=[8, 16], rank=2, init_scale=bad)
    with pytest.raises(ValueError, match="TTConfig: init_scale must be a finite number > 0"):
        ttkernels.TTConfig(init_scale=bad)
    if bad is not None:  # reset_parameters(init_scale=None) takes the layer's scale
        with pytest.raises(ValueError, match="init_scale must be a finite number > 0"):
            TTLinear(nn.Linear(16, 8), shape=[8, 16], rank=2).reset_parameters(init_scale=bad)


def test_bad_inputs_give_clear_errors():
    layer = TTLinear(nn.Linear(16, 8), shape=[8, 16], rank=2)
    with pytest.raises(ValueError, match="input has 12 features, the layer expects 16"):
        layer(torch.randn(2, 12))
    with pytest.raises(TypeError, match=r"float64 but the base weight is torch\.float32"):
        layer(torch.randn(2, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="alpha"):
        TTLinear(nn.Linear(16, 8), shape=[8, 16], rank=2, alpha=float("nan"))
    with pytest.raises(ValueError, match="init must be one of 'zero', 'gaussian', 'orthogonal', got 'xavier'"):
        TTLinear(nn.Linear(16, 8), shape=[8, 16], rank=2, init="xavier")
    with pytest.raises(ValueError, match="init must be one of 'zero', 'gaussian', 'orthogonal', got 'xavier'"):
        TTLinear(nn.Linear(16, 8), shape=[8, 16], rank=2).reset_parameters("xavier")
    with pytest.raises(TypeError, match="linear layers"):
        TTLinear(nn.Conv2d(3, 3, 3))
    with pytest.raises(ValueError, match="unknown backend"):
        TTLinear(nn.Linear(16, 8), backend="tpu")


def test_adapter_only_base_and_subclassed_linear():
    class ScaledLinear(nn.Linear):  # a wrapped base whose forward is not nn.Linear's
        def forward(self, x):
            return 2.0 * super().forward(x)

    base = ScaledLinear(20, 12)
    layer = TTLinear(base, shape=[12, 20], rank=3, init="gaussian")
    assert layer.kind == "adapter"
    x = torch.randn(4, 20, requires_grad=True)
    y = layer(x)
    expected = base(x.detach()).double() + layer.alpha * x.detach().double() @ layer.delta_weight(torch.float64).t()
    assert_close_verbose(y, expected, torch.float32, "adapter-only y")
    y.sum().backward()
    assert x.grad is not None and all(c.grad is not None for c in layer.cores)


def test_readme_worked_example():
    """README: a 4x6 layer, shape [2, 2, 2, 3], rank 2; row i = 2*i1 + i2, column j = 3*i3 + i4."""
    layer = TTLinear(nn.Linear(6, 4), shape=[2, 2, 2, 3], rank=2, init="gaussian", dtype=torch.float64)
    assert sum(c.numel() for c in layer.cores) == 26
    c1, c2, c3, c4 = layer.cores
    expected = c1[0, 1, :] @ c2[:, 1, :] @ c3[:, 1, :] @ c4[:, 1, 0]
    torch.testing.assert_close(layer.delta_weight()[3, 4], expected)
    A, B = layer.factors()
    torch.testing.assert_close((B @ A)[3, 4], expected)


def test_outputs_follow_core_updates_under_no_grad():
    layer = TTLinear(nn.Linear(16, 12), shape=[3, 4, 4, 4], rank=2, init="gaussian")
    x = torch.randn(2, 16)
    with torch.no_grad():
        y1 = layer(x)
        assert torch.equal(layer(x), y1)
        layer.cores[1].mul_(2.0)  # an in-place update (as an optimiser makes) must invalidate the cache
        y2 = layer(x)
    expected = oracle(layer, x)
    assert_close_verbose(y2, expected, torch.float32, "y after core update")
    assert not torch.allclose(y1, y2)
    layer.load_state_dict({k: v.clone() * 0.5 for k, v in layer.state_dict().items()})
    with torch.no_grad():
        assert_close_verbose(layer(x), oracle(layer, x), torch.float32, "y after load_state_dict")
        for c in layer.cores:
            c.data.mul_(3.0)  # .data edits do not bump the version counter: nothing may be cached on it
        assert_close_verbose(layer(x), oracle(layer, x), torch.float32, "y after .data edits")


def test_factors_stay_float32_under_autocast():
    layer = TTLinear(nn.Linear(32, 24), shape=[4, 6, 4, 8], rank=3, init="gaussian")
    x = torch.randn(5, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        A, B = layer.factors()
        assert A.dtype == B.dtype == torch.float32
        assert layer.delta_weight().dtype == torch.float32
        with torch.no_grad():
            layer(x)
    with torch.no_grad():  # an fp32 call after an autocast call is exact again
        assert_close_verbose(layer(x), oracle(layer, x), torch.float32, "fp32 y after autocast")


def test_float64_is_left_alone_by_autocast():
    layer = TTLinear(nn.Linear(16, 8).double(), shape=[8, 16], rank=2, init="gaussian", dtype=torch.float64)
    x = torch.randn(3, 16, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.float64
    assert_close_verbose(y, oracle(layer, x), torch.float64, "fp64 y under autocast")


def test_base_layer_hooks_and_forward_overrides_run():
    base = nn.Linear(16, 8)
    calls = []
    base.register_forward_pre_hook(lambda mod, args: calls.append("pre"))
    base.register_forward_hook(lambda mod, args, out: calls.append("post"))
    layer = TTLinear(base, shape=[8, 16], rank=2, init="gaussian")
    x = torch.randn(3, 16)
    assert_close_verbose(layer(x), oracle(layer, x), torch.float32, "hooked base y")
    assert calls == ["pre", "post"]

    other = nn.Linear(16, 8)
    other.forward = lambda inp: nn.functional.linear(inp, other.weight, other.bias) * 0  # instance-level override
    layer2 = TTLinear(other, shape=[8, 16], rank=2, init="gaussian")
    expected = layer2.alpha * x.double() @ layer2.delta_weight(torch.float64).t()
    assert_close_verbose(layer2(x), expected, torch.float32, "overridden base y")


def test_reinit_of_a_merged_layer_is_refused():
    layer = TTLinear(nn.Linear(16, 8), shape=[8, 16], rank=2, init="gaussian")
    layer.merge()
    with pytest.raises(RuntimeError, match="unmerge"):
        layer.reset_parameters()


def test_bias_dtype_mismatch_is_a_clear_error():
    base = nn.Linear(16, 8)
    base.bias.data = base.bias.data.double()
    layer = TTLinear(base, shape=[8, 16], rank=2)
    with pytest.raises(TypeError, match=r"bias is torch\.float64 but x is torch\.float32"):
        layer(torch.randn(2, 16))


@pytest.mark.parametrize("shape", [[8, 2, 2, 12], [8, 6, 8]], ids=["factors", "dense-path"])
def test_dropout_masks_only_the_tt_path_in_training(shape):
    torch.manual_seed(0)
    base = nn.Linear(24, 16, dtype=torch.float64)
    layer = TTLinear(base, shape=shape, rank=3, init="gaussian", dropout=0.5, dtype=torch.float64)
    x = torch.randn(5, 24, dtype=torch.float64)
    delta = layer.alpha * layer.delta_weight(torch.float64)

    torch.manual_seed(1)
    y = layer(x)
    torch.manual_seed(1)
    dropped = torch.nn.functional.dropout(x, 0.5, True)
    assert_close_verbose(y, base(x) + dropped @ delta.t(), torch.float64, "y with dropout")
    assert not torch.allclose(y, base(x) + x @ delta.t())  # the mask really applied
    y.sum().backward()
    assert all(c.grad is not None and c.grad.abs().sum() > 0 for c in layer.cores)

    layer.eval()  # no dropout at evaluation: the plain layer
    assert_close_verbose(layer(x), base(x) + x @ delta.t(), torch.float64, "y in eval")


def test_dropout_is_validated_and_reaches_every_patched_layer():
    for bad in (1.0, -0.1, True, "0.1"):
        with pytest.raises(ValueError, match="dropout must be a probability"):
            TTLinear(nn.Linear(16, 8), shape=[8, 16], rank=2, dropout=bad)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
    ttkernels.patch(model, targets=["0", "2"], rank=2, shape=[8, 8], dropout=0.1)
    layers = ttkernels.tt_layers(model)
    assert len(layers) == 2 and all(layer.dropout == 0.1 for layer in layers.values())
    assert "dropout=0.1" in repr(layers["0"])
    # saved configs name dropout only when it is set, so files without it stay readable by older versions
    assert "dropout" not in ttkernels.TTConfig().to_dict()
    assert ttkernels.TTConfig.from_dict(ttkernels.TTConfig(dropout=0.1).to_dict()).dropout == 0.1


def test_factors_follow_a_parametrized_core():
    """The fast core access falls back to ParameterList iteration when a parametrization moved a core."""
    from torch.nn.utils import parametrize

    class Double(nn.Module):
        def forward(self, core):
            return 2 * core

    torch.manual_seed(0)
    layer = TTLinear(nn.Linear(16, 8), shape=[4, 2, 4, 4], rank=2, init="gaussian")
    before = layer.delta_weight(torch.float64)
    parametrize.register_parametrization(layer.cores, "0", Double())
    torch.testing.assert_close(layer.delta_weight(torch.float64), 2 * before)
    x = torch.randn(3, 16)
    expected = layer.base_layer(x) + layer.alpha * x @ (2 * before).float().t()
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_core_order_survives_removing_a_parametrization():
    """remove_parametrizations re-inserts the core at the end of the ParameterList's dict: order by key."""
    from torch.nn.utils import parametrize

    class Identity(nn.Module):
        def forward(self, core):
            return core

    torch.manual_seed(0)
    layer = TTLinear(nn.Linear(16, 8), shape=[4, 2, 4, 4], rank=2, init="gaussian")
    before = layer.delta_weight(torch.float64)
    parametrize.register_parametrization(layer.cores, "0", Identity())
    parametrize.remove_parametrizations(layer.cores, "0")
    assert list(layer.cores._parameters) != [str(i) for i in range(4)]  # the situation this test is about
    torch.testing.assert_close(layer.delta_weight(torch.float64), before)
    x = torch.randn(3, 16)
    torch.testing.assert_close(layer(x), layer.base_layer(x) + layer.alpha * x @ before.float().t())
