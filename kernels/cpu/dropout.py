"""Inverted dropout, the CPU tier. The math is in kernels/reference/dropout.py.

Shapes: any; x, y, dy, dx and mask all have one shape.

The mask is drawn exactly as the reference draws it (u = rng.random(shape), float64), so one
seed gives one mask in both tiers; turning u into the mask and the two products are parallel
Numba loops over the flat arrays (the passes are memory bound; timings in bench/RESULTS.md).
"""
import numpy as np
from numba import njit, prange

from kernels.shapes import check_dropout_args, check_dropout_mask_args, check_out, out_or_empty


@njit(parallel=True, cache=True)
def _mask_from_uniform(u, mask, p, keep_scale):
    for i in prange(u.size):
        mask[i] = keep_scale if u[i] >= p else 0.0  # keep where u >= p


@njit(parallel=True, cache=True)
def _multiply(a, mask, out):
    for i in prange(a.size):
        out[i] = a[i] * mask[i]


def dropout_mask(shape, *, p, rng, dtype, out=None, work=None):
    """Draw a mask of 0 and 1/(1-p) values; the same rng state gives the same mask.

    shape: tuple; p: drop probability in [0, 1); rng: numpy.random.Generator;
    dtype: float32 or float64; out: None or a C-contiguous `shape` array of `dtype` for the mask;
    work: None or a C-contiguous `shape` float64 array for the uniform draws (the same draws)
    Returns mask: `shape`, `dtype` (out when given).
    """
    check_dropout_mask_args(p, rng, dtype)
    if work is None:
        u = rng.random(shape)  # (shape) float64 in [0, 1)
    else:
        u = rng.random(out=check_out("dropout_mask", "work", work, shape, np.float64))  # the same draws
    mask = out_or_empty("dropout_mask", "out", out, u.shape, dtype)  # (shape)
    _mask_from_uniform(u.reshape(-1), mask.reshape(-1), float(p), 1.0 / (1.0 - p))
    return mask


def dropout_forward(x, mask, out=None):
    """y = x * mask.

    x: float32/float64, any shape; mask: same shape and dtype; out: None or a C-contiguous array
    of x's shape and dtype for y
    Returns y: shape and dtype of x (out when given).
    """
    check_dropout_args(x, mask, "x")
    x, mask = np.asarray(x, order="C"), np.asarray(mask, order="C")
    y = out_or_empty("dropout_forward", "out", out, x.shape, x.dtype)  # like x
    _multiply(x.reshape(-1), mask.reshape(-1), y.reshape(-1))
    return y


def dropout_backward(dy, mask, out=None):
    """dx = dy * mask.

    dy: float32/float64, any shape; mask: same shape and dtype; out: None or a C-contiguous array
    of dy's shape and dtype for dx
    Returns dx: shape and dtype of dy (out when given).
    """
    check_dropout_args(dy, mask, "dy")
    dy, mask = np.asarray(dy, order="C"), np.asarray(mask, order="C")
    dx = out_or_empty("dropout_backward", "out", out, dy.shape, dy.dtype)  # like dy
    _multiply(dy.reshape(-1), mask.reshape(-1), dx.reshape(-1))
    return dx
