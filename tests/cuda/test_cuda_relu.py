"""kernels/cuda/relu.py against hand values and the reference tier (simulator or GPU)."""
import numpy as np
import pytest

from kernels import to_numpy

pytestmark = pytest.mark.gpu

# CUDA result in `dtype` vs the reference in float64 on the same values: ReLU only copies or
# zeroes, so both dtypes must agree exactly.
TOL = {np.float32: dict(rtol=0, atol=0), np.float64: dict(rtol=0, atol=0)}


def test_relu_hand_values(be):
    x = be.asarray(np.array([[-2.0, -0.5, 0.0, 1.5]], dtype=np.float32))
    y = be.relu.relu_forward(x)
    dx = be.relu.relu_backward(be.asarray(np.full((1, 4), 3.0, dtype=np.float32)), y)
    np.testing.assert_array_equal(to_numpy(y), [[0.0, 0.0, 0.0, 1.5]])
    np.testing.assert_array_equal(to_numpy(dx), [[0.0, 0.0, 0.0, 3.0]])  # slope 0 at the kink


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_vs_reference(be, ref, rng, dtype):
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)  # (N, C, H, W), 120 threads
    dy = rng.standard_normal(x.shape).astype(dtype)
    y = be.relu.relu_forward(be.asarray(x))
    dx = be.relu.relu_backward(be.asarray(dy), y)
    y_ref = ref.relu.relu_forward(x.astype(np.float64))
    dx_ref = ref.relu.relu_backward(dy.astype(np.float64), y_ref)
    assert y.dtype == dtype and dx.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(to_numpy(y), y_ref, **TOL[dtype], err_msg="relu forward")
    np.testing.assert_allclose(to_numpy(dx), dx_ref, **TOL[dtype], err_msg="relu backward")


def test_relu_rejects_bad_input(be):
    y = be.relu.relu_forward(be.asarray(np.ones((2, 3))))
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(2, 3\)"):
        be.relu.relu_backward(be.asarray(np.ones((2, 4))), y)
    with pytest.raises(ValueError, match="float32 or float64"):
        be.relu.relu_forward(be.asarray(np.ones(3, dtype=np.int32)))
    with pytest.raises(TypeError, match="CUDA tier"):
        be.relu.relu_forward([1.0, -1.0])  # a list is no device array
