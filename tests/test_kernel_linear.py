"""Linear kernels: hand values, finite differences, cpu vs reference, shapes and errors.

Tolerances:
    backward vs finite differences, float64 ........ rel_error < 1e-7
    cpu vs reference, max|cpu - ref| / max|ref| (a sum of D products may nearly cancel, so
    element-wise relative error says little; BLAS and einsum add in different orders):
        float32 .................................... 1e-5
        float64 .................................... 1e-13
"""
import numpy as np
import pytest

from kernels.cpu import linear as cpu
from kernels.reference import linear as ref
from rawcnn.engine.gradcheck import max_diff, numeric_gradient, rel_error

OP = "linear"  # the fixture `tier` (tests/conftest.py) is this op's module in each tier
GRAD_TOL = 1e-7
TOL = {np.float32: 1e-5, np.float64: 1e-13}



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_hand_values(tier, dtype):
    x = np.array([[1.0, 2.0]], dtype=dtype)
    w = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=dtype)
    b = np.array([0.5, -1.0, 0.0], dtype=dtype)
    y = tier.linear_forward(x, w, b)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, [[1.5, 1.0, 3.0]])
    dx, dw, db = tier.linear_backward(np.array([[1.0, 2.0, 3.0]], dtype=dtype), x, w)
    np.testing.assert_array_equal(dx, [[1 + 3, 2 + 3]])  # dy @ w
    np.testing.assert_array_equal(dw, [[1, 2], [2, 4], [3, 6]])  # dy^T @ x
    np.testing.assert_array_equal(db, [1, 2, 3])
    assert dx.dtype == dw.dtype == db.dtype == dtype
    assert tier.linear_backward(np.ones((1, 3), dtype), x, w, need=("dw",))[0] is None


# Finite differences check the reference; the cpu tier is checked against the reference below.
def test_linear_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((4, 6)), rng.standard_normal((5, 6)), rng.standard_normal(5)
    dy = rng.standard_normal((4, 5))
    dx, dw, db = ref.linear_backward(dy, x, w)
    for name, param, grad in (("x", x, dx), ("w", w, dw), ("b", b, db)):
        num, _ = numeric_gradient(lambda: ref.linear_forward(x, w, b), param, dy)
        assert rel_error(grad, num) < GRAD_TOL, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N, D, K", [(1, 3, 2), (8, 50, 10), (33, 200, 64),
                                     (3, 8300, 131)])  # dx by row chains: uneven halves, two column blocks
def test_linear_cpu_matches_reference(dtype, N, D, K):
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((N, D)).astype(dtype), rng.standard_normal((K, D)).astype(dtype)
    b, dy = rng.standard_normal(K).astype(dtype), rng.standard_normal((N, K)).astype(dtype)
    errs = {"y": max_diff(cpu.linear_forward(x, w, b), ref.linear_forward(x, w, b))}
    for name, g, g_ref in zip(("dx", "dw", "db"), cpu.linear_backward(dy, x, w), ref.linear_backward(dy, x, w),
                              strict=True):
        assert g.dtype == dtype
        errs[name] = max_diff(g, g_ref)
    print(f"linear N={N} D={D} K={K} {np.dtype(dtype)}: " + ", ".join(f"{n} {e:.1e}" for n, e in errs.items()))
    assert all(e < TOL[dtype] for e in errs.values())  # NaN fails


@pytest.mark.parametrize("N, D, K", [(1, 1, 1), (3, 7, 2), (16, 4096, 2)])
def test_linear_shapes_and_errors(tier, N, D, K):
    x, w, b = np.ones((N, D), np.float32), np.ones((K, D), np.float32), np.ones(K, np.float32)
    assert tier.linear_forward(x, w, b).shape == (N, K)
    dx, dw, db = tier.linear_backward(np.ones((N, K), np.float32), x, w)
    assert (dx.shape, dw.shape, db.shape) == ((N, D), (K, D), (K,))
    with pytest.raises(ValueError, match=r"x \(\d+, \d+\), w"):
        tier.linear_forward(x, np.ones((K, D + 1), np.float32), b)
    with pytest.raises(ValueError, match="b"):
        tier.linear_forward(x, w, np.ones(K + 1, np.float32))
    with pytest.raises(ValueError, match="dtype"):
        tier.linear_forward(x, w.astype(np.float64), b)
    with pytest.raises(ValueError, match="dy"):
        tier.linear_backward(np.ones((N, K + 1), np.float32), x, w)


def test_linear_cpu_dx_by_row_chains_same_bits_on_any_thread_count():
    # K >= 2 * ROW_BLOCK: dx is summed in two chains over the rows of w, cut into COL_BLOCK columns;
    # the cut depends on the shape only, so one thread and all threads give the same bits.
    import numba
    rng = np.random.default_rng(7)
    N, D, K = 4, cpu.COL_BLOCK + 900, 2 * cpu.ROW_BLOCK + 75
    x, w = rng.standard_normal((N, D)).astype(np.float32), rng.standard_normal((K, D)).astype(np.float32)
    dy = rng.standard_normal((N, K)).astype(np.float32)
    many = cpu.linear_backward(dy, x, w, need=("dx",))[0]
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one = cpu.linear_backward(dy, x, w, need=("dx",))[0]
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, many)
    want = dy.astype(np.float64) @ w.astype(np.float64)
    assert max_diff(many, want) < 1e-6
