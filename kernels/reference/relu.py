"""ReLU, the reference: y = max(x, 0), element by element.

Shapes: any; every array below has the shape of `x` (usually NCHW or (N, D)).

Forward
    y = max(x, 0)

Backward (derivation)
    dy/dx = 1 where x > 0, else 0 (at x = 0 the kink is given slope 0, as in Caffe and PyTorch).
    x > 0 exactly where y > 0, so backward needs only y:
    dx = dy * (y > 0)
"""
import numpy as np

from kernels.shapes import into


def relu_forward(x, out=None):
    """y = max(x, 0).

    x: float32/float64, any shape
    Returns y: same shape and dtype as x (out, when given, receives it)
    """
    y = np.maximum(x, 0)  # like x; NaN stays NaN
    return into("relu_forward", "out", out, y)


def relu_backward(dy, y, out=None):
    """dx = dy where the forward output y > 0, else 0.

    dy: float32/float64, shape of y
    y:  float32/float64, the output of relu_forward
    Returns dx: shape and dtype of dy (out, when given, receives it)
    """
    if dy.shape != y.shape:
        raise ValueError(f"relu_backward: dy {dy.shape} and y {y.shape} must have one shape")
    dx = np.where(y > 0, dy, 0).astype(dy.dtype, copy=False)  # like dy
    return into("relu_backward", "out", out, dx)
