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


def check_lrn_args(x, size, alpha, beta, k):
    """Raise ValueError unless x is (N, C, H, W) float32/float64 and size >= 1."""
    if x.ndim != 4:
        raise ValueError(f"lrn: x must be (N, C, H, W), got shape {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"lrn: x must be float32 or float64, got {x.dtype}")
    if int(size) != size or size < 1:
        raise ValueError(f"lrn: size must be a positive integer, got {size!r}")


def check_lrn_backward_args(dy, x, y, scale, size, alpha, beta, k):
    """Raise ValueError unless dy, x, y, scale are valid and share one shape and dtype."""
    check_lrn_args(x, size, alpha, beta, k)
    for name, a in (("dy", dy), ("y", y), ("scale", scale)):
        if a.shape != x.shape or a.dtype != x.dtype:
            raise ValueError(f"lrn_backward: {name} {a.shape} {a.dtype} must have the shape and dtype "
                             f"of x {x.shape} {x.dtype}")


def lrn_forward(x, *, size, alpha, beta, k):
    """y = x * (k + alpha/size * sum of x^2 over the channel window)^-beta.

    x: float32/float64 (N, C, H, W)
    Returns (y, scale): both (N, C, H, W), dtype of x; scale is kept for the backward.
    """
    check_lrn_args(x, size, alpha, beta, k)
    C = x.shape[1]
    scale = np.empty_like(x)  # (N, C, H, W)
    for c in range(C):
        lo, hi = max(0, c - size // 2), min(C, c + (size - 1) // 2 + 1)
        scale[:, c] = k + alpha / size * np.sum(x[:, lo:hi] ** 2, axis=1)  # sum over the channel window
    y = x * scale ** -beta  # (N, C, H, W)
    return y, scale


def lrn_backward(dy, x, y, scale, *, size, alpha, beta, k):
    """dx from dy, given the forward's x, y and scale.

    dy, x, y, scale: float32/float64 (N, C, H, W)
    Returns dx: (N, C, H, W), dtype of dy.
    """
    check_lrn_backward_args(dy, x, y, scale, size, alpha, beta, k)
    C = x.shape[1]
    t = dy * y / scale  # (N, C, H, W): dy_c' * y_c' / scale_c'
    dx = np.empty_like(dy)  # (N, C, H, W)
    for c in range(C):
        lo, hi = max(0, c - (size - 1) // 2), min(C, c + size // 2 + 1)  # the c' whose window holds c
        dx[:, c] = dy[:, c] * scale[:, c] ** -beta - 2 * alpha * beta / size * x[:, c] * np.sum(t[:, lo:hi], axis=1)
    return dx
