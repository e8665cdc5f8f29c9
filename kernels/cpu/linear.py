"""Fully connected layer, the CPU tier: y = x w^T + b. The math is in kernels/reference/linear.py.

Shapes: N batch, D features in, K features out; x, dx (N, D); w, dw (K, D); b, db (K,);
y, dy (N, K).

All three products go to NumPy's BLAS (multi-threaded GEMM); a hand-written Numba loop would
only be slower. The bias add and the bias gradient are plain NumPy passes over (N, K).
"""
import numpy as np

from kernels.shapes import check_linear_args, check_out


def linear_forward(x, w, b, out=None):
    """y = x w^T + b.

    x: float32/float64 (N, D); w: (K, D); b: (K,), one dtype; out: None or a C-contiguous (N, K)
    array of that dtype that receives y
    Returns y: (N, K), that dtype (out when given).
    """
    check_linear_args(x, w, b)
    y = np.matmul(x, w.T, out=check_out("linear_forward", "out", out, (x.shape[0], w.shape[0]), x.dtype))  # (N, K)
    y += b
    return y


def linear_backward(dy, x, w, *, need_dx=True, need_dw=True, out_dx=None, out_dw=None, out_db=None):
    """Gradients of the loss w.r.t. x, w and b.

    dy: float32/float64 (N, K); x: (N, D); w: (K, D); out_dx, out_dw, out_db: None or C-contiguous
    arrays of dx's, dw's, db's shape and dy's dtype that receive them (ignored when not computed)
    Returns (dx, dw, db): dx (N, D) or None when need_dx is False, dw (K, D), db (K,) or both None
    when need_dw is False; dtype of dy.
    """
    check_linear_args(x, w, w[:, 0])
    if dy.shape != (x.shape[0], w.shape[0]) or dy.dtype != x.dtype:
        raise ValueError(f"linear_backward: dy must be (N, K) = {(x.shape[0], w.shape[0])} of dtype {x.dtype}, "
                         f"got {dy.shape} {dy.dtype}")
    op, dx, dw, db = "linear_backward", None, None, None
    if need_dx:
        dx = np.matmul(dy, w, out=check_out(op, "out_dx", out_dx, x.shape, x.dtype))  # (N, D)
    if need_dw:
        dw = np.matmul(dy.T, x, out=check_out(op, "out_dw", out_dw, w.shape, x.dtype))  # (K, D)
        db = dy.sum(axis=0, out=check_out(op, "out_db", out_db, (w.shape[0],), x.dtype))  # (K,)
    return dx, dw, db
