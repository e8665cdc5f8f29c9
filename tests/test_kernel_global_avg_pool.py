"""Global average pooling kernels: hand values, finite differences, cpu vs reference, shapes, out= and errors.

Tolerances:
    backward vs finite differences, float64 ........ rel_error < 1e-7
    reference vs numpy.mean in float64 ............. rtol 1e-14 (the same sum in another order)
    cpu vs reference, float32 and float64 .......... exact (both add each plane in float64 in memory
                                                     order and round once; the backward is one
                                                     division in dy's dtype)
There is no PyTorch oracle for this op (tests/data/torch_oracles.npz predates it); the reference is
checked against numpy.mean and by hand instead.
"""
import re

import numba
import numpy as np
import pytest

import out_cases
from kernels.cpu import global_avg_pool as cpu
from kernels.reference import global_avg_pool as ref
from rawcnn.engine.gradcheck import numeric_gradient, rel_error

OP = "global_avg_pool"  # the fixture `tier` (tests/conftest.py) is this op's module in each tier
GRAD_TOL = 1e-7


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_avg_pool_hand_values(tier, dtype):
    # two images, two channels, 2x3 planes
    x = np.array([[[[1, 2, 3], [4, 5, 6]],        # mean 21/6 = 3.5
                   [[-1, 0, 1], [2, 2, 2]]],      # mean 6/6 = 1
                  [[[0, 0, 0], [0, 0, 6]],        # mean 1
                   [[-3, -3, -3], [-3, -3, -3]]]],  # mean -3
                 dtype=dtype)
    y = tier.global_avg_pool_forward(x)
    assert y.dtype == dtype and y.shape == (2, 2)
    np.testing.assert_array_equal(y, [[3.5, 1.0], [1.0, -3.0]])
    dx = tier.global_avg_pool_backward(np.array([[3, -6], [1.5, 0]], dtype=dtype), x_shape=x.shape)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_array_equal(dx[0, 0], np.full((2, 3), 0.5))   # 3 / 6 on every pixel
    np.testing.assert_array_equal(dx[0, 1], np.full((2, 3), -1.0))  # -6 / 6
    np.testing.assert_array_equal(dx[1, 0], np.full((2, 3), 0.25))  # 1.5 / 6
    np.testing.assert_array_equal(dx[1, 1], np.zeros((2, 3)))


def test_global_avg_pool_float32_adds_in_float64(tier):
    # 1e8 + 1 is 1e8 in float32 (spacing 8 there), so a float32 running sum gives (0 + 1)/4 = 0.25;
    # the float64 sum keeps both ones: (1e8 + 1 - 1e8 + 1)/4 = 0.5
    x = np.array([1e8, 1, -1e8, 1], dtype=np.float32).reshape(1, 1, 2, 2)
    y = tier.global_avg_pool_forward(x)
    assert y.dtype == np.float32 and y[0, 0] == 0.5


# Finite differences check the reference; the cpu tier is checked against the reference below.
# The mean is linear in x: no kink to avoid.
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 2, 1, 1), (3, 1, 7, 2)])
def test_global_avg_pool_backward_matches_finite_differences(shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(shape[:2])
    dx = ref.global_avg_pool_backward(dy, x_shape=x.shape)
    dx_num, kinks = numeric_gradient(lambda: ref.global_avg_pool_forward(x), x, dy)
    assert not kinks.any()
    assert rel_error(dx, dx_num) < GRAD_TOL


def test_global_avg_pool_reference_is_numpy_mean():
    x = np.random.default_rng(1).standard_normal((4, 6, 13, 11))
    np.testing.assert_allclose(ref.global_avg_pool_forward(x), x.mean(axis=(2, 3)), rtol=1e-14, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (8, 256, 7, 7), (3, 5, 13, 11), (2, 4, 1, 1), (1, 1, 1, 9)])
def test_global_avg_pool_cpu_matches_reference(dtype, shape):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(shape) * 10 + 3).astype(dtype)  # an offset: the sums cancel less than zero-mean data
    dy = rng.standard_normal(shape[:2]).astype(dtype)
    y, y_ref = cpu.global_avg_pool_forward(x), ref.global_avg_pool_forward(x)
    dx, dx_ref = cpu.global_avg_pool_backward(dy, x_shape=x.shape), ref.global_avg_pool_backward(dy, x_shape=x.shape)
    print(f"global_avg_pool {shape} {np.dtype(dtype)}: max |y diff| {np.max(np.abs(y - y_ref)):.1e}, "
          f"max |dx diff| {np.max(np.abs(dx - dx_ref)):.1e}")
    assert y.dtype == dx.dtype == dtype
    assert y.tobytes() == y_ref.tobytes()
    assert dx.tobytes() == dx_ref.tobytes()


