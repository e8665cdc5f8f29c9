"""kernels/cuda/global_avg_pool.py against hand values and the reference tier (simulator or GPU)."""
import os
import sys

import numpy as np
import pytest

from kernels import to_numpy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/: out_cases
import out_cases  # noqa: E402

pytestmark = pytest.mark.gpu

# CUDA result vs the reference on the same values in the same dtype: both add each plane in float64
# in memory order and round once, and the backward is one division in dy's dtype, so both dtypes
# must agree exactly.
TOL = {np.float32: dict(rtol=0, atol=0), np.float64: dict(rtol=0, atol=0)}


def test_global_avg_pool_hand_values(be):
    x = be.asarray(np.array([[[[1, 2, 3], [4, 5, 6]], [[-1, 0, 1], [2, 2, 2]]]], dtype=np.float32))  # (1, 2, 2, 3)
    y = be.global_avg_pool.global_avg_pool_forward(x)
    np.testing.assert_array_equal(to_numpy(y), [[3.5, 1.0]])  # 21/6, 6/6
    dx = be.global_avg_pool.global_avg_pool_backward(be.asarray(np.array([[3, -6]], np.float32)), x_shape=x.shape)
    np.testing.assert_array_equal(to_numpy(dx)[0, 0], np.full((2, 3), 0.5))   # 3 / 6
    np.testing.assert_array_equal(to_numpy(dx)[0, 1], np.full((2, 3), -1.0))  # -6 / 6
    # float32 input, float64 sum: 1e8 + 1 - 1e8 + 1 = 2 (a float32 running sum would give 1)
    big = be.asarray(np.array([1e8, 1, -1e8, 1], dtype=np.float32).reshape(1, 1, 2, 2))
    assert to_numpy(be.global_avg_pool.global_avg_pool_forward(big))[0, 0] == 0.5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_avg_pool_vs_reference(be, ref, rng, dtype):
    x = (rng.standard_normal((2, 67, 3, 4)) * 10 + 3).astype(dtype)  # 134 planes: two blocks forward
    dy = rng.standard_normal((2, 67)).astype(dtype)
    y = be.global_avg_pool.global_avg_pool_forward(be.asarray(x))
    dx = be.global_avg_pool.global_avg_pool_backward(be.asarray(dy), x_shape=x.shape)
    y_ref = ref.global_avg_pool.global_avg_pool_forward(x)
    dx_ref = ref.global_avg_pool.global_avg_pool_backward(dy, x_shape=x.shape)
    assert y.dtype == dtype and dx.dtype == dtype and y.shape == (2, 67) and dx.shape == x.shape
    np.testing.assert_allclose(to_numpy(y), y_ref, **TOL[dtype], err_msg="global_avg_pool forward")
    np.testing.assert_allclose(to_numpy(dx), dx_ref, **TOL[dtype], err_msg="global_avg_pool backward")


def test_global_avg_pool_writes_into_given_arrays_and_rejects_wrong_ones(be, rng):
    x = be.asarray(rng.standard_normal((2, 3, 4, 5)).astype(np.float32))
    dy = be.asarray(rng.standard_normal((2, 3)).astype(np.float32))
    gap = be.global_avg_pool
    for case in [("global_avg_pool_forward", lambda o: (gap.global_avg_pool_forward(x, **o),), ("out",)),
                 ("global_avg_pool_backward", lambda o: (gap.global_avg_pool_backward(dy, x_shape=x.shape, **o),),
                  ("out",))]:
        out_cases.check(be, case)


def test_global_avg_pool_rejects_bad_input(be):
    gap = be.global_avg_pool
    with pytest.raises(ValueError, match=r"dy \(2, 4\) float32 must be .* \(2, 3\)"):
        gap.global_avg_pool_backward(be.asarray(np.ones((2, 4), np.float32)), x_shape=(2, 3, 5, 5))
    with pytest.raises(ValueError, match=r"x must be \(N, C, H, W\)"):
        gap.global_avg_pool_forward(be.asarray(np.ones((2, 3, 4), np.float32)))
    with pytest.raises(ValueError, match="float32 or float64"):
        gap.global_avg_pool_forward(be.asarray(np.ones((2, 3, 4, 4), dtype=np.int32)))
    with pytest.raises(TypeError, match="CUDA tier"):
        gap.global_avg_pool_forward([[[[1.0]]]])  # a list is no device array
