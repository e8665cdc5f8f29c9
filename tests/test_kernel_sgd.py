"""SGD-momentum kernels: hand values, the weight-decay term vs finite differences, cpu vs
reference, shapes and errors; the same for the weight-averaging update (hand values exact in
binary, the exponential mean in plain Python floats to 1e-14, cpu vs reference bit for bit).

Tolerances:
    weight-decay step vs finite differences, float64 ... rel_error < 1e-7
    three steps vs the formula in plain Python, float64  rel_error < 1e-14
    cpu vs reference, max|cpu - ref| / max|ref| (the cpu tier rounds once per element, NumPy
    after each operation, so entries near zero differ in relative terms):
        float32 .................................... 1e-6
        float64 .................................... 1e-14
"""
import numpy as np
import pytest

from kernels.cpu import sgd as cpu
from kernels.reference import sgd as ref
from rawcnn.engine.gradcheck import max_diff, numeric_gradient, rel_error

OP = "sgd"  # the fixture `tier` (tests/conftest.py) is this op's module in each tier
GRAD_TOL = 1e-7
TOL = {np.float32: 1e-6, np.float64: 1e-14}



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_hand_values(tier, dtype):
    # lr 0.1, momentum 0.9, weight decay 0.1, the same dw three times, worked by hand:
    #   step 1: v = -0.1*(0.5 + 0.1*1)       = -0.06      w = 0.94
    #   step 2: v = 0.9*-0.06 - 0.1*(0.594)   = -0.1134    w = 0.8266
    #   step 3: v = 0.9*-0.1134 - 0.1*0.58266 = -0.160326  w = 0.666274
    # and for the second element (w = -2, dw = 0.25): v -0.005, -0.00945, -0.0133605
    w = np.array([1.0, -2.0], dtype=dtype)
    dw = np.array([0.5, 0.25], dtype=dtype)
    v = np.zeros(2, dtype=dtype)
    for _ in range(3):
        assert tier.sgd_momentum_update(w, dw, v, lr=0.1, momentum=0.9, weight_decay=0.1) is None
    assert w.dtype == v.dtype == dtype
    np.testing.assert_allclose(v, [-0.160326, -0.0133605], rtol=1e-6)
    np.testing.assert_allclose(w, [0.666274, -2.0278105], rtol=1e-6)


def test_sgd_three_steps_match_the_formula(tier):
    rng = np.random.default_rng(0)
    w, v = rng.standard_normal(6), rng.standard_normal(6)
    grads = rng.standard_normal((3, 6))  # a new gradient each step
    w_py, v_py = [float(a) for a in w], [float(a) for a in v]
    for dw in grads:
        tier.sgd_momentum_update(w, dw, v, lr=0.05, momentum=0.9, weight_decay=5e-4)
        for i in range(6):  # the update in plain Python floats
            v_py[i] = 0.9 * v_py[i] - 0.05 * (float(dw[i]) + 5e-4 * w_py[i])
            w_py[i] = w_py[i] + v_py[i]
    assert rel_error(w, w_py) < 1e-14 and rel_error(v, v_py) < 1e-14


# sgd has no backward. In its place, finite differences check the reference's weight-decay
# term: with dw = 0, v = 0, momentum = 0, one step moves w by -lr * d/dw (weight_decay/2 * |w|^2).
def test_sgd_weight_decay_is_the_l2_gradient():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 4))
    w_new, v = w.copy(), np.zeros_like(w)
    ref.sgd_momentum_update(w_new, np.zeros_like(w), v, lr=0.1, momentum=0.0, weight_decay=0.01)
    num, _ = numeric_gradient(lambda: np.array(0.5 * 0.01 * np.sum(w ** 2)), w, np.array(1.0))
    assert rel_error((w - w_new) / 0.1, num) < GRAD_TOL


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (96, 3, 7, 7), (4096, 9)])
def test_sgd_cpu_matches_reference(dtype, shape):
    rng = np.random.default_rng(2)
    w, dw, v = (rng.standard_normal(shape).astype(dtype) for _ in range(3))
    w_ref, v_ref = w.copy(), v.copy()
    for _ in range(2):
        cpu.sgd_momentum_update(w, dw, v, lr=1e-3, momentum=0.9, weight_decay=5e-4)
        ref.sgd_momentum_update(w_ref, dw, v_ref, lr=1e-3, momentum=0.9, weight_decay=5e-4)
    errs = {"w": max_diff(w, w_ref), "v": max_diff(v, v_ref)}
    print(f"sgd {shape} {np.dtype(dtype)}: " + ", ".join(f"{n} {e:.1e}" for n, e in errs.items()))
    assert all(e < TOL[dtype] for e in errs.values())  # NaN fails


