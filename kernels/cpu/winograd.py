"""Winograd F(4x4, 3x3) and F(4x4, 5x5) convolution for stride-1 layers (other kernel sizes cut into 3x3 pieces):
the CPU tier.

Shape legend
    N batch, C channels in, H, W input size, F filters out, OH, OW output size, G groups,
    Cg = C/G, Fg = F/G, TH, TW tiles down and across (ceil(OH/4), ceil(OW/4)), T = N*TH*TW tiles,
    a tile row q = n*TH + th (QT = N*TH of them), R tile rows per job, 36 = 6x6 positions of a
    transformed tile (64 = 8x8 for F(4x4, 5x5)); tiles = (TH, TW, q0), the grid and a block's
    first tile row, one argument of the Numba helpers.

Math: the derivation of the matrices and of the backward is in kernels/reference/winograd.py
(points 0, 1, -1, 2, -2, inf; for 5x5 kernels 0, 1, -1, 2, -2, 1/2, -1/2, inf). Per group and
per block of R tile rows (R*TW tiles):
    U[k] (Fg, Cg)    = (G w G^T)[k]          once per call (_kernel_rows)
    V[k] (Cg, R*TW)  = (B^T d B)[k]          input transform (_input_pieces; _input_tiles8)
    M[k] (Fg, R*TW)  = U[k] @ V[k]           36 (64) matrix products: ONE batched np.matmul (BLAS)
    y tile (4x4)     = A^T M A + b           output transform (_output_rows; _output_rows8)
Two tilings (Tiling, tiling()): F43 runs 3x3 kernels, and any other size but 5x5 as its 3x3
pieces; F45 runs 5x5 kernels whole on 8x8 tiles (AlexNet's conv2: 4 multiplications an output
instead of the pieces' 9, one input transform instead of four; bench/RESULTS.md "Speed round 4").
The transforms are the reference's B^T and A^T written out entry by entry (_bt, _at; a test checks
them against transform_matrices()), applied to whole rows of tiles so that the inner loops have
unit stride and vectorise (the output transform, and dy's, over all tiles of a block at once,
faster than row by row when a row holds few tiles: bench/bench_winograd.py, bench/RESULTS.md).
The input transform writes _bt out once more, one loop per output (_bt_down, _bt_across): LLVM
vectorises a loop with one store stream, not one that stores six rows of an array whose distance
it cannot prove (bench/RESULTS.md, "Speed round 2 ... AlexNet conv2 backward").

How it runs (kernels/cpu/threads.py): the call is cut into jobs, and each thread takes whole jobs
from a queue and runs them through all three phases with a one-thread BLAS, so a block's V and M
stay in that core's cache and no phase waits for the other cores. Jobs are cut by rows of tiles
(V + M of one job within BLOCK_BYTES; 8 MiB measured best or near it on every layer) or, when
the whole V is that small, by chunks of filters (winograd_correlate says why). The cut depends on
the shape only, so the result is the same bits on any number of threads. The buffers come from
`workspace`, a dict the caller keeps across calls (the layer does), so that a training step
allocates no transform buffers after its first; without one they are allocated per call.
Backward: dx is the forward's Winograd on dy with the flipped kernel (padding KH - 1 - p); dw is
winograd_weight_grad (dw = G^T dU G, dU from 36 (64) GEMMs of the transformed dy and x), db a sum.
"""
from typing import Callable, NamedTuple

import numpy as np
from numba import njit

from kernels.cpu.conv2d import workspace_buffer
from kernels.cpu.space_to_depth import depth_to_space, kernel_from_depth, kernel_to_depth, space_to_depth
from kernels.cpu.threads import run_jobs, workers
from kernels.reference.winograd import (
    WHOLE_KERNELS,
    check_winograd,
    flip_kernel,
    join_kernel_grad,
    split_kernel,
    transform_matrices,
    whole_kernel,
)
from kernels.shapes import COLUMN_BUDGET_BYTES, ConvGeometry, backward_request, check_conv2d_backward, out_or_empty

BLOCK_BYTES = 8 * 2 ** 20  # V + M of one job (bench/RESULTS.md: 8 MiB measured best or near it on every layer)
# U (the transformed kernels) and dU (their gradient) live in the workspace's im2col column buffer: the three are
# never live at once (a layer runs one algorithm, and dw is done before dx's correlation makes U), so a net keeps
# one buffer for them (VGG16 training: 72 MiB instead of 149)
KERNEL_BUFFER = "cols"


@njit(cache=True, inline="always")
def _bt(d0, d1, d2, d3, d4, d5, k):
    """B^T d for one 6-vector (rows of the reference's BT); k = (2, 4, 5, 8) in the data's dtype."""
    return (k[1] * d0 - k[2] * d2 + d4, k[1] * d1 + k[1] * d2 - d3 - d4,
            -k[1] * d1 + k[1] * d2 + d3 - d4, -k[0] * d1 - d2 + k[0] * d3 + d4,
            k[0] * d1 - d2 - k[0] * d3 + d4, k[1] * d1 - k[2] * d3 + d5)


@njit(cache=True, inline="always")
def _at(m0, m1, m2, m3, m4, m5, k):
    """A^T m for one 6-vector (rows of the reference's AT); k = (2, 4, 5, 8) in the data's dtype."""
    return (m0 + m1 + m2 + m3 + m4, m1 - m2 + k[0] * (m3 - m4), m1 + m2 + k[1] * (m3 + m4),
            m1 - m2 + k[3] * (m3 - m4) + m5)


@njit(cache=True, inline="always")
def _a(v0, v1, v2, v3, k):
    """A v for one 4-vector, A = the reference's AT transposed (the weight gradient's transform of dy)."""
    return (v0, v0 + v1 + v2 + v3, v0 - v1 + v2 - v3, v0 + k[0] * v1 + k[1] * v2 + k[3] * v3,
            v0 - k[0] * v1 + k[1] * v2 - k[3] * v3, v3)


@njit(cache=True, inline="always")
def _bt_down(xp, h0, k, tv, m0):
    """tv[l, m0 + j] = (B^T xp[h0 .. h0+5, j])[l] for every column j of xp: B^T down the columns of six rows.
    One loop per output row (a single store stream, so that it vectorises; six would not)."""
    k0, k1, k2 = k[0], k[1], k[2]
    for j in range(xp.shape[1]):
        tv[0, m0 + j] = k1 * xp[h0, j] - k2 * xp[h0 + 2, j] + xp[h0 + 4, j]
    for j in range(xp.shape[1]):
        tv[1, m0 + j] = k1 * xp[h0 + 1, j] + k1 * xp[h0 + 2, j] - xp[h0 + 3, j] - xp[h0 + 4, j]
    for j in range(xp.shape[1]):
        tv[2, m0 + j] = -k1 * xp[h0 + 1, j] + k1 * xp[h0 + 2, j] + xp[h0 + 3, j] - xp[h0 + 4, j]
    for j in range(xp.shape[1]):
        tv[3, m0 + j] = -k0 * xp[h0 + 1, j] - xp[h0 + 2, j] + k0 * xp[h0 + 3, j] + xp[h0 + 4, j]
    for j in range(xp.shape[1]):
        tv[4, m0 + j] = k0 * xp[h0 + 1, j] - xp[h0 + 2, j] - k0 * xp[h0 + 3, j] + xp[h0 + 4, j]
    for j in range(xp.shape[1]):
        tv[5, m0 + j] = k1 * xp[h0 + 1, j] - k2 * xp[h0 + 3, j] + xp[h0 + 5, j]


