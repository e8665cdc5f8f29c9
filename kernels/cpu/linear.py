"""Fully connected layer, the CPU tier: y = x w^T + b. The math is in kernels/reference/linear.py.

Shapes: N batch, D features in, K features out; x, dx (N, D); w, dw (K, D); b, db (K,);
y, dy (N, K).

All three products go to NumPy's BLAS (multi-threaded GEMM); a hand-written Numba loop would
only be slower. The bias add and the bias gradient are plain NumPy passes over (N, K).
"""
from kernels.shapes import check_linear_args


def linear_forward(x, w, b):
    """y = x w^T + b.

    x: float32/float64 (N, D); w: (K, D); b: (K,), one dtype
    Returns y: (N, K), that dtype.
    """
    check_linear_args(x, w, b)
    y = x @ w.T  # (N, K)
    y += b
    return y


def linear_backward(dy, x, w, *, need_dx=True, need_dw=True):
    """Gradients of the loss w.r.t. x, w and b.

    dy: float32/float64 (N, K); x: (N, D); w: (K, D)
    Returns (dx, dw, db): dx (N, D) or None when need_dx is False, dw (K, D), db (K,) or both None
    when need_dw is False; dtype of dy.
    """
    check_linear_args(x, w, w[:, 0])
    if dy.shape != (x.shape[0], w.shape[0]) or dy.dtype != x.dtype:
        raise ValueError(f"linear_backward: dy must be (N, K) = {(x.shape[0], w.shape[0])} of dtype {x.dtype}, "
                         f"got {dy.shape} {dy.dtype}")
    dx = dy @ w if need_dx else None  # (N, D)
    dw = dy.T @ x if need_dw else None  # (K, D)
    db = dy.sum(axis=0) if need_dw else None  # (K,)
    return dx, dw, db
