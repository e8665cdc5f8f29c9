"""2-D convolution (cross-correlation) with stride, zero padding and groups: the reference tier.

Shape legend
    N batch, C channels in, H, W input size, F filters out, KH, KW kernel size,
    OH, OW output size, G groups, sh, sw stride, ph, pw padding (height, width).

Math (Caffe's convolution layer, Jia et al. 2014; no kernel flip)
    xp = x with ph zero rows above and below, pw zero columns left and right
    OH = (H + 2*ph - KH) // sh + 1,   OW = (W + 2*pw - KW) // sw + 1
    Group g holds the input channels [g*C/G, (g+1)*C/G) and the filters [g*F/G, (g+1)*F/G);
    filter f of group g sees only its group's channels, c' = c - g*C/G:
    y[n, f, oh, ow] = b[f] + sum_{c', kh, kw} w[f, c', kh, kw] * xp[n, c, oh*sh + kh, ow*sw + kw]

Backward, for the loss L and dy = dL/dy. y is linear in x, w and b, so each gradient is the sum
over every output the variable touches of dy times the factor it is multiplied by:
    db[f]             = sum_{n, oh, ow} dy[n, f, oh, ow]
    dw[f, c', kh, kw] = sum_{n, oh, ow} dy[n, f, oh, ow] * xp[n, c, oh*sh + kh, ow*sw + kw]
    dxp[n, c, oh*sh + kh, ow*sw + kw] += sum_{f in group} w[f, c', kh, kw] * dy[n, f, oh, ow]
and dx is dxp with the padding cut off (the padded zeros are constants; their gradient is dropped).
For one kernel offset (kh, kw) the strided window xp[:, :, kh::sh, kw::sw] (OH x OW of it) lines
up with y, so every sum above is one contraction per (group, kh, kw): that is how this file
computes them.

im2col writes those windows out as columns, cols[n, c*KH*KW + kh*KW + kw, oh*OW + ow] =
xp[n, c, oh*sh + kh, ow*sw + kw], which turns the convolution into a matrix product
y[n] = w.reshape(F, C/G*KH*KW) @ cols[n] (per group); col2im is its adjoint (it adds each
column entry back onto the pixel it came from). The fast tiers use them; here they are defined.

conv2d_forward_loops / conv2d_backward_loops spell the sums out as nested loops, one term at a
time (for reading and the hand-value tests); conv2d_forward / conv2d_backward compute the same
sums as one contraction per (group, kh, kw), fast enough for the tests that compare the tiers.
"""
import numpy as np

from kernels.reference.relu import relu_forward
from kernels.shapes import (  # the tiers' shared checks
    COLUMN_BUDGET_BYTES,
    backward_request,
    check_conv2d,
    check_conv2d_backward,
    conv2d_output_size,
    into,
    into_grads,
)


def _pad(x, padding):
    """x (N, C, H, W) -> xp (N, C, H + 2*ph, W + 2*pw) with zeros around each plane."""
    ph, pw = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def _window(OH, OW, kh, kw, stride):
    """Index of the window xp[..., oh*sh + kh, ow*sw + kw] for every (oh, ow)."""
    sh, sw = stride
    return (slice(kh, kh + sh * (OH - 1) + 1, sh), slice(kw, kw + sw * (OW - 1) + 1, sw))


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
    xp = _pad(x, padding)  # (N, C, H + 2*ph, W + 2*pw)
    cols = np.zeros((N, C, KH, KW, OH, OW), dtype=x.dtype)  # (N, C, KH, KW, OH, OW)
    for kh in range(KH):
        for kw in range(KW):
            cols[:, :, kh, kw] = xp[(slice(None), slice(None)) + _window(OH, OW, kh, kw, stride)]
    return cols.reshape(N, C * KH * KW, OH * OW)


