"""2-D max pooling, the CUDA tier: one thread per output element, forward and backward.

Shapes: N batch, C channels, H, W input size, KH, KW window, OH, OW output size, SH, SW stride,
PH, PW padding; x, dx (N, C, H, W); y, dy, argmax (N, C, OH, OW).

Forward (kernels/reference/maxpool2d.py), per plane (n, c) and output pixel (oh, ow):
    the window is rows oh*SH - PH .. + KH - 1, columns ow*SW - PW .. + KW - 1;
    padding counts as -inf (it never wins), so only input pixels inside the window compete;
    y = the largest, argmax = its flat index h*W + w in the plane (the first in row-major order on
    ties: a later pixel must be strictly larger to take over); a NaN wins and the first NaN in the
    window stays, as in the reference and CPU tiers (numpy.argmax, PyTorch).
Output size as PyTorch: OH = floor((H + 2*PH - KH) / SH) + 1 (ceil with ceil_mode, and then the
last window must start inside the input or the left padding).

Backward. y[oh, ow] = x[argmax[oh, ow]], so dx[argmax[oh, ow]] += dy[oh, ow], adding where
one pixel won several overlapping windows (stride < kernel).
One thread per element of dy, adding it into dx with an atomic add. A race-free gather (one
thread per input pixel summing the windows that cover it) would need the window geometry, and
the shared signature maxpool2d_backward(dy, argmax, *, x_shape) does not carry it. The cost of
the atomics: where windows overlap, up to ceil(KH/SH)*ceil(KW/SW) adds meet on one pixel in an
order the hardware picks, so a float sum may differ in its last bit from run to run.
"""
import math

from numba import cuda

from kernels.cuda._launch import check_float, clamp, device_arrays, launch
from kernels.cuda.relu import relu_backward
from kernels.shapes import (
    as_pair,
    check_maxpool2d_backward_args,
    check_pool_output,
    into,
    maxpool2d_output_shape,
    out_or_empty,
)

# kernels


@cuda.jit(cache=True)
def _maxpool_forward_kernel(x, window, y, argmax):
    """x (N, C, H, W); window = (KH, KW, SH, SW, PH, PW); y, argmax (N, C, OH, OW); thread i, output
    element i in row-major order."""
    i = cuda.grid(1)
    if i < y.size:
        KH, KW, SH, SW, PH, PW = window
        N, C, OH, OW = y.shape
        H, W = x.shape[2], x.shape[3]
        ow, oh, c, n = i % OW, (i // OW) % OH, (i // (OW * OH)) % C, i // (OW * OH * C)
        h0, w0 = oh * SH - PH, ow * SW - PW  # window corner, maybe in the padding
        best = -math.inf
        best_at = clamp(h0, 0, H) * W + clamp(w0, 0, W)  # the first pixel inside the window
        for h in range(clamp(h0, 0, H), clamp(h0 + KH, 0, H)):  # window rows inside the input
            for w in range(clamp(w0, 0, W), clamp(w0 + KW, 0, W)):
                v = x[n, c, h, w]
                # strictly larger: the first max wins ties; a NaN beats any number and the first
                # NaN stays (NaN > v and v > NaN are both false), as numpy.argmax in the reference
                if v > best or (v != v and best == best):
                    best = v
                    best_at = h * W + w
        y[n, c, oh, ow] = best
        argmax[n, c, oh, ow] = best_at


@cuda.jit(cache=True)
def _maxpool_backward_kernel(dy, argmax, dx):
    """dy, argmax (N, C, OH, OW); dx (N, C, H*W) zeroed; thread i, element i of dy in row-major order."""
    i = cuda.grid(1)
    if i < dy.size:
        N, C, OH, OW = dy.shape
        ow, oh, c, n = i % OW, (i // OW) % OH, (i // (OW * OH)) % C, i // (OW * OH * C)
        cuda.atomic.add(dx, (n, c, argmax[n, c, oh, ow]), dy[n, c, oh, ow])  # overlapping windows add

# launchers


def maxpool2d_forward(x, *, kernel_size, stride, padding, ceil_mode, out_y=None, out_argmax=None,
                      with_argmax=True):
    """Max over each window; padding never wins.

    x: float32/float64 (N, C, H, W)
    Returns (y, argmax): y (N, C, OH, OW) dtype of x; argmax int64 (N, C, OH, OW), the flat
    index h*W + w of each winner inside its input plane (out_y, out_argmax, when given, receive them);
    with_argmax=False: (y, None) (this tier still computes argmax, into a scratch array unless out_argmax).
    """
    xp = device_arrays("maxpool2d_forward", x=x)
    check_float("maxpool2d_forward", x=x)
    out_shape = maxpool2d_output_shape(x.shape, kernel_size, stride, padding, ceil_mode)
    (KH, KW), (SH, SW), (PH, PW) = (as_pair(kernel_size, "kernel_size"), as_pair(stride, "stride"),
                                    as_pair(padding, "padding"))
    x = xp.ascontiguousarray(x)
    y = out_or_empty("maxpool2d_forward", "out_y", out_y, out_shape, x.dtype, xp.empty)  # (N, C, OH, OW)
    argmax = out_or_empty("maxpool2d_forward", "out_argmax", out_argmax, out_shape, xp.int64, xp.empty)  # like y
    launch(_maxpool_forward_kernel, y.size, x, (KH, KW, SH, SW, PH, PW), y, argmax)
    return y, (argmax if with_argmax else None)


def maxpool2d_backward(dy, argmax, *, x_shape, out=None, relu=False, y=None):
    """Scatter dy back to the winners: dx[argmax] += dy, plane by plane, with atomic adds.

    dy:     float32/float64 (N, C, OH, OW)
    argmax: int64 (N, C, OH, OW), from maxpool2d_forward
    x_shape: (N, C, H, W); relu: True also runs the backward of the ReLU whose output the pooled x is: a window adds
    its dy only where its max, y (the forward's output, needed then), is > 0 (dy masked first, one more launch)
    Returns dx: (N, C, H, W), dtype of dy (out, when given, receives a copy).
    """
    xp = device_arrays("maxpool2d_backward", dy=dy, argmax=argmax)
    check_float("maxpool2d_backward", dy=dy)
    check_maxpool2d_backward_args(dy, argmax, x_shape)
    dy, argmax = xp.ascontiguousarray(dy), xp.ascontiguousarray(argmax)
    if relu:  # relu_backward's kernel with the maxima as the ReLU's output: dy where y > 0
        dy = relu_backward(dy, xp.ascontiguousarray(check_pool_output("maxpool2d_backward", y, dy)))
    N, C, H, W = x_shape
    dx = xp.zeros((N, C, H * W), dtype=dy.dtype)  # (N, C, H*W), one flat plane each
    launch(_maxpool_backward_kernel, dy.size, dy, argmax, dx)
    return into("maxpool2d_backward", "out", out, dx.reshape(N, C, H, W))
