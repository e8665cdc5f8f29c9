"""SGD with momentum and L2 weight decay, the reference (Caffe's SGDSolver form).

Shapes: any; w (a parameter), dw (its gradient), v (its momentum buffer) share one shape and dtype.

Update, in place, for one parameter:
    v = momentum * v - lr * (dw + weight_decay * w)
    w = w + v
weight_decay * w is the gradient of the L2 penalty (weight_decay/2) * |w|^2 added to the loss.
There is no backward: this is the step that uses the gradients.

Weight averaging (an exponential moving average of the weights, updated after each step; what
`rawcnn train --average-epochs` validates and saves), in place:
    avg = decay * avg + (1 - decay) * w
with decay and 1 - decay rounded to the arrays' dtype and each product and the sum rounded to it:
every tier computes the same bits on the CPU.
"""
from kernels.shapes import check_average_args, check_sgd_args  # noqa: F401 (the tiers' shared checks)


def sgd_momentum_update(w, dw, v, *, lr, momentum, weight_decay):
    """One momentum step, in place: v = momentum*v - lr*(dw + weight_decay*w); w += v.

    w, dw, v: float32/float64, one shape; w and v are overwritten.
    Returns None.
    """
    check_sgd_args(w, dw, v)
    v[...] = momentum * v - lr * (dw + weight_decay * w)
    w += v


def weight_average_update(avg, w, *, decay):
    """One averaging step, in place: avg = decay*avg + (1 - decay)*w.

    avg, w: float32/float64, one shape; avg is overwritten. decay in [0, 1] (0: avg = w).
    Returns None.
    """
    check_average_args(avg, w, decay)
    d, e = avg.dtype.type(decay), avg.dtype.type(1.0 - float(decay))  # the coefficients in the arrays' dtype
    avg[...] = avg * d + w * e
