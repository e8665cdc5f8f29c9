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

from kernels.shapes import backward_request, check_linear_args, check_linear_backward_args, into, into_grads


def linear_forward(x, w, b, out=None):
    """y = x w^T + b.

    x: float32/float64 (N, D); w: (K, D); b: (K,), one dtype
    Returns y: (N, K), that dtype (out, when given, receives it).
    """
    check_linear_args(x, w, b)
    y = np.einsum("nd,kd->nk", x, w) + b  # (N, K)
    return into("linear_forward", "out", out, y)


def linear_backward(dy, x, w, *, need=("dx", "dw"), out=None):
    """Gradients of the loss w.r.t. x, w and b.

    dy: float32/float64 (N, K); x: (N, D); w: (K, D); need: the gradients to compute, "dx" and/or
    "dw" ("dw" brings db; heat maps and saliency want dx only); out: None or a triple (dx, dw, db)
    of arrays or None, which receive the ones computed.
    Returns (dx (N, D) or None, dw (K, D) or None, db (K,) or None), dtype of dy.
    """
    check_linear_backward_args(dy, x, w)
    need_dx, need_dw, *outs = backward_request("linear_backward", need, out)
    dx = np.einsum("nk,kd->nd", dy, w) if need_dx else None  # (N, D)
    dw = np.einsum("nk,nd->kd", dy, x) if need_dw else None  # (K, D)
    db = np.einsum("nk->k", dy) if need_dw else None  # (K,)
    return into_grads("linear_backward", (dx, dw, db), outs)
