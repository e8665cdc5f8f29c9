"""kernels/cuda/conv2d.py against hand values and the reference tier (simulator or GPU)."""
import numpy as np
import pytest

from kernels import to_numpy
from kernels.shapes import ConvGeometry

pytestmark = pytest.mark.gpu

# CUDA result in `dtype` vs the reference in float64 on the same values: sums of <= 36 products
# of O(1) numbers, rounded in float32 (and summed in another order) on the CUDA side.
TOL = {np.float32: dict(rtol=1e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-13)}

CONFIGS = [  # (x shape, w shape, ConvGeometry(stride, padding, groups)), each launch a few thousand threads at most
    ((2, 4, 5, 5), (6, 2, 3, 3), ConvGeometry((1, 1), (1, 1), 2)),  # AlexNet-like groups, same padding
    ((2, 3, 6, 5), (4, 3, 3, 2), ConvGeometry((2, 1), (0, 1), 1)),  # rectangular kernel, stride and padding
    ((3, 2, 4, 4), (3, 2, 1, 1), ConvGeometry((1, 1), (0, 0), 1)),  # pointwise
]


def test_conv2d_hand_values(be):
    x = be.asarray(np.arange(9.0).reshape(1, 1, 3, 3))  # 0..8
    w = be.asarray(np.ones((1, 1, 2, 2)))
    b = be.asarray(np.array([1.0]))
    y = be.conv2d.conv2d_forward(x, w, b, geometry=ConvGeometry(stride=(1, 1), padding=(0, 0), groups=1))
    np.testing.assert_array_equal(to_numpy(y), [[[[0 + 1 + 3 + 4 + 1, 1 + 2 + 4 + 5 + 1],
                                                  [3 + 4 + 6 + 7 + 1, 4 + 5 + 7 + 8 + 1]]]])
    dx, dw, db = be.conv2d.conv2d_backward(be.asarray(np.ones((1, 1, 2, 2))), x, w,
                                           geometry=ConvGeometry(stride=(1, 1), padding=(0, 0), groups=1))
    np.testing.assert_array_equal(to_numpy(dx), [[[[1, 2, 1], [2, 4, 2], [1, 2, 1]]]])  # windows per pixel
    np.testing.assert_array_equal(to_numpy(dw), [[[[8, 12], [20, 24]]]])  # sum of each window offset
    np.testing.assert_array_equal(to_numpy(db), [4.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_im2col_col2im_vs_reference(be, ref, rng, dtype):
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)  # cols (2, 3*3*2, 3*3): 324 threads
    kw = dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 1))
    cols = be.conv2d.im2col(be.asarray(x), **kw)
    cols_ref = ref.conv2d.im2col(x.astype(np.float64), **kw)
    assert cols.dtype == dtype
    np.testing.assert_array_equal(to_numpy(cols), cols_ref, err_msg="im2col")
    dcols = rng.standard_normal(cols_ref.shape).astype(dtype)
    dx = be.conv2d.col2im(be.asarray(dcols), x_shape=x.shape, **kw)
    dx_ref = ref.conv2d.col2im(dcols.astype(np.float64), x_shape=x.shape, **kw)
    np.testing.assert_allclose(to_numpy(dx), dx_ref, **TOL[dtype], err_msg="col2im")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, geometry", CONFIGS)
def test_conv2d_vs_reference(be, ref, rng, dtype, x_shape, w_shape, geometry):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    hyper = dict(geometry=geometry)
    x64, w64, b64 = x.astype(np.float64), w.astype(np.float64), b.astype(np.float64)
    y_ref = ref.conv2d.conv2d_forward(x64, w64, b64, **hyper)
    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    grads_ref = ref.conv2d.conv2d_backward(dy.astype(np.float64), x64, w64, **hyper)
    y = be.conv2d.conv2d_forward(be.asarray(x), be.asarray(w), be.asarray(b), **hyper)
    grads = be.conv2d.conv2d_backward(be.asarray(dy), be.asarray(x), be.asarray(w), **hyper)
    assert y.dtype == dtype and y.shape == y_ref.shape
    np.testing.assert_allclose(to_numpy(y), y_ref, **TOL[dtype], err_msg="conv2d forward")
    for name, got, want in zip(("dx", "dw", "db"), grads, grads_ref, strict=True):
        assert got.dtype == dtype and got.shape == want.shape, name
        np.testing.assert_allclose(to_numpy(got), want, **TOL[dtype], err_msg=name)


