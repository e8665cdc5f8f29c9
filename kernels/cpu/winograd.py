"""Winograd F(4x4, 3x3) convolution for 3x3 stride-1 layers: the CPU tier.

Shape legend
    N batch, C channels in, H, W input size, F filters out, OH, OW output size, G groups,
    Cg = C/G, Fg = F/G, TH, TW tiles down and across (ceil(OH/4), ceil(OW/4)), T = N*TH*TW tiles,
    t0:t1 one block of Tb tiles, 36 = 6x6 positions of a transformed tile.

Math: the derivation of the matrices and of the backward is in kernels/reference/winograd.py
(points 0, 1, -1, 2, -2, inf). Per group and per block of tiles:
    U[k] (Fg, Cg)   = (G w G^T)[k]          once per call (the kernel transform, NumPy)
    V[k] (Cg, Tb)   = (B^T d B)[k]          input transform, Numba, parallel over channels
    M[k] (Fg, Tb)   = U[k] @ V[k]           36 matrix products: ONE batched np.matmul (BLAS)
    y tile (4x4)    = A^T M A + b           output transform, Numba, parallel over filters
The transforms below are the reference's B^T and A^T written out entry by entry (a test checks
them against transform_matrices()). Tb is chosen so that V and M of one block
stay within `block_bytes` (16 MiB: the order of a server's last-level cache; 4 MiB blocks measured
slower, the GEMMs too narrow) while each GEMM keeps at least 64 columns. The buffers come from
`workspace`, a dict the caller keeps across calls (the layer does), so that a training step
allocates no transform buffers after its first; without one they are allocated per call.
Backward: dx is the forward's Winograd on dy with the flipped kernel (padding 2 - p); dw and db
are the im2col tier's GEMMs (a Winograd weight gradient is not written, so not measured either).
"""
import numpy as np
from numba import njit, prange

from kernels.cpu.conv2d import conv2d_backward as im2col_backward
from kernels.cpu.conv2d import workspace_buffer
from kernels.reference.winograd import check_winograd, flip_kernel, transform_matrices
from kernels.shapes import out_or_empty

BLOCK_BYTES = 16 * 2 ** 20  # V + M of one block of tiles (measured: 4 MiB blocks were slower)
MIN_BLOCK = 64  # tiles: the GEMMs' narrowest width


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


@njit(parallel=True, cache=True)
def _input_transform(x, c0, ph, pw, TH, TW, t0, k, V):
    """V[:, c, t - t0] = B^T d B for tile t of channel c0 + c; d the 6x6 window (0 off the image).

    x (N, C, H, W); V (36, Cg, Tb) is written for t in [t0, t0 + Tb).
    """
    N, C, H, W = x.shape
    Cg, Tb = V.shape[1], V.shape[2]
    for c in prange(Cg):
        d = np.empty((6, 6), x.dtype)
        tmp = np.empty((6, 6), x.dtype)
        for j in range(Tb):
            t = t0 + j
            n, th, tw = t // (TH * TW), (t // TW) % TH, t % TW
            h0, w0 = 4 * th - ph, 4 * tw - pw
            for i in range(6):
                for l in range(6):
                    h, w = h0 + i, w0 + l
                    d[i, l] = x[n, c0 + c, h, w] if 0 <= h < H and 0 <= w < W else 0
            for l in range(6):  # columns: tmp = B^T d
                r = _bt(d[0, l], d[1, l], d[2, l], d[3, l], d[4, l], d[5, l], k)
                for i in range(6):
                    tmp[i, l] = r[i]
            for i in range(6):  # rows: (B^T d) B
                r = _bt(tmp[i, 0], tmp[i, 1], tmp[i, 2], tmp[i, 3], tmp[i, 4], tmp[i, 5], k)
                for l in range(6):
                    V[6 * i + l, c, j] = r[l]


@njit(parallel=True, cache=True)
def _output_transform(M, b, f0, TH, TW, t0, k, y):
    """y[n, f0 + f, 4th:4th+4, 4tw:4tw+4] = A^T M[:, f, t - t0] A + b[f0 + f], cut at the edges.

    M (36, Fg, Tb); b (F,); y (N, F, OH, OW).
    """
    OH, OW = y.shape[2], y.shape[3]
    Fg, Tb = M.shape[1], M.shape[2]
    for f in prange(Fg):
        tmp = np.empty((4, 6), M.dtype)
        bias = b[f0 + f]
        for j in range(Tb):
            t = t0 + j
            n, th, tw = t // (TH * TW), (t // TW) % TH, t % TW
            for l in range(6):  # columns: tmp = A^T m
                r = _at(M[l, f, j], M[6 + l, f, j], M[12 + l, f, j], M[18 + l, f, j],
                        M[24 + l, f, j], M[30 + l, f, j], k)
                for i in range(4):
                    tmp[i, l] = r[i]
            for i in range(4):  # rows: (A^T m) A
                h = 4 * th + i
                if h >= OH:
                    break
                r = _at(tmp[i, 0], tmp[i, 1], tmp[i, 2], tmp[i, 3], tmp[i, 4], tmp[i, 5], k)
                for l in range(4):
                    w = 4 * tw + l
                    if w < OW:
                        y[n, f0 + f, h, w] = r[l] + bias