@njit(cache=True, inline="always")
def _bt_across(e, i, k, V, ch):
    """V[6i + l, ch, t] = (B^T-row l of e[i, 0..5, t]) for every tile t: B along the rows of the tiles'
    (B^T d); one loop per output, over the tiles."""
    k0, k1, k2 = k[0], k[1], k[2]
    for t in range(e.shape[2]):
        V[6 * i, ch, t] = k1 * e[i, 0, t] - k2 * e[i, 2, t] + e[i, 4, t]
    for t in range(e.shape[2]):
        V[6 * i + 1, ch, t] = k1 * e[i, 1, t] + k1 * e[i, 2, t] - e[i, 3, t] - e[i, 4, t]
    for t in range(e.shape[2]):
        V[6 * i + 2, ch, t] = -k1 * e[i, 1, t] + k1 * e[i, 2, t] + e[i, 3, t] - e[i, 4, t]
    for t in range(e.shape[2]):
        V[6 * i + 3, ch, t] = -k0 * e[i, 1, t] - e[i, 2, t] + k0 * e[i, 3, t] + e[i, 4, t]
    for t in range(e.shape[2]):
        V[6 * i + 4, ch, t] = k0 * e[i, 1, t] - e[i, 2, t] - k0 * e[i, 3, t] + e[i, 4, t]
    for t in range(e.shape[2]):
        V[6 * i + 5, ch, t] = k1 * e[i, 1, t] - k2 * e[i, 3, t] + e[i, 5, t]


@njit(cache=True, inline="always")
def _plane(x, n, c, pad, xp, h0, h1):
    """xp[h, j] = x[n, c, h - ph, j - pw] for the rows h0 <= h < h1 of xp, pad = (ph, pw, ...): the plane
    zero-padded (0 off the image) for as many columns as xp has; the columns off the image are left as
    they are (zeros). A block copies only the rows its tiles read (h0, h1 from _input_pieces), not the
    whole plane: VGG16 conv1_2's blocks read 34 of its 226 rows (bench/RESULTS.md, "the input transform's
    plane copy")."""
    ph, pw = pad[0], pad[1]
    H, W = x.shape[2], x.shape[3]
    ja, jb = max(0, min(xp.shape[1], pw)), max(0, min(xp.shape[1], W + pw))  # the columns on the image
    for h in range(h0, h1):
        hx = h - ph
        if 0 <= hx < H:
            for j in range(ja, jb):
                xp[h, j] = x[n, c, hx, j - pw]
        else:
            for j in range(ja, jb):
                xp[h, j] = 0


@njit(cache=True, inline="always")
def _gather(tv, first, off, e):
    """e[i, j, t] = tv[i, first[t] + off + j]: each tile's n columns of tv (n, R*WP), for every tile t; e (n, n, nt)."""
    for i in range(e.shape[0]):
        for j in range(e.shape[1]):
            src, dst = tv[i], e[i, j]
            for t in range(e.shape[2]):
                dst[t] = src[first[t] + off + j]


@njit(cache=True, inline="always")
def _first_columns(R, TW, WP):
    """first[r*TW + tw] = r*WP + 4tw: the first column in tv of tile (r, tw), tv holding R rows of WP columns."""
    first = np.empty(R * TW, np.int64)
    for r in range(R):
        for tw in range(TW):
            first[r * TW + tw] = r * WP + 4 * tw
    return first


@njit(cache=True, nogil=True)
def _input_pieces(x, c0, nc, pad, tiles, k, V, cv0):
    """V[6i + l, p*Cg + cv0 + c, r*TW + tw] = (B^T d B)[i, l], d the 6x6 window of tile (q0 + r, tw) of
    channel c0 + c for c < nc, read by piece p = (a, b) at its offset (3a, 3b) (p = a*PB + b, the
    order of split_kernel's channels); pad = (ph, pw, PA, PB): the kernel's padding and its PA x PB
    pieces (1 x 1 for a 3x3 kernel); tiles = (TH, TW, q0).

    x (N, C, H, W); V (36, PA*PB*Cg, R*TW) for R tile rows q0 .. q0+R-1 (tile row q = n*TH + th).
    Per channel, each image plane the block touches is copied once into xp, zero-padded
    (xp[h, j] = x[n, c, h - ph, j - pw], 0 off the image), where every piece's tiles read it
    (piece (a, b)'s window of tile (th, tw) is xp[4th + 3a + i, 4tw + 3b + j]). Per tile row and
    piece row a, B^T down the columns of its six rows, all columns at once (tv, shared by the
    pieces of that row); each tile's six columns of tv are gathered into e (e[i, j, r*TW + tw] =
    tv[a, i, r, 4tw + 3b + j]), then B along the rows, one loop over all R*TW tiles of the block
    (a loop over one row's TW tiles is too short to vectorise). Both passes are the reference's
    B^T d B entry by entry, in the same order (_bt), written one output per loop.
    """
    (_, _, PA, PB), (TH, TW, q0) = pad, tiles
    nt = V.shape[2]
    R = nt // TW
    Cg = V.shape[1] // (PA * PB)
    HP, WP = 4 * TH + 3 * PA - 1, 4 * TW + 3 * PB - 1  # the rows and columns the tiles of all pieces read
    xp = np.zeros((HP, WP), x.dtype)
    tv = np.empty((PA, 6, R * WP), x.dtype)  # tv[a, i, r*WP + j]: B^T down column j of tile row r's rows
    e = np.empty((6, 6, nt), x.dtype)  # e[i, j, tile]: column j of the tile's B^T d
    first = _first_columns(R, TW, WP)
    for c in range(nc):
        for r in range(R):
            n, th = (q0 + r) // TH, (q0 + r) % TH
            if r == 0 or th == 0:  # a new image: the rows of its plane that this block's tile rows of it read
                th1 = min(TH, th + R - r)  # this image's tile rows in the block: th .. th1 - 1
                _plane(x, n, c0 + c, pad, xp, 4 * th, min(HP, 4 * (th1 - 1) + 3 * PA + 3))
            for a in range(PA):  # columns: B^T d
                _bt_down(xp, 4 * th + 3 * a, k, tv[a], r * WP)
        for a in range(PA):
            for b in range(PB):
                _gather(tv[a], first, 3 * b, e)
                for i in range(6):  # rows: (B^T d) B
                    _bt_across(e, i, k, V, (a * PB + b) * Cg + cv0 + c)


