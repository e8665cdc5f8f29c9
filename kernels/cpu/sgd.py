"""SGD with momentum and L2 weight decay, the CPU tier. The math is in kernels/reference/sgd.py.

Shapes: any; w, dw, v share one shape and dtype.

    v = momentum * v - lr * (dw + weight_decay * w);  w = w + v
One parallel Numba loop over the flat arrays reads w, dw, v once and writes w, v once (NumPy
would make five passes and two temporaries).

Weight averaging: avg = decay*avg + (1 - decay)*w, one parallel pass, the coefficients and every
operation in the arrays' dtype (no fused multiply-add: the reference's bits).
"""
import numpy as np
from numba import njit, prange

from kernels.shapes import check_average_args, check_sgd_args


@njit(parallel=True, cache=True)
def _sgd_momentum_kernel(w, dw, v, lr, momentum, weight_decay):
    for i in prange(w.size):
        v[i] = momentum * v[i] - lr * (dw[i] + weight_decay * w[i])
        w[i] += v[i]


def sgd_momentum_update(w, dw, v, *, lr, momentum, weight_decay):
    """One momentum step, in place: v = momentum*v - lr*(dw + weight_decay*w); w += v.

    w, dw, v: float32/float64, one shape; w and v are overwritten (both C-contiguous).
    Returns None.
    """
    check_sgd_args(w, dw, v)
    _sgd_momentum_kernel(w.reshape(-1), np.ascontiguousarray(dw).reshape(-1), v.reshape(-1),
                         float(lr), float(momentum), float(weight_decay))


@njit(parallel=True, cache=True)
def _weight_average_kernel(avg, w, d, e):
    for i in prange(avg.size):
        avg[i] = avg[i] * d + w[i] * e


def weight_average_update(avg, w, *, decay):
    """One averaging step, in place: avg = decay*avg + (1 - decay)*w.

    avg, w: float32/float64, one shape; avg is overwritten (C-contiguous). decay in [0, 1].
    Returns None.
    """
    check_average_args(avg, w, decay)
    dt = avg.dtype.type
    _weight_average_kernel(avg.reshape(-1), np.ascontiguousarray(w).reshape(-1), dt(decay), dt(1.0 - float(decay)))
