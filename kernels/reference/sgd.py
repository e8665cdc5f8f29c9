"""SGD with momentum and L2 weight decay, the reference (Caffe's SGDSolver form).

Shapes: any; w (a parameter), dw (its gradient), v (its momentum buffer) share one shape and dtype.

Update, in place, for one parameter:
    v = momentum * v - lr * (dw + weight_decay * w)
    w = w + v
weight_decay * w is the gradient of the L2 penalty (weight_decay/2) * |w|^2 added to the loss.
There is no backward: this is the step that uses the gradients.
"""
from kernels.shapes import check_sgd_args  # noqa: F401 (the tiers' shared checks)


def sgd_momentum_update(w, dw, v, *, lr, momentum, weight_decay):
    """One momentum step, in place: v = momentum*v - lr*(dw + weight_decay*w); w += v.

    w, dw, v: float32/float64, one shape; w and v are overwritten.
    Returns None.
    """
    check_sgd_args(w, dw, v)
    v[...] = momentum * v - lr * (dw + weight_decay * w)
    w += v
