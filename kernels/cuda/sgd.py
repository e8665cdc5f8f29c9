"""SGD with momentum and L2 weight decay, the CUDA tier: one fused pass, one thread per element.

Shapes: any; w (a parameter), dw (its gradient), v (its momentum buffer) share shape and dtype.

Update, in place (Caffe's SGDSolver form; kernels/reference/sgd.py):
    v = momentum * v - lr * (dw + weight_decay * w)
    w = w + v
weight_decay * w is the gradient of the L2 penalty (weight_decay/2) * |w|^2. Fused, each element
is read once and written once, instead of the four passes the array expression would take.

Weight averaging, in place: avg = decay*avg + (1 - decay)*w, one thread per element (the compiler
may fuse a multiply and the add, so the bits can differ from the reference's by a rounding).
"""
from numba import cuda

from kernels.cuda._launch import device_arrays, launch, scalar
from kernels.shapes import check_average_args

# kernels


@cuda.jit(cache=True)
def _sgd_momentum_kernel(w, dw, v, lr, momentum, weight_decay):
    """w, dw, v flat (size,); w and v updated in place."""
    i = cuda.grid(1)
    if i < w.size:
        vi = momentum * v[i] - lr * (dw[i] + weight_decay * w[i])
        v[i] = vi
        w[i] += vi



@cuda.jit(cache=True)
def _weight_average_kernel(avg, w, d, e):
    """avg, w flat (size,); avg updated in place."""
    i = cuda.grid(1)
    if i < avg.size:
        avg[i] = avg[i] * d + w[i] * e

# launchers


def _check_sgd_args(w, dw, v):
    """Raise ValueError unless w, dw, v share shape and float dtype and w, v are contiguous, writeable."""
    if not w.shape == dw.shape == v.shape or not w.dtype == dw.dtype == v.dtype:
        raise ValueError(f"sgd: w {w.shape} {w.dtype}, dw {dw.shape} {dw.dtype} and "
                         f"v {v.shape} {v.dtype} must share shape and dtype")
    if w.dtype.name not in ("float32", "float64"):
        raise ValueError(f"sgd: arrays must be float32 or float64, got {w.dtype}")
    for name, a in (("w", w), ("v", v)):
        if not a.flags.c_contiguous or not getattr(a.flags, "writeable", True):  # cupy: always writeable
            raise ValueError(f"sgd: {name} {a.shape} must be C-contiguous and writeable "
                             f"(it is updated in place)")


def sgd_momentum_update(w, dw, v, *, lr, momentum, weight_decay):
    """One momentum step, in place: v = momentum*v - lr*(dw + weight_decay*w); w += v.

    w, dw, v: float32/float64, one shape; w and v are overwritten.
    Returns None.
    """
    xp = device_arrays("sgd_momentum_update", w=w, dw=dw, v=v)
    _check_sgd_args(w, dw, v)
    dw = xp.ascontiguousarray(dw)
    dt = w.dtype
    launch(_sgd_momentum_kernel, w.size, w.reshape(-1), dw.reshape(-1), v.reshape(-1),
           scalar(dt, lr), scalar(dt, momentum), scalar(dt, weight_decay))


def weight_average_update(avg, w, *, decay):
    """One averaging step, in place: avg = decay*avg + (1 - decay)*w.

    avg, w: float32/float64, one shape; avg is overwritten (C-contiguous). decay in [0, 1].
    Returns None.
    """
    xp = device_arrays("weight_average_update", avg=avg, w=w)
    check_average_args(avg, w, decay)
    w = xp.ascontiguousarray(w)
    dt = avg.dtype
    launch(_weight_average_kernel, avg.size, avg.reshape(-1), w.reshape(-1), scalar(dt, decay),
           scalar(dt, 1.0 - float(decay)))