@pytest.mark.parametrize("shape", [(3,), (2, 5), (4, 3, 2, 2)])
def test_sgd_shapes_and_errors(tier, shape):
    w, dw, v = np.ones(shape, np.float32), np.ones(shape, np.float32), np.zeros(shape, np.float32)
    tier.sgd_momentum_update(w, dw, v, lr=0.1, momentum=0.9, weight_decay=0.0)
    assert w.shape == v.shape == shape
    np.testing.assert_allclose(w, 0.9)
    kw = dict(lr=0.1, momentum=0.9, weight_decay=0.0)
    with pytest.raises(ValueError, match="share shape"):
        tier.sgd_momentum_update(w, np.ones(shape + (1,), np.float32), v, **kw)
    with pytest.raises(ValueError, match="share shape and dtype"):
        tier.sgd_momentum_update(w, dw, v.astype(np.float64), **kw)
    with pytest.raises(ValueError, match="C-contiguous"):
        tier.sgd_momentum_update(np.ones((4, 6), np.float32)[:, ::2], np.ones((4, 3), np.float32),
                                 np.zeros((4, 3), np.float32), **kw)


# -- weight averaging: avg = decay*avg + (1 - decay)*w --------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_average_hand_values(tier, dtype):
    # decay 0.75 (exact in binary), avg 2, w = 6, 6, then 2:
    #   step 1: 0.75*2 + 0.25*6 = 3.0;  step 2: 0.75*3 + 0.25*6 = 3.75;  step 3: 0.75*3.75 + 0.25*2 = 3.3125
    avg = np.full(3, 2.0, dtype=dtype)
    for w, want in ((6.0, 3.0), (6.0, 3.75), (2.0, 3.3125)):
        assert tier.weight_average_update(avg, np.full(3, w, dtype=dtype), decay=0.75) is None
        assert avg.dtype == dtype
        np.testing.assert_array_equal(avg, np.full(3, want, dtype=dtype))  # every value exact in binary


def test_weight_average_ends(tier):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((5, 4))
    avg = rng.standard_normal((5, 4))
    keep = avg.copy()
    tier.weight_average_update(avg, w, decay=1.0)  # 1: the average stays
    np.testing.assert_array_equal(avg, keep)
    tier.weight_average_update(avg, w, decay=0.0)  # 0: the average becomes w
    np.testing.assert_array_equal(avg, w)


def test_weight_average_is_the_exponential_mean(tier):
    # after t steps from a0 the average is d^t a0 + (1 - d) sum_s d^(t-1-s) w_s: checked in plain Python floats
    rng = np.random.default_rng(4)
    a0, ws, d = rng.standard_normal(7), rng.standard_normal((6, 7)), 0.9
    avg = a0.copy()
    for w in ws:
        tier.weight_average_update(avg, w, decay=d)
    for i in range(7):
        want = d ** 6 * float(a0[i]) + sum((1 - d) * d ** (5 - s) * float(ws[s, i]) for s in range(6))
        assert abs(avg[i] - want) <= 1e-14 * max(1.0, abs(want))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (96, 3, 7, 7), (4096, 9)])
def test_weight_average_cpu_matches_reference(dtype, shape):
    rng = np.random.default_rng(5)
    avg, w = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    avg_ref = avg.copy()
    for d in (0.9375, 0.3, 0.999):
        cpu.weight_average_update(avg, w, decay=d)
        ref.weight_average_update(avg_ref, w, decay=d)
    np.testing.assert_array_equal(avg, avg_ref)  # each operation rounded in the dtype, in the same order: same bits


def test_weight_average_errors(tier):
    avg = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="share shape and dtype"):
        tier.weight_average_update(avg, np.ones((3, 2), np.float32), decay=0.5)
    with pytest.raises(ValueError, match="share shape and dtype"):
        tier.weight_average_update(avg, np.ones((2, 3), np.float64), decay=0.5)
    with pytest.raises(ValueError, match="C-contiguous"):
        tier.weight_average_update(np.zeros((3, 2), np.float32).T, np.ones((2, 3), np.float32), decay=0.5)
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\]"):
        tier.weight_average_update(avg, np.ones((2, 3), np.float32), decay=1.5)
