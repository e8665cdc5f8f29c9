"""kernels/cuda/lrn.py against hand values and the reference tier (simulator or GPU)."""
import numpy as np
import pytest

from kernels import to_numpy

pytestmark = pytest.mark.gpu

# CUDA result in `dtype` vs the reference in float64 on the same values: a window of <= 5
# squares, a power and a product, each rounded in float32.
TOL = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


def test_lrn_hand_values(be):
    # C = 2, size 3: both channels see both squares. scale = 1 + 3/3 * (1 + 4) = 6, beta 1
    x = be.asarray(np.array([1.0, 2.0]).reshape(1, 2, 1, 1))
    y, scale = be.lrn.lrn_forward(x, size=3, alpha=3.0, beta=1.0, k=1.0)
    np.testing.assert_allclose(to_numpy(scale).ravel(), [6.0, 6.0], rtol=1e-15)
    np.testing.assert_allclose(to_numpy(y).ravel(), [1 / 6, 2 / 6], rtol=1e-15)
    # dy = (1, 0): dx_c = dy_c/6 - 2*3*1/3 * x_c * (1 * y_0 / 6) = dy_c/6 - x_c/18
    dx = be.lrn.lrn_backward(be.asarray(np.array([1.0, 0.0]).reshape(1, 2, 1, 1)), x, y, scale,
                             size=3, alpha=3.0, beta=1.0)
    np.testing.assert_allclose(to_numpy(dx).ravel(), [1 / 6 - 1 / 18, -2 / 18], rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size, alpha, beta, k", [(5, 1e-1, 0.75, 2.0), (4, 0.5, 0.6, 1.0)])
def test_lrn_vs_reference(be, ref, rng, dtype, size, alpha, beta, k):
    x = rng.standard_normal((2, 7, 3, 4)).astype(dtype)  # (N, C, H, W); C = 7 clips the windows
    dy = rng.standard_normal(x.shape).astype(dtype)
    hyper = dict(size=size, alpha=alpha, beta=beta)  # the backward's hyper-parameters; the forward's add k
    y, scale = be.lrn.lrn_forward(be.asarray(x), **hyper, k=k)
    dx = be.lrn.lrn_backward(be.asarray(dy), be.asarray(x), y, scale, **hyper)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    y_ref, scale_ref = ref.lrn.lrn_forward(x64, **hyper, k=k)
    dx_ref = ref.lrn.lrn_backward(dy64, x64, y_ref, scale_ref, **hyper)
    for name, got, want in (("y", y, y_ref), ("scale", scale, scale_ref), ("dx", dx, dx_ref)):
        assert got.dtype == dtype, name
        np.testing.assert_allclose(to_numpy(got), want, **TOL[dtype], err_msg=name)


def test_lrn_rejects_bad_input(be):
    x = be.asarray(np.ones((1, 3, 2, 2)))
    with pytest.raises(ValueError, match=r"\(3, 2, 2\)"):
        be.lrn.lrn_forward(be.asarray(np.ones((3, 2, 2))), size=5, alpha=1e-4, beta=0.75, k=2.0)
    y, scale = be.lrn.lrn_forward(x, size=5, alpha=1e-4, beta=0.75, k=2.0)
    with pytest.raises(ValueError, match=r"\(1, 3, 2, 1\).*\(1, 3, 2, 2\)"):
        be.lrn.lrn_backward(be.asarray(np.ones((1, 3, 2, 1))), x, y, scale,
                            size=5, alpha=1e-4, beta=0.75)
