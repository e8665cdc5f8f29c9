"""Softmax over the classes, the reference.

Shapes: N batch, K classes; x, y, dy, dx are (N, K).

Forward, row by row (subtracting the row maximum leaves y unchanged and keeps exp from
overflowing):
    y[n, i] = exp(x[n, i] - m_n) / sum_j exp(x[n, j] - m_n),   m_n = max_j x[n, j]

Backward (derivation). dy_i/dx_j = y_i * ([i == j] - y_j), so
    dx_j = sum_i dy_i * y_i * ([i == j] - y_j) = y_j * (dy_j - sum_i dy_i * y_i)
"""
import numpy as np

from kernels.shapes import check_softmax_args, check_softmax_backward_args  # noqa: F401 (the tiers' shared checks)


def softmax_forward(x):
    """Probabilities over axis 1.

    x: float32/float64 (N, K)
    Returns y: (N, K), dtype of x; each row sums to 1.
    """
    check_softmax_args(x)
    y = np.empty_like(x)  # (N, K)
    for n in range(x.shape[0]):
        e = np.exp(x[n] - np.max(x[n]))  # (K,), the largest is exp(0) = 1
        y[n] = e / np.sum(e)
    return y


def softmax_backward(dy, y):
    """dx = y * (dy - sum(dy * y) per row).

    dy, y: float32/float64 (N, K)
    Returns dx: (N, K), dtype of dy.
    """
    check_softmax_backward_args(dy, y)
    dx = np.empty_like(dy)  # (N, K)
    for n in range(dy.shape[0]):
        dx[n] = y[n] * (dy[n] - np.sum(dy[n] * y[n]))
    return dx
