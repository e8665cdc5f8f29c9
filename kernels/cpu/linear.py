"""Fully connected layer, the CPU tier: y = x w^T + b. The math is in kernels/reference/linear.py.

Shapes: N batch, D features in, K features out; x, dx (N, D); w, dw (K, D); b, db (K,);
y, dy (N, K).

All three products go to NumPy's BLAS; a hand-written Numba loop would only be slower. Each
product is cut into jobs of CHUNK output columns (features out for y and dw, features in for
dx), run by kernels/cpu/threads.run_jobs: every core takes whole jobs with a one-thread BLAS,
so no BLAS thread pool is left spinning next to the Numba kernels that follow (a spinning pool
slows the kernel after it: bench/bench_ops.py, bench/RESULTS.md), and the cut depends on the
shape only: the same bits on any number of threads. The bias add and the bias gradient are
plain NumPy passes over (N, K).
"""
import numpy as np

from kernels.cpu.threads import run_jobs, workers
from kernels.shapes import backward_request, check_linear_args, check_linear_backward_args, out_or_empty

CHUNK = 512  # output columns per job


def _by_columns(a, b, out):
    """out (M, P) = a (M, K) @ b (K, P), one job per CHUNK columns of b and out."""
    P = out.shape[1]
    run_jobs(lambda _, j: np.matmul(a, b[:, j:j + CHUNK], out=out[:, j:j + CHUNK]), range(0, P, CHUNK))
    return out


def _forward_job(x, w, b, y, scratch, worker, k0):
    """y[:, k0:k0+CHUNK] = (w[k0:k0+CHUNK] @ x^T)^T + b[k0:k0+CHUNK], through this worker's (CHUNK, N) scratch.

    The product is asked of BLAS as w_chunk (CHUNK, D) @ x^T rather than x @ w_chunk^T: the same
    bits here, but OpenBLAS runs it with the weights as the large operand, measured 1.33-2.04x
    faster on every fully connected layer of the three nets (bench/bench_ab.py; bench/RESULTS.md,
    "Every target met in three runs").
    """
    k1 = min(w.shape[0], k0 + CHUNK)
    yt = scratch[worker, :k1 - k0]
    np.matmul(w[k0:k1], x.T, out=yt)  # (k1-k0, N)
    np.add(yt.T, b[k0:k1], out=y[:, k0:k1])


def linear_forward(x, w, b, out=None):
    """y = x w^T + b.

    x: float32/float64 (N, D); w: (K, D); b: (K,), one dtype; out: None or a C-contiguous (N, K)
    array of that dtype that receives y
    Returns y: (N, K), that dtype (out when given).
    """
    check_linear_args(x, w, b)
    N, K = x.shape[0], w.shape[0]
    y = out_or_empty("linear_forward", "out", out, (N, K), x.dtype)  # (N, K)
    jobs = range(0, K, CHUNK)
    scratch = np.empty((workers(len(jobs)), min(K, CHUNK), N), x.dtype)  # small: 2 MiB at N = 512
    run_jobs(lambda worker, k0: _forward_job(x, w, b, y, scratch, worker, k0), jobs)
    return y


def linear_backward(dy, x, w, *, need=("dx", "dw"), out=None):
    """Gradients of the loss w.r.t. x, w and b.

    dy: float32/float64 (N, K); x: (N, D); w: (K, D); need: the gradients to compute, "dx" and/or
    "dw" ("dw" brings db); out: None or a triple (dx, dw, db), each None or a C-contiguous array of
    that gradient's shape and dy's dtype that receives it (ignored for one not computed)
    Returns (dx (N, D) or None, dw (K, D) or None, db (K,) or None), dtype of dy.
    """
    check_linear_backward_args(dy, x, w)
    op, dx, dw, db = "linear_backward", None, None, None
    need_dx, need_dw, out_dx, out_dw, out_db = backward_request(op, need, out)
    if need_dx:
        dx = _by_columns(dy, w, out_or_empty(op, "out_dx", out_dx, x.shape, x.dtype))  # (N, D)
    if need_dw:
        dw = out_or_empty(op, "out_dw", out_dw, w.shape, x.dtype)  # (K, D)
        # rows of dw = columns of dw^T = x^T dy: one job per CHUNK features out, rows k0:k1 contiguous
        run_jobs(lambda _, k: np.matmul(dy[:, k:k + CHUNK].T, x, out=dw[k:k + CHUNK]), range(0, w.shape[0], CHUNK))
        db = dy.sum(axis=0, out=out_or_empty(op, "out_db", out_db, (w.shape[0],), x.dtype))  # (K,)
    return dx, dw, db