def test_global_avg_pool_cpu_bits_do_not_depend_on_the_thread_count():
    x = np.random.default_rng(3).standard_normal((5, 37, 9, 9)).astype(np.float32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = cpu.global_avg_pool_forward(x)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = cpu.global_avg_pool_forward(x)
    finally:
        numba.set_num_threads(before)
    assert one.tobytes() == many.tobytes()


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 256, 7, 7), (2, 4, 1, 1), (3, 2, 1, 6), (0, 3, 2, 2),
                                   (2, 0, 3, 3)])
def test_global_avg_pool_output_shapes(tier, shape):
    x = np.ones(shape, dtype=np.float32)
    y = tier.global_avg_pool_forward(x)
    assert y.shape == shape[:2] and y.dtype == np.float32
    assert np.all(y == 1)
    dx = tier.global_avg_pool_backward(y, x_shape=shape)
    assert dx.shape == shape and dx.dtype == np.float32
    assert tier.global_avg_pool_forward(np.ones((2, 3, 4, 6), np.float32)[:, :, :, ::2]).shape == (2, 3)  # a view


def cases(be, dtype):
    """out_cases-style rows (op, call(outs), out keywords) for this op on backend `be`."""
    rng = np.random.default_rng(4)
    x = be.asarray(rng.standard_normal((3, 4, 5, 6)).astype(dtype))  # (N, C, H, W)
    dy = be.asarray(rng.standard_normal((3, 4)).astype(dtype))  # (N, C)
    return [("global_avg_pool_forward", lambda o: (be.global_avg_pool.global_avg_pool_forward(x, **o),), ("out",)),
            ("global_avg_pool_backward",
             lambda o: (be.global_avg_pool.global_avg_pool_backward(dy, x_shape=x.shape, **o),), ("out",))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_avg_pool_writes_into_given_arrays_and_rejects_wrong_ones(be, dtype):
    for case in cases(be, dtype):
        out_cases.check(be, case)


def _message(fn, *args, **kwargs):
    """The message of the ValueError that fn(*args, **kwargs) raises."""
    with pytest.raises(ValueError) as e:
        fn(*args, **kwargs)
    return str(e.value)


def test_global_avg_pool_errors_are_one_message_in_every_tier():
    bad = {
        "3-D x": lambda t: t.global_avg_pool_forward(np.zeros((2, 3, 4), np.float32)),
        "empty plane": lambda t: t.global_avg_pool_forward(np.zeros((2, 3, 0, 4), np.float32)),
        "int x": lambda t: t.global_avg_pool_forward(np.zeros((2, 3, 4, 4), np.int32)),
        "dy shape": lambda t: t.global_avg_pool_backward(np.zeros((2, 4)), x_shape=(2, 3, 4, 4)),
        "dy 4-D": lambda t: t.global_avg_pool_backward(np.zeros((2, 3, 1, 1)), x_shape=(2, 3, 4, 4)),
        "dy int": lambda t: t.global_avg_pool_backward(np.zeros((2, 3), np.int64), x_shape=(2, 3, 4, 4)),
        "x_shape 3-long": lambda t: t.global_avg_pool_backward(np.zeros((2, 3)), x_shape=(2, 3, 4)),
        "x_shape empty plane": lambda t: t.global_avg_pool_backward(np.zeros((2, 3)), x_shape=(2, 3, 4, 0)),
    }
    want = {
        "3-D x": r"^global_avg_pool: x must be \(N, C, H, W\) with H, W >= 1, got shape \(2, 3, 4\)$",
        "empty plane": r"^global_avg_pool: x must be .* got shape \(2, 3, 0, 4\)$",
        "int x": r"^global_avg_pool: x must be float32 or float64, got int32$",
        "dy shape": r"^global_avg_pool_backward: dy \(2, 4\) float64 must be .* \(N, C\) = \(2, 3\) array",
        "dy 4-D": r"^global_avg_pool_backward: dy \(2, 3, 1, 1\) float64 must be",
        "dy int": r"^global_avg_pool_backward: dy \(2, 3\) int64 must be a float32 or float64",
        "x_shape 3-long": r"^global_avg_pool_backward: x_shape must be \(N, C, H, W\) .* got \(2, 3, 4\)$",
        "x_shape empty plane": r"^global_avg_pool_backward: x_shape must be .* got \(2, 3, 4, 0\)$",
    }
    for what, call in bad.items():
        m_ref, m_cpu = _message(call, ref), _message(call, cpu)
        assert m_ref == m_cpu, (what, m_ref, m_cpu)
        assert re.search(want[what], m_ref), (what, m_ref)
