"""Softmax kernels: hand values, finite differences, cpu vs reference, shapes and errors.

Tolerances:
    backward vs finite differences, float64 ........ rel_error < 1e-7
    cpu vs reference, max|cpu - ref| / max|ref| (dx = y * (dy - sum(dy*y)) may nearly cancel,
    so element-wise relative error says little; the cpu tier also sums in float64):
        float32 .................................... 1e-6
        float64 .................................... 1e-13
"""
import numpy as np
import pytest

from kernels.cpu import softmax as cpu
from kernels.reference import softmax as ref
from rawcnn.engine.gradcheck import max_diff, numeric_gradient, rel_error

OP = "softmax"  # the fixture `tier` (tests/conftest.py) is this op's module in each tier
GRAD_TOL = 1e-7
TOL = {np.float32: 1e-6, np.float64: 1e-13}



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_hand_values(tier, dtype):
    # exp(0) : exp(ln 3) = 1 : 3; a row of two 1000s would overflow exp without the max shift
    x = np.array([[0.0, np.log(3.0)], [1000.0, 1000.0], [-5.0, 5.0]], dtype=dtype)
    y = tier.softmax_forward(x)
    assert y.dtype == dtype
    e10 = np.exp(10.0)
    np.testing.assert_allclose(y, [[0.25, 0.75], [0.5, 0.5], [1 / (1 + e10), e10 / (1 + e10)]], rtol=1e-6)
    # dx = y * (dy - sum(dy * y)): y = [1/4, 3/4], dy = [1, 0] -> [1/4 * 3/4, 3/4 * -1/4]
    dx = tier.softmax_backward(np.array([[1.0, 0.0]], dtype=dtype), y[:1])
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx, [[3 / 16, -3 / 16]], rtol=1e-6)


# Finite differences check the reference; the cpu tier is checked against the reference below.
def test_softmax_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    y = ref.softmax_forward(x)
    dx = ref.softmax_backward(dy, y)
    dx_num, _ = numeric_gradient(lambda: ref.softmax_forward(x), x, dy)
    assert rel_error(dx, dx_num) < GRAD_TOL


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N, K", [(1, 1), (3, 2), (32, 10), (5, 1000)])
def test_softmax_cpu_matches_reference(dtype, N, K):
    rng = np.random.default_rng(1)
    x, dy = (4 * rng.standard_normal((N, K))).astype(dtype), rng.standard_normal((N, K)).astype(dtype)
    y, y_ref = cpu.softmax_forward(x), ref.softmax_forward(x)
    errs = {"y": max_diff(y, y_ref), "dx": max_diff(cpu.softmax_backward(dy, y_ref), ref.softmax_backward(dy, y_ref))}
    print(f"softmax N={N} K={K} {np.dtype(dtype)}: " + ", ".join(f"{n} {e:.1e}" for n, e in errs.items()))
    assert y.dtype == dtype
    assert all(e < TOL[dtype] for e in errs.values())  # NaN fails


@pytest.mark.parametrize("N, K", [(1, 1), (2, 5), (16, 2)])
def test_softmax_shapes_and_errors(tier, N, K):
    y = tier.softmax_forward(np.zeros((N, K), np.float32))
    assert y.shape == tier.softmax_backward(y, y).shape == (N, K)
    np.testing.assert_allclose(y, 1 / K)
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        tier.softmax_forward(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="dy"):
        tier.softmax_backward(np.zeros((N, K + 1), np.float32), y)