def col2im(cols, *, x_shape, kernel_size, stride, padding):
    """Fold columns back onto the image, adding where windows overlap (im2col's adjoint).

    cols: (N, C*KH*KW, OH*OW) float32/float64
    Returns dx (N, C, H, W) with x_shape = (N, C, H, W), cols' dtype.
    """
    N, C, H, W = x_shape
    KH, KW = kernel_size
    (ph, pw) = padding
    OH, OW = conv2d_output_size(x_shape, kernel_size, stride, padding)
    if cols.shape != (N, C * KH * KW, OH * OW):
        raise ValueError(f"col2im: cols {cols.shape} does not match x_shape {tuple(x_shape)}, "
                         f"which needs ({N}, {C * KH * KW}, {OH * OW})")
    cols6 = cols.reshape(N, C, KH, KW, OH, OW)
    dxp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=cols.dtype)  # (N, C, H+2ph, W+2pw)
    for kh in range(KH):
        for kw in range(KW):
            dxp[(slice(None), slice(None)) + _window(OH, OW, kh, kw, stride)] += cols6[:, :, kh, kw]
    return dxp[:, :, ph:ph + H, pw:pw + W].copy()


def conv2d_forward_loops(x, w, b, *, geometry):
    """The sum of the module docstring written as plain loops (cs231n's conv_forward_naive).

    Slow: one multiply-add per innermost iteration. It is here to be read beside the equation and
    checked by the hand-value tests; conv2d_forward below computes the same numbers by einsum.
    x: (N, C, H, W), w: (F, C/G, KH, KW), b: (F,), one float dtype; geometry: ConvGeometry(stride,
    padding, groups). Returns y (N, F, OH, OW).
    """
    stride, padding, groups = geometry
    OH, OW = check_conv2d(x, w, b, stride, padding, groups)
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    (sh, sw), (ph, pw) = stride, padding
    y = np.zeros((N, F, OH, OW), dtype=x.dtype)  # (N, F, OH, OW)
    for n in range(N):
        for f in range(F):
            g = f // (F // groups)  # the group of filter f
            for oh in range(OH):
                for ow in range(OW):
                    total = b[f]
                    for cg in range(Cg):  # c' = c - g*C/G
                        c = g * Cg + cg
                        for kh in range(KH):
                            for kw in range(KW):
                                h, wi = oh * sh + kh - ph, ow * sw + kw - pw  # in x, unpadded
                                if 0 <= h < H and 0 <= wi < W:  # the padding is zero
                                    total += w[f, cg, kh, kw] * x[n, c, h, wi]
                    y[n, f, oh, ow] = total
    return y


def conv2d_backward_loops(dy, x, w, *, geometry, need=("dx", "dw")):
    """The three gradient sums of the module docstring as plain loops: every output (n, f, oh, ow)
    sends dy times its factor back to each weight, pixel and bias it used.

    dy: (N, F, OH, OW), x: (N, C, H, W), w: (F, C/G, KH, KW); geometry as conv2d_forward_loops.
    Returns (dx or None when need has no "dx", dw, db), x's dtype (dw and db always: they are
    summed in the same loop).
    """
    stride, padding, groups = geometry
    OH, OW = check_conv2d(x, w, None, stride, padding, groups)
    need_dx = backward_request("conv2d_backward_loops", need, None)[0]
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    (sh, sw), (ph, pw) = stride, padding
    dx, dw, db = np.zeros_like(x), np.zeros_like(w), np.zeros(F, dtype=x.dtype)  # like x, w, (F,)
    for n in range(N):
        for f in range(F):
            g = f // (F // groups)
            for oh in range(OH):
                for ow in range(OW):
                    d = dy[n, f, oh, ow]
                    db[f] += d
                    for cg in range(Cg):
                        c = g * Cg + cg
                        for kh in range(KH):
                            for kw in range(KW):
                                h, wi = oh * sh + kh - ph, ow * sw + kw - pw
                                if 0 <= h < H and 0 <= wi < W:
                                    dw[f, cg, kh, kw] += d * x[n, c, h, wi]
                                    dx[n, c, h, wi] += d * w[f, cg, kh, kw]
    return (dx if need_dx else None), dw, db


