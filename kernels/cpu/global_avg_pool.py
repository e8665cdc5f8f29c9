"""Global average pooling, the CPU tier: y[n, c] = mean of plane (n, c); dx = dy / (H*W) everywhere
in the plane. The math and the backward's derivation are in kernels/reference/global_avg_pool.py.

Shapes: N batch, C channels, H, W input size; x, dx (N, C, H, W); y, dy (N, C).
The kernels see x and dx as (N*C, H*W): one row per plane.

Both directions are one parallel Numba loop over the N*C planes. Each plane is summed by one thread,
in float64, in memory order (h outer, w inner), as the reference does: the order never depends on
how the planes are shared out, so the bits do not depend on the thread count, and the three tiers
agree exactly.
"""
import numpy as np
from numba import njit, prange

from kernels.shapes import check_global_avg_pool_args, check_global_avg_pool_backward_args, out_or_empty


@njit(parallel=True, cache=True)
def _global_avg_pool_forward_kernel(x, y):
    """x (N*C, H*W); y (N*C,)."""
    P, Q = x.shape
    for p in prange(P):
        total = 0.0  # float64 whatever x's dtype
        for q in range(Q):
            total += x[p, q]
        y[p] = total / Q  # rounded to y's dtype once, on the store


@njit(parallel=True, cache=True)
def _global_avg_pool_backward_kernel(dy, hw, dx):
    """dy (N*C,); hw: H*W as a scalar of dy's dtype; dx (N*C, H*W)."""
    P, Q = dx.shape
    for p in prange(P):
        share = dy[p] / hw  # one division in dy's dtype
        for q in range(Q):
            dx[p, q] = share


def global_avg_pool_forward(x, out=None):
    """y = the mean of each (n, c) plane.

    x: float32/float64 (N, C, H, W); out: None or a C-contiguous (N, C) array of x's dtype
    Returns y: (N, C), dtype of x (out when given).
    """
    N, C = check_global_avg_pool_args(x)
    H, W = x.shape[2:]
    y = out_or_empty("global_avg_pool_forward", "out", out, (N, C), x.dtype)  # (N, C)
    _global_avg_pool_forward_kernel(np.ascontiguousarray(x).reshape(N * C, H * W), y.reshape(N * C))
    return y


def global_avg_pool_backward(dy, *, x_shape, out=None):
    """dx = dy / (H*W), spread over every pixel of its plane.

    dy: float32/float64 (N, C); x_shape: (N, C, H, W); out: None or a C-contiguous (N, C, H, W)
    array of dy's dtype
    Returns dx: (N, C, H, W), dtype of dy (out when given).
    """
    N, C, H, W = check_global_avg_pool_backward_args(dy, x_shape)
    dx = out_or_empty("global_avg_pool_backward", "out", out, (N, C, H, W), dy.dtype)  # (N, C, H, W)
    _global_avg_pool_backward_kernel(np.ascontiguousarray(dy).reshape(N * C), dy.dtype.type(H * W),
                                     dx.reshape(N * C, H * W))
    return dx
