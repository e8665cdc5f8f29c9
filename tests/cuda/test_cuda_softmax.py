"""kernels/cuda/softmax.py against hand values and the reference tier (simulator or GPU)."""
import numpy as np
import pytest

from kernels import to_numpy

pytestmark = pytest.mark.gpu

# CUDA result in `dtype` vs the reference in float64 on the same values (probabilities <= 1).
TOL = {np.float32: dict(rtol=1e-5, atol=1e-7), np.float64: dict(rtol=1e-12, atol=1e-15)}


def test_softmax_hand_values(be):
    x = be.asarray(np.array([[0.0, np.log(3.0)], [1e4, -1e4]]))  # second row: +-1e4, no overflow
    y = to_numpy(be.softmax.softmax_forward(x))
    np.testing.assert_allclose(y, [[0.25, 0.75], [1.0, 0.0]], rtol=1e-14, atol=0)
    # y = (0.25, 0.75), dy = (1, 0): dx = y * (dy - 0.25) = (0.1875, -0.1875)
    dx = be.softmax.softmax_backward(be.asarray(np.array([[1.0, 0.0]])), be.asarray(y[:1]))
    np.testing.assert_allclose(to_numpy(dx), [[0.1875, -0.1875]], rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_vs_reference(be, ref, rng, dtype):
    x = (3 * rng.standard_normal((5, 7))).astype(dtype)  # (N, K)
    x[0] *= 1e4 / np.abs(x[0]).max()  # one row of logits up to +-1e4
    dy = rng.standard_normal(x.shape).astype(dtype)
    y = be.softmax.softmax_forward(be.asarray(x))
    dx = be.softmax.softmax_backward(be.asarray(dy), y)
    y_ref = ref.softmax.softmax_forward(x.astype(np.float64))
    dx_ref = ref.softmax.softmax_backward(dy.astype(np.float64), y_ref)
    assert y.dtype == dtype and dx.dtype == dtype
    assert np.all(np.isfinite(to_numpy(y)))
    np.testing.assert_allclose(to_numpy(y), y_ref, **TOL[dtype], err_msg="softmax forward")
    np.testing.assert_allclose(to_numpy(dx), dx_ref, **TOL[dtype], err_msg="softmax backward")


def test_softmax_rejects_bad_input(be):
    with pytest.raises(ValueError, match=r"\(6,\)"):
        be.softmax.softmax_forward(be.asarray(np.ones(6)))
    y = be.softmax.softmax_forward(be.asarray(np.ones((2, 3))))
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(2, 3\)"):
        be.softmax.softmax_backward(be.asarray(np.ones((2, 4))), y)
