"""2-D convolution (cross-correlation) with stride, zero padding and groups: the CUDA tier.

Shape legend
    N batch, nb images in one slice of the batch, C channels in, H, W input size, F filters out,
    KH, KW kernel size, OH, OW output size, L = OH*OW, G groups, CK = C/G*KH*KW (one group's rows),
    sh, sw stride, ph, pw padding; geo = (KH, KW, sh, sw, ph, pw, OH, OW), one kernel argument.

Math: the definition and the derivation of the backward are in kernels/reference/conv2d.py.
Here it is im2col + GEMM, as in Caffe (src/caffe/util/im2col.cu, conv_layer.cu), with the columns
of a whole slice of the batch side by side so that each group is ONE matrix product:
    cols[c*KH*KW + kh*KW + kw, n*L + oh*OW + ow] = x[n, c, oh*sh - ph + kh, ow*sw - pw + kw]
                                                   (0 where that pixel is off the image)
    y_g     = w_g @ cols_g             w_g (F/G, CK), cols_g (CK, nb*L): the rows of group g
    dw_g   += dy_g @ cols_g^T          dy_g (F/G, nb*L): dy of group g's filters, same layout
    dcols_g = w_g^T @ dy_g             then dx = col2im(dcols), adding overlapping windows
    db      = dy summed over n, oh, ow
The G products run as one batched xp.matmul (cuBLAS on a GPU). The column buffer holds nb images,
nb*C*KH*KW*L*itemsize <= budget_bytes (at least one image); backward rebuilds it from x.
im2col / col2im at the README's boundary use the layout (N, C*KH*KW, L), one transpose away.

Kernels, one thread per output element each:
    im2col    one per cols entry: fetch its pixel (or the padding's 0);
    col2im    one per dx pixel: sum the column entries of every window that covers it, a gather,
              so no two threads write one pixel and no atomics are needed;
    bias      one per y entry: move the GEMM result (F, nb*L) into NCHW and add b[f].
"""
from numba import cuda

from kernels.cuda._launch import check_float, device_arrays, launch
from kernels.shapes import (
    COLUMN_BUDGET_BYTES,
    backward_request,
    check_conv2d,
    check_conv2d_backward,
    conv2d_output_size,
    into,
    out_or_empty,
)

# kernels


@cuda.jit(cache=True)
def _im2col_kernel(x, geo, cols):
    """x (nb, C, H, W) -> cols (C*KH*KW, nb*OH*OW); thread i, element i of cols in row-major order."""
    i = cuda.grid(1)
    if i < cols.size:
        KH, KW, sh, sw, ph, pw, OH, OW = geo
        H, W = x.shape[2], x.shape[3]
        row, col = i // cols.shape[1], i % cols.shape[1]
        n, oh, ow = col // (OH * OW), (col // OW) % OH, col % OW
        c, kh, kw = row // (KH * KW), (row // KW) % KH, row % KW
        h, w = oh * sh - ph + kh, ow * sw - pw + kw
        cols[row, col] = x[n, c, h, w] if 0 <= h < H and 0 <= w < W else 0


