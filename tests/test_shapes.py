import math

import pytest
import torch
from paper_shapes import TABLE_III
from torch import nn

from ttkernels import TTLinear, TTShapeError, auto_shape, outer_shape
from ttkernels.shapes import (
    Boundary,
    balanced_factors,
    boundary_ranks,
    find_boundary,
    normalize_ranks,
    num_parameters,
    validate_shape,
)


@pytest.mark.parametrize(("mn", "shape"), TABLE_III, ids=[f"{m}x{n}-{s}" for (m, n), s in TABLE_III])
def test_table_iii_shapes_are_accepted(mn, shape):
    m, n = mn
    assert validate_shape(shape, m, n) == shape
    layer = TTLinear(nn.Linear(n, m, device="meta"), shape=shape, rank=2)
    assert layer.shape == shape
    assert sum(c.numel() for c in layer.cores) == num_parameters(shape, layer.ranks)


def test_which_table_iii_shapes_have_factors():
    # Shapes whose output modes end between modes, or inside a splittable mode, never form ΔW.
    assert find_boundary([64, 36, 12, 64], 2304) == Boundary(2)
    assert find_boundary([32, 12, 3, 4, 12, 32], 2304) == Boundary(3, (2, 2))
    assert find_boundary([12, 8, 8, 8, 8, 12], 768) == Boundary(3)
    assert find_boundary([16] * 6, 4096) == Boundary(3)
    assert find_boundary([16, 4, 4, 4, 2, 2, 2, 2, 4, 4, 4, 16], 4096) == Boundary(6)
    # Only the dense path exists for these.
    assert find_boundary([64, 16, 9, 64], 768) is None
    assert find_boundary([32, 16, 2, 3, 3, 3, 2, 32], 2304) is None


def test_llama_paper_parameter_count():
    assert num_parameters([16] * 6, normalize_ranks(5, 6)) == 1760


@pytest.mark.parametrize(
    ("m", "n", "expected"),
    [
        (4096, 4096, [16, 16, 16, 16, 16, 16]),
        (1024, 4096, [32, 32, 16, 16, 16]),
        (768, 768, [32, 24, 24, 32]),
        (2304, 768, [16, 12, 12, 24, 32]),
        (11008, 4096, [43, 16, 16, 16, 16, 16]),
        (576, 192, [24, 24, 12, 16]),
    ],
)
def test_auto_shape_rule(m, n, expected):
    shape = auto_shape(m, n)
    assert shape == expected
    assert math.prod(shape) == m * n
    assert find_boundary(shape, m) is not None


@pytest.mark.parametrize("x", [2, 7, 12, 97, 768, 1000, 4096, 14336, 11008, 50257])
def test_auto_shape_always_has_boundary(x):
    for m, n in [(x, 768), (768, x), (x, x)]:
        shape = auto_shape(m, n)
        assert math.prod(shape) == m * n
        boundary = find_boundary(shape, m)
        assert boundary is not None and boundary.split is None
        assert math.prod(shape[: boundary.p]) == m


@pytest.mark.parametrize(
    ("m", "n", "max_mode", "expected"),
    [
        (384, 384, 64, [64, 6, 6, 64]),
        (2304, 768, 64, [64, 36, 12, 64]),  # the paper's best DeBERTa shape (Table IV)
        (4096, 4096, 64, [64, 64, 64, 64]),
        (576, 192, 64, [64, 9, 3, 64]),
        (4096, 11008, 64, [64, 64, 4, 43, 64]),
        (384, 384, 32, [32, 12, 12, 32]),
        (131, 384, 64, [131, 6, 64]),  # a prime above max_mode stays whole
    ],
)
def test_outer_shape_rule(m, n, max_mode, expected):
    shape = outer_shape(m, n, max_mode)
    assert shape == expected
    assert math.prod(shape) == m * n
    boundary = find_boundary(shape, m)
    assert boundary is not None and math.prod(shape[: boundary.p]) == m


@pytest.mark.parametrize("x", [1, 2, 7, 97, 768, 1000, 14336, 50257])
def test_outer_shape_always_has_boundary(x):
    for m, n in [(x, 768), (768, x), (x, x)]:
        shape = outer_shape(m, n)
        assert math.prod(shape) == m * n
        boundary = find_boundary(shape, m)
        assert boundary is not None and math.prod(shape[: boundary.p]) == m


def test_outer_shape_rejects_a_tiny_max_mode():
    with pytest.raises(TTShapeError, match="max_mode"):
        outer_shape(384, 384, 1)


def test_boundary_ranks_put_R_on_the_in_out_bond():
    assert boundary_ranks([64, 6, 6, 64], 384, 2, 4) == [2, 4, 2]
    assert boundary_ranks([6, 4, 4, 4, 4, 4, 4, 6], 384, 2, 4) == [2, 2, 2, 4, 2, 2, 2]
    assert boundary_ranks([24, 16, 16, 24], 384, 3, 3) == [3, 3, 3]
    with pytest.raises(TTShapeError, match="boundary rank"):
        boundary_ranks([4, 8, 8], 16, 2, 4)  # 16 = 4 x (half of 8): the boundary falls inside the middle mode


def test_ttlinear_takes_a_boundary_rank_for_its_own_shape():
    base = nn.Linear(48, 48)
    assert TTLinear(base, shape=[16, 3, 3, 16], rank="2/4").ranks == [1, 2, 4, 2, 1]
    assert TTLinear(base, rank="2/4").ranks[1:-1] == boundary_ranks(auto_shape(48, 48), 48, 2, 4)
    assert TTLinear(base, shape=[16, 3, 3, 16], rank=[3, 3, 3]).ranks == [1, 3, 3, 3, 1]
    for bad in ("2/x", "0/4", "2/4/8"):
        with pytest.raises(TTShapeError, match=r"r/R|positive"):
            TTLinear(base, shape=[16, 3, 3, 16], rank=bad)


def test_balanced_factors_minimise_the_largest():
    assert balanced_factors(4096, 3) == (16, 16, 16)
    assert balanced_factors(768, 2) == (24, 32)
    assert balanced_factors(7, 2) is None


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(TTShapeError, match=r"product 4096 .* 64x128 .* m\*n = 8192"):
        validate_shape([64, 64], 64, 128)
    with pytest.raises(TTShapeError, match="at least 2"):
        validate_shape([8192], 64, 128)
    with pytest.raises(TTShapeError, match="must be an int"):
        validate_shape([64, 128.0], 64, 128)
    with pytest.raises(TTShapeError, match=">= 1"):
        validate_shape([-64, -128], 64, 128)


def test_bad_ranks_raise_clear_errors():
    with pytest.raises(TTShapeError, match="positive"):
        normalize_ranks(0, 4)
    with pytest.raises(TTShapeError, match="positive"):
        normalize_ranks([2, -1, 2], 4)
    with pytest.raises(TTShapeError, match="needs 3 inner ranks, got 2"):
        normalize_ranks([2, 2], 4)
    with pytest.raises(TTShapeError, match="must be an int"):
        normalize_ranks(True, 4)
    assert normalize_ranks([2, 3, 4], 4) == [1, 2, 3, 4, 1]


def test_layer_rejects_bad_shape_and_rank_early():
    base = nn.Linear(64, 32)
    with pytest.raises(TTShapeError, match="product"):
        TTLinear(base, shape=[8, 8, 8], rank=2)
    with pytest.raises(TTShapeError, match="positive"):
        TTLinear(base, shape=[8, 4, 8, 8], rank=0)
    assert torch.is_tensor(TTLinear(base, shape=[8, 4, 8, 8], rank=2).cores[0])
