"""ReLU, the CPU tier: y = max(x, 0); dx = dy * (y > 0). The math is in kernels/reference/relu.py.

Shapes: any; every array has the shape of `x`.

Both directions are one parallel Numba loop over the flat array (np.maximum uses one core); the
pass is memory bound. Timings: bench/RESULTS.md.
"""
import numpy as np
from numba import njit, prange

from kernels.shapes import out_or_empty


@njit(parallel=True, cache=True)
def _relu_forward_flat(x, y):
    for i in prange(x.size):
        y[i] = x[i] if x[i] > 0 or x[i] != x[i] else 0.0  # NaN passes through, as np.maximum


@njit(parallel=True, cache=True)
def _relu_backward_flat(dy, y, dx):
    for i in prange(dy.size):
        dx[i] = dy[i] if y[i] > 0 else 0.0


def relu_forward(x, out=None):
    """y = max(x, 0).

    x: float32/float64, any shape; out: None or a C-contiguous array of x's shape and dtype
    (x itself is allowed: in place)
    Returns y: same shape and dtype as x (out when given).
    """
    x = np.asarray(x, order="C")
    y = out_or_empty("relu_forward", "out", out, x.shape, x.dtype)  # like x
    _relu_forward_flat(x.reshape(-1), y.reshape(-1))
    return y


def relu_backward(dy, y, out=None):
    """dx = dy where the forward output y > 0, else 0.

    dy: float32/float64, shape of y; y: the output of relu_forward; out: None or a C-contiguous
    array of dy's shape and dtype (dy itself is allowed)
    Returns dx: shape and dtype of dy (out when given).
    """
    if dy.shape != y.shape:
        raise ValueError(f"relu_backward: dy {dy.shape} and y {y.shape} must have one shape")
    dy, y = np.asarray(dy, order="C"), np.asarray(y, order="C")
    dx = out_or_empty("relu_backward", "out", out, dy.shape, dy.dtype)  # like dy
    _relu_backward_flat(dy.reshape(-1), y.reshape(-1), dx.reshape(-1))
    return dx
