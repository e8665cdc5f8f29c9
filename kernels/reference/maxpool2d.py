"""2-D max pooling, the reference.

Shapes: N batch, C channels, H, W input size, KH, KW window, OH, OW output size;
x, dx (N, C, H, W); y, dy, argmax (N, C, OH, OW).

Forward, for each plane (n, c) and output pixel (oh, ow):
    the window is rows oh*SH - PH .. oh*SH - PH + KH - 1, columns ow*SW - PW .. + KW - 1;
    padding counts as -inf, so only input pixels inside the window compete;
    y[oh, ow] = the largest of them, argmax[oh, ow] = its flat index h*W + w in the input plane
    (the first one in row-major order on ties, as numpy.argmax).
Output size as PyTorch computes it:
    OH = floor((H + 2*PH - KH) / SH) + 1   (ceil instead of floor with ceil_mode), and with
    ceil_mode the last window must start inside the input or the left padding:
    if (OH - 1)*SH >= H + PH then OH -= 1. PyTorch also requires PH <= KH/2 (same for W),
    which guarantees every window holds at least one input pixel.

Backward (derivation). y[oh, ow] = x[argmax[oh, ow]], so dy[oh, ow]/dx[i] is 1 at the winner and
0 elsewhere; windows overlap when stride < kernel, so one input pixel may win several windows and
its gradients add:
    dx[argmax[oh, ow]] += dy[oh, ow]
"""
import numpy as np

from kernels.reference.relu import relu_backward
from kernels.shapes import (  # shared checks
    as_pair,
    check_maxpool2d_backward_args,
    check_pool_output,
    into,
    maxpool2d_output_shape,
)


def maxpool2d_forward(x, *, kernel_size, stride, padding, ceil_mode, out_y=None, out_argmax=None,
                      with_argmax=True):
    """Max over each window; padding never wins.

    x: float32/float64 (N, C, H, W)
    Returns (y, argmax): y (N, C, OH, OW) dtype of x; argmax int64 (N, C, OH, OW), the flat
    index h*W + w of each winner inside its input plane (out_y, out_argmax, when given, receive them);
    with_argmax=False: (y, None), for a forward that no backward follows (this tier still computes it).
    """
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"maxpool2d: x must be float32 or float64, got {x.dtype}")
    N, C, OH, OW = maxpool2d_output_shape(x.shape, kernel_size, stride, padding, ceil_mode)
    (KH, KW), (SH, SW), (PH, PW) = (as_pair(kernel_size, "kernel_size"), as_pair(stride, "stride"),
                                    as_pair(padding, "padding"))
    H, W = x.shape[2:]
    y = np.empty((N, C, OH, OW), dtype=x.dtype)  # (N, C, OH, OW)
    argmax = np.empty((N, C, OH, OW), dtype=np.int64)  # (N, C, OH, OW)
    for oh in range(OH):
        h0, h1 = max(oh * SH - PH, 0), min(oh * SH - PH + KH, H)  # window rows inside the input
        for ow in range(OW):
            w0, w1 = max(ow * SW - PW, 0), min(ow * SW - PW + KW, W)
            window = x[:, :, h0:h1, w0:w1].reshape(N, C, -1)  # (N, C, window pixels)
            i = np.argmax(window, axis=2)  # (N, C): first max in row-major order
            y[:, :, oh, ow] = np.take_along_axis(window, i[:, :, None], axis=2)[:, :, 0]
            argmax[:, :, oh, ow] = (h0 + i // (w1 - w0)) * W + (w0 + i % (w1 - w0))
    if not with_argmax:
        return into("maxpool2d_forward", "out_y", out_y, y), None
    return (into("maxpool2d_forward", "out_y", out_y, y),
            into("maxpool2d_forward", "out_argmax", out_argmax, argmax))


def maxpool2d_backward(dy, argmax, *, x_shape, out=None, relu=False, y=None):
    """Scatter dy back to the winners: dx[argmax] += dy, plane by plane.

    dy:     float32/float64 (N, C, OH, OW)
    argmax: int64 (N, C, OH, OW), from maxpool2d_forward
    x_shape: (N, C, H, W); relu: True also runs the backward of the ReLU whose output the pooled x is,
    relu_backward(dx, x): a window adds its dy only where its max, y (the forward's output, needed then), is > 0
    (y is x at the winner)
    Returns dx: (N, C, H, W), dtype of dy (out, when given, receives it).
    """
    check_maxpool2d_backward_args(dy, argmax, x_shape)
    if relu:
        dy = relu_backward(dy, check_pool_output("maxpool2d_backward", y, dy))  # dy where the window's max y > 0
    N, C, H, W = x_shape
    dx = np.zeros((N, C, H * W), dtype=dy.dtype)  # (N, C, H*W), one flat plane each
    for n in range(N):
        for c in range(C):
            np.add.at(dx[n, c], argmax[n, c].reshape(-1), dy[n, c].reshape(-1))  # overlaps add
    return into("maxpool2d_backward", "out", out, dx.reshape(N, C, H, W))

