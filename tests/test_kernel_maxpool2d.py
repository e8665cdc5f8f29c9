"""Max-pool kernels: hand values, finite differences, cpu vs reference, shapes and errors.

Tolerances:
    backward vs finite differences, float64 ........ rel_error < 1e-7
    cpu vs reference, float32 and float64 .......... exact (a max picks an input; the backward
                                                     adds the same dy values in the same order)
    reference vs torch max_pool2d, float64 ......... exact, indices included
"""
import numpy as np
import pytest

from kernels.cpu import maxpool2d as cpu
from kernels.reference import maxpool2d as ref
from rawcnn.engine.gradcheck import numeric_gradient, rel_error

OP = "maxpool2d"  # the fixture `tier` (tests/conftest.py) is this op's module in each tier
GRAD_TOL = 1e-7
X4 = [[1, 3, 2, 0],
      [4, 0, 0, 9],
      [5, 5, 1, 1],
      [0, 2, 8, 8]]


def pool(tier, x, k, s, p, ceil_mode=False):
    return tier.maxpool2d_forward(x, kernel_size=(k, k), stride=(s, s), padding=(p, p), ceil_mode=ceil_mode)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maxpool2d_hand_values(tier, dtype):
    x = np.array(X4, dtype=dtype).reshape(1, 1, 4, 4)
    # 2x2 stride 2: windows {1,3,4,0} {2,0,0,9} {5,5,0,2} {1,1,8,8}; ties go to the first
    y, argmax = pool(tier, x, 2, 2, 0)
    assert y.dtype == dtype and argmax.dtype == np.int64
    np.testing.assert_array_equal(y[0, 0], [[4, 9], [5, 8]])
    np.testing.assert_array_equal(argmax[0, 0], [[4, 7], [8, 14]])  # h*4 + w
    # 3x3 stride 2 padding 1: the 9 at (1, 3) wins two overlapping windows
    y, argmax = pool(tier, x, 3, 2, 1)
    np.testing.assert_array_equal(y[0, 0], [[4, 9], [5, 9]])
    np.testing.assert_array_equal(argmax[0, 0], [[4, 7], [8, 7]])
    dx = tier.maxpool2d_backward(np.array([[[[1, 2], [3, 4]]]], dtype=dtype), argmax, x_shape=x.shape)
    expected = np.zeros(16)
    expected[[4, 7, 8]] = [1, 2 + 4, 3]  # overlapping windows add at the shared winner
    np.testing.assert_array_equal(dx.ravel(), expected)
    assert dx.dtype == dtype


def test_maxpool2d_padding_never_wins(tier):
    # all inputs negative: zero padding would win, -inf padding does not
    x = np.array([[-1.0, -2.0], [-3.0, -4.0]]).reshape(1, 1, 2, 2)
    y, argmax = pool(tier, x, 2, 1, 1)
    np.testing.assert_array_equal(y[0, 0], [[-1, -1, -2], [-1, -1, -2], [-3, -3, -4]])
    np.testing.assert_array_equal(argmax[0, 0], [[0, 0, 1], [0, 0, 1], [2, 2, 3]])


def test_maxpool2d_nan_wins(tier):
    x = np.array([[1.0, np.nan], [5.0, np.nan]]).reshape(1, 1, 2, 2)
    y, argmax = pool(tier, x, 2, 2, 0)
    assert np.isnan(y[0, 0, 0, 0]) and argmax[0, 0, 0, 0] == 1  # the first NaN, as numpy.argmax


# Finite differences check the reference; the cpu tier is checked against the reference below.
# Inputs are a permutation scaled by 0.1, so no two values tie within the step h = 1e-6.
@pytest.mark.parametrize("shape, k, s, p, ceil_mode", [((2, 3, 6, 6), 2, 2, 0, False), ((2, 2, 7, 8), 3, 2, 1, False),
                                                       ((1, 3, 7, 7), 3, 2, 1, True), ((2, 2, 5, 5), 2, 2, 1, True),
                                                       ((1, 2, 6, 5), 3, 1, 1, False)])
