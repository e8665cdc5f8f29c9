"""kernels/cuda/linear.py against hand values and the reference tier (simulator or GPU)."""
import numpy as np
import pytest

from kernels import to_numpy

pytestmark = pytest.mark.gpu

# CUDA result in `dtype` vs the reference in float64 on the same values (sums of <= 6 products
# of O(1) numbers).
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


def test_linear_hand_values(be):
    x = be.asarray(np.array([[1.0, 2.0]]))  # (N=1, D=2)
    w = be.asarray(np.array([[1.0, 0.0], [3.0, -1.0], [0.5, 0.5]]))  # (K=3, D=2)
    b = be.asarray(np.array([0.0, 1.0, -1.0]))
    y = be.linear.linear_forward(x, w, b)
    np.testing.assert_array_equal(to_numpy(y), [[1.0, 2.0, 0.5]])
    dx, dw, db = be.linear.linear_backward(be.asarray(np.array([[1.0, 0.0, 2.0]])), x, w)
    np.testing.assert_array_equal(to_numpy(dx), [[2.0, 1.0]])  # dy w
    np.testing.assert_array_equal(to_numpy(dw), [[1.0, 2.0], [0.0, 0.0], [2.0, 4.0]])  # dy^T x
    np.testing.assert_array_equal(to_numpy(db), [1.0, 0.0, 2.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_vs_reference(be, ref, rng, dtype):
    x = rng.standard_normal((4, 6)).astype(dtype)  # (N, D)
    w = rng.standard_normal((5, 6)).astype(dtype)  # (K, D)
    b = rng.standard_normal(5).astype(dtype)
    dy = rng.standard_normal((4, 5)).astype(dtype)  # (N, K)
    y = be.linear.linear_forward(be.asarray(x), be.asarray(w), be.asarray(b))
    grads = be.linear.linear_backward(be.asarray(dy), be.asarray(x), be.asarray(w))
    x64, w64, b64, dy64 = (a.astype(np.float64) for a in (x, w, b, dy))
    y_ref = ref.linear.linear_forward(x64, w64, b64)
    grads_ref = ref.linear.linear_backward(dy64, x64, w64)
    np.testing.assert_allclose(to_numpy(y), y_ref, **TOL[dtype], err_msg="linear forward")
    for name, got, want in zip(("dx", "dw", "db"), grads, grads_ref, strict=True):
        assert got.dtype == dtype and got.shape == want.shape, name
        np.testing.assert_allclose(to_numpy(got), want, **TOL[dtype], err_msg=name)
    dx, dw, db = be.linear.linear_backward(be.asarray(dy), be.asarray(x), be.asarray(w), need=("dw",))
    assert dx is None
    np.testing.assert_allclose(to_numpy(dw), grads_ref[1], **TOL[dtype], err_msg="dw without dx")


def test_linear_rejects_bad_input(be):
    x, w, b = be.asarray(np.ones((2, 3))), be.asarray(np.ones((4, 5))), be.asarray(np.ones(4))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        be.linear.linear_forward(x, w, b)
    w = be.asarray(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(2, 5\)"):
        be.linear.linear_backward(be.asarray(np.ones((2, 5))), x, w)
