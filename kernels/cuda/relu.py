"""ReLU, the CUDA tier: one thread per element.

Shapes: any; every array has the shape of x (usually NCHW or (N, D)). Kernels see flat views.

Forward
    y = max(x, 0)
Backward (derivation in kernels/reference/relu.py): the slope is 1 where x > 0, else 0, and
x > 0 exactly where y > 0, so backward needs only y:
    dx = dy * (y > 0)
"""
from numba import cuda

from kernels.cuda._launch import check_float, device_arrays, launch
from kernels.shapes import out_or_empty

# kernels


@cuda.jit(cache=True)
def _relu_forward_kernel(x, y):
    """x, y flat (size,)."""
    i = cuda.grid(1)
    if i < x.size:
        y[i] = 0 if x[i] < 0 else x[i]  # written so that NaN passes through, as np.maximum


@cuda.jit(cache=True)
def _relu_backward_kernel(dy, y, dx):
    """dy, y, dx flat (size,)."""
    i = cuda.grid(1)
    if i < dy.size:
        dx[i] = dy[i] if y[i] > 0 else 0

# launchers


def relu_forward(x, out=None):
    """y = max(x, 0).

    x: float32/float64, any shape
    Returns y: same shape and dtype as x (out, when given, receives it).
    """
    xp = device_arrays("relu_forward", x=x)
    check_float("relu_forward", x=x)
    x = xp.ascontiguousarray(x)
    y = out_or_empty("relu_forward", "out", out, x.shape, x.dtype, xp.empty)  # like x
    launch(_relu_forward_kernel, x.size, x.reshape(-1), y.reshape(-1))
    return y


def relu_backward(dy, y, out=None):
    """dx = dy where the forward output y > 0, else 0.

    dy: float32/float64, shape of y
    y:  float32/float64, the output of relu_forward
    Returns dx: shape and dtype of dy (out, when given, receives it).
    """
    xp = device_arrays("relu_backward", dy=dy, y=y)
    if dy.shape != y.shape:
        raise ValueError(f"relu_backward: dy {dy.shape} and y {y.shape} must have one shape")
    check_float("relu_backward", dy=dy, y=y)
    dy, y = xp.ascontiguousarray(dy), xp.ascontiguousarray(y)
    dx = out_or_empty("relu_backward", "out", out, dy.shape, dy.dtype, xp.empty)  # like dy
    launch(_relu_backward_kernel, dy.size, dy.reshape(-1), y.reshape(-1), dx.reshape(-1))
    return dx
