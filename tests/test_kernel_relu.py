"""ReLU kernels: hand values, finite differences, cpu vs reference, shapes and errors.

Tolerances:
    backward vs finite differences, float64 ........ rel_error < 1e-7
    cpu vs reference, float32 and float64 .......... exact (max and a select compute nothing new)
"""
import numpy as np
import pytest

from kernels.cpu import relu as cpu
from kernels.reference import relu as ref
from rawcnn.engine.gradcheck import numeric_gradient, rel_error

OP = "relu"  # the fixture `tier` (tests/conftest.py) is this op's module in each tier
GRAD_TOL = 1e-7


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_hand_values(tier, dtype):
    x = np.array([[-1.5, 0.0, 2.0], [3.0, -0.5, 0.25]], dtype=dtype)
    y = tier.relu_forward(x)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, [[0, 0, 2], [3, 0, 0.25]])
    dx = tier.relu_backward(np.array([[1, 2, 3], [4, 5, 6]], dtype=dtype), y)
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx, [[0, 0, 3], [4, 0, 6]])  # slope 0 at x = 0
    assert np.isnan(tier.relu_forward(np.array([np.nan], dtype=dtype))[0])  # NaN is not hidden


# Finite differences check the reference; the cpu tier is checked against the reference below.
def test_relu_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 2.0, (2, 3, 4, 5)) * rng.choice([-1.0, 1.0], (2, 3, 4, 5))  # |x| >= 0.1: off the kink
    dy = rng.standard_normal(x.shape)
    dx = ref.relu_backward(dy, ref.relu_forward(x))
    dx_num, kinks = numeric_gradient(lambda: ref.relu_forward(x), x, dy)
    assert not kinks.any()
    assert rel_error(dx, dx_num) < GRAD_TOL


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (4, 33), (2, 3, 5, 6)])
def test_relu_cpu_matches_reference(dtype, shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(dtype)
    x.reshape(-1)[::5] = 0  # exact zeros: the kink must be treated alike
    dy = rng.standard_normal(shape).astype(dtype)
    y, y_ref = cpu.relu_forward(x), ref.relu_forward(x)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(cpu.relu_backward(dy, y), ref.relu_backward(dy, y_ref))


@pytest.mark.parametrize("shape", [(), (5,), (2, 7), (2, 3, 4, 5)])
def test_relu_shapes_and_errors(tier, shape):
    x = np.ones(shape, dtype=np.float32)
    assert tier.relu_forward(x).shape == shape
    assert tier.relu_backward(x, x).shape == shape
    assert tier.relu_forward(np.ones((4, 6), np.float32)[:, ::2]).shape == (4, 3)  # a strided view
    with pytest.raises(ValueError, match="dy"):
        tier.relu_backward(np.ones((2, 3)), np.ones((3, 2)))
