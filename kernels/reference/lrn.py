"""Local response normalisation across channels, the reference (Caffe/PyTorch convention).

Shapes: N batch, C channels, H, W height and width; x, y, scale, dy, dx are all (N, C, H, W).

Source: Krizhevsky, Sutskever, Hinton, "ImageNet Classification with Deep Convolutional Neural
Networks" (2012), section 3.3, in the form Caffe's LRNLayer (ACROSS_CHANNELS) and PyTorch's
local_response_norm compute it: alpha is divided by the window size.

Forward, at every pixel (n, h, w):
    window(c) = [c - size//2, c + (size-1)//2] clipped to [0, C)   (symmetric for odd size)
    scale_c   = k + alpha/size * sum_{c' in window(c)} x_c'^2       (the divisor is always size)
    y_c       = x_c * scale_c^-beta

Backward (derivation). x_c enters y_c directly, and enters scale_c' for every c' whose window
holds c, with d scale_c' / d x_c = (2*alpha/size) * x_c. So
    d y_c' / d x_c = [c' == c] * scale_c^-beta - beta * x_c' * scale_c'^(-beta-1) * (2*alpha/size) * x_c
and, using x_c' * scale_c'^-beta = y_c',
    dx_c = dy_c * scale_c^-beta - (2*alpha*beta/size) * x_c * sum_{c' : c in window(c')} dy_c' * y_c' / scale_c'
The channels c' whose window holds c are [c - (size-1)//2, c + size//2] clipped to [0, C): the
forward window mirrored (the same window when size is odd).
"""
import numpy as np

from kernels.reference.relu import relu_backward
from kernels.shapes import check_lrn_args, check_lrn_backward_args, into  # noqa: F401 (the tiers' shared checks)


def lrn_forward(x, *, size, alpha, beta, k, out_y=None, out_scale=None):
    """y = x * (k + alpha/size * sum of x^2 over the channel window)^-beta.

    x: float32/float64 (N, C, H, W)
    Returns (y, scale): both (N, C, H, W), dtype of x; scale is kept for the backward
    (out_y, out_scale, when given, receive them).
    """
    check_lrn_args(x, size, alpha, beta, k)
    C = x.shape[1]
    scale = np.empty_like(x)  # (N, C, H, W)
    for c in range(C):
        lo, hi = max(0, c - size // 2), min(C, c + (size - 1) // 2 + 1)
        scale[:, c] = k + alpha / size * np.sum(x[:, lo:hi] ** 2, axis=1)  # sum over the channel window
    y = x * scale ** -beta  # (N, C, H, W)
    return into("lrn_forward", "out_y", out_y, y), into("lrn_forward", "out_scale", out_scale, scale)


def lrn_backward(dy, x, y, scale, *, size, alpha, beta, out=None, relu=False):
    """dx from dy, given the forward's x, y and scale (k enters only through scale, so it is not taken).

    dy, x, y, scale: float32/float64 (N, C, H, W); relu: True also runs the backward of the ReLU whose output
    x is (relu_backward(dx, x)): the fused pair's definition
    Returns dx: (N, C, H, W), dtype of dy (out, when given, receives it).
    """
    check_lrn_backward_args(dy, x, y, scale, size, alpha, beta)
    C = x.shape[1]
    t = dy * y / scale  # (N, C, H, W): dy_c' * y_c' / scale_c'
    dx = np.empty_like(dy)  # (N, C, H, W)
    for c in range(C):
        lo, hi = max(0, c - (size - 1) // 2), min(C, c + size // 2 + 1)  # the c' whose window holds c
        dx[:, c] = dy[:, c] * scale[:, c] ** -beta - 2 * alpha * beta / size * x[:, c] * np.sum(t[:, lo:hi], axis=1)
    return into("lrn_backward", "out", out, relu_backward(dx, x) if relu else dx)
