"""conv2d kernels: im2col, col2im, conv2d_forward, conv2d_backward, reference and CPU tiers.

The four tests every op gets (docs/style.md):
 1. tiny hand-computed values (worked out on paper, written out as literals);
 2. backward vs finite differences in float64 for both tiers;
 3. cpu vs reference in float32 and float64, including a budget small enough to force slices;
 4. output shapes for several stride/padding choices, and the errors for bad shapes.
"""
import re
from types import SimpleNamespace

import numpy as np
import pytest

from kernels.cpu import conv2d as cpu
from kernels.reference import conv2d as ref
from kernels.shapes import ConvGeometry
from specs import check_conv_backward_fd

# cpu vs reference: max |cpu - ref| / max |ref|, per dtype
TOL = {np.float32: 2e-6, np.float64: 1e-13}
# finite differences (float64, centred) vs analytic backward. y is linear in each of x, w, b, so
# the centred difference has no truncation error at any step; a large step only shrinks round-off.
FD_TOL = 1e-7
FD_STEP = 1e-3

OP = "conv2d"  # the fixture `tier` (tests/conftest.py) is this op's module in each tier
# the hand-value tests also check the literal loops of the reference (the docstring's sum, term by
# term): they parametrise `tier` themselves, over both tiers and the loops
LOOPS = SimpleNamespace(conv2d_forward=ref.conv2d_forward_loops, conv2d_backward=ref.conv2d_backward_loops)
HAND = [pytest.param(ref, id="reference"), pytest.param(cpu, id="cpu"), pytest.param(LOOPS, id="loops")]


