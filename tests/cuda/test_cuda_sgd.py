"""kernels/cuda/sgd.py against the update written out by hand (simulator or GPU)."""
import numpy as np
import pytest

from kernels import to_numpy

pytestmark = pytest.mark.gpu

# CUDA update in `dtype` vs the formula in float64 on the same values.
TOL = {np.float32: dict(rtol=1e-6, atol=1e-7), np.float64: dict(rtol=1e-14, atol=1e-15)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_two_steps_by_hand(be, dtype):
    # w = 1, dw = 0.5, v = 0, lr 0.1, momentum 0.9, weight decay 0.1:
    # step 1: v = -0.1 * (0.5 + 0.1*1) = -0.06; w = 0.94
    # step 2: v = 0.9*(-0.06) - 0.1 * (0.5 + 0.1*0.94) = -0.1134; w = 0.8266
    w, v = be.asarray(np.ones(3, dtype=dtype)), be.asarray(np.zeros(3, dtype=dtype))
    dw = be.asarray(np.full(3, 0.5, dtype=dtype))
    for want_v, want_w in ((-0.06, 0.94), (-0.1134, 0.8266)):
        assert be.sgd.sgd_momentum_update(w, dw, v, lr=0.1, momentum=0.9, weight_decay=0.1) is None
        np.testing.assert_allclose(to_numpy(v), np.full(3, want_v), **TOL[dtype])
        np.testing.assert_allclose(to_numpy(w), np.full(3, want_w), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_vs_formula(be, rng, dtype):
    w0, dw, v0 = (rng.standard_normal((4, 3, 5)).astype(dtype) for _ in range(3))  # 60 threads
    lr, momentum, weight_decay = 0.01, 0.9, 5e-4
    w, v = be.asarray(w0.copy()), be.asarray(v0.copy())  # updated in place; w0, v0 stay
    be.sgd.sgd_momentum_update(w, be.asarray(dw), v, lr=lr, momentum=momentum, weight_decay=weight_decay)
    w64, dw64, v64 = (a.astype(np.float64) for a in (w0, dw, v0))
    v_want = momentum * v64 - lr * (dw64 + weight_decay * w64)
    np.testing.assert_allclose(to_numpy(v), v_want, **TOL[dtype], err_msg="v")
    np.testing.assert_allclose(to_numpy(w), w64 + v_want, **TOL[dtype], err_msg="w")
    assert to_numpy(w).dtype == dtype


def test_sgd_rejects_bad_input(be):
    w, v = be.asarray(np.ones((2, 3))), be.asarray(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        be.sgd.sgd_momentum_update(w, be.asarray(np.ones((3, 2))), v, lr=0.1, momentum=0.9, weight_decay=0)
    with pytest.raises(ValueError, match="C-contiguous"):
        be.sgd.sgd_momentum_update(w.T, be.asarray(np.ones((3, 2))), v.T,
                                   lr=0.1, momentum=0.9, weight_decay=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_average_vs_formula(be, rng, dtype):
    a0, w = (rng.standard_normal((4, 3, 5)).astype(dtype) for _ in range(2))  # 60 threads
    avg = be.asarray(a0.copy())
    assert be.sgd.weight_average_update(avg, be.asarray(w), decay=0.9) is None
    want = 0.9 * a0.astype(np.float64) + 0.1 * w.astype(np.float64)
    np.testing.assert_allclose(to_numpy(avg), want, **TOL[dtype])
    assert to_numpy(avg).dtype == dtype


def test_weight_average_rejects_bad_input(be):
    avg = be.asarray(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        be.sgd.weight_average_update(avg, be.asarray(np.ones((3, 2))), decay=0.5)
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\]"):
        be.sgd.weight_average_update(avg, be.asarray(np.ones((2, 3))), decay=-0.1)
