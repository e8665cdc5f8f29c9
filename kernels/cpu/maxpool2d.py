"""2-D max pooling, the CPU tier. The math and the output-size rule are in kernels/reference/maxpool2d.py.

Shapes: N batch, C channels, H, W input size, KH, KW window, OH, OW output size;
x, dx (N, C, H, W); y, dy, argmax (N, C, OH, OW).

Both directions run one parallel Numba job per (n, c) plane.
Forward: each job scans its windows in row-major order and keeps the first largest value (whole
2x2 and 3x3 windows through an unrolled, branch-free scan: _square_window). A NaN
wins, as in numpy.argmax and PyTorch; the scan only flags it and looks it up again when seen,
because testing for it inside the comparison stops LLVM from making the comparison branch-free
(slower on random data; bench/RESULTS.md).
Forward without argmax (with_argmax=False: a test-time forward, which no backward follows): each
job takes the max down the window's rows into a row buffer (one loop over the columns per window
row, vectorised), then across each window's columns (3x3 and 2x2 windows of stride 2, every
pooling layer of the built-in nets, through a loop with constant strides that vectorises): 2.5x
faster than the scan with argmax on custom's pool1 (bench/RESULTS.md, "Speed round 4"). The same
values as the scan: the max of the window's pixels inside the image, a NaN if any (a window
holding both 0.0 and -0.0 may give either; the built-in nets pool ReLU or LRN outputs, >= +0.0).
Backward: each job zeroes its own dx plane and adds dy at argmax; windows overlap, but never
across planes, so no two jobs write the same element. Timings: bench/RESULTS.md.
"""
import numpy as np
from numba import njit, prange

from kernels.shapes import (
    as_pair,
    check_maxpool2d_backward_args,
    check_pool_output,
    maxpool2d_output_shape,
    out_or_empty,
)


@njit(cache=True)
def _first_nan(xp, h0, h1, w0, w1):
    """Flat index h*W + w of the first NaN in window rows h0:h1, columns w0:w1 of plane xp."""
    for h in range(h0, h1):
        for w in range(w0, w1):
            if xp[h, w] != xp[h, w]:
                return h * xp.shape[1] + w
    return -1


@njit(cache=True, inline="always")
def _square_window(xp, h0, w0, K):
    """(max, flat index of the first max, any NaN) of the K x K window at (h0, w0), all inside.

    Called with a literal K (2 or 3): inlined, its loops have constant trip counts and unroll
    into branch-free selects, faster than the general scan (bench/bench_ops.py, bench/RESULTS.md).
    """
    W = xp.shape[1]
    best, best_i, nan = xp[h0, w0], h0 * W + w0, False
    for i in range(K):
        for j in range(K):
            v = xp[h0 + i, w0 + j]
            m = v > best  # strictly larger: the first max wins
            best = v if m else best
            best_i = (h0 + i) * W + w0 + j if m else best_i
            nan |= v != v
    return best, best_i, nan


@njit(parallel=True, cache=True)
def _maxpool2d_forward_kernel(x, y, argmax, window):
    """x (N, C, H, W) -> y, argmax (N, C, OH, OW), parallel over planes; window = (KH, KW, SH, SW, PH, PW)."""
    KH, KW, SH, SW, PH, PW = window
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    square = KH == KW and (KH == 2 or KH == 3)
    for plane in prange(N * C):
        n, c = plane // C, plane % C
        xp, yp, ap = x[n, c], y[n, c], argmax[n, c]  # (H, W), (OH, OW), (OH, OW)
        for oh in range(OH):
            h0, h1 = max(oh * SH - PH, 0), min(oh * SH - PH + KH, H)  # window rows inside the input
            for ow in range(OW):
                w0, w1 = max(ow * SW - PW, 0), min(ow * SW - PW + KW, W)
                if square and h1 - h0 == KH and w1 - w0 == KW:  # a whole 2x2 or 3x3 window
                    if KH == 3:
                        best, best_i, nan = _square_window(xp, h0, w0, 3)
                    else:
                        best, best_i, nan = _square_window(xp, h0, w0, 2)
                else:
                    best, best_i, nan = xp[h0, w0], h0 * W + w0, False
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            v = xp[h, w]
                            if v > best:  # strictly larger: the first max wins
                                best, best_i = v, h * W + w
                            nan |= v != v
                if nan:  # rare: look again for the first NaN
                    best, best_i = np.nan, _first_nan(xp, h0, h1, w0, w1)
                yp[oh, ow], ap[oh, ow] = best, best_i


