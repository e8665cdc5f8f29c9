"""Softmax over the classes, the CUDA tier: one thread per row.

Shapes: N batch, K classes; x, y, dy, dx are (N, K).

Forward, row by row (the row maximum m_n is taken out so exp never overflows):
    y[n, i] = exp(x[n, i] - m_n) / sum_j exp(x[n, j] - m_n)
Backward (derivation in kernels/reference/softmax.py): dy_i/dx_j = y_i * ([i == j] - y_j), so
    dx[n, j] = y[n, j] * (dy[n, j] - sum_i dy[n, i] * y[n, i])

One thread per row, not per element: every output of a row needs the row's maximum and sum
(forward) or dot product (backward), and K is small (2 to 1000 classes), so one thread walking
its row three times is simpler than a block-wide reduction and fast enough for a loss layer.
"""
import math

from numba import cuda

from kernels.cuda._launch import check_float, device_arrays, launch
from kernels.shapes import check_softmax_args, check_softmax_backward_args

# kernels


@cuda.jit(cache=True)
def _softmax_forward_kernel(x, y):
    """x, y (N, K); thread n does row n."""
    n = cuda.grid(1)
    if n < x.shape[0]:
        K = x.shape[1]
        m = x[n, 0]
        for j in range(1, K):  # the row maximum
            if x[n, j] > m:
                m = x[n, j]
        total = 0.0
        for j in range(K):
            e = math.exp(x[n, j] - m)
            y[n, j] = e
            total += e
        for j in range(K):
            y[n, j] /= total


@cuda.jit(cache=True)
def _softmax_backward_kernel(dy, y, dx):
    """dy, y, dx (N, K); thread n does row n."""
    n = cuda.grid(1)
    if n < dy.shape[0]:
        dot = 0.0  # sum_i dy[n, i] * y[n, i]
        for i in range(dy.shape[1]):
            dot += dy[n, i] * y[n, i]
        for j in range(dy.shape[1]):
            dx[n, j] = y[n, j] * (dy[n, j] - dot)

# launchers


def softmax_forward(x):
    """Probabilities over axis 1.

    x: float32/float64 (N, K)
    Returns y: (N, K), dtype of x; each row sums to 1.
    """
    xp = device_arrays("softmax_forward", x=x)
    check_softmax_args(x)
    x = xp.ascontiguousarray(x)
    y = xp.empty_like(x)  # (N, K)
    launch(_softmax_forward_kernel, x.shape[0], x, y)
    return y


def softmax_backward(dy, y):
    """dx = y * (dy - sum(dy * y) per row).

    dy, y: float32/float64 (N, K)
    Returns dx: (N, K), dtype of dy.
    """
    xp = device_arrays("softmax_backward", dy=dy, y=y)
    check_softmax_backward_args(dy, y)
    check_float("softmax_backward", dy=dy, y=y)
    dy, y = xp.ascontiguousarray(dy), xp.ascontiguousarray(y)
    dx = xp.empty_like(dy)  # (N, K)
    launch(_softmax_backward_kernel, dy.shape[0], dy, y, dx)
    return dx
