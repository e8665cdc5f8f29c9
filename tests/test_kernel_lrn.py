"""LRN kernels: hand values, finite differences, cpu vs reference, shapes and errors.

Tolerances:
    backward vs finite differences, float64 ........ rel_error < 1e-7
    cpu vs reference, max|cpu - ref| / max|ref| (dx subtracts two terms that may nearly cancel,
    so element-wise relative error says little; the cpu tier also sums in float64):
        float32 .................................... 1e-6
        float64 .................................... 1e-13
    reference vs torch local_response_norm, float64  rel_error < 1e-12
"""
import numpy as np
import pytest

from kernels.cpu import lrn as cpu
from kernels.reference import lrn as ref
from rawcnn.engine.gradcheck import max_diff, numeric_gradient, rel_error

OP = "lrn"  # the fixture `tier` (tests/conftest.py) is this op's module in each tier
GRAD_TOL = 1e-7
TOL = {np.float32: 1e-6, np.float64: 1e-13}



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lrn_hand_values(tier, dtype):
    # x = [1, 2, 3] over 3 channels at one pixel; alpha/size = 1, beta = 1, k = 1.
    x = np.array([1.0, 2.0, 3.0], dtype=dtype).reshape(1, 3, 1, 1)
    # size 3: windows {0,1}, {0,1,2}, {1,2}: scale = 1 + [1+4, 1+4+9, 4+9] = [6, 15, 14]
    y, scale = tier.lrn_forward(x, size=3, alpha=3.0, beta=1.0, k=1.0)
    assert y.dtype == scale.dtype == dtype
    np.testing.assert_allclose(scale.ravel(), [6, 15, 14], rtol=1e-6)
    np.testing.assert_allclose(y.ravel(), [1 / 6, 2 / 15, 3 / 14], rtol=1e-6)
    # size 2 (even, PyTorch's window [c-1, c]): scale = 1 + [1, 1+4, 4+9] = [2, 6, 14]
    y2, scale2 = tier.lrn_forward(x, size=2, alpha=2.0, beta=1.0, k=1.0)
    np.testing.assert_allclose(scale2.ravel(), [2, 6, 14], rtol=1e-6)
    np.testing.assert_allclose(y2.ravel(), [1 / 2, 1 / 3, 3 / 14], rtol=1e-6)
    # backward, size 3, dy = [1, 0, 0]: y0 = x0 / (1 + x0^2 + x1^2), so
    # dy0/dx0 = (6 - 2*1)/36 = 1/9, dy0/dx1 = -2*1*2/36 = -1/9, dy0/dx2 = 0
    dy = np.array([1.0, 0.0, 0.0], dtype=dtype).reshape(1, 3, 1, 1)
    dx = tier.lrn_backward(dy, x, y, scale, size=3, alpha=3.0, beta=1.0)
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx.ravel(), [1 / 9, -1 / 9, 0], rtol=1e-6, atol=1e-7)


# Finite differences check the reference; the cpu tier is checked against the reference below.
@pytest.mark.parametrize("size, alpha, beta, k", [(3, 0.5, 0.75, 1.0), (5, 1.0, 0.75, 2.0), (7, 2.0, 0.6, 0.5),
                                                  (4, 1.0, 0.75, 1.5), (5, 1e-4, 0.75, 2.0)])
def test_lrn_backward_matches_finite_differences(size, alpha, beta, k):
    rng = np.random.default_rng(size)
    x = rng.standard_normal((2, 9, 3, 4))  # C = 9 > 7, so windows are clipped at both ends and full inside
    dy = rng.uniform(0.5, 1.5, x.shape) * rng.choice([-1.0, 1.0], x.shape)  # |dy| >= 0.5: no dx near 0
    kw = dict(size=size, alpha=alpha, beta=beta, k=k)
    y, scale = ref.lrn_forward(x, **kw)
    dx = ref.lrn_backward(dy, x, y, scale, size=size, alpha=alpha, beta=beta)  # k reaches it through scale
    dx_num, kinks = numeric_gradient(lambda: ref.lrn_forward(x, **kw)[0], x, dy)
    assert not kinks.any()
    assert rel_error(dx, dx_num) < GRAD_TOL


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, size, beta", [((2, 16, 5, 7), 5, 0.75), ((3, 6, 50, 50), 3, 0.75),
                                               ((1, 4, 9, 9), 7, 0.6), ((2, 8, 3, 3), 2, 0.75),
                                               ((2, 2, 4, 4), 9, 0.75), ((1, 1, 3, 3), 5, 0.6),
                                               ((2, 3, 5, 5), 6, 0.75)])
