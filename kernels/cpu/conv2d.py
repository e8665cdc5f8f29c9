"""2-D convolution (cross-correlation) with stride, zero padding and groups: the CPU tier.

Shape legend
    N batch, nb images in one slice of the batch, C channels in, H, W input size, F filters out,
    KH, KW kernel size, OH, OW output size, P = OH*OW, G groups, K = C/G*KH*KW (one group's rows),
    sh, sw stride, ph, pw padding; geo = (KH, KW, sh, sw, ph, pw, OH, OW), one argument of the Numba helpers.

Math: the definition and the derivation of the backward are in kernels/reference/conv2d.py.
Here the convolution is im2col + GEMM, as in Caffe (src/caffe/util/im2col.cpp, conv_layer.cpp):
    cols[n] = im2col(x[n])                                    (C*KH*KW, P)
    y[n, group g]   = w_g @ cols[n, rows of g] + b            w_g = w[g's filters].reshape(F/G, K)
and the backward is the same product read the other two ways:
    dw_g            = sum_n dy[n, g] @ cols[n, rows of g]^T   (F/G, K)
    dcols[n, rows of g] = w_g^T @ dy[n, g]                    (K, P)
    dx[n]           = col2im(dcols[n])                        (adds overlapping windows)
    db              = dy summed over n, oh, ow
The forward keeps one image's columns per thread (each thread's job fills them and multiplies
them at once, so they stay in its cache). The backward rebuilds the columns from x rather than
keeping them, nb images at a time, nb chosen so that nb*C*KH*KW*P*itemsize <= budget_bytes (at
least one image). The
matrix products are NumPy matmul on C-contiguous 2-D slices (or their transposes), which NumPy
hands to BLAS.
How it runs (kernels/cpu/threads.py): each image is a job (its im2col or col2im, a serial Numba
loop that releases the GIL, then its GEMMs), and every core takes whole jobs with a one-thread
BLAS, so no BLAS thread pool spins next to the Numba kernels; the weight gradient runs as two
chains of images (conv2d_backward). The public im2col() and col2im() are Numba loops parallel over (n, c) planes
(col2im is race-free because each iteration adds only into its own plane of dx).
"""
import numpy as np
from numba import njit, prange

from kernels.cpu.threads import run_jobs, workers
from kernels.shapes import (
    COLUMN_BUDGET_BYTES,
    backward_request,
    check_conv2d,
    check_conv2d_backward,
    conv2d_output_size,
    out_or_empty,
)

CHAINS = 2  # the weight gradient's partial sums: images alternate between them, each summed in
# image order, and the two added at the end, so the bits do not depend on the thread count


