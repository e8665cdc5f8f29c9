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

from kernels.shapes import check_dropout_args, check_dropout_mask_args  # noqa: F401 (the tiers' shared checks)


def dropout_mask(shape, *, p, rng, dtype):
    """Draw a mask of 0 and 1/(1-p) values; the same rng state gives the same mask.

    shape: tuple; p: drop probability in [0, 1); rng: numpy.random.Generator;
    dtype: float32 or float64
    Returns mask: `shape`, `dtype`.
    """
    check_dropout_mask_args(p, rng, dtype)
    u = rng.random(shape)  # (shape) float64 in [0, 1)
    mask = np.where(u >= p, 1 / (1 - p), 0).astype(dtype)  # (shape): keep where u >= p
    return mask


def dropout_forward(x, mask):
    """y = x * mask.

    x: float32/float64, any shape; mask: same shape and dtype
    Returns y: shape and dtype of x.
    """
    check_dropout_args(x, mask, "x")
    y = x * mask
    return y


def dropout_backward(dy, mask):
    """dx = dy * mask.

    dy: float32/float64, any shape; mask: same shape and dtype
    Returns dx: shape and dtype of dy.
    """
    check_dropout_args(dy, mask, "dy")
    dx = dy * mask
    return dx