def test_maxpool2d_backward_matches_finite_differences(shape, k, s, p, ceil_mode):
    rng = np.random.default_rng(0)
    x = 0.1 * rng.permutation(np.prod(shape)).reshape(shape).astype(np.float64)
    y, argmax = pool(ref, x, k, s, p, ceil_mode)
    dy = rng.standard_normal(y.shape)
    dx = ref.maxpool2d_backward(dy, argmax, x_shape=x.shape)
    dx_num, kinks = numeric_gradient(lambda: pool(ref, x, k, s, p, ceil_mode)[0], x, dy)
    assert not kinks.any()
    assert rel_error(dx, dx_num) < GRAD_TOL


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, k, s, p, ceil_mode", [((2, 5, 13, 13), 3, 2, 0, False),
                                                       ((2, 5, 13, 12), 3, 2, 1, True),
                                                       ((1, 4, 10, 9), 2, 2, 1, True), ((3, 2, 8, 8), 2, 1, 0, False)])
def test_maxpool2d_cpu_matches_reference(dtype, shape, k, s, p, ceil_mode):
    rng = np.random.default_rng(3)
    x = rng.integers(-4, 5, shape).astype(dtype)  # small integers: many ties, so first-max-wins is tested
    y_ref, argmax_ref = pool(ref, x, k, s, p, ceil_mode)
    y, argmax = pool(cpu, x, k, s, p, ceil_mode)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx_ref = ref.maxpool2d_backward(dy, argmax_ref, x_shape=x.shape)
    dx = cpu.maxpool2d_backward(dy, argmax, x_shape=x.shape)
    print(f"maxpool2d {shape} k{k} s{s} p{p} ceil {ceil_mode}: max |dx diff| {np.max(np.abs(dx - dx_ref)):.1e}")
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    np.testing.assert_array_equal(dx, dx_ref)


@pytest.mark.parametrize("hw, k, s, p, ceil_mode, ohw", [
    ((55, 55), 3, 2, 0, False, (27, 27)),    # AlexNet pool1
    ((224, 224), 2, 2, 0, False, (112, 112)),  # VGG pool1
    ((5, 5), 2, 2, 0, False, (2, 2)),
    ((5, 5), 2, 2, 0, True, (3, 3)),         # ceil_mode: a last, partial window
    ((5, 5), 2, 2, 1, True, (3, 3)),         # ceil would give 4; that window would start in the right padding
    ((4, 4), 3, 2, 1, True, (3, 3)),
    ((4, 4), 3, 2, 1, False, (2, 2)),
    ((6, 7), (3, 2), (3, 1), (1, 0), True, (3, 6)),  # unequal height and width settings
])
def test_maxpool2d_output_shapes(tier, hw, k, s, p, ceil_mode, ohw):
    x = np.zeros((2, 3) + hw, dtype=np.float32)
    y, argmax = tier.maxpool2d_forward(x, kernel_size=k, stride=s, padding=p, ceil_mode=ceil_mode)
    assert y.shape == argmax.shape == (2, 3) + ohw
    assert tier.maxpool2d_backward(y, argmax, x_shape=x.shape).shape == x.shape


def test_maxpool2d_errors(tier):
    x = np.zeros((1, 2, 5, 5), dtype=np.float32)
    kw = dict(kernel_size=(3, 3), stride=(2, 2), padding=(0, 0), ceil_mode=False)
    with pytest.raises(ValueError, match="at most half"):
        tier.maxpool2d_forward(x, **{**kw, "padding": (2, 2)})
    with pytest.raises(ValueError, match="larger than the padded input"):
        tier.maxpool2d_forward(np.zeros((1, 2, 2, 2), np.float32), **kw)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        tier.maxpool2d_forward(np.zeros((2, 5, 5), np.float32), **kw)
    with pytest.raises(ValueError, match="stride"):
        tier.maxpool2d_forward(x, **{**kw, "stride": (0, 1)})
    y, argmax = tier.maxpool2d_forward(x, **kw)
    with pytest.raises(ValueError, match="argmax values"):
        tier.maxpool2d_backward(y, argmax + 25, x_shape=x.shape)
    with pytest.raises(ValueError, match="x_shape"):
        tier.maxpool2d_backward(y, argmax, x_shape=(1, 3, 5, 5))


