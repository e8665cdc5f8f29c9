"""Inverted dropout, the reference.

Shapes: any; x, y, dy, dx and mask all have one shape.

Training: each element is kept with probability 1 - p and scaled by 1/(1 - p), so the expected
output equals the input and nothing needs rescaling at test time (Srivastava et al., "Dropout",
JMLR 2014, section 10 describes the scaling; scaling at train time is the "inverted" form).
    u ~ Uniform[0, 1) per element; mask = 1/(1 - p) where u >= p, else 0
    y = x * mask

Backward (derivation). y is linear in x with the mask as a fixed diagonal, so
    dx = dy * mask
"""
import numpy as np

from kernels.shapes import check_dropout_args, check_dropout_mask_args, check_out, into


def dropout_mask(shape, *, p, rng, dtype, out=None, work=None):
    """Draw a mask of 0 and 1/(1-p) values; the same rng state gives the same mask.

    shape: tuple; p: drop probability in [0, 1); rng: numpy.random.Generator;
    dtype: float32 or float64
    Returns mask: `shape`, `dtype` (out, when given, receives it).
    """
    check_dropout_mask_args(p, rng, dtype)
    if work is None:  # work: a float64 `shape` array for the draws (the same draws), as in the cpu tier
        u = rng.random(shape)  # (shape) float64 in [0, 1)
    else:
        u = rng.random(out=check_out("dropout_mask", "work", work, shape, np.float64))
    mask = np.where(u >= p, 1 / (1 - p), 0).astype(dtype)  # (shape): keep where u >= p
    return into("dropout_mask", "out", out, mask)


def dropout_forward(x, mask, out=None):
    """y = x * mask.

    x: float32/float64, any shape; mask: same shape and dtype
    Returns y: shape and dtype of x (out, when given, receives it).
    """
    check_dropout_args(x, mask, "x")
    y = x * mask
    return into("dropout_forward", "out", out, y)


def dropout_backward(dy, mask, out=None):
    """dx = dy * mask.

    dy: float32/float64, any shape; mask: same shape and dtype
    Returns dx: shape and dtype of dy (out, when given, receives it).
    """
    check_dropout_args(dy, mask, "dy")
    dx = dy * mask
    return into("dropout_backward", "out", out, dx)