def test_conv2d_batch_slices_change_nothing(be, rng):
    # a budget of one image's columns (2*3*3 rows x 16 columns x 8 bytes) forces 3 slices of 1
    x, w, b = rng.standard_normal((3, 2, 4, 4)), rng.standard_normal((2, 2, 3, 3)), rng.standard_normal(2)
    dy = rng.standard_normal((3, 2, 4, 4))
    hyper = dict(geometry=ConvGeometry(stride=(1, 1), padding=(1, 1), groups=1))
    x, w, b, dy = (be.asarray(a) for a in (x, w, b, dy))
    whole = be.conv2d.conv2d_forward(x, w, b, **hyper), be.conv2d.conv2d_backward(dy, x, w, **hyper)
    sliced = (be.conv2d.conv2d_forward(x, w, b, budget_bytes=18 * 16 * 8, **hyper),
              be.conv2d.conv2d_backward(dy, x, w, budget_bytes=18 * 16 * 8, **hyper))
    np.testing.assert_allclose(to_numpy(sliced[0]), to_numpy(whole[0]), rtol=1e-13, atol=1e-14)
    for name, got, want in zip(("dx", "dw", "db"), sliced[1], whole[1], strict=True):
        np.testing.assert_allclose(to_numpy(got), to_numpy(want), rtol=1e-13, atol=1e-14, err_msg=name)
    dx, dw, db = be.conv2d.conv2d_backward(dy, x, w, need=("dw",), **hyper)
    assert dx is None
    np.testing.assert_allclose(to_numpy(dw), to_numpy(whole[1][1]), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("x_shape, w_shape, stride, padding, groups, out_shape", [
    ((1, 3, 11, 11), (4, 3, 7, 7), (2, 2), (0, 0), 1, (1, 4, 3, 3)),  # custom model conv1, shrunk
    ((1, 4, 6, 6), (2, 2, 3, 3), (1, 1), (1, 1), 2, (1, 2, 6, 6)),  # same padding, groups
    ((1, 1, 5, 7), (1, 1, 3, 5), (2, 3), (1, 2), 1, (1, 1, 3, 3)),  # (5+2-3)//2+1, (7+4-5)//3+1
])
def test_conv2d_output_shapes(be, x_shape, w_shape, stride, padding, groups, out_shape):
    x, w = be.asarray(np.zeros(x_shape, dtype=np.float32)), be.asarray(np.zeros(w_shape, dtype=np.float32))
    y = be.conv2d.conv2d_forward(x, w, be.asarray(np.zeros(w_shape[0], dtype=np.float32)),
                                 geometry=ConvGeometry(stride, padding, groups))
    assert y.shape == out_shape


def test_conv2d_rejects_bad_input(be):
    x, b = be.asarray(np.ones((1, 4, 5, 5))), be.asarray(np.ones(6))
    with pytest.raises(ValueError, match=r"\(1, 4, 5, 5\).*\(6, 3, 3, 3\)"):
        be.conv2d.conv2d_forward(x, be.asarray(np.ones((6, 3, 3, 3))), b,
                                 geometry=ConvGeometry(stride=(1, 1), padding=(0, 0), groups=1))
    with pytest.raises(ValueError, match="dtypes differ"):
        be.conv2d.conv2d_forward(x, be.asarray(np.ones((6, 4, 3, 3), dtype=np.float32)), b,
                                 geometry=ConvGeometry(stride=(1, 1), padding=(0, 0), groups=1))
    with pytest.raises(ValueError, match="gives output"):
        be.conv2d.conv2d_forward(x, be.asarray(np.ones((6, 4, 7, 7))), b,
                                 geometry=ConvGeometry(stride=(1, 1), padding=(0, 0), groups=1))


@pytest.mark.parametrize("x_shape, w_shape, geometry", CONFIGS)
def test_conv2d_fused_relu_is_relu_of_forward(be, rng, x_shape, w_shape, geometry):
    # relu=True rectifies in the bias kernel: this tier's relu_forward of its own output (tests/test_fused_relu.py)
    x = be.asarray(rng.standard_normal(x_shape).astype(np.float32))
    w = be.asarray(rng.standard_normal(w_shape).astype(np.float32))
    b = be.asarray(rng.standard_normal(w_shape[0]).astype(np.float32))
    y = be.conv2d.conv2d_forward(x, w, b, geometry=geometry)
    assert (to_numpy(y) < 0).any()
    np.testing.assert_array_equal(to_numpy(be.conv2d.conv2d_forward(x, w, b, geometry=geometry, relu=True)),
                                  to_numpy(be.relu.relu_forward(y)))