def conv2d_forward(x, w, b, *, geometry, budget_bytes=COLUMN_BUDGET_BYTES, workspace=None, out=None, relu=False):
    """y = conv(x, w) + b, one contraction per (group, kernel offset); relu: max(y, 0) instead (a ReLU fused).

    x: (N, C, H, W), w: (F, C/G, KH, KW), b: (F,), all float32 or all float64.
    geometry: ConvGeometry(stride, padding, groups) (kernels/shapes.py).
    budget_bytes and workspace are accepted for the shared signature; this tier builds no column buffer.
    Returns y (N, F, OH, OW), x's dtype (out, when given, receives it).
    """
    stride, padding, groups = geometry
    OH, OW = check_conv2d(x, w, b, stride, padding, groups)
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    Fg = F // groups
    xp = _pad(x, padding)  # (N, C, H + 2*ph, W + 2*pw)
    y = np.zeros((N, F, OH, OW), dtype=x.dtype)  # (N, F, OH, OW)
    for g in range(groups):
        fs, cs = slice(g * Fg, (g + 1) * Fg), slice(g * Cg, (g + 1) * Cg)
        for kh in range(KH):
            for kw in range(KW):
                window = xp[(slice(None), cs) + _window(OH, OW, kh, kw, stride)]  # (N, C/G, OH, OW)
                y[:, fs] += np.einsum("fc,nchw->nfhw", w[fs, :, kh, kw], window)
    y += b.reshape(1, F, 1, 1)
    return into("conv2d_forward", "out", out, relu_forward(y) if relu else y)


def conv2d_backward(dy, x, w, *, geometry, budget_bytes=COLUMN_BUDGET_BYTES, need=("dx", "dw"), workspace=None,
                    out=None):
    """Gradients of conv2d_forward (see the module docstring for the sums).

    dy: (N, F, OH, OW), x: (N, C, H, W), w: (F, C/G, KH, KW), all of one float dtype; geometry as
    conv2d_forward. budget_bytes and workspace are accepted for the shared signature; need: the
    gradients to compute, "dx" and/or "dw" ("dw" brings db); out: None or a triple (dx, dw, db) of
    arrays or None, which receive the ones computed.
    Returns (dx (N, C, H, W) or None, dw (F, C/G, KH, KW) or None, db (F,) or None), x's dtype.
    """
    stride, padding, groups = geometry
    OH, OW = check_conv2d_backward(dy, x, w, stride, padding, groups)
    need_dx, need_dw, *outs = backward_request("conv2d_backward", need, out)
    N, C, H, W = x.shape
    F, Cg, KH, KW = w.shape
    Fg = F // groups
    (ph, pw) = padding
    xp = _pad(x, padding)  # (N, C, H + 2*ph, W + 2*pw)
    dxp = np.zeros_like(xp)  # (N, C, H + 2*ph, W + 2*pw)
    dw = np.zeros_like(w)  # (F, C/G, KH, KW)
    db = dy.sum(axis=(0, 2, 3))  # (F,)
    for g in range(groups):
        fs, cs = slice(g * Fg, (g + 1) * Fg), slice(g * Cg, (g + 1) * Cg)
        for kh in range(KH):
            for kw in range(KW):
                at = (slice(None), cs) + _window(OH, OW, kh, kw, stride)
                if need_dw:
                    dw[fs, :, kh, kw] = np.einsum("nfhw,nchw->fc", dy[:, fs], xp[at])
                if need_dx:
                    dxp[at] += np.einsum("fc,nfhw->nchw", w[fs, :, kh, kw], dy[:, fs])
    dx = dxp[:, :, ph:ph + H, pw:pw + W].copy() if need_dx else None
    return into_grads("conv2d_backward", (dx, dw, db) if need_dw else (dx, None, None), outs)
