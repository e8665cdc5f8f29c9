"""Dropout kernels: hand values, finite differences, cpu vs reference, shapes and errors.

Tolerances:
    backward vs finite differences, float64 ........ rel_error < 1e-7
    cpu vs reference, float32 and float64 .......... exact (the same draws, one product each)
"""
import numpy as np
import pytest

from kernels.cpu import dropout as cpu
from kernels.reference import dropout as ref
from rawcnn.engine.gradcheck import numeric_gradient, rel_error

OP = "dropout"  # the fixture `tier` (tests/conftest.py) is this op's module in each tier
GRAD_TOL = 1e-7


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_hand_values(tier, dtype):
    mask = np.array([2.0, 0.0, 2.0, 0.0], dtype=dtype)  # p = 0.5: kept values scaled by 1/(1-p) = 2
    y = tier.dropout_forward(np.array([1.0, 2.0, 3.0, 4.0], dtype=dtype), mask)
    np.testing.assert_array_equal(y, [2, 0, 6, 0])
    dx = tier.dropout_backward(np.array([0.5, 0.5, -1.0, 7.0], dtype=dtype), mask)
    np.testing.assert_array_equal(dx, [1, 0, -2, 0])
    assert y.dtype == dx.dtype == dtype
    # the mask keeps exactly where u >= p for the generator's own uniforms u
    u = np.random.default_rng(5).random((3, 4))
    mask = tier.dropout_mask((3, 4), p=0.25, rng=np.random.default_rng(5), dtype=dtype)
    assert mask.dtype == dtype
    np.testing.assert_array_equal(mask, np.where(u >= 0.25, dtype(4 / 3), 0))
    ones = tier.dropout_mask((5,), p=0.0, rng=np.random.default_rng(0), dtype=dtype)
    np.testing.assert_array_equal(ones, np.ones(5))


def test_dropout_mask_statistics_and_seeds(tier):
    mask = tier.dropout_mask((200, 500), p=0.5, rng=np.random.default_rng(0), dtype=np.float32)
    assert set(np.unique(mask)) == {0.0, 2.0}
    assert abs(np.mean(mask == 0) - 0.5) < 0.01  # 1e5 draws: the standard error is 0.0016
    assert abs(np.mean(mask) - 1.0) < 0.02  # inverted dropout keeps the expectation
    same = tier.dropout_mask((200, 500), p=0.5, rng=np.random.default_rng(0), dtype=np.float32)
    other = tier.dropout_mask((200, 500), p=0.5, rng=np.random.default_rng(1), dtype=np.float32)
    np.testing.assert_array_equal(mask, same)
    assert not np.array_equal(mask, other)


# Finite differences check the reference with one fixed mask drawn before the check (a new
# draw per evaluation would not be a function of x); the cpu tier is checked against it below.
def test_dropout_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 4, 5))
    mask = ref.dropout_mask(x.shape, p=0.3, rng=rng, dtype=np.float64)
    dx = ref.dropout_backward(dy, mask)
    dx_num, _ = numeric_gradient(lambda: ref.dropout_forward(x, mask), x, dy)
    assert rel_error(dx, dx_num) < GRAD_TOL


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, p", [((7,), 0.5), ((32, 100), 0.5), ((2, 3, 4, 5), 0.1)])
def test_dropout_cpu_matches_reference(dtype, shape, p):
    mask = cpu.dropout_mask(shape, p=p, rng=np.random.default_rng(2), dtype=dtype)
    mask_ref = ref.dropout_mask(shape, p=p, rng=np.random.default_rng(2), dtype=dtype)
    np.testing.assert_array_equal(mask, mask_ref)  # one seed, one mask, in every tier
    x = np.random.default_rng(3).standard_normal(shape).astype(dtype)
    np.testing.assert_array_equal(cpu.dropout_forward(x, mask), ref.dropout_forward(x, mask))
    np.testing.assert_array_equal(cpu.dropout_backward(x, mask), ref.dropout_backward(x, mask))


@pytest.mark.parametrize("shape", [(1,), (4, 9), (2, 3, 4, 5)])
def test_dropout_shapes_and_errors(tier, shape):
    rng = np.random.default_rng(0)
    mask = tier.dropout_mask(shape, p=0.5, rng=rng, dtype=np.float32)
    assert mask.shape == shape
    x = np.ones(shape, np.float32)
    assert tier.dropout_forward(x, mask).shape == tier.dropout_backward(x, mask).shape == shape
    for p in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            tier.dropout_mask(shape, p=p, rng=rng, dtype=np.float32)
    with pytest.raises(TypeError, match="Generator"):
        tier.dropout_mask(shape, p=0.5, rng=0, dtype=np.float32)
    with pytest.raises(ValueError, match="mask"):
        tier.dropout_forward(np.ones((2, 2), np.float32), np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="mask"):
        tier.dropout_backward(x, mask.astype(np.float64))