@njit(cache=True, inline="always")
def _nanmax(best, v):
    """v if it beats best (strictly larger, or a NaN), else best: a NaN, once in, stays (nothing beats it)."""
    return v if (v > best or v != v) else best


@njit(cache=True, inline="always")
def _window_cols(tmp, yr, cols, K, PW):
    """yr[ow] = the largest of tmp[2ow - PW .. 2ow - PW + K - 1] for ow in cols[0] .. cols[1] - 1 (stride 2, K = 3
    or 2, windows inside tmp), written out so that the loop has constant strides and LLVM vectorises it."""
    if K == 3:
        for ow in range(cols[0], cols[1]):
            w0 = 2 * ow - PW
            yr[ow] = _nanmax(_nanmax(tmp[w0], tmp[w0 + 1]), tmp[w0 + 2])
    else:
        for ow in range(cols[0], cols[1]):
            w0 = 2 * ow - PW
            yr[ow] = _nanmax(tmp[w0], tmp[w0 + 1])


@njit(cache=True, inline="always")
def _edge_cols(tmp, yr, cols, window):
    """yr[ow] = the largest of tmp over the window's columns inside the image, for ow in cols[0] .. cols[1] - 1,
    any window (window = (KH, KW, SH, SW, PH, PW))."""
    KW, SW, PW = window[1], window[3], window[5]
    for ow in range(cols[0], cols[1]):
        w0, w1 = max(ow * SW - PW, 0), min(ow * SW - PW + KW, tmp.shape[0])
        best = tmp[w0]
        for w in range(w0 + 1, w1):
            best = _nanmax(best, tmp[w])
        yr[ow] = best


@njit(cache=True, inline="always")
def _window_rows(xp, h0, h1, tmp):
    """tmp[w] = the largest of xp[h0 .. h1-1, w] for every column w, rows in order; 3 and 2 rows (every whole
    window of the built-in nets) in one pass over the columns, any other count a pass per row."""
    if h1 - h0 == 3:
        for w in range(tmp.shape[0]):
            tmp[w] = _nanmax(_nanmax(xp[h0, w], xp[h0 + 1, w]), xp[h0 + 2, w])
    elif h1 - h0 == 2:
        for w in range(tmp.shape[0]):
            tmp[w] = _nanmax(xp[h0, w], xp[h0 + 1, w])
    else:
        tmp[:] = xp[h0]
        for h in range(h0 + 1, h1):
            for w in range(tmp.shape[0]):
                tmp[w] = _nanmax(tmp[w], xp[h, w])