def test_lrn_cpu_matches_reference(dtype, shape, size, beta):
    # (3, 6, 50, 50) has 2500 pixels a plane: more than one cpu block of 2048 pixels; the last three
    # have fewer channels than half the window (the cpu kernels' first channels enter before channel 0)
    rng = np.random.default_rng(1)
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    kw = dict(size=size, alpha=0.1, beta=beta)  # the backward's hyper-parameters; the forward's add k
    y_ref, scale_ref = ref.lrn_forward(x, **kw, k=2.0)
    y, scale = cpu.lrn_forward(x, **kw, k=2.0)
    dx_ref = ref.lrn_backward(dy, x, y_ref, scale_ref, **kw)
    dx = cpu.lrn_backward(dy, x, y, scale, **kw)
    errs = {"y": max_diff(y, y_ref), "scale": max_diff(scale, scale_ref), "dx": max_diff(dx, dx_ref)}
    print(f"lrn {shape} {np.dtype(dtype)} size {size}: " + ", ".join(f"{n} {e:.1e}" for n, e in errs.items()))
    assert y.dtype == scale.dtype == dx.dtype == dtype
    assert all(e < TOL[dtype] for e in errs.values())  # NaN fails


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lrn_cpu_running_sum_residue_is_below_float_noise(dtype):
    # a huge channel then tiny ones: the cpu running sum adds 1e8 and later subtracts it; the
    # float64 residue (~1e8 * 1e-16) is far below k, as the module docstring bounds it
    x = np.full((1, 16, 1, 3), 1e-3, dtype=dtype)
    x[0, 0] = 1e4
    kw = dict(size=3, alpha=1e-4, beta=0.75, k=1.0)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    assert rel_error(cpu.lrn_forward(x, **kw)[0], ref.lrn_forward(x, **kw)[0]) < tol


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 4, 5), (3, 10, 1, 7)])
def test_lrn_shapes_and_errors(tier, shape):
    x = np.ones(shape, dtype=np.float32)
    y, scale = tier.lrn_forward(x, size=5, alpha=1e-4, beta=0.75, k=2.0)
    assert y.shape == scale.shape == shape
    assert tier.lrn_backward(x, x, y, scale, size=5, alpha=1e-4, beta=0.75).shape == shape
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        tier.lrn_forward(np.ones((2, 3, 4)), size=5, alpha=1e-4, beta=0.75, k=2.0)
    with pytest.raises(ValueError, match="size"):
        tier.lrn_forward(x, size=0, alpha=1e-4, beta=0.75, k=2.0)
    with pytest.raises(ValueError, match="float32 or float64"):
        tier.lrn_forward(x.astype(np.int32), size=5, alpha=1e-4, beta=0.75, k=2.0)
    with pytest.raises(ValueError, match="dy"):
        tier.lrn_backward(np.ones((1, 1, 1, 2), np.float32), x, y, scale, size=5, alpha=1e-4, beta=0.75)


@pytest.mark.parametrize("size, k", [(3, 1.0), (4, 2.0), (5, 2.0), (7, 0.5)])
def test_lrn_reference_matches_torch(size, k):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).standard_normal((2, 9, 4, 3))
    y, _ = ref.lrn_forward(x, size=size, alpha=0.3, beta=0.75, k=k)
    y_torch = torch.nn.functional.local_response_norm(torch.from_numpy(x), size, alpha=0.3, beta=0.75, k=k).numpy()
    assert rel_error(y, y_torch) < 1e-12
