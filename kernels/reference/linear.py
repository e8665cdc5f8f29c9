"""Fully connected layer, the reference: y = x w^T + b.

Shapes: N batch, D features in, K features out; x, dx (N, D); w, dw (K, D); b, db (K,);
y, dy (N, K).

Forward
    y[n, k] = sum_d x[n, d] * w[k, d] + b[k]

Backward (derivation). dy[n, k]/dx[n, d] = w[k, d], dy[n, k]/dw[k, d] = x[n, d], dy[n, k]/db[k] = 1;
sum over the outputs each input reaches:
    dx[n, d] = sum_k dy[n, k] * w[k, d]      (dx = dy w)
    dw[k, d] = sum_n dy[n, k] * x[n, d]      (dw = dy^T x)
    db[k]    = sum_n dy[n, k]
The reference spells each sum out with einsum's index notation (NumPy's own loops, no BLAS).
"""
import numpy as np

from kernels.shapes import check_linear_args, check_linear_backward_args, into


def linear_forward(x, w, b, out=None):
    """y = x w^T + b.

    x: float32/float64 (N, D); w: (K, D); b: (K,), one dtype
    Returns y: (N, K), that dtype (out, when given, receives it).
    """
    check_linear_args(x, w, b)
    y = np.einsum("nd,kd->nk", x, w) + b  # (N, K)
    return into("linear_forward", "out", out, y)


def linear_backward(dy, x, w, *, need_dx=True, need_dw=True, out_dx=None, out_dw=None, out_db=None):
    """Gradients of the loss w.r.t. x, w and b.

    dy: float32/float64 (N, K); x: (N, D); w: (K, D)
    Returns (dx, dw, db): dx (N, D) or None when need_dx is False, dw (K, D), db (K,) or both None
    when need_dw is False (heat maps and saliency want dx only); dtype of dy. out_dx, out_dw,
    out_db, when given, receive the ones computed.
    """
    check_linear_backward_args(dy, x, w)
    dx = np.einsum("nk,kd->nd", dy, w) if need_dx else None  # (N, D)
    dw = np.einsum("nk,nd->kd", dy, x) if need_dw else None  # (K, D)
    db = np.einsum("nk->k", dy) if need_dw else None  # (K,)
    op = "linear_backward"
    return (dx if dx is None else into(op, "out_dx", out_dx, dx), dw if dw is None else into(op, "out_dw", out_dw, dw),
            db if db is None else into(op, "out_db", out_db, db))