@njit(parallel=True, cache=True)
def _kernel_transform(w, G, U):
    """U[g, :, f, c] = G w[g*Fg + f, c] G^T (36 values), for w (F, Cg, 3, 3), G (6, 3), U (G, 36, Fg, Cg)."""
    F, Cg = w.shape[0], w.shape[1]
    Fg = U.shape[2]
    for fa in prange(F):
        g, f = fa // Fg, fa % Fg
        tmp = np.empty((6, 3), w.dtype)
        for c in range(Cg):
            for i in range(6):  # tmp = G w
                for k in range(3):
                    tmp[i, k] = G[i, 0] * w[fa, c, 0, k] + G[i, 1] * w[fa, c, 1, k] + G[i, 2] * w[fa, c, 2, k]
            for i in range(6):  # (G w) G^T
                for l in range(6):
                    U[g, 6 * i + l, f, c] = tmp[i, 0] * G[l, 0] + tmp[i, 1] * G[l, 1] + tmp[i, 2] * G[l, 2]


def kernel_transform(w, groups, out=None):
    """U (G, 36, F/G, C/G) = G w G^T for every (f, c), grouped; w (F, C/G, 3, 3)."""
    F, Cg = w.shape[:2]
    U = np.empty((groups, 36, F // groups, Cg), w.dtype) if out is None else out
    _kernel_transform(w, transform_matrices()[1].astype(w.dtype), U)
    return U


def winograd_correlate(x, w, b, padding, groups, y, workspace=None, block_bytes=BLOCK_BYTES):
    """y (N, F, OH, OW) = 3x3 stride-1 correlation of x with w (+ b); padding may be negative."""
    N, C, H, W = x.shape
    F, Cg = w.shape[:2]
    Fg = F // groups
    OH, OW = y.shape[2:]
    TH, TW = -(-OH // 4), -(-OW // 4)
    T = N * TH * TW
    Tb = int(min(T, max(MIN_BLOCK, block_bytes // (36 * (Cg + Fg) * x.itemsize))))
    U = kernel_transform(w, groups, workspace_buffer(workspace, (groups, 36, Fg, Cg), x.dtype, "winograd_U"))
    V = workspace_buffer(workspace, (36, Cg, Tb), x.dtype, "winograd_V")  # (36, Cg, Tb)
    M = workspace_buffer(workspace, (36, Fg, Tb), x.dtype, "winograd_M")  # (36, Fg, Tb)
    k = np.array([2, 4, 5, 8], x.dtype)  # the transforms' constants, typed so float32 stays float32
    for t0 in range(0, T, Tb):
        nt = min(Tb, T - t0)
        Vb, Mb = V[:, :, :nt], M[:, :, :nt]  # the last block may be narrower
        for g in range(groups):
            _input_transform(x, g * Cg, padding[0], padding[1], TH, TW, t0, k, Vb)
            np.matmul(U[g], Vb, out=Mb)  # (36, Fg, nt): 36 GEMMs in one call
            _output_transform(Mb, b, g * Fg, TH, TW, t0, k, y)
    return y


def conv2d_forward(x, w, b, *, stride, padding, groups, budget_bytes=None, workspace=None, out=None):
    """y = conv(x, w) + b by Winograd F(4x4, 3x3), a block of tiles at a time.

    x: (N, C, H, W), w: (F, C/G, 3, 3), b: (F,), all float32 or all float64; stride must be (1, 1).
    budget_bytes is accepted for the shared signature; workspace: a dict kept across calls, or None;
    out: None or a C-contiguous (N, F, OH, OW) array of x's dtype that receives y (not overlapping x).
    Returns y (N, F, OH, OW), x's dtype (out when given).
    """
    OH, OW = check_winograd(x, w, b, stride, padding, groups)
    y = out_or_empty("winograd conv2d_forward", "out", out, (x.shape[0], w.shape[0], OH, OW), x.dtype)
    return winograd_correlate(np.ascontiguousarray(x), np.ascontiguousarray(w), b, padding, groups,
                              y, workspace)


def conv2d_backward(dy, x, w, *, stride, padding, groups, budget_bytes=256 * 2**20, need_dx=True,
                    need_dw=True, workspace=None, out_dx=None, out_dw=None, out_db=None):
    """Gradients of conv2d_forward: dx by Winograd on the flipped kernel, dw and db by im2col + GEMM.

    dy: (N, F, OH, OW), x: (N, C, H, W), w: (F, C/G, 3, 3), all of one float dtype.
    need_dx=False skips dx, need_dw=False dw and db (returned as None); out_dx, out_dw, out_db as
    in kernels/cpu/conv2d.py's conv2d_backward.
    Returns (dx (N, C, H, W) or None, dw (F, C/G, 3, 3) or None, db (F,) or None), x's dtype.
    """
    check_winograd(x, w, None, stride, padding, groups)
    dw = db = None
    if need_dw:
        _, dw, db = im2col_backward(dy, x, w, stride=stride, padding=padding, groups=groups,
                                    budget_bytes=budget_bytes, need_dx=False, workspace=workspace,
                                    out_dw=out_dw, out_db=out_db)
    if not need_dx:
        return None, dw, db
    wf = flip_kernel(w, groups)  # (C, F/G, 3, 3)
    dx = out_or_empty("winograd conv2d_backward", "out_dx", out_dx, x.shape, x.dtype)  # (N, C, H, W)
    zero = np.zeros(x.shape[1], x.dtype)  # (C,): no bias in dx
    winograd_correlate(np.ascontiguousarray(dy), wf, zero, (2 - padding[0], 2 - padding[1]),
                       groups, dx, workspace)
    return dx, dw, db
