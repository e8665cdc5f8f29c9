"""Fully connected layer, the CPU tier: y = x w^T + b. The math is in kernels/reference/linear.py.

Shapes: N batch, D features in, K features out; x, dx (N, D); w, dw (K, D); b, db (K,);
y, dy (N, K).

All three products go to NumPy's BLAS; a hand-written Numba loop would only be slower. Each
product is cut into jobs run by kernels/cpu/threads.run_jobs: every core takes whole jobs with a
one-thread BLAS, so no BLAS thread pool is left spinning next to the Numba kernels that follow (a
spinning pool slows the kernel after it: bench/bench_ops.py, bench/RESULTS.md), and the cut
depends on the shape only: the same bits on any number of threads. y and dw are cut into jobs of
CHUNK output columns (features out). dx = dy w, when there are at least 2*ROW_BLOCK features out,
is cut the other way, along the sum: the features out go to CHAINS = 2 chains (the first and
the second half), each summing its products of ROW_BLOCK rows of w in order, for COL_BLOCK
features in at a time (a job: one chain, one block of columns), and dx is the two chains' sums
added. Each job streams whole contiguous rows of w once, where cutting by columns of w had BLAS
pack a strided panel of w for every CHUNK: VGG16's fc6 dx at batch 8 46.0 -> 29.4 ms interleaved,
at batch 32 (custom, AlexNet) within the noise (bench/RESULTS.md, "Speed round 6"); and shorter
sums: the error against float64 was 2.4e-7 of the largest value instead of 5.6e-7 at VGG16 fc6.
With fewer features out (the 2-way heads) dx is cut by columns as y is. The bias add and the
bias gradient are plain NumPy passes over (N, K).
"""
import numpy as np

from kernels.cpu.threads import run_jobs, workers
from kernels.shapes import backward_request, check_linear_args, check_linear_backward_args, out_or_empty

CHUNK = 512  # output columns per job
ROW_BLOCK = 64  # dx: rows of w (features out) per product of a chain
COL_BLOCK = 8192  # dx: columns of w (features in) per job
CHAINS = 2  # dx: partial sums over the features out, added at the end in this order


def _dx_by_row_chains(dy, w, dx):
    """dx (N, D) = dy (N, K) @ w (K, D) as two chains over the rows of w (see the module docstring):
    chain c sums dy[:, rows] @ w[rows] over its half of the K rows, ROW_BLOCK at a time, in order,
    for COL_BLOCK columns a job; chain 0 into dx, chain 1 into a scratch array, then dx += chain 1."""
    N, K = dy.shape
    D = w.shape[1]
    half = -(-K // CHAINS)  # chain c: rows c*half .. min(K, (c+1)*half) - 1
    second = np.empty_like(dx)  # (N, D): chain 1's sum
    sums = (dx, second)
    jobs = [(c, j0) for j0 in range(0, D, COL_BLOCK) for c in range(CHAINS)]
    part = np.empty((workers(len(jobs)), N, min(D, COL_BLOCK)), dx.dtype)  # one block's product per worker

    def job(worker, cj):
        c, j0 = cj
        j1 = min(D, j0 + COL_BLOCK)
        acc, p = sums[c][:, j0:j1], part[worker, :, :j1 - j0]
        r0, r1 = c * half, min(K, (c + 1) * half)
        np.matmul(dy[:, r0:min(r1, r0 + ROW_BLOCK)], w[r0:min(r1, r0 + ROW_BLOCK), j0:j1], out=acc)
        for i0 in range(r0 + ROW_BLOCK, r1, ROW_BLOCK):
            acc += np.matmul(dy[:, i0:min(r1, i0 + ROW_BLOCK)], w[i0:min(r1, i0 + ROW_BLOCK), j0:j1], out=p)

    run_jobs(job, jobs)
    dx += second
    return dx


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
        dx = out_or_empty(op, "out_dx", out_dx, x.shape, x.dtype)  # (N, D)
        if w.shape[0] >= CHAINS * ROW_BLOCK:
            _dx_by_row_chains(np.ascontiguousarray(dy), np.ascontiguousarray(w), dx)
        else:
            _by_columns(dy, w, dx)
    if need_dw:
        dw = out_or_empty(op, "out_dw", out_dw, w.shape, x.dtype)  # (K, D)
        # rows of dw = columns of dw^T = x^T dy: one job per CHUNK features out, rows k0:k1 contiguous
        run_jobs(lambda _, k: np.matmul(dy[:, k:k + CHUNK].T, x, out=dw[k:k + CHUNK]), range(0, w.shape[0], CHUNK))
        db = dy.sum(axis=0, out=out_or_empty(op, "out_db", out_db, (w.shape[0],), x.dtype))  # (K,)
    return dx, dw, db