@njit(parallel=True, cache=True)
def _maxpool2d_values_kernel(x, y, window):
    """y (N, C, OH, OW) = the max of each window of x (N, C, H, W), no argmax; parallel over planes;
    window = (KH, KW, SH, SW, PH, PW). Down the rows into tmp, then across the columns (module docstring)."""
    KH, KW, SH, SW, PH, PW = window
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    owa = min(OW, -(-PW // SW))  # the first output column whose window starts inside the image
    owb = max(owa, min(OW, (W + PW - KW) // SW + 1))  # past the last whose window ends inside it
    fast = SW == 2 and (KW == 3 or KW == 2)  # the column pass written out (the row pass takes any KH)
    for plane in prange(N * C):
        n, c = plane // C, plane % C
        xp, yp = x[n, c], y[n, c]  # (H, W), (OH, OW)
        tmp = np.empty(W, x.dtype)  # the max down the window's rows, per input column
        for oh in range(OH):
            h0, h1 = max(oh * SH - PH, 0), min(oh * SH - PH + KH, H)  # window rows inside the input
            _window_rows(xp, h0, h1, tmp)
            yr = yp[oh]
            if fast:  # the whole windows, unrolled; the rest, cut by the image's edge, one by one
                _window_cols(tmp, yr, (owa, owb), KW, PW)
                _edge_cols(tmp, yr, (0, owa), window)
                _edge_cols(tmp, yr, (owb, OW), window)
            else:
                _edge_cols(tmp, yr, (0, OW), window)


@njit(parallel=True, cache=True)
def _maxpool2d_backward_kernel(dy, argmax, dx):
    N, C, P = dx.shape
    Q = dy.shape[2]
    for plane in prange(N * C):
        n, c = plane // C, plane % C
        dxp, dyp, ap = dx[n, c], dy[n, c], argmax[n, c]  # (P,), (Q,), (Q,)
        dxp[:] = 0
        for q in range(Q):
            dxp[ap[q]] += dyp[q]  # overlapping windows add


@njit(parallel=True, cache=True)
def _maxpool2d_backward_relu_kernel(dy, argmax, y, dx):
    """_maxpool2d_backward_kernel with the ReLU whose output the pooled x is fused: a window adds its dy only where
    its max y > 0. y is x at the window's winner (the same bits, NaN included), so this is relu_backward(dx, x):
    every window that picked a position agrees on x there, and a position no window picked stays 0 either way.
    y is read in order (a quarter of x for 2x2 windows), not x gathered at the winners."""
    N, C, P = dx.shape
    Q = dy.shape[2]
    for plane in prange(N * C):
        n, c = plane // C, plane % C
        dxp, dyp, ap, yp = dx[n, c], dy[n, c], argmax[n, c], y[n, c]  # (P,), (Q,), (Q,), (Q,)
        dxp[:] = 0
        for q in range(Q):  # no branch (half the maxima are 0: it would mispredict); a masked window adds +0.0,
            # and only to a position that every window picking it masks, which stays +0.0: the same bits
            dxp[ap[q]] += dyp[q] if yp[q] > 0 else 0.0


def maxpool2d_forward(x, *, kernel_size, stride, padding, ceil_mode, out_y=None, out_argmax=None,
                      with_argmax=True):
    """Max over each window; padding never wins.

    x: float32/float64 (N, C, H, W); out_y, out_argmax: None or C-contiguous (N, C, OH, OW)
    arrays (x's dtype, int64) that receive y and argmax
    Returns (y, argmax): y (N, C, OH, OW) dtype of x; argmax int64 (N, C, OH, OW), the flat
    index h*W + w of each winner inside its input plane; with_argmax=False: (y, None), by the
    faster kernel that keeps no argmax (out_argmax unused).
    """
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"maxpool2d: x must be float32 or float64, got {x.dtype}")
    y_shape = maxpool2d_output_shape(x.shape, kernel_size, stride, padding, ceil_mode)  # (N, C, OH, OW)
    (KH, KW), (SH, SW), (PH, PW) = (as_pair(kernel_size, "kernel_size"), as_pair(stride, "stride"),
                                    as_pair(padding, "padding"))
    y = out_or_empty("maxpool2d_forward", "out_y", out_y, y_shape, x.dtype)  # (N, C, OH, OW)
    if not with_argmax:
        _maxpool2d_values_kernel(np.ascontiguousarray(x), y, (KH, KW, SH, SW, PH, PW))
        return y, None
    argmax = out_or_empty("maxpool2d_forward", "out_argmax", out_argmax, y_shape, np.int64)  # (N, C, OH, OW)
    _maxpool2d_forward_kernel(np.ascontiguousarray(x), y, argmax, (KH, KW, SH, SW, PH, PW))
    return y, argmax


def maxpool2d_backward(dy, argmax, *, x_shape, out=None, relu=False, y=None):
    """Scatter dy back to the winners: dx[argmax] += dy, plane by plane.

    dy:     float32/float64 (N, C, OH, OW)
    argmax: int64 (N, C, OH, OW), from maxpool2d_forward
    x_shape: (N, C, H, W); out: None or a C-contiguous (N, C, H, W) array of dy's dtype for dx
    relu: True fuses the backward of the ReLU whose output the pooled x is: dx where x > 0, else 0
    (relu_backward(dx, x)), in the same pass; y (N, C, OH, OW): the forward's output, needed then
    Returns dx: (N, C, H, W), dtype of dy (out when given).
    """
    check_maxpool2d_backward_args(dy, argmax, x_shape)
    N, C, H, W = x_shape
    OH, OW = dy.shape[2:]
    dx = out_or_empty("maxpool2d_backward", "out", out, (N, C, H, W), dy.dtype)  # zeroed plane by plane in the kernel
    flat_dy = np.ascontiguousarray(dy).reshape(N, C, OH * OW)
    flat_argmax = np.ascontiguousarray(argmax).reshape(N, C, OH * OW)
    if relu:
        y = np.ascontiguousarray(check_pool_output("maxpool2d_backward", y, dy))  # (N, C, OH, OW)
        _maxpool2d_backward_relu_kernel(flat_dy, flat_argmax, y.reshape(N, C, OH * OW), dx.reshape(N, C, H * W))
    else:
        _maxpool2d_backward_kernel(flat_dy, flat_argmax, dx.reshape(N, C, H * W))
    return dx
