"""Global average pooling, the reference: each channel's plane replaced by its mean.

Shapes: N batch, C channels, H, W input size; x, dx (N, C, H, W); y, dy (N, C).

Forward (Lin, Chen, Yan, "Network In Network", ICLR 2014, section 3.2)
    y[n, c] = 1/(H*W) * sum_h sum_w x[n, c, h, w]
The sum runs row by row, h outer and w inner, in float64 whatever x's dtype, and the mean is
rounded to x's dtype once at the end: the cpu and cuda tiers add in the same order, so all three
tiers give the same bits.

Backward (derivation). y[n, c] depends on the H*W pixels of plane (n, c) alone, each with
weight 1/(H*W):
    dy[n, c]/dx[n', c', h, w] = 1/(H*W) if (n', c') == (n, c), else 0
so by the chain rule every pixel of a plane receives the same share of its plane's gradient:
    dx[n, c, h, w] = dy[n, c] / (H*W)
Nothing from the forward is needed but x's shape (H*W, and the shape of dx). The division is done
in dy's dtype (one rounding), as in the other tiers.
"""
import numpy as np

from kernels.shapes import check_global_avg_pool_args, check_global_avg_pool_backward_args, into


def global_avg_pool_forward(x, out=None):
    """y = the mean of each (n, c) plane.

    x: float32/float64 (N, C, H, W)
    Returns y: (N, C), dtype of x (out, when given, receives it).
    """
    N, C = check_global_avg_pool_args(x)
    H, W = x.shape[2:]
    total = np.zeros((N, C), dtype=np.float64)  # (N, C), the running sum of each plane
    for h in range(H):
        for w in range(W):
            total += x[:, :, h, w]  # row by row: the fast tiers' order
    y = (total / (H * W)).astype(x.dtype)  # (N, C)
    return into("global_avg_pool_forward", "out", out, y)


def global_avg_pool_backward(dy, *, x_shape, out=None):
    """dx = dy / (H*W), spread over every pixel of its plane.

    dy: float32/float64 (N, C)
    x_shape: (N, C, H, W), the forward's input shape
    Returns dx: (N, C, H, W), dtype of dy (out, when given, receives it).
    """
    N, C, H, W = check_global_avg_pool_backward_args(dy, x_shape)
    share = dy / dy.dtype.type(H * W)  # (N, C), one division in dy's dtype
    dx = np.empty((N, C, H, W), dtype=dy.dtype)  # (N, C, H, W)
    dx[...] = share[:, :, None, None]  # the same share for every pixel of the plane
    return into("global_avg_pool_backward", "out", out, dx)