@pytest.mark.parametrize("shape, k, s, p, ceil_mode", [((2, 3, 7, 7), 3, 2, 1, True), ((1, 2, 9, 8), 2, 2, 1, True),
                                                       ((2, 2, 13, 13), 3, 2, 0, False)])
def test_maxpool2d_reference_matches_torch(shape, k, s, p, ceil_mode):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(4).standard_normal(shape)
    y, argmax = pool(ref, x, k, s, p, ceil_mode)
    y_t, argmax_t = torch.nn.functional.max_pool2d(torch.from_numpy(x), k, s, p, ceil_mode=ceil_mode,
                                                   return_indices=True)
    np.testing.assert_array_equal(y, y_t.numpy())
    np.testing.assert_array_equal(argmax, argmax_t.numpy())


@pytest.mark.parametrize("k, s", [(2, 2), (3, 2), (3, 1), (2, 1)])
def test_maxpool2d_cpu_unrolled_windows_keep_ties_and_nans(k, s):
    # the cpu tier scans whole 2x2 and 3x3 windows with an unrolled loop: with many ties (small
    # integers) and a few NaNs it must pick the same winners as the reference's plain scan
    rng = np.random.default_rng(11)
    x = rng.integers(0, 3, (2, 3, 11, 12)).astype(np.float32)
    x[0, 0, 4, 5] = x[1, 2, 0, 0] = x[1, 1, 7, 7] = np.nan
    y_ref, a_ref = pool(ref, x, k, s, 0)
    y, a = pool(cpu, x, k, s, 0)
    np.testing.assert_array_equal(a, a_ref)
    np.testing.assert_array_equal(y, y_ref)  # NaN == NaN for assert_array_equal


@pytest.mark.parametrize("k, s, p, ceil_mode", [(3, 2, 0, False), (2, 2, 0, False), (3, 2, 1, True), (2, 2, 1, True),
                                                (3, 1, 1, False), (2, 1, 0, False), (3, 3, 1, True), (1, 1, 0, False)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maxpool2d_without_argmax_gives_the_same_y(tier, dtype, k, s, p, ceil_mode):
    # the test-time forward (with_argmax=False; the cpu tier's own kernel: down the rows, then across the
    # columns) against the reference's scan with argmax, on many ties (small integers), a NaN in a window
    # cut by the edge and one inside, windows cut at every edge (odd sizes, padding, ceil_mode)
    rng = np.random.default_rng(12)
    x = rng.integers(-2, 3, (2, 3, 13, 12)).astype(dtype)
    x[0, 0, 6, 5] = x[1, 2, 0, 11] = x[0, 1, 12, 0] = np.nan
    y_ref = pool(ref, x, k, s, p, ceil_mode)[0]
    y, argmax = tier.maxpool2d_forward(x, kernel_size=(k, k), stride=(s, s), padding=(p, p), ceil_mode=ceil_mode,
                                       with_argmax=False)
    assert argmax is None and y.dtype == dtype
    np.testing.assert_array_equal(y, y_ref)  # NaN == NaN for assert_array_equal
    out = np.full_like(y_ref, 7.0)
    y2 = tier.maxpool2d_forward(x, kernel_size=(k, k), stride=(s, s), padding=(p, p), ceil_mode=ceil_mode,
                                with_argmax=False, out_y=out)[0]
    assert y2 is out or np.shares_memory(y2, out)
    np.testing.assert_array_equal(out, y_ref)


@pytest.mark.parametrize("kernel, stride, padding", [((2, 3), (1, 2), (1, 1)), ((3, 2), (2, 2), (0, 1)),
                                                     ((1, 3), (1, 2), (0, 0))])
def test_maxpool2d_without_argmax_rectangular_windows(kernel, stride, padding):
    # any window height with the written-out column pass (stride 2 across, 3 or 2 wide)
    rng = np.random.default_rng(14)
    x = rng.integers(-2, 3, (2, 3, 9, 11)).astype(np.float32)
    x[1, 0, 4, 6] = np.nan
    hp = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=False)
    y, argmax = cpu.maxpool2d_forward(x, with_argmax=False, **hp)
    assert argmax is None
    np.testing.assert_array_equal(y, ref.maxpool2d_forward(x, **hp)[0])
