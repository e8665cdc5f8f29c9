"""Softmax over the classes, the CPU tier. The math is in kernels/reference/softmax.py.

Shapes: N batch, K classes; x, y, dy, dx are (N, K).

One parallel Numba job per row; each makes three sweeps over its K values, which stay in
cache: the maximum, the exponentials and their sum (in float64), the normalisation.
"""
import math

import numpy as np
from numba import njit, prange

from kernels.shapes import check_softmax_args, check_softmax_backward_args


@njit(parallel=True, cache=True)
def _softmax_forward_kernel(x, y):
    N, K = x.shape
    for n in prange(N):
        m = x[n, 0]
        for i in range(1, K):
            m = max(m, x[n, i])  # row maximum: exp(x - m) <= 1 never overflows
        total = 0.0
        for i in range(K):
            e = math.exp(np.float64(x[n, i]) - m)
            y[n, i] = e
            total += e
        for i in range(K):
            y[n, i] /= total


@njit(parallel=True, cache=True)
def _softmax_backward_kernel(dy, y, dx):
    N, K = y.shape
    for n in prange(N):
        dot = 0.0  # sum_i dy_i * y_i, in float64
        for i in range(K):
            dot += np.float64(dy[n, i]) * y[n, i]
        for i in range(K):
            dx[n, i] = y[n, i] * (dy[n, i] - dot)


def softmax_forward(x):
    """Probabilities over axis 1.

    x: float32/float64 (N, K)
    Returns y: (N, K), dtype of x; each row sums to 1.
    """
    check_softmax_args(x)
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)  # (N, K)
    _softmax_forward_kernel(x, y)
    return y


def softmax_backward(dy, y):
    """dx = y * (dy - sum(dy * y) per row).

    dy, y: float32/float64 (N, K)
    Returns dx: (N, K), dtype of dy.
    """
    check_softmax_backward_args(dy, y)
    dy, y = np.ascontiguousarray(dy), np.ascontiguousarray(y)
    dx = np.empty_like(dy)  # (N, K)
    _softmax_backward_kernel(dy, y, dx)
    return dx
