"""Fully connected layer, the CUDA tier: matrix products by the array module, bias by kernels.

Shapes: N batch, D features in, K features out; x, dx (N, D); w, dw (K, D); b, db (K,);
y, dy (N, K).

Forward
    y[n, k] = sum_d x[n, d] * w[k, d] + b[k]
Backward (derivation in kernels/reference/linear.py):
    dx = dy w          dw = dy^T x          db[k] = sum_n dy[n, k]

The three products go to xp.matmul (cuBLAS on a GPU). The bias is added by a kernel with one
thread per element of y; db is one thread per output k summing its column of dy (N is a batch,
at most a few hundred, so a serial sum per thread is short).
"""
from numba import cuda

from kernels.cuda._launch import device_arrays, launch
from kernels.shapes import backward_request, check_linear_args, check_linear_backward_args, into, into_grads

# kernels


@cuda.jit(cache=True)
def _add_bias_kernel(y, b):
    """y (N, K) += b (K,) row by row, in place; thread i, element (i // K, i % K)."""
    i = cuda.grid(1)
    if i < y.size:
        K = y.shape[1]
        y[i // K, i % K] += b[i % K]


@cuda.jit(cache=True)
def _bias_grad_kernel(dy, db):
    """db (K,) = dy (N, K) summed over n; thread k, output k."""
    k = cuda.grid(1)
    if k < db.size:
        total = 0.0
        for n in range(dy.shape[0]):
            total += dy[n, k]
        db[k] = total

# launchers


def linear_forward(x, w, b, out=None):
    """y = x w^T + b.

    x: float32/float64 (N, D); w: (K, D); b: (K,), one dtype
    Returns y: (N, K), that dtype (out, when given, receives a copy).
    """
    xp = device_arrays("linear_forward", x=x, w=w, b=b)
    check_linear_args(x, w, b)
    y = xp.ascontiguousarray(xp.matmul(x, w.T))  # (N, K)
    launch(_add_bias_kernel, y.size, y, xp.ascontiguousarray(b))
    return into("linear_forward", "out", out, y)


def linear_backward(dy, x, w, *, need=("dx", "dw"), out=None):
    """Gradients of the loss w.r.t. x, w and b.

    dy: float32/float64 (N, K); x: (N, D); w: (K, D); need: the gradients to compute, "dx" and/or
    "dw" ("dw" brings db); out: None or a triple (dx, dw, db) of arrays or None, which receive
    copies of the ones computed.
    Returns (dx (N, D) or None, dw (K, D) or None, db (K,) or None), dtype of dy.
    """
    xp = device_arrays("linear_backward", dy=dy, x=x, w=w)
    check_linear_backward_args(dy, x, w)
    need_dx, need_dw, *outs = backward_request("linear_backward", need, out)
    dy = xp.ascontiguousarray(dy)
    dx = xp.matmul(dy, w) if need_dx else None  # (N, D)
    if not need_dw:
        return into_grads("linear_backward", (dx, None, None), outs)
    dw = xp.matmul(dy.T, x)  # (K, D)
    db = xp.empty(w.shape[0], dtype=dy.dtype)  # (K,)
    launch(_bias_grad_kernel, db.size, dy, db)
    return into_grads("linear_backward", (dx, dw, db), outs)
