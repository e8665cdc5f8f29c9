"""Winograd F(4x4, 3x3) convolution for stride-1 layers (other kernel sizes cut into 3x3 pieces): the CPU tier.

Shape legend
    N batch, C channels in, H, W input size, F filters out, OH, OW output size, G groups,
    Cg = C/G, Fg = F/G, TH, TW tiles down and across (ceil(OH/4), ceil(OW/4)), T = N*TH*TW tiles,
    a tile row q = n*TH + th (QT = N*TH of them), R tile rows per job, 36 = 6x6 positions of a
    transformed tile; tiles = (TH, TW, q0), the grid and a block's first tile row, one argument
    of the Numba helpers.

Math: the derivation of the matrices and of the backward is in kernels/reference/winograd.py
(points 0, 1, -1, 2, -2, inf). Per group and per block of R tile rows (R*TW tiles):
    U[k] (Fg, Cg)    = (G w G^T)[k]          once per call (_kernel_rows)
    V[k] (Cg, R*TW)  = (B^T d B)[k]          input transform (_input_pieces)
    M[k] (Fg, R*TW)  = U[k] @ V[k]           36 matrix products: ONE batched np.matmul (BLAS)
    y tile (4x4)     = A^T M A + b           output transform (_output_rows)
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
Backward: dx is the forward's Winograd on dy with the flipped kernel (padding 2 - p); dw is
winograd_weight_grad (dw = G^T dU G, dU from 36 GEMMs of the transformed dy and x), db a sum.
"""
import numpy as np
from numba import njit

