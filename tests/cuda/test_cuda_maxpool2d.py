"""kernels/cuda/maxpool2d.py against hand values and the reference tier (simulator or GPU)."""
import numpy as np
import pytest

from kernels import to_numpy

pytestmark = pytest.mark.gpu

# Max-pooling picks and adds values: forward must match exactly; backward adds at most
# ceil(KH/SH)*ceil(KW/SW) = 4 gradients per pixel here, in float32 rounded once per add.
TOL = {np.float32: dict(rtol=1e-6, atol=1e-7), np.float64: dict(rtol=1e-15, atol=0)}

CONFIGS = [  # (x shape, the window: kernel_size, stride, padding, ceil_mode)
    ((2, 3, 7, 6), dict(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), ceil_mode=True)),  # AlexNet-like
    ((1, 2, 6, 7), dict(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), ceil_mode=False)),  # VGG-like tiling
    ((1, 2, 5, 6), dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0), ceil_mode=False)),  # rectangular
]


def test_maxpool_hand_values(be):
    x = np.array([[[[1, 1, 0], [1, 1, 5], [0, 2, 0]]]], dtype=np.float64)  # (1, 1, 3, 3)
    y, argmax = be.maxpool2d.maxpool2d_forward(be.asarray(x), kernel_size=(2, 2), stride=(1, 1),
                                               padding=(0, 0), ceil_mode=False)
    np.testing.assert_array_equal(to_numpy(y), [[[[1, 5], [2, 5]]]])
    np.testing.assert_array_equal(to_numpy(argmax), [[[[0, 5], [7, 5]]]])  # tie of four 1s: the first
    dx = be.maxpool2d.maxpool2d_backward(be.asarray(np.array([[[[1.0, 2.0], [3.0, 4.0]]]])), argmax,
                                         x_shape=x.shape)
    np.testing.assert_array_equal(to_numpy(dx), [[[[1, 0, 0], [0, 0, 6], [0, 3, 0]]]])  # 5 won twice


def test_maxpool_padding_never_wins(be):
    x = -np.arange(1.0, 5.0).reshape(1, 1, 2, 2)  # all negative: zero padding would win, -inf never
    y, argmax = be.maxpool2d.maxpool2d_forward(be.asarray(x), kernel_size=(2, 2), stride=(2, 2),
                                               padding=(1, 1), ceil_mode=False)
    np.testing.assert_array_equal(to_numpy(y), [[[[-1, -2], [-3, -4]]]])
    np.testing.assert_array_equal(to_numpy(argmax), [[[[0, 1], [2, 3]]]])


@pytest.mark.parametrize("x_shape, kernel_size, stride, padding, out_hw", [
    ((1, 1, 6, 6), (3, 3), (2, 2), (0, 0), (3, 3)),  # ceil: (6-3)/2 = 1.5 -> 2, + 1
    ((1, 1, 5, 5), (2, 2), (2, 2), (1, 1), (3, 3)),  # ceil gives 4, but window 4 starts in the right padding
    ((1, 1, 55, 55), (3, 3), (2, 2), (0, 0), (27, 27)),  # AlexNet pool1
])
def test_maxpool_ceil_mode_shapes(be, x_shape, kernel_size, stride, padding, out_hw):
    x = be.asarray(np.zeros(x_shape, dtype=np.float32))
    y, argmax = be.maxpool2d.maxpool2d_forward(x, kernel_size=kernel_size, stride=stride,
                                               padding=padding, ceil_mode=True)
    assert y.shape == x_shape[:2] + out_hw and argmax.shape == y.shape and argmax.dtype == np.int64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, kw", CONFIGS)
def test_maxpool_vs_reference(be, ref, rng, dtype, x_shape, kw):
    x = rng.permutation(np.prod(x_shape)).reshape(x_shape).astype(dtype)  # distinct values: no ties
    y, argmax = be.maxpool2d.maxpool2d_forward(be.asarray(x), **kw)
    y_ref, argmax_ref = ref.maxpool2d.maxpool2d_forward(x.astype(np.float64), **kw)
    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    dx = be.maxpool2d.maxpool2d_backward(be.asarray(dy), argmax, x_shape=x_shape)
    dx_ref = ref.maxpool2d.maxpool2d_backward(dy.astype(np.float64), argmax_ref, x_shape=x_shape)
    assert y.dtype == dtype and dx.dtype == dtype and argmax.dtype == np.int64
    np.testing.assert_array_equal(to_numpy(y), y_ref, err_msg="maxpool forward")
    np.testing.assert_array_equal(to_numpy(argmax), argmax_ref, err_msg="argmax")
    np.testing.assert_allclose(to_numpy(dx), dx_ref, **TOL[dtype], err_msg="maxpool backward")


@pytest.mark.parametrize("x_shape, kw", CONFIGS)
def test_maxpool_without_argmax(be, ref, rng, x_shape, kw):
    # a test-time forward asks for y alone: the same y, and no argmax returned
    x = rng.permutation(np.prod(x_shape)).reshape(x_shape).astype(np.float32)
    y, argmax = be.maxpool2d.maxpool2d_forward(be.asarray(x), with_argmax=False, **kw)
    assert argmax is None
    np.testing.assert_array_equal(to_numpy(y), ref.maxpool2d.maxpool2d_forward(x, **kw)[0])


def test_maxpool_rejects_bad_input(be):
    x = be.asarray(np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match="padding"):
        be.maxpool2d.maxpool2d_forward(x, kernel_size=(2, 2), stride=(2, 2), padding=(2, 2), ceil_mode=False)
    y, argmax = be.maxpool2d.maxpool2d_forward(x, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0),
                                               ceil_mode=False)
    with pytest.raises(ValueError, match=r"\(1, 1, 3, 2\).*\(1, 1, 2, 2\)"):
        be.maxpool2d.maxpool2d_backward(be.asarray(np.zeros((1, 1, 3, 2))), argmax, x_shape=(1, 1, 4, 4))