def max_rel_diff(a, b):
    """max |a - b| / max |b|: the error relative to the array's scale (llm.c's printed max diff)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


# ---------------------------------------------------------------------------------------------
# 1. tiny hand-computed values
# ---------------------------------------------------------------------------------------------
X3 = np.array([[[[1, 2, 3], [4, 5, 6], [7, 8, 9]]]], dtype=np.float64)  # (1, 1, 3, 3)
W2 = np.array([[[[1, 2], [3, 4]]]], dtype=np.float64)  # (1, 1, 2, 2)
# two channels for the group and row-order cases
X2C = np.array([[[[1, 2], [3, 4]], [[5, 6], [7, 8]]]], dtype=np.float64)  # (1, 2, 2, 2)
W_GROUPS = np.array([[[[1, 1], [1, 1]]], [[[1, 0], [0, 0]]],
                     [[[1, 1], [1, 1]]], [[[0, 0], [0, 1]]]], dtype=np.float64)  # (4, 1, 2, 2)


@pytest.mark.parametrize("tier", HAND)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_hand_values(tier, dtype):
    x, w, b = X3.astype(dtype), W2.astype(dtype), np.array([0.5], dtype)
    cases = [  # (stride, padding, y without the bias)
        ((1, 1), (0, 0), [[37, 47], [67, 77]]),
        ((2, 2), (1, 1), [[4, 18], [36, 77]]),
        ((1, 1), (1, 1), [[4, 11, 18, 9], [18, 37, 47, 21], [36, 67, 77, 33], [14, 23, 26, 9]]),
    ]
    for stride, padding, expected in cases:
        y = tier.conv2d_forward(x, w, b, geometry=ConvGeometry(stride=stride, padding=padding, groups=1))
        assert y.dtype == dtype
        np.testing.assert_array_equal(y[0, 0], np.array(expected, dtype) + dtype(0.5))

    # groups=2: filters 0, 1 see channel 0 only, filters 2, 3 channel 1 only
    y = tier.conv2d_forward(X2C.astype(dtype), W_GROUPS.astype(dtype), np.zeros(4, dtype),
                            geometry=ConvGeometry(stride=(1, 1), padding=(0, 0), groups=2))
    np.testing.assert_array_equal(y.reshape(4), np.array([10, 1, 26, 8], dtype))


@pytest.mark.parametrize("tier", HAND)
def test_backward_hand_values(tier):
    dy = np.array([[[[1, 0], [2, -1]]]], dtype=np.float64)  # (1, 1, 2, 2)
    dx, dw, db = tier.conv2d_backward(dy, X3, W2, geometry=ConvGeometry(stride=(1, 1), padding=(0, 0), groups=1))
    np.testing.assert_array_equal(dx[0, 0], [[1, 2, 0], [5, 7, -2], [6, 5, -4]])
    np.testing.assert_array_equal(dw[0, 0], [[4, 6], [10, 12]])
    np.testing.assert_array_equal(db, [2])

    # stride 2, padding 1: the four windows tile the padded 4x4 corner without overlap
    dx, dw, db = tier.conv2d_backward(np.ones((1, 1, 2, 2)), X3, W2,
                                      geometry=ConvGeometry(stride=(2, 2), padding=(1, 1), groups=1))
    np.testing.assert_array_equal(dx[0, 0], [[4, 3, 4], [2, 1, 2], [4, 3, 4]])
    np.testing.assert_array_equal(dw[0, 0], [[5, 10], [10, 20]])
    np.testing.assert_array_equal(db, [4])

    dx, dw, db = tier.conv2d_backward(np.array([1.0, 2, 3, 4]).reshape(1, 4, 1, 1), X2C, W_GROUPS,
                                      geometry=ConvGeometry(stride=(1, 1), padding=(0, 0), groups=2))
    np.testing.assert_array_equal(dx[0], [[[3, 1], [1, 1]], [[3, 3], [3, 7]]])
    np.testing.assert_array_equal(dw[:, 0], [[[1, 2], [3, 4]], [[2, 4], [6, 8]],
                                             [[15, 18], [21, 24]], [[20, 24], [28, 32]]])
    np.testing.assert_array_equal(db, [1, 2, 3, 4])

    dx, dw, db = tier.conv2d_backward(dy, X3, W2, geometry=ConvGeometry(stride=(1, 1), padding=(0, 0), groups=1),
                                      need=("dw",))
    assert dx is None
    np.testing.assert_array_equal(dw[0, 0], [[4, 6], [10, 12]])


def test_im2col_col2im_hand_values(tier):
    cols = tier.im2col(X3, kernel_size=(2, 2), stride=(1, 1), padding=(0, 0))
    np.testing.assert_array_equal(cols[0], [[1, 2, 4, 5], [2, 3, 5, 6], [4, 5, 7, 8], [5, 6, 8, 9]])
    cols = tier.im2col(X3, kernel_size=(2, 2), stride=(2, 2), padding=(1, 1))
    np.testing.assert_array_equal(cols[0], [[0, 0, 0, 5], [0, 0, 4, 6], [0, 2, 0, 8], [1, 3, 7, 9]])
    # row c*KH*KW + kh*KW + kw: channel-major
    cols = tier.im2col(X2C, kernel_size=(1, 2), stride=(1, 1), padding=(0, 0))
    np.testing.assert_array_equal(cols[0], [[1, 3], [2, 4], [5, 7], [6, 8]])
    # col2im of ones counts how many windows cover each pixel
    dx = tier.col2im(np.ones((1, 4, 4)), x_shape=(1, 1, 3, 3), kernel_size=(2, 2), stride=(1, 1),
                     padding=(0, 0))
    np.testing.assert_array_equal(dx[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


# ---------------------------------------------------------------------------------------------
# 2. backward vs finite differences (float64)
# ---------------------------------------------------------------------------------------------
FD_CONFIGS = [  # (x shape, w shape, stride, padding, groups)
    ((2, 4, 5, 6), (6, 2, 3, 2), (2, 2), (1, 2), 2),  # non-square input and kernel, groups 2
    ((1, 3, 7, 5), (4, 3, 2, 3), (2, 1), (0, 1), 1),
    ((2, 2, 4, 3), (4, 1, 1, 1), (1, 1), (0, 0), 2),  # 1x1: the cpu tier's no-im2col path
]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, groups", FD_CONFIGS)
def test_backward_vs_finite_differences(tier, x_shape, w_shape, stride, padding, groups):
    check_conv_backward_fd(tier, x_shape, w_shape, ConvGeometry(stride, padding, groups), seed=0, tol=FD_TOL,
                           step=FD_STEP)


# ---------------------------------------------------------------------------------------------
# 3. cpu vs reference
# ---------------------------------------------------------------------------------------------
CONFIGS = [  # (x shape, w shape, stride, padding, groups)
    ((3, 4, 9, 8), (6, 2, 3, 3), (1, 1), (1, 1), 2),
    ((2, 3, 11, 13), (5, 3, 4, 3), (3, 2), (2, 0), 1),
    ((2, 6, 7, 7), (4, 3, 5, 5), (1, 1), (2, 2), 2),  # AlexNet conv2-like: 5x5 pad 2 groups 2
    ((3, 3, 23, 23), (4, 3, 11, 11), (4, 4), (0, 0), 1),  # AlexNet conv1-like: 11x11 stride 4
    ((2, 4, 5, 6), (3, 4, 1, 1), (1, 1), (0, 0), 1),  # pointwise
    ((2, 4, 5, 6), (3, 4, 1, 1), (2, 1), (1, 0), 1),  # 1x1 with stride and padding: im2col path
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, groups", CONFIGS)
def test_cpu_matches_reference(dtype, x_shape, w_shape, stride, padding, groups):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    hp = dict(geometry=ConvGeometry(stride, padding, groups))
    geo = dict(kernel_size=w_shape[2:], stride=stride, padding=padding)
    y_ref = ref.conv2d_forward(x, w, b, **hp)
    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    cols_ref = ref.im2col(x, **geo)
    dcols = rng.standard_normal(cols_ref.shape).astype(dtype)

    results = {
        "y": (cpu.conv2d_forward(x, w, b, **hp), y_ref),
        "cols": (cpu.im2col(x, **geo), cols_ref),
        "col2im": (cpu.col2im(dcols, x_shape=x_shape, **geo),
                   ref.col2im(dcols, x_shape=x_shape, **geo)),
    }
    for name, a, r in zip(("dx", "dw", "db"), cpu.conv2d_backward(dy, x, w, **hp),
                          ref.conv2d_backward(dy, x, w, **hp), strict=True):
        results[name] = (a, r)
    _, dw, db = cpu.conv2d_backward(dy, x, w, **hp, need=("dw",))
    results["dw, no dx"] = (dw, results["dw"][1])
    results["db, no dx"] = (db, results["db"][1])

    for name, (a, r) in results.items():
        assert a.dtype == dtype and a.shape == r.shape, name
        diff = max_rel_diff(a, r)
        print(f"{name:18s} max diff {diff:.2e}")
        assert diff < TOL[dtype], f"{name}: {diff:.2e} >= {TOL[dtype]:.0e}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("W, KW, sw, pw", [(17, 3, 1, 0), (18, 3, 1, 0), (19, 3, 1, 0), (20, 5, 1, 2),
                                           (34, 3, 1, 0), (35, 3, 1, 1), (37, 3, 2, 1), (49, 7, 2, 1), (227, 7, 2, 0)])
def test_cpu_image_columns_are_the_plain_copy(dtype, W, KW, sw, pw):
    # the per-image im2col of the forward and weight gradient (_im2col_image) copies runs of OW values in blocks
    # of 16 with an overlapping last block: the same values as the plane-parallel im2col, bit for bit, for runs
    # shorter than 16, of exactly 16 and a multiple of it, and of 16k + 1 .. 16k + 15 (OW = 15 .. 111 here)
    x = np.random.default_rng(W).standard_normal((2, 2, 9, W)).astype(dtype)
    KH, sh, ph = 3, 1, 1
    OH, OW = (9 + 2 * ph - KH) // sh + 1, (W + 2 * pw - KW) // sw + 1
    geo = (KH, KW, sh, sw, ph, pw, OH, OW)
    xd = np.empty(cpu._split_shape(2, geo), dtype)
    cols = np.full((2 * KH * KW, OH * OW), np.nan, dtype)
    cpu._im2col_image(x, 1, geo, xd, cols)
    expect = cpu.im2col(x, kernel_size=(KH, KW), stride=(sh, sw), padding=(ph, pw))[1]
    np.testing.assert_array_equal(cols, expect)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, stride, padding, groups", CONFIGS[:3] + CONFIGS[4:5])
def test_cpu_slices_equal_one_slice(dtype, x_shape, w_shape, stride, padding, groups):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    hp = dict(geometry=ConvGeometry(stride, padding, groups))
    y = cpu.conv2d_forward(x, w, b, **hp)  # the default budget holds the whole batch
    dy = rng.standard_normal(y.shape).astype(dtype)
    grads = cpu.conv2d_backward(dy, x, w, **hp)
    image_bytes = x_shape[1] * w_shape[2] * w_shape[3] * y.shape[2] * y.shape[3] * x.itemsize
    for budget in (1, 2 * image_bytes):  # slices of 1 image; of 2 (uneven with N=3)
        np.testing.assert_array_equal(cpu.conv2d_forward(x, w, b, **hp, budget_bytes=budget), y)
        for a, r in zip(cpu.conv2d_backward(dy, x, w, **hp, budget_bytes=budget), grads, strict=True):
            np.testing.assert_array_equal(a, r)


def test_cpu_accepts_non_contiguous_input():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 6, 3)).transpose(0, 3, 1, 2)  # (2, 3, 5, 6), not C-contiguous
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    hp = dict(geometry=ConvGeometry(stride=(1, 1), padding=(1, 1), groups=1))
    y = cpu.conv2d_forward(x, w, b, **hp)
    assert max_rel_diff(y, ref.conv2d_forward(x, w, b, **hp)) < TOL[np.float64]
    dy = rng.standard_normal(y.shape).transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2)
    for a, r in zip(cpu.conv2d_backward(dy, x, w, **hp), ref.conv2d_backward(dy, x, w, **hp), strict=True):
        assert max_rel_diff(a, r) < TOL[np.float64]


# ---------------------------------------------------------------------------------------------
# 4. output shapes and errors
# ---------------------------------------------------------------------------------------------
SHAPES = [  # (x shape, w shape, stride, padding, groups, y shape worked out by hand)
    ((1, 3, 227, 227), (2, 3, 11, 11), (4, 4), (0, 0), 1, (1, 2, 55, 55)),  # AlexNet conv1
    ((1, 3, 227, 227), (2, 3, 7, 7), (2, 2), (0, 0), 1, (1, 2, 111, 111)),  # custom conv1
    ((2, 2, 8, 8), (3, 2, 3, 3), (1, 1), (1, 1), 1, (2, 3, 8, 8)),  # VGG: 3x3 pad 1 keeps size
    ((1, 2, 9, 7), (2, 2, 3, 2), (2, 3), (1, 0), 1, (1, 2, 5, 2)),
    ((1, 4, 6, 6), (4, 2, 5, 5), (1, 1), (2, 2), 2, (1, 4, 6, 6)),
    ((1, 1, 10, 10), (1, 1, 2, 2), (3, 3), (0, 0), 1, (1, 1, 3, 3)),  # stride beyond the kernel
]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, groups, y_shape", SHAPES)
def test_output_shapes(tier, x_shape, w_shape, stride, padding, groups, y_shape):
    x = np.ones(x_shape, np.float32)
    w = np.ones(w_shape, np.float32)
    y = tier.conv2d_forward(x, w, np.zeros(w_shape[0], np.float32), geometry=ConvGeometry(stride, padding, groups))
    assert y.shape == y_shape and y.dtype == np.float32
    dx, dw, db = tier.conv2d_backward(y, x, w, geometry=ConvGeometry(stride, padding, groups))
    assert (dx.shape, dw.shape, db.shape) == (x_shape, w_shape, (w_shape[0],))
    geo = dict(kernel_size=w_shape[2:], stride=stride, padding=padding)
    cols = tier.im2col(x, **geo)
    assert cols.shape == (x_shape[0], x_shape[1] * w_shape[2] * w_shape[3], y_shape[2] * y_shape[3])
    assert tier.col2im(cols, x_shape=x_shape, **geo).shape == x_shape


BAD = [  # (x shape, w shape, b shape, groups, what the message must name)
    ((3, 5, 5), (2, 3, 3, 3), (2,), 1, [(3, 5, 5), (2, 3, 3, 3)]),  # x not 4-D
    ((1, 3, 5, 5), (2, 3, 3), (2,), 1, [(1, 3, 5, 5), (2, 3, 3)]),  # w not 4-D
    ((1, 4, 5, 5), (2, 3, 3, 3), (2,), 1, [(1, 4, 5, 5), (2, 3, 3, 3)]),  # C != w.shape[1]
    ((1, 4, 5, 5), (3, 2, 3, 3), (3,), 2, [(1, 4, 5, 5), (3, 2, 3, 3)]),  # F % groups
    ((1, 3, 5, 5), (2, 1, 3, 3), (2,), 2, [(1, 3, 5, 5), (2, 1, 3, 3)]),  # C % groups
    ((1, 4, 5, 5), (2, 4, 3, 3), (2,), 2, [(1, 4, 5, 5), (2, 4, 3, 3)]),  # groups mismatch
    ((1, 3, 5, 5), (2, 3, 3, 3), (3,), 1, [(3,), (2, 3, 3, 3)]),  # b shape
    ((1, 1, 2, 2), (1, 1, 3, 3), (1,), 1, [(1, 1, 2, 2), (3, 3)]),  # output below 1x1
]


@pytest.mark.parametrize("x_shape, w_shape, b_shape, groups, named", BAD)
def test_bad_shapes_raise(tier, x_shape, w_shape, b_shape, groups, named):
    x, w, b = np.ones(x_shape), np.ones(w_shape), np.ones(b_shape)
    with pytest.raises(ValueError) as err:
        tier.conv2d_forward(x, w, b, geometry=ConvGeometry(stride=(1, 1), padding=(0, 0), groups=groups))
    for shape in named:
        assert str(shape) in str(err.value), f"{err.value!r} should name {shape}"


def test_bad_dtype_and_dy_raise(tier):
    x, w, b = np.ones((1, 3, 5, 5), np.float32), np.ones((2, 3, 3, 3)), np.ones(2)
    with pytest.raises(ValueError, match=re.escape("(1, 3, 5, 5) float32")):
        tier.conv2d_forward(x, w, b, geometry=ConvGeometry(stride=(1, 1), padding=(0, 0), groups=1))
    x = x.astype(np.float64)
    with pytest.raises(ValueError, match=re.escape("dy (1, 2, 4, 4)")):
        tier.conv2d_backward(np.ones((1, 2, 4, 4)), x, w,
                             geometry=ConvGeometry(stride=(1, 1), padding=(0, 0), groups=1))
    with pytest.raises(ValueError, match=re.escape("(1, 3, 5, 5)")):
        tier.im2col(x, kernel_size=(7, 7), stride=(1, 1), padding=(0, 0))
    with pytest.raises(ValueError, match=re.escape("cols (1, 27, 8)")):
        tier.col2im(np.ones((1, 27, 8)), x_shape=(1, 3, 5, 5), kernel_size=(3, 3), stride=(1, 1),
                    padding=(0, 0))


# ---------------------------------------------------------------------------------------------
# optional: PyTorch as an independent oracle (skipped where torch is absent)
# ---------------------------------------------------------------------------------------------
def test_matches_torch(tier):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4, 9, 8))
    w = rng.standard_normal((6, 2, 3, 2))
    b = rng.standard_normal(6)
    hp = dict(stride=(2, 1), padding=(1, 2), groups=2)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.conv2d(xt, wt, bt, **hp)
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dy))

    y = tier.conv2d_forward(x, w, b, geometry=ConvGeometry(**hp))
    dx, dw, db = tier.conv2d_backward(dy, x, w, geometry=ConvGeometry(**hp))
    for a, t in ((y, yt), (dx, xt.grad), (dw, wt.grad), (db, bt.grad)):
        assert max_rel_diff(a, t.detach().numpy()) < TOL[np.float64]


def test_literal_loops_and_einsum_reference_agree_on_a_strided_grouped_case():
    rng = np.random.default_rng(11)
    x, w, b = rng.standard_normal((2, 4, 6, 5)), rng.standard_normal((6, 2, 3, 2)), rng.standard_normal(6)
    kw = dict(geometry=ConvGeometry(stride=(2, 1), padding=(1, 2), groups=2))
    y = ref.conv2d_forward_loops(x, w, b, **kw)
    np.testing.assert_allclose(y, ref.conv2d_forward(x, w, b, **kw), rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    for a, e in zip(ref.conv2d_backward_loops(dy, x, w, **kw), ref.conv2d_backward(dy, x, w, **kw), strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, groups", CONFIGS[:3] + CONFIGS[4:5])
def test_cpu_gives_the_same_bits_on_one_thread(x_shape, w_shape, stride, padding, groups):
    # images are jobs on every core and dw sums in two fixed chains: the thread count changes nothing
    import numba

    from kernels.cpu import linear
    rng = np.random.default_rng(9)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    hp = dict(geometry=ConvGeometry(stride, padding, groups))
    xl, wl = rng.standard_normal((3, 1100)).astype(np.float32), rng.standard_normal((700, 1100)).astype(np.float32)
    dyl = rng.standard_normal((3, 700)).astype(np.float32)

    def run():
        y = cpu.conv2d_forward(x, w, b, **hp)
        grads = cpu.conv2d_backward(np.ones_like(y), x, w, **hp)
        lin = (linear.linear_forward(xl, wl, wl[:, 0]),) + linear.linear_backward(dyl, xl, wl)
        return (y,) + grads + lin

    many = run()
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one = run()
    finally:
        numba.set_num_threads(before)
    for a, r in zip(one, many, strict=True):
        np.testing.assert_array_equal(a, r)
