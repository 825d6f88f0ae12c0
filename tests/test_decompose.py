"""TT-SVD (dense update -> cores) against the dense oracle, its error bound, and TTLinear.init_from_delta."""

import math

import pytest
import torch
from torch import nn

import ttkernels
from ttkernels import TTLinear, TTShapeError, tt_relative_error, tt_svd
from ttkernels.ops import dense_delta_weight
from ttkernels.shapes import normalize_ranks


def _random_tt(shape, ranks, seed=0):
    g = torch.Generator().manual_seed(seed)
    full = [1, *ranks, 1]
    return [torch.randn(full[i], k, full[i + 1], generator=g, dtype=torch.float64) for i, k in enumerate(shape)]


@pytest.mark.parametrize("m,n,shape,ranks", [
    (16, 24, [4, 4, 6, 4], [2, 3, 2]),
    (12, 20, [12, 20], [3]),
    (36, 36, [6, 36, 6], [2, 2]),  # the in/out boundary falls inside the middle mode
    (8, 8, [2, 2, 2, 2, 2, 2], [2, 4, 4, 4, 2]),
])
def test_exact_when_the_ranks_reach_the_tensor_ranks(m, n, shape, ranks):
    delta = dense_delta_weight(_random_tt(shape, ranks), m, n)
    cores = tt_svd(delta, shape, ranks)
    full = [1, *ranks, 1]
    assert [tuple(c.shape) for c in cores] == [(full[i], k, full[i + 1]) for i, k in enumerate(shape)]
    torch.testing.assert_close(dense_delta_weight(cores, m, n), delta, rtol=1e-10, atol=1e-10)
    assert tt_relative_error(delta, shape, ranks) < 1e-10


def test_truncation_error_is_within_the_tt_svd_bound_and_falls_with_rank():
    g = torch.Generator().manual_seed(1)
    delta = torch.randn(64, 48, generator=g, dtype=torch.float64)
    shape = [8, 8, 6, 8]
    errors = []
    for r in (1, 2, 4, 8):
        ranks = normalize_ranks(r, len(shape))
        err = tt_relative_error(delta, shape, r)
        # Oseledets' bound: ‖A − TT‖² ≤ Σ_k (dropped singular values of unfolding k)², unfoldings of A itself
        bound = 0.0
        for k in range(1, len(shape)):
            s = torch.linalg.svdvals(delta.reshape(math.prod(shape[:k]), -1))
            bound += (s[ranks[k]:] ** 2).sum().item()
        assert err <= math.sqrt(bound) / torch.linalg.norm(delta).item() + 1e-12
        errors.append(err)
    assert errors == sorted(errors, reverse=True) and errors[0] > errors[-1] + 0.1


def test_rank_one_matrix_and_boundary_rank_spec():
    u, v = torch.randn(24, dtype=torch.float64), torch.randn(24, dtype=torch.float64)
    delta = torch.outer(torch.kron(torch.randn(4, dtype=torch.float64), torch.randn(6, dtype=torch.float64)),
                        torch.kron(torch.randn(6, dtype=torch.float64), torch.randn(4, dtype=torch.float64)))
    assert tt_relative_error(delta, [4, 6, 6, 4], 1) < 1e-10  # Kronecker-structured rank 1: TT ranks all 1
    generic = torch.outer(u, v)  # a generic rank-1 update is not rank-1 in the 4x6 reshaping of u
    assert tt_relative_error(generic, [4, 6, 6, 4], "4/1") < 1e-10
    assert tt_relative_error(generic, [4, 6, 6, 4], "1/1") > 0.05
    cores = tt_svd(generic, [4, 6, 6, 4], "4/5")
    assert [c.shape[2] for c in cores[:-1]] == [4, 5, 4]
    torch.testing.assert_close(dense_delta_weight(cores, 24, 24), generic)


def test_ranks_above_what_an_unfolding_allows_are_zero_padded():
    delta = torch.randn(16, 16, dtype=torch.float64)
    cores = tt_svd(delta, [2, 8, 8, 2], [4, 16, 4])  # the first unfolding is 2 x 128 (rank 2), the last 128 x 2
    assert [tuple(c.shape) for c in cores] == [(1, 2, 4), (4, 8, 16), (16, 8, 4), (4, 2, 1)]
    assert cores[0][:, :, 2:].abs().max() == 0 and cores[2][:, :, 2:].abs().max() == 0  # the padded slices
    torch.testing.assert_close(dense_delta_weight(cores, 16, 16), delta)  # the TT ranks are 2, 16, 2: exact


def test_bad_inputs_are_refused():
    with pytest.raises(TTShapeError, match="product"):
        tt_svd(torch.zeros(8, 8), [4, 4, 2], 2)
    with pytest.raises(ValueError, match="rank"):
        tt_svd(torch.ones(8, 8), [8, 8], 0)
    with pytest.raises(ValueError, match="matrix"):
        tt_svd(torch.ones(8), [2, 4], 1)
    with pytest.raises(ValueError, match="norm"):
        tt_relative_error(torch.zeros(8, 8), [8, 8], 1)


def test_init_from_delta_reproduces_the_update_through_the_layer():
    torch.manual_seed(0)
    base = nn.Linear(24, 16, dtype=torch.float64)
    layer = TTLinear(base, shape=[4, 4, 4, 6], rank=[3, 8, 3], alpha=0.5, dtype=torch.float64)
    target = 0.5 * dense_delta_weight(_random_tt([4, 4, 4, 6], [3, 8, 3], seed=3), 16, 24)
    assert layer.init_from_delta(target) < 1e-10
    x = torch.randn(5, 24, dtype=torch.float64)
    torch.testing.assert_close(layer(x), base(x) + x @ target.t())
    # a lower-rank layer keeps what it can and says how much it lost
    small = TTLinear(nn.Linear(24, 16, dtype=torch.float64), shape=[4, 4, 4, 6], rank=1, dtype=torch.float64)
    err = small.init_from_delta(target)
    assert 0.05 < err < 1.0
    assert err == pytest.approx(tt_relative_error(target, [4, 4, 4, 6], 1))
    with pytest.raises(ValueError, match=r"delta is \(16, 16\)"):
        layer.init_from_delta(torch.zeros(16, 16))


def test_a_lora_update_compressed_into_a_patched_model():
    model = nn.Sequential(nn.Linear(32, 32))
    lora_b, lora_a = torch.randn(32, 2), torch.randn(2, 32)
    ttkernels.patch(model, targets=["0"], rank=[2, 4, 2], shape=[8, 4, 4, 8], alpha=1.0)
    err = ttkernels.tt_layers(model)["0"].init_from_delta(lora_b @ lora_a)
    assert err == pytest.approx(tt_relative_error(lora_b @ lora_a, [8, 4, 4, 8], [2, 4, 2]))
    assert 0.0 < err < 1.0


def test_relative_error_refuses_early():
    with pytest.raises(ValueError, match="matrix"):
        tt_relative_error(torch.ones(8), [2, 4], 1)