from kernels.cpu.conv2d import workspace_buffer
from kernels.cpu.space_to_depth import depth_to_space, kernel_from_depth, kernel_to_depth, space_to_depth
from kernels.cpu.threads import run_jobs, workers
from kernels.reference.winograd import (
    check_winograd,
    flip_kernel,
    join_kernel_grad,
    split_kernel,
    transform_matrices,
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
    """e[i, j, t] = tv[i, first[t] + off + j]: each tile's six columns of tv (6, R*WP), for every tile t."""
    for i in range(6):
        for j in range(6):
            src, dst = tv[i], e[i, j]
            for t in range(e.shape[2]):
                dst[t] = src[first[t] + off + j]


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
    first = np.empty(nt, np.int64)  # first[r*TW + tw] = r*WP + 4tw: the tile's first column in tv
    for r in range(R):
        for tw in range(TW):
            first[r * TW + tw] = r * WP + 4 * tw
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


@njit(cache=True, nogil=True)
def _output_rows(M, b, f0, tiles, k, y):
    """y[n, f0 + f, 4th:4th+4, 4tw:4tw+4] = A^T M[:, f, r*TW + tw] A + b[f0 + f], cut at the edges.

    M (36, Fg, R*TW) for R tile rows from q0, tiles = (TH, TW, q0); b (F,); y (N, F, OH, OW). A^T
    along the columns of the 6x6, then A along its rows, each one loop over all R*TW tiles of the
    block (unit stride), then the 4x4 tiles are copied into y.
    """
    TH, TW, q0 = tiles
    OH, OW = y.shape[2], y.shape[3]
    Fg, nt = M.shape[1], M.shape[2]
    R = nt // TW
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
        for r in range(R):
            n, th = (q0 + r) // TH, (q0 + r) % TH
            for i in range(min(4, OH - 4 * th)):
                for tw in range(TW):
                    for l in range(min(4, OW - 4 * tw)):
                        y[n, f0 + f, 4 * th + i, 4 * tw + l] = o[i, l, r * TW + tw]


@njit(cache=True, nogil=True)
def _kernel_rows(w, G, U, g, f0):
    """U[g, 6i + l, f0 + f, :] = (G w[f] G^T)[i, l] over all channels at once, for every filter f of w.

    w (nf, Cg, 3, 3) some filters of group g, G (6, 3), U (groups, 36, Fg, Cg) C-contiguous (the
    layer's U, or a job's own block as (1, 36, nf, Cg)); the loops run over channels with unit
    stride (on a C-contiguous U, so that Numba knows it and vectorises them: measured 1.7x).
    """
    nf, Cg = w.shape[0], w.shape[1]
    wt = np.empty((9, Cg), w.dtype)  # wt[3a + b, c] = w[f, c, a, b]: the filter's taps, each a unit-stride row
    t = np.empty((6, 3, Cg), w.dtype)  # G w, per channel
    for f in range(nf):
        for c in range(Cg):  # the one strided read of w
            for j in range(9):
                wt[j, c] = w[f, c, j // 3, j % 3]
        for i in range(6):
            for kk in range(3):
                a0, a1, a2 = G[i, 0], G[i, 1], G[i, 2]
                for c in range(Cg):
                    t[i, kk, c] = a0 * wt[kk, c] + a1 * wt[3 + kk, c] + a2 * wt[6 + kk, c]
        for i in range(6):  # (G w) G^T
            for l in range(6):
                a0, a1, a2 = G[l, 0], G[l, 1], G[l, 2]
                for c in range(Cg):
                    U[g, 6 * i + l, f0 + f, c] = t[i, 0, c] * a0 + t[i, 1, c] * a1 + t[i, 2, c] * a2


@njit(cache=True, nogil=True)
def _dy_rows(dy, f0, tiles, k, D):
    """D[6i + l, f, r*TW + tw] = (A dY A^T)[i, l], dY the 4x4 tile (q0 + r, tw) of dy[:, f0 + f];
    tiles = (TH, TW, q0).

    dy (N, F, OH, OW), 0 beyond its edge (the outputs a cut tile computes and drops); D (36, Fg, R*TW).
    The adjoint of _output_rows: the tiles are gathered (e[a, s, j] = dY_j[a, s]), then both
    passes are loops over all R*TW tiles with unit stride.
    """
    TH, TW, q0 = tiles
    OH, OW = dy.shape[2], dy.shape[3]
    Fg, nt = D.shape[1], D.shape[2]
    R = nt // TW
    e = np.empty((4, 4, nt), dy.dtype)
    t = np.empty((6, 4, nt), dy.dtype)  # A e, same layout
    for f in range(Fg):
        for r in range(R):
            n, th = (q0 + r) // TH, (q0 + r) % TH
            for a in range(4):
                h = 4 * th + a
                for tw in range(TW):
                    for s in range(4):
                        w = 4 * tw + s
                        e[a, s, r * TW + tw] = dy[n, f0 + f, h, w] if h < OH and w < OW else 0
        for s in range(4):  # columns: A dY
            for j in range(nt):
                o = _a(e[0, s, j], e[1, s, j], e[2, s, j], e[3, s, j], k)
                for i in range(6):
                    t[i, s, j] = o[i]
        for i in range(6):  # rows: (A dY) A^T
            for j in range(nt):
                o = _a(t[i, 0, j], t[i, 1, j], t[i, 2, j], t[i, 3, j], k)
                for l in range(6):
                    D[6 * i + l, f, j] = o[l]


@njit(cache=True, nogil=True)
def _kernel_grad_rows(P, G, fa0, fa1, dw):
    """dw[fa] = G^T (P[0] + P[1])[g, :, f] G for filters fa0..fa1-1, over all C/G channels at once.

    P (2, G, 36, Fg, Cg): the two chains' sums of dU (added in this fixed order); G (6, 3);
    dw (F, Cg, 3, 3). The adjoint of _kernel_rows.
    """
    Cg, Fg = dw.shape[1], P.shape[3]
    du = np.empty((36, Cg), dw.dtype)
    t = np.empty((6, 3, Cg), dw.dtype)  # dU G, per channel
    wt = np.empty((9, Cg), dw.dtype)  # wt[3a + b, c]: dw[fa, c, a, b], unit stride, then written out once
    for fa in range(fa0, fa1):
        g, f = fa // Fg, fa % Fg
        for kk in range(36):
            for c in range(Cg):
                du[kk, c] = P[0, g, kk, f, c] + P[1, g, kk, f, c]
        for i in range(6):
            for b in range(3):
                a0, a1, a2, a3, a4, a5 = G[0, b], G[1, b], G[2, b], G[3, b], G[4, b], G[5, b]
                for c in range(Cg):
                    t[i, b, c] = (du[6 * i, c] * a0 + du[6 * i + 1, c] * a1 + du[6 * i + 2, c] * a2
                                  + du[6 * i + 3, c] * a3 + du[6 * i + 4, c] * a4 + du[6 * i + 5, c] * a5)
        for a in range(3):  # G^T (dU G)
            g0, g1, g2, g3, g4, g5 = G[0, a], G[1, a], G[2, a], G[3, a], G[4, a], G[5, a]
            for b in range(3):
                for c in range(Cg):
                    wt[3 * a + b, c] = (g0 * t[0, b, c] + g1 * t[1, b, c] + g2 * t[2, b, c]
                                        + g3 * t[3, b, c] + g4 * t[4, b, c] + g5 * t[5, b, c])
        for c in range(Cg):  # the one strided write of dw
            for j in range(9):
                dw[fa, c, j // 3, j % 3] = wt[j, c]


KERNEL_JOB = 16  # filters per kernel-transform job
FILTER_JOB = 64  # filters per job when the GEMMs are split by filters
CHANNEL_JOB = 32  # channels per input-transform job then
CHAINS = 2  # the weight gradient's fixed number of partial sums (winograd_weight_grad)


def kernel_transform(w, groups, out=None, threads=None):
    """U (G, 36, F/G, C/G) = G w G^T for every (f, c), grouped; w (F, C/G, 3, 3), C-contiguous."""
    F, Cg = w.shape[:2]
    Fg = F // groups
    U = np.empty((groups, 36, Fg, Cg), w.dtype) if out is None else out
    G = transform_matrices()[1].astype(w.dtype)
    run_jobs(lambda _, j: _kernel_rows(w[j[0] * Fg + j[1]:j[0] * Fg + j[2]], G, U, j[0], j[1]),
             [(g, f0, min(Fg, f0 + KERNEL_JOB)) for g in range(groups) for f0 in range(0, Fg, KERNEL_JOB)], threads)
    return U


def rows_per_block(Cg, Fg, TW, QT, itemsize, block_bytes=BLOCK_BYTES):
    """Tile rows per block: V and M of one block within block_bytes (at least one row, at most QT)."""
    return int(min(QT, max(1, block_bytes // (36 * (Cg + Fg) * itemsize * TW))))


def _piece_grid(KH, KW, padding):
    """(ph, pw, PA, PB): the padding and the PA x PB grid of 3x3 pieces of a KH x KW kernel (_input_pieces' pad)."""
    return (padding[0], padding[1], -(-KH // 3), -(-KW // 3))


def _pieces_of(w, padding):
    """(w3 (F, P*Cg, 3, 3), pad): w itself for a 3x3 kernel, else its P 3x3 pieces
    (kernels/reference/winograd.split_kernel), and _piece_grid's pad."""
    KH, KW = w.shape[2:]
    return (w if (KH, KW) == (3, 3) else split_kernel(w)), _piece_grid(KH, KW, padding)


def winograd_correlate(x, w, b, geometry, y, workspace=None, block_bytes=BLOCK_BYTES, threads=None):
    """y (N, F, OH, OW) = stride-1 correlation of x with w (+ b); geometry: ConvGeometry (kernels/shapes.py),
    its stride taken as (1, 1) (conv2d_forward checks it), its padding may be negative.

    w (F, C/G, KH, KW): 3x3, or any other size, cut into P 3x3 pieces (split_kernel) that act as
    P*C/G input channels, piece p reading x shifted by its offset (kernels/reference/winograd.py).

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
    w3, pad = _pieces_of(w, padding)  # (F, P*Cg, 3, 3), _input_pieces' pad
    CP = w3.shape[1]  # V's channels: P*Cg
    by_filters = 36 * CP * T * x.itemsize <= block_bytes and Fg > FILTER_JOB
    R = QT if by_filters else rows_per_block(CP, Fg, TW, QT, x.itemsize, block_bytes)
    jobs = ([(f0, g) for g in range(groups) for f0 in range(0, Fg, FILTER_JOB)] if by_filters
            else [(q0, g) for q0 in range(0, QT, R) for g in range(groups)])
    threads = workers(len(jobs), threads)
    k = np.array([2, 4, 5, 8], x.dtype)  # the transforms' constants, typed so float32 stays float32
    if by_filters:
        G = transform_matrices()[1].astype(x.dtype)
        V = workspace_buffer(workspace, (1, 36, CP, T), x.dtype, "winograd_V")[0]  # (36, P*Cg, T), shared
        U = workspace_buffer(workspace, (threads, 36, FILTER_JOB, CP), x.dtype, KERNEL_BUFFER)  # per thread
        M = workspace_buffer(workspace, (threads, 36, FILTER_JOB, T), x.dtype, "winograd_M")  # per thread
        for g in range(groups):
            run_jobs(lambda _, c0, g=g: _input_pieces(x, g * Cg + c0, min(CHANNEL_JOB, Cg - c0), pad,
                                                      (TH, TW, 0), k, V, c0),
                     range(0, Cg, CHANNEL_JOB), threads)

            def by_filter(worker, f0g, g=g):
                f0 = f0g[0]
                nf = min(FILTER_JOB, Fg - f0)
                Mb = M[worker, :, :nf]
                _kernel_rows(w3[g * Fg + f0:g * Fg + f0 + nf], G, U[worker:worker + 1], 0, 0)  # its filters only
                np.matmul(U[worker, :, :nf], V, out=Mb)  # (36, nf, T)
                _output_rows(Mb, b, g * Fg + f0, (TH, TW, 0), k, y)
            run_jobs(by_filter, [j for j in jobs if j[1] == g], threads)
        return y
    U = kernel_transform(w3, groups, workspace_buffer(workspace, (groups, 36, Fg, CP), x.dtype, KERNEL_BUFFER),
                         threads)
    V = workspace_buffer(workspace, (threads, 36, CP, R * TW), x.dtype, "winograd_V")  # a (36, P*Cg, R*TW) per thread
    M = workspace_buffer(workspace, (threads, 36, Fg, R * TW), x.dtype, "winograd_M")  # a (36, Fg, R*TW) per thread

    def by_rows(worker, q0g):
        q0, g = q0g
        nt = min(R, QT - q0) * TW  # the last block may hold fewer rows
        Vb, Mb = V[worker, :, :, :nt], M[worker, :, :, :nt]
        _input_pieces(x, g * Cg, Cg, pad, (TH, TW, q0), k, Vb, 0)
        np.matmul(U[g], Vb, out=Mb)  # (36, Fg, nt): 36 GEMMs in one call, on this thread
        _output_rows(Mb, b, g * Fg, (TH, TW, q0), k, y)

    run_jobs(by_rows, jobs, threads)
    return y


def winograd_weight_grad(dy, x, geometry, dw, workspace=None, block_bytes=BLOCK_BYTES, threads=None):
    """dw (F, C/G, KH, KW) of the stride-1 correlation, by Winograd: dw = G^T dU G with
    dU[k] (Fg, Cg) = sum over tiles of dM[k] (Fg, tiles) @ V[k]^T (tiles, Cg), dM = A dY A^T
    (a kernel other than 3x3: per 3x3 piece, its V read at the piece's offset, then joined back).

    The tile rows are cut into an even number of blocks (rows_per_block's size at most), and the
    blocks dealt to CHAINS = 2 chains, block b to chain b % 2. A chain runs its blocks in order,
    each one whole on one thread (input transform, dy transform, 36 GEMMs added into the chain's
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
    pad = _piece_grid(KH, KW, padding)
    CP = pad[2] * pad[3] * Cg  # V's channels
    R = rows_per_block(CP, Fg, TW, QT, x.itemsize, block_bytes)
    nblocks = min(QT, CHAINS * -(-QT // (CHAINS * R)))  # even where QT allows, sizes within one row
    R = -(-QT // nblocks)
    blocks = [(q0, g) for q0 in range(0, QT, R) for g in range(groups)]
    P = workspace_buffer(workspace, (CHAINS, groups, 36, Fg, CP), x.dtype, KERNEL_BUFFER)  # a dU per chain
    Pt = workspace_buffer(workspace, (CHAINS, Fg, CP), x.dtype, "winograd_dUt")  # one position's product
    V = workspace_buffer(workspace, (CHAINS, 36, CP, R * TW), x.dtype, "winograd_V")
    D = workspace_buffer(workspace, (CHAINS, 36, Fg, R * TW), x.dtype, "winograd_M")
    k = np.array([2, 4, 5, 8], x.dtype)

    def chain(_, p):
        started = set()
        for q0, g in blocks[p::CHAINS]:
            nt = min(R, QT - q0) * TW
            Vb, Db = V[p, :, :, :nt], D[p, :, :, :nt]
            _input_pieces(x, g * Cg, Cg, pad, (TH, TW, q0), k, Vb, 0)
            _dy_rows(dy, g * Fg, (TH, TW, q0), k, Db)
            if g in started:  # position by position: a product of (Fg, P*Cg), not 36 (VGG16: 70 MiB less)
                for j in range(36):
                    np.matmul(Db[j], Vb[j].T, out=Pt[p])  # (Fg, P*Cg)
                    np.add(P[p, g, j], Pt[p], out=P[p, g, j])
            else:
                np.matmul(Db, Vb.transpose(0, 2, 1), out=P[p, g])
                started.add(g)
        for g in range(groups):
            if g not in started:  # a chain with no block of this group (tiny inputs)
                P[p, g] = 0

    run_jobs(chain, range(CHAINS), threads)
    G = transform_matrices()[1].astype(x.dtype)
    dw3 = dw if (KH, KW) == (3, 3) else np.empty((F, CP, 3, 3), x.dtype)  # (F, P*Cg, 3, 3)
    run_jobs(lambda _, f0: _kernel_grad_rows(P, G, f0, min(F, f0 + KERNEL_JOB), dw3), range(0, F, KERNEL_JOB),
             threads)
    if dw3 is not dw:
        join_kernel_grad(dw3, KH, KW, dw)
    return dw


def conv2d_forward(x, w, b, *, geometry, budget_bytes=None, workspace=None, out=None):
    """y = conv(x, w) + b by Winograd F(4x4, 3x3), a block of tiles at a time.

    x: (N, C, H, W), w: (F, C/G, KH, KW) (3x3, or cut into 3x3 pieces), b: (F,), all float32 or
    all float64; geometry: ConvGeometry(stride, padding, groups) (kernels/shapes.py), stride (1, 1), or
    strided with 2*s < KH, KW <= 3*s (by space-to-depth: _depth_problem).
    budget_bytes is accepted for the shared signature; workspace: a dict kept across calls, or None;
    out: None or a C-contiguous (N, F, OH, OW) array of x's dtype that receives y (not overlapping x).
    Returns y (N, F, OH, OW), x's dtype (out when given).
    """
    OH, OW = check_winograd(x, w, b, *geometry)
    y = out_or_empty("winograd conv2d_forward", "out", out, (x.shape[0], w.shape[0], OH, OW), x.dtype)
    if tuple(geometry.stride) != (1, 1):  # by space-to-depth: the same sum, 3x3 stride 1 on C*sh*sw channels
        x, w, geometry = _depth_problem(x, w, geometry, (OH, OW), workspace)
    return winograd_correlate(np.ascontiguousarray(x), np.ascontiguousarray(w), b, geometry, y, workspace)


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