@njit(cache=True, inline="always")
def _scatter(o, fy, tiles, y):
    """y[n, fy, 4th + i, 4tw + l] = o[i, l, r*TW + tw] for the block's tiles (tile row q0 + r = n*TH + th), cut at
    the edges of y (N, F, OH, OW); o (4, 4, R*TW), tiles = (TH, TW, q0)."""
    TH, TW, q0 = tiles
    OH, OW = y.shape[2], y.shape[3]
    for r in range(o.shape[2] // TW):
        n, th = (q0 + r) // TH, (q0 + r) % TH
        for i in range(min(4, OH - 4 * th)):
            for tw in range(TW):
                for l in range(min(4, OW - 4 * tw)):
                    y[n, fy, 4 * th + i, 4 * tw + l] = o[i, l, r * TW + tw]


@njit(cache=True, inline="always")
def _rectify(o):
    """o = max(o, 0) in place (relu_forward's rule: NaN passes), o (4, 4, R*TW): a ReLU fused into the output."""
    for i in range(o.shape[0]):
        for l in range(o.shape[1]):
            for j in range(o.shape[2]):
                v = o[i, l, j]
                o[i, l, j] = v if v > 0 or v != v else 0.0


@njit(cache=True, inline="always")
def _dy_tiles(dy, fy, tiles, e):
    """e[a, s, r*TW + tw] = dy[n, fy, 4th + a, 4tw + s], 0 beyond dy's edge: the block's 4x4 tiles of dy, gathered
    (tile row q0 + r = n*TH + th); e (4, 4, R*TW), tiles = (TH, TW, q0)."""
    TH, TW, q0 = tiles
    OH, OW = dy.shape[2], dy.shape[3]
    for r in range(e.shape[2] // TW):
        n, th = (q0 + r) // TH, (q0 + r) % TH
        for a in range(4):
            h = 4 * th + a
            for tw in range(TW):
                for s in range(4):
                    w = 4 * tw + s
                    e[a, s, r * TW + tw] = dy[n, fy, h, w] if h < OH and w < OW else 0


@njit(cache=True, nogil=True)
def _output_rows(M, b, f0, tiles, k, y, relu):
    """y[n, f0 + f, 4th:4th+4, 4tw:4tw+4] = A^T M[:, f, r*TW + tw] A + b[f0 + f], cut at the edges (relu: its
    max with 0, a ReLU above the layer fused while the tile is in cache).

    M (36, Fg, R*TW) for R tile rows from q0, tiles = (TH, TW, q0); b (F,); y (N, F, OH, OW). A^T
    along the columns of the 6x6, then A along its rows, each one loop over all R*TW tiles of the
    block (unit stride), then the 4x4 tiles are copied into y.
    """
    Fg, nt = M.shape[1], M.shape[2]
    t = np.empty((4, 6, nt), M.dtype)
    o = np.empty((4, 4, nt), M.dtype)  # o[i, l, j]: output row i, column l of tile j
    for f in range(Fg):
        bias = b[f0 + f]
        for l in range(6):  # columns: t = A^T m
            for j in range(nt):
                a = _at(M[l, f, j], M[6 + l, f, j], M[12 + l, f, j], M[18 + l, f, j],
                        M[24 + l, f, j], M[30 + l, f, j], k)
                for i in range(4):
                    t[i, l, j] = a[i]
        for i in range(4):  # rows: (A^T m) A
            for j in range(nt):
                a = _at(t[i, 0, j], t[i, 1, j], t[i, 2, j], t[i, 3, j], t[i, 4, j], t[i, 5, j], k)
                for l in range(4):
                    o[i, l, j] = a[l] + bias
        if relu:
            _rectify(o)
        _scatter(o, f0 + f, tiles, y)


@njit(cache=True, inline="always")
def _lincomb(a, src, out):
    """out[c] = a[0] src[0, c] + a[1] src[1, c] + ... + a[-1] src[-1, c], summed left to right, for every c: one
    linear combination of src's rows (src C-contiguous, so that the loops over c vectorise). The lengths the
    tilings use (3, 5: taps; 6, 8: positions) are written out as one pass over c (a pass per term, as the
    general case does, costs 1.3-1.5x on the kernel transforms: bench/RESULTS.md)."""
    m = a.shape[0]
    if m == 3:
        a0, a1, a2 = a[0], a[1], a[2]
        for c in range(out.shape[0]):
            out[c] = a0 * src[0, c] + a1 * src[1, c] + a2 * src[2, c]
    elif m == 5:
        a0, a1, a2, a3, a4 = a[0], a[1], a[2], a[3], a[4]
        for c in range(out.shape[0]):
            out[c] = a0 * src[0, c] + a1 * src[1, c] + a2 * src[2, c] + a3 * src[3, c] + a4 * src[4, c]
    elif m == 6:
        a0, a1, a2, a3, a4, a5 = a[0], a[1], a[2], a[3], a[4], a[5]
        for c in range(out.shape[0]):
            out[c] = (a0 * src[0, c] + a1 * src[1, c] + a2 * src[2, c] + a3 * src[3, c] + a4 * src[4, c]
                      + a5 * src[5, c])
    elif m == 8:
        a0, a1, a2, a3, a4, a5, a6, a7 = a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]
        for c in range(out.shape[0]):
            out[c] = (a0 * src[0, c] + a1 * src[1, c] + a2 * src[2, c] + a3 * src[3, c] + a4 * src[4, c]
                      + a5 * src[5, c] + a6 * src[6, c] + a7 * src[7, c])
    else:
        for c in range(out.shape[0]):
            out[c] = a[0] * src[0, c]
        for i in range(1, m):
            ai = a[i]
            for c in range(out.shape[0]):
                out[c] += ai * src[i, c]


@njit(cache=True, nogil=True)
def _kernel_rows(w, G, U, g, f0):
    """U[g, n*i + l, f0 + f, :] = (G w[f] G^T)[i, l] over all channels at once, for every filter f of w.

    w (nf, Cg, r, r) some filters of group g, G (n, r) (F(4x4, 3x3): (6, 3); F(4x4, 5x5): (8, 5)),
    U (groups, n*n, Fg, Cg) C-contiguous (the layer's U, or a job's own block as (1, n*n, nf, Cg));
    the loops run over channels with unit stride (on a C-contiguous U, so that Numba knows it and
    vectorises them: measured 1.7x). Each entry is summed over the kernel's taps in order.
    """
    nf, Cg, r = w.shape[0], w.shape[1], w.shape[2]
    n = G.shape[0]
    wt = np.empty((r * r, Cg), w.dtype)  # wt[r*b + a, c] = w[f, c, a, b]: column b's taps, unit-stride rows
    t = np.empty((n, r, Cg), w.dtype)  # G w, per channel
    for f in range(nf):
        for c in range(Cg):  # the one strided read of w
            for a in range(r):
                for b in range(r):
                    wt[r * b + a, c] = w[f, c, a, b]
        for i in range(n):
            for b in range(r):
                _lincomb(G[i], wt[r * b:r * b + r], t[i, b])
        for i in range(n):  # (G w) G^T
            for l in range(n):
                _lincomb(G[l], t[i], U[g, n * i + l, f0 + f])


@njit(cache=True, inline="always")
def _dy_rows(dy, f0, tiles, k, D, a):
    """D[n*i + l, f, r*TW + tw] = (A dY A^T)[i, l], dY the 4x4 tile (q0 + r, tw) of dy[:, f0 + f];
    tiles = (TH, TW, q0); a: A written out, _a (F(4x4, 3x3): A is 6x4) or _a8 (F(4x4, 5x5): 8x4).
    Inlined into _dy_rows43 and _dy_rows45, which pass their A as a global: a cached function must not
    take a Numba function as an argument (its type names a dispatcher object, so every new process
    misses the cache, compiles again and appends to the cache index, and once an old entry's dispatcher
    has gone the index can no longer be written: "ReferenceError: underlying object has vanished" on
    the first weight gradient of a process; it happened here on 2026-12-07 after 266 entries).

    dy (N, F, OH, OW), 0 beyond its edge (the outputs a cut tile computes and drops); D (n*n, Fg, R*TW).
    The adjoint of _output_rows: the tiles are gathered (e[a, s, j] = dY_j[a, s]), then both
    passes are loops over all R*TW tiles with unit stride.
    """
    Fg, nt = D.shape[1], D.shape[2]
    n = 8 if D.shape[0] == 64 else 6
    e = np.empty((4, 4, nt), dy.dtype)
    t = np.empty((n, 4, nt), dy.dtype)  # A e, same layout
    for f in range(Fg):
        _dy_tiles(dy, f0 + f, tiles, e)
        for s in range(4):  # columns: A dY
            for j in range(nt):
                o = a(e[0, s, j], e[1, s, j], e[2, s, j], e[3, s, j], k)
                for i in range(len(o)):
                    t[i, s, j] = o[i]
        for i in range(n):  # rows: (A dY) A^T
            for j in range(nt):
                o = a(t[i, 0, j], t[i, 1, j], t[i, 2, j], t[i, 3, j], k)
                for l in range(len(o)):
                    D[n * i + l, f, j] = o[l]


@njit(cache=True, nogil=True)
def _kernel_grad_rows(P, G, fa0, fa1, dw):
    """dw[fa] = G^T (P[0] + P[1])[g, :, f] G for filters fa0..fa1-1, over all C/G channels at once.

    P (2, G, n*n, Fg, Cg): the two chains' sums of dU (added in this fixed order); G (n, r);
    dw (F, Cg, r, r). The adjoint of _kernel_rows; each entry summed over the n positions in order.
    """
    Cg, Fg, r = dw.shape[1], P.shape[3], dw.shape[2]
    n = G.shape[0]
    Gt = np.ascontiguousarray(G.T)  # (r, n): Gt[b] = column b of G
    du = np.empty((n * n, Cg), dw.dtype)
    t = np.empty((r, n, Cg), dw.dtype)  # t[b, i] = (dU G)[i, b], per channel
    wt = np.empty((r * r, Cg), dw.dtype)  # wt[r*a + b, c]: dw[fa, c, a, b], unit stride, then written out once
    for fa in range(fa0, fa1):
        g, f = fa // Fg, fa % Fg
        for kk in range(n * n):
            for c in range(Cg):
                du[kk, c] = P[0, g, kk, f, c] + P[1, g, kk, f, c]
        for i in range(n):
            for b in range(r):
                _lincomb(Gt[b], du[n * i:n * i + n], t[b, i])
        for a in range(r):  # G^T (dU G)
            for b in range(r):
                _lincomb(Gt[a], t[b], wt[r * a + b])
        for c in range(Cg):  # the one strided write of dw
            for a in range(r):
                for b in range(r):
                    dw[fa, c, a, b] = wt[r * a + b, c]


# ---------------------------------------------------------------------------------------------------------------
# F(4x4, 5x5) on 8x8 tiles (5x5 kernels: AlexNet's conv2), points 0, 1, -1, 2, -2, 1/2, -1/2, inf
# (kernels/reference/winograd.py). The same phases as F(4x4, 3x3)'s above, one 8x8 input transform per tile and
# channel instead of four 6x6 ones for the 3x3 pieces, and 64 products instead of 4 x 36. The transforms are the
# reference's matrices written out; rows that differ only in the sign of the odd points share their two halves
# (B^T rows 1/2, 3/4, 5/6: even part + odd part, even part - odd part). k8 = K8 in the data's dtype.
# ---------------------------------------------------------------------------------------------------------------
K8 = (0.5, 0.25, 0.125, 2, 4, 8, 4.25, 5.25, 5, 10)  # k[0] .. k[9]


@njit(cache=True, inline="always")
def _at8(m0, m1, m2, m3, m4, m5, m6, m7, k):  # noqa: PLR0913 (one argument an entry, as _at)
    """A^T m for one 8-vector (rows of the reference's F(4x4, 5x5) AT), k = K8 typed."""
    s1, s3, s5 = m1 + m2, m3 + m4, m5 + m6
    d1, d3, d5 = m1 - m2, m3 - m4, m5 - m6
    return (m0 + s1 + s3 + s5, d1 + k[3] * d3 + k[0] * d5, s1 + k[4] * s3 + k[1] * s5,
            d1 + k[5] * d3 + k[2] * d5 + m7)


@njit(cache=True, inline="always")
def _a8(v0, v1, v2, v3, k):
    """A v for one 4-vector, A = the F(4x4, 5x5) AT transposed: v's cubic at 0, 1, -1, 2, -2, 1/2, -1/2, inf."""
    e1, o1 = v0 + v2, v1 + v3
    e2, o2 = v0 + k[4] * v2, k[3] * v1 + k[5] * v3
    e5, o5 = v0 + k[1] * v2, k[0] * v1 + k[2] * v3
    return (v0, e1 + o1, e1 - o1, e2 + o2, e2 - o2, e5 + o5, e5 - o5, v3)


@njit(cache=True, inline="always")
def _bt8_down(xp, h0, k, tv, m0):
    """tv[l, m0 + j] = (B^T xp[h0 .. h0+7, j])[l] for every column j of xp (_bt8 down the columns of eight rows),
    one loop per output row, as _bt_down."""
    for j in range(xp.shape[1]):
        tv[0, m0 + j] = xp[h0, j] - xp[h0 + 6, j] + k[7] * (xp[h0 + 4, j] - xp[h0 + 2, j])
    for j in range(xp.shape[1]):
        tv[1, m0 + j] = ((k[6] * xp[h0 + 4, j] - xp[h0 + 2, j] - xp[h0 + 6, j])
                         + (k[6] * xp[h0 + 3, j] - xp[h0 + 1, j] - xp[h0 + 5, j]))
    for j in range(xp.shape[1]):
        tv[2, m0 + j] = ((k[6] * xp[h0 + 4, j] - xp[h0 + 2, j] - xp[h0 + 6, j])
                         - (k[6] * xp[h0 + 3, j] - xp[h0 + 1, j] - xp[h0 + 5, j]))
    for j in range(xp.shape[1]):
        tv[3, m0 + j] = ((xp[h0 + 2, j] - k[8] * xp[h0 + 4, j] + k[4] * xp[h0 + 6, j])
                         + (k[3] * xp[h0 + 1, j] - k[9] * xp[h0 + 3, j] + k[5] * xp[h0 + 5, j]))
    for j in range(xp.shape[1]):
        tv[4, m0 + j] = ((xp[h0 + 2, j] - k[8] * xp[h0 + 4, j] + k[4] * xp[h0 + 6, j])
                         - (k[3] * xp[h0 + 1, j] - k[9] * xp[h0 + 3, j] + k[5] * xp[h0 + 5, j]))
    for j in range(xp.shape[1]):
        tv[5, m0 + j] = ((k[5] * xp[h0 + 2, j] - k[9] * xp[h0 + 4, j] + k[3] * xp[h0 + 6, j])
                         + (k[4] * xp[h0 + 1, j] - k[8] * xp[h0 + 3, j] + xp[h0 + 5, j]))
    for j in range(xp.shape[1]):
        tv[6, m0 + j] = ((k[5] * xp[h0 + 2, j] - k[9] * xp[h0 + 4, j] + k[3] * xp[h0 + 6, j])
                         - (k[4] * xp[h0 + 1, j] - k[8] * xp[h0 + 3, j] + xp[h0 + 5, j]))
    for j in range(xp.shape[1]):
        tv[7, m0 + j] = xp[h0 + 7, j] - xp[h0 + 1, j] + k[7] * (xp[h0 + 3, j] - xp[h0 + 5, j])


@njit(cache=True, inline="always")
def _bt8_across(e, i, k, V, ch):
    """V[8i + l, ch, t] = (_bt8 of e[i, 0..7, t])[l] for every tile t: B along the rows of the tiles' (B^T d), one
    loop per output, as _bt_across."""
    for t in range(e.shape[2]):
        V[8 * i, ch, t] = e[i, 0, t] - e[i, 6, t] + k[7] * (e[i, 4, t] - e[i, 2, t])
    for t in range(e.shape[2]):
        V[8 * i + 1, ch, t] = ((k[6] * e[i, 4, t] - e[i, 2, t] - e[i, 6, t])
                               + (k[6] * e[i, 3, t] - e[i, 1, t] - e[i, 5, t]))
    for t in range(e.shape[2]):
        V[8 * i + 2, ch, t] = ((k[6] * e[i, 4, t] - e[i, 2, t] - e[i, 6, t])
                               - (k[6] * e[i, 3, t] - e[i, 1, t] - e[i, 5, t]))
    for t in range(e.shape[2]):
        V[8 * i + 3, ch, t] = ((e[i, 2, t] - k[8] * e[i, 4, t] + k[4] * e[i, 6, t])
                               + (k[3] * e[i, 1, t] - k[9] * e[i, 3, t] + k[5] * e[i, 5, t]))
    for t in range(e.shape[2]):
        V[8 * i + 4, ch, t] = ((e[i, 2, t] - k[8] * e[i, 4, t] + k[4] * e[i, 6, t])
                               - (k[3] * e[i, 1, t] - k[9] * e[i, 3, t] + k[5] * e[i, 5, t]))
    for t in range(e.shape[2]):
        V[8 * i + 5, ch, t] = ((k[5] * e[i, 2, t] - k[9] * e[i, 4, t] + k[3] * e[i, 6, t])
                               + (k[4] * e[i, 1, t] - k[8] * e[i, 3, t] + e[i, 5, t]))
    for t in range(e.shape[2]):
        V[8 * i + 6, ch, t] = ((k[5] * e[i, 2, t] - k[9] * e[i, 4, t] + k[3] * e[i, 6, t])
                               - (k[4] * e[i, 1, t] - k[8] * e[i, 3, t] + e[i, 5, t]))
    for t in range(e.shape[2]):
        V[8 * i + 7, ch, t] = e[i, 7, t] - e[i, 1, t] + k[7] * (e[i, 3, t] - e[i, 5, t])


@njit(cache=True, nogil=True)
def _input_tiles8(x, c0, nc, pad, tiles, k, V, cv0):
    """V[8i + l, cv0 + c, r*TW + tw] = (B^T d B)[i, l], d the 8x8 window of tile (q0 + r, tw) of channel c0 + c,
    for c < nc: F(4x4, 5x5)'s input transform, _input_pieces' schedule with one piece of side 5.

    x (N, C, H, W); pad = (ph, pw, ...); tiles = (TH, TW, q0); V (64, Cg, R*TW) for R tile rows q0 .. q0+R-1.
    The rows of each image plane the block reads are copied once, zero-padded, into xp (xp[h, j] = x[n, c, h -
    ph, j - pw]); per tile row B^T down the columns of its eight rows, all columns at once (tv); each tile's
    eight columns gathered into e; then B along the rows, one loop over all R*TW tiles of the block.
    """
    TH, TW, q0 = tiles
    nt = V.shape[2]
    R = nt // TW
    HP, WP = 4 * TH + 4, 4 * TW + 4  # the rows and columns the 8x8 tiles read
    xp = np.zeros((HP, WP), x.dtype)
    tv = np.empty((8, R * WP), x.dtype)
    e = np.empty((8, 8, nt), x.dtype)
    first = _first_columns(R, TW, WP)
    for c in range(nc):
        for r in range(R):
            n, th = (q0 + r) // TH, (q0 + r) % TH
            if r == 0 or th == 0:  # a new image: the rows of its plane that this block's tile rows of it read
                th1 = min(TH, th + R - r)
                _plane(x, n, c0 + c, pad, xp, 4 * th, min(HP, 4 * (th1 - 1) + 8))
            _bt8_down(xp, 4 * th, k, tv, r * WP)
        _gather(tv, first, 0, e)
        for i in range(8):
            _bt8_across(e, i, k, V, cv0 + c)


@njit(cache=True, nogil=True)
def _output_rows8(M, b, f0, tiles, k, y, relu):
    """_output_rows for F(4x4, 5x5): y's 4x4 tile = A^T M[:, f, tile] A + b[f0 + f] (relu: its max with 0),
    M (64, Fg, R*TW), A^T (4, 8)."""
    Fg, nt = M.shape[1], M.shape[2]
    t = np.empty((4, 8, nt), M.dtype)
    o = np.empty((4, 4, nt), M.dtype)
    for f in range(Fg):
        bias = b[f0 + f]
        for l in range(8):  # columns: t = A^T m
            for j in range(nt):
                a = _at8(M[l, f, j], M[8 + l, f, j], M[16 + l, f, j], M[24 + l, f, j],
                         M[32 + l, f, j], M[40 + l, f, j], M[48 + l, f, j], M[56 + l, f, j], k)
                for i in range(4):
                    t[i, l, j] = a[i]
        for i in range(4):  # rows: (A^T m) A
            for j in range(nt):
                a = _at8(t[i, 0, j], t[i, 1, j], t[i, 2, j], t[i, 3, j], t[i, 4, j], t[i, 5, j], t[i, 6, j],
                         t[i, 7, j], k)
                for l in range(4):
                    o[i, l, j] = a[l] + bias
        if relu:
            _rectify(o)
        _scatter(o, f0 + f, tiles, y)


@njit(cache=True, nogil=True)
def _dy_rows43(dy, f0, tiles, k, D):
    """_dy_rows with F(4x4, 3x3)'s A (6x4): D (36, Fg, R*TW)."""
    _dy_rows(dy, f0, tiles, k, D, _a)


@njit(cache=True, nogil=True)
def _dy_rows45(dy, f0, tiles, k, D):
    """_dy_rows with F(4x4, 5x5)'s A (8x4): D (64, Fg, R*TW)."""
    _dy_rows(dy, f0, tiles, k, D, _a8)


class Tiling(NamedTuple):
    """One Winograd F(4x4, r x r) as this tier runs it: n x n input tiles (n*n transformed positions), the
    kernels of its phases, and its constants (typed per call)."""
    r: int
    n: int
    input: Callable  # (x, c0, nc, pad, tiles, k, V, cv0): _input_pieces or _input_tiles8
    output: Callable  # (M, b, f0, tiles, k, y, relu)
    dy: Callable  # (dy, f0, tiles, k, D): _dy_rows with its A (_dy_rows43, _dy_rows45)
    k: tuple


F43 = Tiling(3, 6, _input_pieces, _output_rows, _dy_rows43, (2, 4, 5, 8))
F45 = Tiling(5, 8, _input_tiles8, _output_rows8, _dy_rows45, K8)


def tiling(KH, KW):
    """F45 for a 5x5 kernel (run whole), else F43 (3x3, or the kernel's 3x3 pieces)."""
    return F45 if whole_kernel(KH, KW) == 5 else F43


def transform_g(t, dtype):
    """G (n, r) of tiling t, in dtype (the reference's transform_matrices)."""
    return transform_matrices(4, t.r, WHOLE_KERNELS[t.r])[1].astype(dtype)


KERNEL_JOB = 16  # filters per kernel-transform job
FILTER_JOB = 64  # filters per job when the GEMMs are split by filters
CHANNEL_JOB = 32  # channels per input-transform job then
CHAINS = 2  # the weight gradient's fixed number of partial sums (winograd_weight_grad)


def kernel_transform(w, groups, out=None, threads=None):
    """U (G, n*n, F/G, C/G) = G w G^T for every (f, c), grouped; w (F, C/G, r, r), C-contiguous, r = 3 or 5
    (F43: n = 6, F45: n = 8)."""
    F, Cg, r = w.shape[:3]
    Fg = F // groups
    G = transform_g(tiling(r, r), w.dtype)
    U = np.empty((groups, G.shape[0] ** 2, Fg, Cg), w.dtype) if out is None else out
    run_jobs(lambda _, j: _kernel_rows(w[j[0] * Fg + j[1]:j[0] * Fg + j[2]], G, U, j[0], j[1]),
             [(g, f0, min(Fg, f0 + KERNEL_JOB)) for g in range(groups) for f0 in range(0, Fg, KERNEL_JOB)], threads)
    return U


def rows_per_block(Cg, Fg, TW, QT, itemsize, block_bytes=BLOCK_BYTES, positions=36):
    """Tile rows per block: V and M of one block within block_bytes (at least one row, at most QT); positions =
    n*n of the tiling (36 for F43, 64 for F45)."""
    return int(min(QT, max(1, block_bytes // (positions * (Cg + Fg) * itemsize * TW))))


def forward_block_bytes(block_bytes, positions):
    """The budget of one block of the forward (and of dx, the same correlation): block_bytes for F43; for F45 36/64
    of it, as many tile rows as F43's blocks hold (measured: AlexNet conv2's forward and dx 1.14-1.19x faster
    than with the whole budget, its weight gradient 0.90-0.97x, so winograd_weight_grad keeps the whole budget;
    bench/RESULTS.md, "Speed round 4")."""
    return block_bytes * 36 // positions


def _piece_grid(KH, KW, padding):
    """(ph, pw, PA, PB): the padding and the PA x PB grid of 3x3 pieces of a KH x KW kernel (_input_pieces' pad);
    1 x 1 for a kernel run whole (3x3, 5x5)."""
    if whole_kernel(KH, KW):
        return (padding[0], padding[1], 1, 1)
    return (padding[0], padding[1], -(-KH // 3), -(-KW // 3))


def _pieces_of(w, padding):
    """(w3, pad, t): the tiling t that runs w (tiling()), the kernel it runs (w itself when whole: 3x3 or 5x5; else
    its P 3x3 pieces (F, P*Cg, 3, 3), kernels/reference/winograd.split_kernel), and _piece_grid's pad."""
    KH, KW = w.shape[2:]
    return (w if whole_kernel(KH, KW) else split_kernel(w)), _piece_grid(KH, KW, padding), tiling(KH, KW)


def winograd_correlate(x, w, b, geometry, y, workspace=None, block_bytes=BLOCK_BYTES, threads=None, relu=False):
    """y (N, F, OH, OW) = stride-1 correlation of x with w (+ b), or its max with 0 when relu; geometry:
    ConvGeometry (kernels/shapes.py), its stride taken as (1, 1) (conv2d_forward checks it), its padding may be
    negative.

    w (F, C/G, KH, KW): 3x3 (F(4x4, 3x3), the tiling F43) or 5x5 (F(4x4, 5x5), F45) whole, or any other
    size, cut into P 3x3 pieces (split_kernel) that act as P*C/G input channels of F43, piece p reading
    x shifted by its offset (kernels/reference/winograd.py).

    Two schedules, chosen by the layer's shape alone (never by the thread count, so the result
    is the same whatever the number of threads), both run by run_jobs on a one-thread BLAS:
    - by rows (the usual case): a job is one group and R whole tile rows (rows_per_block); the
      thread running it transforms its input into its own V, multiplies, and transforms the
      output, with V and M (workspace "winograd_V", "winograd_M", one per thread) in its cache;
    - by filters, when V for all T tiles fits in block_bytes (small images, many channels: VGG16's
      14x14 layers): a job per chunk of channels transforms the input into one shared V, then a
      job per chunk of FILTER_JOB filters transforms those filters' kernels into its own U block,
      multiplies it with V and transforms its output. Cut by rows, these layers give fewer jobs
      than threads, and every job would read all of U (37.7 MB for 512 -> 512 channels); cut by
      filters each job makes and reads its own 4.7 MB part while it is in its core's cache
      (bench/bench_winograd.py on VGG16 conv5_x; the figures are in bench/RESULTS.md).
    """
    padding, groups = geometry.padding, geometry.groups
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    Fg = F // groups
    OH, OW = y.shape[2:]
    TH, TW = -(-OH // 4), -(-OW // 4)
    QT, T = N * TH, N * TH * TW
    w3, pad, t = _pieces_of(w, padding)  # (F, P*Cg, r, r), the input transform's pad, the tiling
    CP, nn = w3.shape[1], t.n ** 2  # V's channels (P*Cg), transformed positions (36 or 64)
    by_filters = nn * CP * T * x.itemsize <= block_bytes and Fg > FILTER_JOB
    R = QT if by_filters else rows_per_block(CP, Fg, TW, QT, x.itemsize, forward_block_bytes(block_bytes, nn), nn)
    jobs = ([(f0, g) for g in range(groups) for f0 in range(0, Fg, FILTER_JOB)] if by_filters
            else [(q0, g) for q0 in range(0, QT, R) for g in range(groups)])
    threads = workers(len(jobs), threads)
    k = np.array(t.k, x.dtype)  # the transforms' constants, typed so float32 stays float32
    if by_filters:
        G = transform_g(t, x.dtype)
        V = workspace_buffer(workspace, (1, nn, CP, T), x.dtype, "winograd_V")[0]  # (nn, P*Cg, T), shared
        U = workspace_buffer(workspace, (threads, nn, FILTER_JOB, CP), x.dtype, KERNEL_BUFFER)  # per thread
        M = workspace_buffer(workspace, (threads, nn, FILTER_JOB, T), x.dtype, "winograd_M")  # per thread
        for g in range(groups):
            run_jobs(lambda _, c0, g=g: t.input(x, g * Cg + c0, min(CHANNEL_JOB, Cg - c0), pad, (TH, TW, 0), k, V,
                                                c0),
                     range(0, Cg, CHANNEL_JOB), threads)

            def by_filter(worker, f0g, g=g):
                f0 = f0g[0]
                nf = min(FILTER_JOB, Fg - f0)
                Mb = M[worker, :, :nf]
                _kernel_rows(w3[g * Fg + f0:g * Fg + f0 + nf], G, U[worker:worker + 1], 0, 0)  # its filters only
                np.matmul(U[worker, :, :nf], V, out=Mb)  # (nn, nf, T)
                t.output(Mb, b, g * Fg + f0, (TH, TW, 0), k, y, relu)
            run_jobs(by_filter, [j for j in jobs if j[1] == g], threads)
        return y
    U = kernel_transform(w3, groups, workspace_buffer(workspace, (groups, nn, Fg, CP), x.dtype, KERNEL_BUFFER),
                         threads)
    V = workspace_buffer(workspace, (threads, nn, CP, R * TW), x.dtype, "winograd_V")  # a (nn, P*Cg, R*TW) per thread
    M = workspace_buffer(workspace, (threads, nn, Fg, R * TW), x.dtype, "winograd_M")  # a (nn, Fg, R*TW) per thread

    def by_rows(worker, q0g):
        q0, g = q0g
        nt = min(R, QT - q0) * TW  # the last block may hold fewer rows
        Vb, Mb = V[worker, :, :, :nt], M[worker, :, :, :nt]
        t.input(x, g * Cg, Cg, pad, (TH, TW, q0), k, Vb, 0)
        np.matmul(U[g], Vb, out=Mb)  # (nn, Fg, nt): 36 or 64 GEMMs in one call, on this thread
        t.output(Mb, b, g * Fg, (TH, TW, q0), k, y, relu)

    run_jobs(by_rows, jobs, threads)
    return y


def winograd_weight_grad(dy, x, geometry, dw, workspace=None, block_bytes=BLOCK_BYTES, threads=None):
    """dw (F, C/G, KH, KW) of the stride-1 correlation, by Winograd: dw = G^T dU G with
    dU[k] (Fg, Cg) = sum over tiles of dM[k] (Fg, tiles) @ V[k]^T (tiles, Cg), dM = A dY A^T
    (F(4x4, 3x3) for 3x3, F(4x4, 5x5) for 5x5 kernels; another kernel: per 3x3 piece, its V read at
    the piece's offset, then joined back).

    The tile rows are cut into an even number of blocks (rows_per_block's size at most), and the
    blocks dealt to CHAINS = 2 chains, block b to chain b % 2. A chain runs its blocks in order,
    each one whole on one thread (input transform, dy transform, 36 or 64 GEMMs added into the chain's
    own dU), and the two sums are added in a fixed order at the end: the same bits whatever the
    thread count (1 thread runs the chains one after the other), which training's determinism
    needs (rawcnn/engine/determinism.py). At most two threads work on it. geometry as in winograd_correlate.
    """
    padding, groups = geometry.padding, geometry.groups
    N, C, H, W = x.shape
    F, Cg, KH, KW = dw.shape
    Fg = F // groups
    OH, OW = dy.shape[2:]
    TH, TW = -(-OH // 4), -(-OW // 4)
    QT = N * TH
    pad, t = _piece_grid(KH, KW, padding), tiling(KH, KW)
    CP, nn = pad[2] * pad[3] * Cg, t.n ** 2  # V's channels, transformed positions
    R = rows_per_block(CP, Fg, TW, QT, x.itemsize, block_bytes, nn)
    nblocks = min(QT, CHAINS * -(-QT // (CHAINS * R)))  # even where QT allows, sizes within one row
    R = -(-QT // nblocks)
    blocks = [(q0, g) for q0 in range(0, QT, R) for g in range(groups)]
    P = workspace_buffer(workspace, (CHAINS, groups, nn, Fg, CP), x.dtype, KERNEL_BUFFER)  # a dU per chain
    Pt = workspace_buffer(workspace, (CHAINS, Fg, CP), x.dtype, "winograd_dUt")  # one position's product
    V = workspace_buffer(workspace, (CHAINS, nn, CP, R * TW), x.dtype, "winograd_V")
    D = workspace_buffer(workspace, (CHAINS, nn, Fg, R * TW), x.dtype, "winograd_M")
    k = np.array(t.k, x.dtype)

    def chain(_, p):
        started = set()
        for q0, g in blocks[p::CHAINS]:
            nt = min(R, QT - q0) * TW
            Vb, Db = V[p, :, :, :nt], D[p, :, :, :nt]
            t.input(x, g * Cg, Cg, pad, (TH, TW, q0), k, Vb, 0)
            t.dy(dy, g * Fg, (TH, TW, q0), k, Db)
            if g in started:  # position by position: a product of (Fg, P*Cg), not nn (VGG16: 70 MiB less)
                for j in range(nn):
                    np.matmul(Db[j], Vb[j].T, out=Pt[p])  # (Fg, P*Cg)
                    np.add(P[p, g, j], Pt[p], out=P[p, g, j])
            else:
                np.matmul(Db, Vb.transpose(0, 2, 1), out=P[p, g])
                started.add(g)
        for g in range(groups):
            if g not in started:  # a chain with no block of this group (tiny inputs)
                P[p, g] = 0

    run_jobs(chain, range(CHAINS), threads)
    G = transform_g(t, x.dtype)
    dw3 = dw if whole_kernel(KH, KW) else np.empty((F, CP, 3, 3), x.dtype)  # (F, P*Cg, 3, 3)
    run_jobs(lambda _, f0: _kernel_grad_rows(P, G, f0, min(F, f0 + KERNEL_JOB), dw3), range(0, F, KERNEL_JOB),
             threads)
    if dw3 is not dw:
        join_kernel_grad(dw3, KH, KW, dw)
    return dw


def conv2d_forward(x, w, b, *, geometry, budget_bytes=None, workspace=None, out=None, relu=False):
    """y = conv(x, w) + b by Winograd F(4x4, 3x3), a block of tiles at a time.

    x: (N, C, H, W), w: (F, C/G, KH, KW) (3x3 or 5x5 whole, other sizes cut into 3x3 pieces), b: (F,), all
    float32 or all float64; geometry: ConvGeometry(stride, padding, groups) (kernels/shapes.py), stride (1, 1), or
    strided with 2*s < KH, KW <= 3*s (by space-to-depth: _depth_problem).
    budget_bytes is accepted for the shared signature; workspace: a dict kept across calls, or None;
    out: None or a C-contiguous (N, F, OH, OW) array of x's dtype that receives y (not overlapping x);
    relu: True gives max(y, 0) (a ReLU above the layer fused into the output transform, on each tile while it
    is in cache; the same bits as relu_forward of y).
    Returns y (N, F, OH, OW), x's dtype (out when given).
    """
    OH, OW = check_winograd(x, w, b, *geometry)
    y = out_or_empty("winograd conv2d_forward", "out", out, (x.shape[0], w.shape[0], OH, OW), x.dtype)
    if tuple(geometry.stride) != (1, 1):  # by space-to-depth: the same sum, 3x3 stride 1 on C*sh*sw channels
        x, w, geometry = _depth_problem(x, w, geometry, (OH, OW), workspace)
    return winograd_correlate(np.ascontiguousarray(x), np.ascontiguousarray(w), b, geometry, y, workspace,
                              relu=relu)


def conv2d_backward(dy, x, w, *, geometry, budget_bytes=COLUMN_BUDGET_BYTES, need=("dx", "dw"), workspace=None,
                    out=None):
    """Gradients of conv2d_forward: dx by Winograd on the flipped kernel, dw by Winograd (G^T dU G), db a sum.

    dy: (N, F, OH, OW), x: (N, C, H, W), w: (F, C/G, KH, KW), all of one float dtype; geometry as
    conv2d_forward. need without "dx" skips dx, without "dw" dw and db (returned as None); out as in
    kernels/cpu/conv2d.py's conv2d_backward.
    Returns (dx (N, C, H, W) or None, dw (F, C/G, KH, KW) or None, db (F,) or None), x's dtype.
    """
    stride, padding, groups = geometry
    check_winograd(x, w, None, stride, padding, groups)
    OH, OW = check_conv2d_backward(dy, x, w, stride, padding, groups, op="winograd conv2d_backward")
    need_dx, need_dw, out_dx, out_dw, out_db = backward_request("winograd conv2d_backward", need, out)
    if tuple(stride) != (1, 1):
        return _depth_backward(dy, x, w, geometry, need, workspace, (out_dx, out_dw, out_db))
    dw = db = None
    x, dy = np.ascontiguousarray(x), np.ascontiguousarray(dy)
    if need_dw:
        op = "winograd conv2d_backward"
        db = out_or_empty(op, "out_db", out_db, (w.shape[0],), x.dtype)  # (F,)
        np.sum(dy, axis=(0, 2, 3), out=db)
        dw = out_or_empty(op, "out_dw", out_dw, w.shape, x.dtype)  # (F, C/G, KH, KW)
        winograd_weight_grad(dy, x, geometry, dw, workspace)
    if not need_dx:
        return None, dw, db
    wf = flip_kernel(w, groups)  # (C, F/G, KH, KW)
    dx = out_or_empty("winograd conv2d_backward", "out_dx", out_dx, x.shape, x.dtype)  # (N, C, H, W)
    zero = np.zeros(x.shape[1], x.dtype)  # (C,): no bias in dx
    KH, KW = w.shape[2:]
    q = geometry._replace(padding=(KH - 1 - padding[0], KW - 1 - padding[1]))  # dy padded by KH - 1 - ph, ...
    winograd_correlate(np.ascontiguousarray(dy), wf, zero, q, dx, workspace)
    return dx, dw, db


def _depth_problem(x, w, geometry, out_size, workspace):
    """kernels/reference/winograd.depth_problem on this tier: (xd (N, C*sh*sw, OH + 2, OW + 2), wd (F, C/G*sh*sw,
    3, 3), ConvGeometry((1, 1), (0, 0), G)), xd kept in workspace["depth_x"]."""
    stride, padding, groups = geometry
    (sh, sw), (OH, OW) = stride, out_size
    buf = workspace_buffer(workspace, (x.shape[0], x.shape[1] * sh * sw, OH + 2, OW + 2), x.dtype, "depth_x")
    xd = space_to_depth(x, stride=stride, padding=padding, out_size=out_size, out=buf)
    return xd, kernel_to_depth(w, stride), ConvGeometry((1, 1), (0, 0), groups)


def _depth_backward(dy, x, w, geometry, need, workspace, out):
    """conv2d_backward of a strided layer: the gradients of its space-to-depth problem (dw by Winograd,
    dx too), mapped back by the adjoints kernel_from_depth and depth_to_space; out = (dx, dw, db) or Nones."""
    stride, padding, _ = geometry
    out_dx, out_dw, out_db = out
    xd, wd, depth = _depth_problem(x, w, geometry, dy.shape[2:], workspace)
    dxd, dwd, db = conv2d_backward(dy, xd, wd, geometry=depth, need=need, workspace=workspace,
                                   out=(None, None, out_db))  # (N, C*sh*sw, OH + 2, OW + 2), (F, C/G*sh*sw, 3, 3)
    dx = None if dxd is None else depth_to_space(dxd, x_shape=x.shape, stride=stride, padding=padding, out=out_dx)
    dw = None if dwd is None else kernel_from_depth(dwd, w.shape[2:], stride, out=out_dw)
    return dx, dw, db