@njit(cache=True)
def _valid_range(offset, s, size, OS):
    """[lo, hi): the output positions o in [0, OS) whose input o*s + offset lies in [0, size)."""
    lo = max(0, (s - 1 - offset) // s)
    hi = min(OS, (size - 1 - offset) // s + 1)
    return lo, max(lo, hi)


@njit(cache=True, inline="always")
def _im2col_plane(x, cols, n, c, geo):
    """The KH*KW rows of cols[n] that plane x[n, c] fills, every entry written (0 in the padding)."""
    KH, KW, sh, sw, ph, pw, OH, OW = geo
    H, W = x.shape[2], x.shape[3]
    for kh in range(KH):
        for kw in range(KW):
            row = (c * KH + kh) * KW + kw
            lo, hi = _valid_range(kw - pw, sw, W, OW)
            for oh in range(OH):
                h = oh * sh + kh - ph
                out = cols[n, row, oh * OW:(oh + 1) * OW]  # (OW,) view
                if h < 0 or h >= H:
                    out[:] = 0
                    continue
                out[:lo] = 0
                out[hi:] = 0
                for ow in range(lo, hi):
                    out[ow] = x[n, c, h, ow * sw + kw - pw]


@njit(cache=True, inline="always")
def _col2im_plane(cols, dx, n, c, geo):
    """Plane dx[n, c], overwritten with the sum of its KH*KW rows of cols[n] (windows overlap)."""
    KH, KW, sh, sw, ph, pw, OH, OW = geo
    H, W = dx.shape[2], dx.shape[3]
    dx[n, c] = 0
    for kh in range(KH):
        for kw in range(KW):
            row = (c * KH + kh) * KW + kw
            lo, hi = _valid_range(kw - pw, sw, W, OW)
            for oh in range(OH):
                h = oh * sh + kh - ph
                if h < 0 or h >= H:
                    continue
                for ow in range(lo, hi):
                    dx[n, c, h, ow * sw + kw - pw] += cols[n, row, oh * OW + ow]


@njit(parallel=True, cache=True)
def _im2col_kernel(x, cols, geo):
    """x (nb, C, H, W) -> cols (nb, C*KH*KW, OH*OW), parallel over (n, c) planes."""
    nb, C = x.shape[0], x.shape[1]
    for nc in prange(nb * C):
        _im2col_plane(x, cols, nc // C, nc % C, geo)


@njit(parallel=True, cache=True)
def _col2im_kernel(cols, dx, geo):
    """cols (nb, C*KH*KW, OH*OW) -> dx (nb, C, H, W), overwritten; parallel over (n, c) planes,
    race-free because each iteration adds only into its own plane of dx."""
    nb, C = dx.shape[0], dx.shape[1]
    for nc in prange(nb * C):
        _col2im_plane(cols, dx, nc // C, nc % C, geo)


def _split_shape(C, geo):
    """The shape of _im2col_image's scratch for one image: (C, sw, rows, cols) (see there)."""
    KH, KW, sh, sw, ph, pw, OH, OW = geo
    return (C, sw, (OH - 1) * sh + KH, OW + (KW - 1) // sw)


@njit(cache=True, inline="always")
def _copy_run(src, s0, dst, d0, L):
    """dst[d0:d0 + L] = src[s0:s0 + L]. Runs of at least 16 go in blocks of 16 (one vector each), the last block
    overlapping the one before (the same values written twice). Short runs copied as one loop ran at 8 GB/s
    (custom conv1's 111: im2col's second pass 0.94 ms an image); in blocks 10-11 GB/s, and custom conv1's
    forward and weight gradient 1.07-1.08x (bench/RESULTS.md, "Speed round 7")."""
    if L < 16:
        for i in range(L):
            dst[d0 + i] = src[s0 + i]
        return
    k = 0
    while k + 16 <= L:
        for j in range(16):
            dst[d0 + k + j] = src[s0 + k + j]
        k += 16
    if k < L:
        k = L - 16
        for j in range(16):
            dst[d0 + k + j] = src[s0 + k + j]


@njit(cache=True, nogil=True)
def _im2col_image(x, n, geo, xd, cols):
    """cols (C*KH*KW, OH*OW) = im2col(x[n]) on the calling thread (a job of run_jobs).

    Two passes, so that neither tests bounds per element nor reads with a stride:
      xd[c, r, h, m] = x[n, c, h - ph, m*sw + r - pw], 0 off the image: the padded image with its
                       columns split by residue modulo the stride (xd: scratch of _split_shape);
      cols[(c*KH + kh)*KW + kw, oh*OW + ow] = xd[c, kw % sw, oh*sh + kh, kw // sw + ow]: every
                       run of OW columns a contiguous copy.
    Faster per image than a copy straight from x: bench/bench_ab.py measures it (bench/RESULTS.md).
    """
    KH, KW, sh, sw, ph, pw, OH, OW = geo
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    rows, M = xd.shape[2], xd.shape[3]
    for c in range(C):
        for h in range(rows):
            hx = h - ph
            for r in range(sw):
                if hx < 0 or hx >= H:
                    xd[c, r, h, :] = 0
                    continue
                mlo = min(M, max(0, (pw - r + sw - 1) // sw))  # the first m with m*sw + r - pw >= 0
                mhi = min(M, max(mlo, (W - 1 + pw - r) // sw + 1))  # past the last with it < W
                xd[c, r, h, :mlo] = 0
                for m in range(mlo, mhi):
                    xd[c, r, h, m] = x[n, c, hx, m * sw + r - pw]
                xd[c, r, h, mhi:] = 0
    for c in range(C):
        for kh in range(KH):
            for kw in range(KW):
                row = (c * KH + kh) * KW + kw
                r, m0 = kw % sw, kw // sw
                dst = cols[row]
                for oh in range(OH):
                    _copy_run(xd[c, r, oh * sh + kh], m0, dst, oh * OW, OW)


@njit(cache=True, nogil=True)
def _col2im_image(cols, dx, n, geo):
    """dx[n] = col2im(cols[n]) on the calling thread (a job of run_jobs)."""
    for c in range(dx.shape[1]):
        _col2im_plane(cols, dx, n, c, geo)


def im2col(x, *, kernel_size, stride, padding):
    """Unfold the KH x KW windows of x into columns.

    x:    (N, C, H, W) float32/float64
    Returns cols (N, C*KH*KW, OH*OW), x's dtype; row c*KH*KW + kh*KW + kw, column oh*OW + ow.
    """
    if x.ndim != 4:
        raise ValueError(f"im2col: x {x.shape} must be 4-D (N, C, H, W)")
    N, C, H, W = x.shape
    KH, KW = kernel_size
    OH, OW = conv2d_output_size(x.shape, kernel_size, stride, padding)
    cols = np.empty((N, C * KH * KW, OH * OW), dtype=x.dtype)  # (N, C*KH*KW, OH*OW)
    _im2col_kernel(np.ascontiguousarray(x), cols, (KH, KW, *stride, *padding, OH, OW))
    return cols


def col2im(cols, *, x_shape, kernel_size, stride, padding):
    """Fold columns back onto the image, adding where windows overlap (im2col's adjoint).

    cols: (N, C*KH*KW, OH*OW) float32/float64
    Returns dx (N, C, H, W) with x_shape = (N, C, H, W), cols' dtype.
    """
    N, C, H, W = x_shape
    KH, KW = kernel_size
    OH, OW = conv2d_output_size(x_shape, kernel_size, stride, padding)
    if cols.shape != (N, C * KH * KW, OH * OW):
        raise ValueError(f"col2im: cols {cols.shape} does not match x_shape {tuple(x_shape)}, "
                         f"which needs ({N}, {C * KH * KW}, {OH * OW})")
    dx = np.empty((N, C, H, W), dtype=cols.dtype)  # (N, C, H, W)
    _col2im_kernel(np.ascontiguousarray(cols), dx, (KH, KW, *stride, *padding, OH, OW))
    return dx


def _plan(x, w, stride, padding, budget_bytes):
    """Slice size nb, and whether the convolution is pointwise (1x1, stride 1, no padding)."""
    N, C = x.shape[:2]
    KH, KW = w.shape[2:]
    OH, OW = conv2d_output_size(x.shape, (KH, KW), stride, padding)
    image_bytes = C * KH * KW * OH * OW * x.itemsize
    nb = int(max(1, min(N, budget_bytes // image_bytes)))
    pointwise = (KH, KW) == (1, 1) and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)
    return nb, pointwise


def workspace_buffer(workspace, shape, dtype, name="cols"):
    """A C-contiguous `shape` array from workspace[name] (a dict the net keeps across steps), grown
    (reallocated) only when too small, so a training step after the first allocates none; a new
    array without a workspace. name: "cols" (the column buffer), "cols_x" (im2col's split copy of the
    image), "dw_acc" and "dw_part" (the weight
    gradient's partial sums and one image's product, one per chain);
    kernels/cpu/winograd.py keeps its transform buffers here too."""
    size = int(np.prod(shape))
    buf = workspace.get(name) if workspace is not None else None
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = np.empty(size, dtype)
        if workspace is not None:
            workspace[name] = buf
    return buf[:size].reshape(shape)


def _image_columns(a, buf, n, slot=None):
    """Image n's columns (C*KH*KW, P) in conv2d_backward: a[n] itself (a = x or dx, (N, C, H, W)),
    viewed as (C, H*W), when the convolution is pointwise (buf None), else its slot of the column
    buffer (nb, C*KH*KW, P): buf[n % nb], or buf[slot] when given."""
    if buf is None:
        return a[n].reshape(a.shape[1], -1)
    return buf[n % buf.shape[0] if slot is None else slot]


def _weight_grad_chains(dy3, x, buf, images, groups, acc, part, build=None):
    """acc[chain] (F, K) += dy3[n, g's filters] (F/G, P) @ columns of n[g's rows]^T (P, K), per group g,
    for the images n of one slice (their columns in buf, see _image_columns).

    CHAINS jobs of run_jobs: chain c takes the images with n % CHAINS == c, in image order, each
    product written into part[c] (F/G, K) and added into its own partial sum acc[c] (CHAINS, F, K),
    so the order of every sum (and its bits) does not depend on the thread count.
    build: None (the slice's columns are in buf already) or build(chain, n), which writes image n's
    columns into buf[chain] just before the chain multiplies them there: one buffer a chain, reused
    image after image, warm in this core's caches (conv2d_backward passes it when there are no more
    threads than chains).
    """
    Fg, K = part.shape[1], part.shape[2]

    def chain_job(_, chain):
        for n in (n for n in images if n % CHAINS == chain):  # every other image of the batch, in order
            if build is not None:
                build(chain, n)
            cols = _image_columns(x, buf, n, None if build is None else chain)
            for g in range(groups):
                fs, ks = slice(g * Fg, (g + 1) * Fg), slice(g * K, (g + 1) * K)
                acc[chain, fs] += np.matmul(dy3[n, fs], cols[ks].T, out=part[chain])  # (F/G, K)

    run_jobs(chain_job, range(CHAINS))


def _input_grad_image(dy3, w2, groups, buf, geo, dx, n):
    """dx[n] (C, H, W) of image n (a job of run_jobs): dcols[g's rows] (K, P) = w2[g's filters]^T (K, F/G)
    @ dy3[n, g's filters] (F/G, P) per group g, then col2im(dcols).

    w2 (F, K); dy3 (N, F, P); geo as _im2col_image's. Pointwise (buf None): dcols is dx[n] itself,
    viewed as (C, H*W), and there is no col2im. Else dcols is buf[n % nb], overwriting this image's
    columns (its dw products are done by then).
    """
    Fg, K = w2.shape[0] // groups, w2.shape[1]
    dcols = _image_columns(dx, buf, n)  # (C*KH*KW, P)
    for g in range(groups):
        fs, ks = slice(g * Fg, (g + 1) * Fg), slice(g * K, (g + 1) * K)
        np.matmul(w2[fs].T, dy3[n, fs], out=dcols[ks])  # (K, P)
    if buf is not None:
        _col2im_image(dcols[None], dx[n:n + 1], 0, geo)  # dcols as a batch of one (1, C*KH*KW, P)


@njit(cache=True, nogil=True)
def _bias_relu(y, b):
    """y[f, p] = max(y[f, p] + b[f], 0) (relu_forward's rule: NaN passes), one pass; y (F, P), b (F,)."""
    for f in range(y.shape[0]):
        bf = b[f]
        for p in range(y.shape[1]):
            v = y[f, p] + bf
            y[f, p] = v if v > 0 or v != v else 0.0


def conv2d_forward(x, w, b, *, geometry, budget_bytes=COLUMN_BUDGET_BYTES, workspace=None, out=None, relu=False):
    """y = conv(x, w) + b by im2col + one GEMM per image and group, a slice of the batch at a time.

    x: (N, C, H, W), w: (F, C/G, KH, KW), b: (F,), all float32 or all float64.
    geometry: kernels.shapes.ConvGeometry(stride, padding, groups).
    budget_bytes: unused here (the forward keeps one image's columns per thread, which measured
    faster than a slice of the batch: bench/bench_ab.py, bench/RESULTS.md),
    kept so that both directions take the same arguments; workspace: a dict kept across calls that
    holds the columns (None: allocated per call); out: None or a C-contiguous
    (N, F, OH, OW) array of x's dtype that receives y (it must not overlap x); relu: True gives
    max(y, 0) instead (a ReLU above the layer fused: the bias and the rectifier in one pass over each
    image's output while it is in the core's cache; the same bits as relu_forward of y).
    Each image is a job of run_jobs (its im2col, then its GEMMs on a one-thread BLAS).
    Returns y (N, F, OH, OW), x's dtype (out when given).
    """
    stride, padding, groups = geometry
    OH, OW = check_conv2d(x, w, b, stride, padding, groups)
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    Fg, K, P = F // groups, Cg * KH * KW, OH * OW
    w2 = np.ascontiguousarray(w).reshape(F, K)  # (F, K)
    pointwise = _plan(x, w, stride, padding, budget_bytes)[1]
    nw = workers(N)
    buf = None if pointwise else workspace_buffer(workspace, (nw, C * KH * KW, P), x.dtype)  # (workers, C*KH*KW, P)
    geo = (KH, KW, *stride, *padding, OH, OW)
    xd = None if pointwise else workspace_buffer(workspace, (nw,) + _split_shape(C, geo),
                                                 x.dtype, "cols_x")  # _im2col_image's scratch, per worker
    y = out_or_empty("conv2d_forward", "out", out, (N, F, OH, OW), x.dtype)  # (N, F, OH, OW)
    y3 = y.reshape(N, F, P)  # a view of y

    def image(worker, n):
        cols = x[n].reshape(C, P) if pointwise else buf[worker]  # the worker's own columns, reused
        if not pointwise:
            _im2col_image(x, n, geo, xd[worker], buf[worker])
        for g in range(groups):
            fs, ks = slice(g * Fg, (g + 1) * Fg), slice(g * K, (g + 1) * K)
            np.matmul(w2[fs], cols[ks], out=y3[n, fs])  # (F/G, P)
        if relu:
            _bias_relu(y3[n], b)
        else:
            y3[n] += b.reshape(F, 1)

    run_jobs(image, range(N), nw)
    return y


def conv2d_backward(dy, x, w, *, geometry, budget_bytes=COLUMN_BUDGET_BYTES, need=("dx", "dw"), workspace=None,
                    out=None):
    """Gradients of conv2d_forward, the columns rebuilt from x a slice at a time.

    dy: (N, F, OH, OW), x: (N, C, H, W), w: (F, C/G, KH, KW), all of one float dtype.
    geometry: kernels.shapes.ConvGeometry(stride, padding, groups).
    budget_bytes bounds the column buffer (reused for dcols); need without "dx" skips dcols, col2im;
    need without "dw" skips im2col and the dw products (dw, db returned as None); workspace as in conv2d_forward.
    out: None or a triple (dx, dw, db), each None or a C-contiguous array of that gradient's shape and
    x's dtype that receives it (ignored for an output that is not computed).
    Per slice, three rounds of run_jobs jobs: im2col per image; dw as CHAINS = 2 jobs, each adding
    the products of every other image in image order into its own partial sum (added at the end,
    so the sum's order, and its bits, do not depend on the thread count; at most two threads:
    _weight_grad_chains); dcols and col2im per image (_input_grad_image). With no more threads
    than chains the first two rounds are one: each chain builds an image's columns just before
    its product, so they are multiplied from the core's cache instead of going out to memory and
    back (custom's conv1 dw 104.5 -> 91.4 ms interleaved on the 2-core VM, bench/RESULTS.md "Speed round 6"); with
    more threads im2col keeps every core. The same products in the same order either way: the same bits.
    Returns (dx (N, C, H, W) or None, dw (F, C/G, KH, KW) or None, db (F,) or None), x's dtype.
    """
    stride, padding, groups = geometry
    OH, OW = check_conv2d_backward(dy, x, w, stride, padding, groups)
    op = "conv2d_backward"
    need_dx, need_dw, out_dx, out_dw, out_db = backward_request(op, need, out)
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    x, dy = np.ascontiguousarray(x), np.ascontiguousarray(dy)
    Fg, K, P = F // groups, Cg * KH * KW, OH * OW
    w2 = np.ascontiguousarray(w).reshape(F, K)  # (F, K)
    dy3 = dy.reshape(N, F, P)  # a view of dy
    nb, pointwise = _plan(x, w, stride, padding, budget_bytes)
    buf = None if pointwise else workspace_buffer(workspace, (nb, C * KH * KW, P), x.dtype)  # (nb, C*KH*KW, P)
    geo = (KH, KW, *stride, *padding, OH, OW)
    # im2col inside the weight gradient's chains when they keep every thread busy (see the docstring)
    in_chains = need_dw and not pointwise and workers(nb) <= CHAINS <= nb  # chain c builds into buf[c]
    xd = None if pointwise else workspace_buffer(workspace, (max(workers(nb), CHAINS),) + _split_shape(C, geo),
                                                 x.dtype, "cols_x")  # _im2col_image's scratch, per worker or chain
    if need_dw:
        db = out_or_empty(op, "out_db", out_db, (F,), x.dtype)  # (F,)
        np.sum(dy, axis=(0, 2, 3), out=db)
        dw = out_or_empty(op, "out_dw", out_dw, w.shape, x.dtype)  # (F, C/G, KH, KW)
        dw2 = dw.reshape(F, K)  # (F, K), a view of dw
        dw2[...] = 0
        acc = workspace_buffer(workspace, (CHAINS, F, K), x.dtype, "dw_acc")  # a partial dw per chain
        acc[...] = 0
        part = workspace_buffer(workspace, (CHAINS, Fg, K), x.dtype, "dw_part")  # one image's product per chain
    dx = out_or_empty(op, "out_dx", out_dx, x.shape, x.dtype) if need_dx else None  # (N, C, H, W)

    for n0 in range(0, N, nb):
        images = range(n0, min(N, n0 + nb))
        if need_dw:
            if in_chains:
                _weight_grad_chains(dy3, x, buf, images, groups, acc, part,
                                    build=lambda chain, n: _im2col_image(x, n, geo, xd[chain], buf[chain]))
            else:
                if not pointwise:
                    run_jobs(lambda worker, n: _im2col_image(x, n, geo, xd[worker], buf[n % nb]), images)
                _weight_grad_chains(dy3, x, buf, images, groups, acc, part)
        if need_dx:
            run_jobs(lambda _, n: _input_grad_image(dy3, w2, groups, buf, geo, dx, n), images)
    if need_dw:
        np.add(acc[0], acc[1], out=dw2)  # the two chains' sums, in this order
    return (dx, dw, db) if need_dw else (dx, None, None)
