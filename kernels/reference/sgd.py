"""SGD with momentum and L2 weight decay, the reference (Caffe's SGDSolver form).

Shapes: any; w (a parameter), dw (its gradient), v (its momentum buffer) share one shape and dtype.

Update, in place, for one parameter:
    v = momentum * v - lr * (dw + weight_decay * w)
    w = w + v
weight_decay * w is the gradient of the L2 penalty (weight_decay/2) * |w|^2 added to the loss.
There is no backward: this is the step that uses the gradients.
"""
import numpy as np


def check_sgd_args(w, dw, v):
    """Raise ValueError unless w, dw, v share shape and dtype and w, v are writeable and contiguous."""
    if not w.shape == dw.shape == v.shape or not w.dtype == dw.dtype == v.dtype:
        raise ValueError(f"sgd: w {w.shape} {w.dtype}, dw {dw.shape} {dw.dtype} and v {v.shape} {v.dtype} "
                         f"must share shape and dtype")
    if w.dtype not in (np.float32, np.float64):
        raise ValueError(f"sgd: arrays must be float32 or float64, got {w.dtype}")
    for name, a in (("w", w), ("v", v)):
        if not (a.flags.c_contiguous and a.flags.writeable):
            raise ValueError(f"sgd: {name} {a.shape} must be C-contiguous and writeable (it is updated in place)")


def sgd_momentum_update(w, dw, v, *, lr, momentum, weight_decay):
    """One momentum step, in place: v = momentum*v - lr*(dw + weight_decay*w); w += v.

    w, dw, v: float32/float64, one shape; w and v are overwritten.
    Returns None.
    """
    check_sgd_args(w, dw, v)
    v[...] = momentum * v - lr * (dw + weight_decay * w)
    w += v