@cuda.jit(cache=True)
def _col2im_kernel(cols, geo, dx):
    """cols (C*KH*KW, nb*OH*OW) -> dx (nb, C, H, W); thread i, element i of dx in row-major order."""
    i = cuda.grid(1)
    if i < dx.size:
        KH, KW, sh, sw, ph, pw, OH, OW = geo
        nb, C, H, W = dx.shape
        w, h, c, n = i % W, (i // W) % H, (i // (W * H)) % C, i // (W * H * C)
        total = 0.0
        for kh in range(KH):
            th = h + ph - kh  # = oh*sh for the window row oh that holds h at offset kh
            if th < 0 or th % sh != 0 or th // sh >= OH:
                continue
            for kw in range(KW):
                tw = w + pw - kw
                if tw < 0 or tw % sw != 0 or tw // sw >= OW:
                    continue
                total += cols[(c * KH + kh) * KW + kw, (n * OH + th // sh) * OW + tw // sw]
        dx[n, c, h, w] = total


@cuda.jit(cache=True)
def _bias_nchw_kernel(yg, b, relu, y):
    """yg (F, nb*L) GEMM result, b (F,) -> y (nb, F, L), rectified as relu_forward when relu (a ReLU fused);
    thread i, element i of y in row-major order."""
    i = cuda.grid(1)
    if i < y.size:
        nb, F, L = y.shape
        n, f, l = i // (F * L), (i // L) % F, i % L
        v = yg[f, n * L + l] + b[f]
        y[n, f, l] = 0 if relu and v < 0 else v

# launchers


def _columns(xs, buf, kernel_size, stride, padding):
    """Columns of the slice xs (nb, C, H, W), written into the front of the flat buffer buf."""
    nb, C = xs.shape[:2]
    (KH, KW), (OH, OW) = kernel_size, conv2d_output_size(xs.shape, kernel_size, stride, padding)
    cols = buf[:C * KH * KW * nb * OH * OW].reshape(C * KH * KW, nb * OH * OW)  # (C*KH*KW, nb*L)
    launch(_im2col_kernel, cols.size, xs, (KH, KW, *stride, *padding, OH, OW), cols)
    return cols


def _col2im(cols, dx, kernel_size, stride, padding):
    """dcols (C*KH*KW, nb*L) -> dx (nb, C, H, W), overwritten, overlapping windows added."""
    OH, OW = conv2d_output_size(dx.shape, kernel_size, stride, padding)
    launch(_col2im_kernel, dx.size, cols, (*kernel_size, *stride, *padding, OH, OW), dx)
    return dx


def _slice_size(x_shape, kernel_size, stride, padding, itemsize, budget_bytes):
    """Images per slice: as many as keep the column buffer within budget_bytes, at least 1."""
    N, C = x_shape[:2]
    OH, OW = conv2d_output_size(x_shape, kernel_size, stride, padding)
    image_bytes = C * kernel_size[0] * kernel_size[1] * OH * OW * itemsize
    return int(max(1, min(N, budget_bytes // image_bytes)))


def im2col(x, *, kernel_size, stride, padding):
    """Unfold the KH x KW windows of x into columns.

    x:    (N, C, H, W) float32/float64
    Returns cols (N, C*KH*KW, OH*OW), x's dtype; row c*KH*KW + kh*KW + kw, column oh*OW + ow.
    """
    xp = device_arrays("im2col", x=x)
    if x.ndim != 4:
        raise ValueError(f"im2col: x {x.shape} must be 4-D (N, C, H, W)")
    check_float("im2col", x=x)
    N, C, H, W = x.shape
    KH, KW = kernel_size
    OH, OW = conv2d_output_size(x.shape, kernel_size, stride, padding)
    buf = xp.empty(C * KH * KW * N * OH * OW, dtype=x.dtype)  # flat, for (C*KH*KW, N*L)
    cols = _columns(xp.ascontiguousarray(x), buf, (KH, KW), stride, padding)  # (C*KH*KW, N*L)
    return xp.ascontiguousarray(cols.reshape(C * KH * KW, N, OH * OW).transpose(1, 0, 2))


def col2im(cols, *, x_shape, kernel_size, stride, padding):
    """Fold columns back onto the image, adding where windows overlap (im2col's adjoint).

    cols: (N, C*KH*KW, OH*OW) float32/float64
    Returns dx (N, C, H, W) with x_shape = (N, C, H, W), cols' dtype.
    """
    xp = device_arrays("col2im", cols=cols)
    check_float("col2im", cols=cols)
    N, C, H, W = x_shape
    KH, KW = kernel_size
    OH, OW = conv2d_output_size(x_shape, kernel_size, stride, padding)
    if cols.shape != (N, C * KH * KW, OH * OW):
        raise ValueError(f"col2im: cols {cols.shape} does not match x_shape {tuple(x_shape)}, "
                         f"which needs ({N}, {C * KH * KW}, {OH * OW})")
    side_by_side = xp.ascontiguousarray(cols.transpose(1, 0, 2)).reshape(C * KH * KW, N * OH * OW)
    dx = xp.empty((N, C, H, W), dtype=cols.dtype)  # (N, C, H, W)
    return _col2im(side_by_side, dx, (KH, KW), stride, padding)


def conv2d_forward(x, w, b, *, geometry, budget_bytes=COLUMN_BUDGET_BYTES,
                   workspace=None, out=None, relu=False):  # workspace: accepted for the shared signature, unused here
    """y = conv(x, w) + b by im2col + one batched GEMM over the groups, a slice of the batch at a time.

    x: (N, C, H, W), w: (F, C/G, KH, KW), b: (F,), all float32 or all float64.
    geometry: kernels.shapes.ConvGeometry(stride, padding, groups).
    budget_bytes bounds the column buffer (nb*C*KH*KW*OH*OW*itemsize, nb >= 1); relu: max(y, 0) instead, in
    the bias kernel (a ReLU above the layer fused).
    Returns y (N, F, OH, OW), x's dtype (out, when given, receives it).
    """
    xp = device_arrays("conv2d_forward", x=x, w=w, b=b)
    check_float("conv2d_forward", x=x)
    stride, padding, groups = geometry
    OH, OW = check_conv2d(x, w, b, stride, padding, groups)
    x, b = xp.ascontiguousarray(x), xp.ascontiguousarray(b)
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    G, L = groups, OH * OW
    wg = xp.ascontiguousarray(w).reshape(G, F // G, Cg * KH * KW)  # (G, F/G, CK)
    nb = _slice_size(x.shape, (KH, KW), stride, padding, x.itemsize, budget_bytes)
    buf = xp.empty(C * KH * KW * nb * L, dtype=x.dtype)  # flat column buffer, (C*KH*KW, nb*L)
    y = out_or_empty("conv2d_forward", "out", out, (N, F, OH, OW), x.dtype, xp.empty)  # (N, F, OH, OW)
    y3 = y.reshape(N, F, L)  # a view of y
    for n0 in range(0, N, nb):
        n1 = min(N, n0 + nb)
        cols = _columns(x[n0:n1], buf, (KH, KW), stride, padding)  # (C*KH*KW, nb*L)
        yg = xp.matmul(wg, cols.reshape(G, Cg * KH * KW, -1))  # (G, F/G, nb*L)
        launch(_bias_nchw_kernel, (n1 - n0) * F * L, yg.reshape(F, -1), b, bool(relu), y3[n0:n1])
    return y


def conv2d_backward(dy, x, w, *, geometry, budget_bytes=COLUMN_BUDGET_BYTES, need=("dx", "dw"),
                    workspace=None, out=None):  # workspace: accepted for the shared signature, unused here
    """Gradients of conv2d_forward, the columns rebuilt from x a slice at a time.

    dy: (N, F, OH, OW), x: (N, C, H, W), w: (F, C/G, KH, KW), all of one float dtype; geometry as
    conv2d_forward. budget_bytes bounds the column buffer; need without "dx" skips dcols and col2im,
    without "dw" im2col and the dw products (dw, db returned as None); out: None or a triple
    (dx, dw, db) of arrays or None, which receive the ones computed (dw and db as copies).
    Returns (dx (N, C, H, W) or None, dw (F, C/G, KH, KW) or None, db (F,) or None), x's dtype.
    """
    xp = device_arrays("conv2d_backward", dy=dy, x=x, w=w)
    check_float("conv2d_backward", x=x)
    stride, padding, groups = geometry
    OH, OW = check_conv2d_backward(dy, x, w, stride, padding, groups)
    op = "conv2d_backward"
    need_dx, need_dw, out_dx, out_dw, out_db = backward_request(op, need, out)
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    x, dy = xp.ascontiguousarray(x), xp.ascontiguousarray(dy)
    G, L, CK = groups, OH * OW, Cg * KH * KW
    wg = xp.ascontiguousarray(w).reshape(G, F // G, CK)  # (G, F/G, CK)
    nb = _slice_size(x.shape, (KH, KW), stride, padding, x.itemsize, budget_bytes)
    buf = xp.empty(C * KH * KW * nb * L, dtype=x.dtype)  # flat column buffer, (C*KH*KW, nb*L)
    dwg = xp.zeros((G, F // G, CK), dtype=x.dtype)  # (G, F/G, CK)
    dx = out_or_empty(op, "out_dx", out_dx, x.shape, x.dtype, xp.empty) if need_dx else None
    db = dy.sum(axis=(0, 2, 3))  # (F,): a plain reduction, left to the array module
    for n0 in range(0, N, nb):
        n1 = min(N, n0 + nb)
        # dy of the slice side by side like the columns: (F, nb*L), a transposing copy
        dyg = xp.ascontiguousarray(dy[n0:n1].reshape(n1 - n0, F, L).transpose(1, 0, 2)).reshape(G, F // G, -1)
        if need_dw:
            cols = _columns(x[n0:n1], buf, (KH, KW), stride, padding).reshape(G, CK, -1)  # (G, CK, nb*L)
            dwg += xp.matmul(dyg, cols.transpose(0, 2, 1))  # (G, F/G, CK)
        if need_dx:
            dcols = xp.matmul(wg.transpose(0, 2, 1), dyg)  # (G, CK, nb*L)
            _col2im(dcols.reshape(G * CK, -1), dx[n0:n1], (KH, KW), stride, padding)
    if not need_dw:
        return dx, None, None
    return dx, into(op, "out_dw", out_dw, dwg.reshape(w.shape)), into(op, "out_db", out_db, db)
