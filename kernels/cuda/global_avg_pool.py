"""Global average pooling, the CUDA tier: one thread per plane forward, one per element backward.

Shapes: N batch, C channels, H, W input size; x, dx (N, C, H, W); y, dy (N, C).
The kernels see x and dx as (N*C, H*W): one row per plane.

Forward (kernels/reference/global_avg_pool.py)
    y[n, c] = 1/(H*W) * sum_h sum_w x[n, c, h, w]
One thread per (n, c), which adds its plane in float64 in memory order, as the reference and cpu
tiers do, so the three tiers give the same bits. Not a block reduction: a tree of partial sums
would change the order of the additions (and the last bits) with the block size, and the planes
this op meets at the end of a network are small (a few hundred pixels).
Backward (derivation in the reference): every pixel of a plane gets the same share,
    dx[n, c, h, w] = dy[n, c] / (H*W)
one thread per element of dx, the division in dy's dtype.
"""
import numpy as np
from numba import cuda

from kernels.cuda._launch import device_arrays, launch, scalar
from kernels.shapes import check_global_avg_pool_args, check_global_avg_pool_backward_args, out_or_empty

# kernels


@cuda.jit(cache=True)
def _global_avg_pool_forward_kernel(x, y):
    """x (N*C, H*W); y (N*C,); thread p, plane p."""
    p = cuda.grid(1)
    if p < y.size:
        Q = x.shape[1]
        total = 0.0  # float64 whatever x's dtype
        for q in range(Q):
            # the cast matters under the simulator: NumPy 2 adds a Python float and a float32 in float32
            total += np.float64(x[p, q])
        y[p] = total / Q  # rounded to y's dtype once, on the store


@cuda.jit(cache=True)
def _global_avg_pool_backward_kernel(dy, hw, dx):
    """dy (N*C,); hw: H*W as a scalar of dy's dtype; dx (N*C, H*W); thread i, element i of dx."""
    i = cuda.grid(1)
    if i < dx.size:
        Q = dx.shape[1]
        p, q = i // Q, i % Q
        dx[p, q] = dy[p] / hw

# launchers


def global_avg_pool_forward(x, out=None):
    """y = the mean of each (n, c) plane.

    x: float32/float64 (N, C, H, W)
    Returns y: (N, C), dtype of x (out, when given, receives it).
    """
    xp = device_arrays("global_avg_pool_forward", x=x)
    N, C = check_global_avg_pool_args(x)
    H, W = x.shape[2:]
    x = xp.ascontiguousarray(x)
    y = out_or_empty("global_avg_pool_forward", "out", out, (N, C), x.dtype, xp.empty)  # (N, C)
    launch(_global_avg_pool_forward_kernel, N * C, x.reshape(N * C, H * W), y.reshape(N * C))
    return y


def global_avg_pool_backward(dy, *, x_shape, out=None):
    """dx = dy / (H*W), spread over every pixel of its plane.

    dy: float32/float64 (N, C)
    x_shape: (N, C, H, W), the forward's input shape
    Returns dx: (N, C, H, W), dtype of dy (out, when given, receives it).
    """
    xp = device_arrays("global_avg_pool_backward", dy=dy)
    N, C, H, W = check_global_avg_pool_backward_args(dy, x_shape)
    dy = xp.ascontiguousarray(dy)
    dx = out_or_empty("global_avg_pool_backward", "out", out, (N, C, H, W), dy.dtype, xp.empty)  # (N, C, H, W)
    launch(_global_avg_pool_backward_kernel, dx.size, dy.reshape(N * C), scalar(dy.dtype, H * W),
           dx.reshape(N * C, H * W))
    return dx
