"""Space-to-depth: a strided convolution as a 3x3 stride-1 one on sh*sw times the channels (reference tier).

Shape legend
    N batch, C channels in, H, W input size, F filters out, Cg = C/G, KH, KW kernel, sh, sw stride,
    ph, pw padding, OH, OW output size, D = C*sh*sw depth channels, HD, WD = OH + 2, OW + 2 their size.

Math (Winograd F(4x4, 3x3) needs stride 1; a first layer such as AlexNet's conv1, 11x11 stride 4 on
3 channels, is strided). With xp the input padded by (ph, pw), kh = a*sh + r (r < sh), kw = b*sw + t:
    y[f, oh, ow] = sum_{c, kh, kw} w[f, c, kh, kw] xp[c, oh*sh + kh, ow*sw + kw]
                 = sum_{d, a, b} wd[f, d, a, b] xd[d, oh + a, ow + b],     d = (c*sh + r)*sw + t
    xd[d, i, j]       = xp[c, i*sh + r, j*sw + t]              space_to_depth   (D, OH + 2, OW + 2)
    wd[f, d, a, b]    = w[f, c, a*sh + r, b*sw + t], 0 past KH  kernel_to_depth  (F, Cg*sh*sw, 3, 3)
so a stride-(sh, sw) KH x KW convolution is a 3x3 stride-1 unpadded one (Winograd) when the kernel
spans three blocks of the stride on each axis, 2*sh < KH <= 3*sh and 2*sw < KW <= 3*sw
(kernels.shapes.depth_applies): 11x11 stride 4 becomes 3x3 on 48 channels, 144 taps for 121.
The channel c is the slowest part of d, so a group's channels stay together: groups carry over.
Backward: both maps only copy entries (or write zeros), so their adjoints copy back:
    dx = depth_to_space(dxd)     (rows and columns that fell into the padding, or past the last
                                  window, dropped; x entries no window reads get 0)
    dw = kernel_from_depth(dwd)  (the taps past KH, KW dropped)
"""
import numpy as np

from kernels.shapes import into


def space_to_depth(x, *, stride, padding, out_size, out=None):
    """xd[n, (c*sh + r)*sw + t, i, j] = x[n, c, i*sh + r - ph, j*sw + t - pw], 0 off the image.

    x: (N, C, H, W); out_size: (OH, OW), the strided convolution's output size; out: None or a
    C-contiguous array of the result's shape and x's dtype.
    Returns xd (N, C*sh*sw, OH + 2, OW + 2), x's dtype.
    """
    N, C, H, W = x.shape
    (sh, sw), (ph, pw), (OH, OW) = stride, padding, out_size
    HD, WD = OH + 2, OW + 2
    xp = np.zeros((N, C, HD * sh, WD * sw), x.dtype)  # x padded, cut or grown to whole blocks
    h, w = min(H, HD * sh - ph), min(W, WD * sw - pw)
    xp[:, :, ph:ph + h, pw:pw + w] = x[:, :, :h, :w]
    xd = xp.reshape(N, C, HD, sh, WD, sw).transpose(0, 1, 3, 5, 2, 4).reshape(N, C * sh * sw, HD, WD)
    return into("space_to_depth", "out", out, xd)


def depth_to_space(dxd, *, x_shape, stride, padding, out=None):
    """The adjoint of space_to_depth: dx[n, c, h, w] = dxd at the one entry x[n, c, h, w] went to, 0 if none.

    dxd: (N, C*sh*sw, HD, WD); x_shape: (N, C, H, W). Returns dx (N, C, H, W), dxd's dtype.
    """
    N, C, H, W = x_shape
    (sh, sw), (ph, pw) = stride, padding
    HD, WD = dxd.shape[2:]
    xp = dxd.reshape(N, C, sh, sw, HD, WD).transpose(0, 1, 4, 2, 5, 3).reshape(N, C, HD * sh, WD * sw)
    dx = np.zeros(x_shape, dxd.dtype)  # (N, C, H, W)
    h, w = min(H, HD * sh - ph), min(W, WD * sw - pw)
    dx[:, :, :h, :w] = xp[:, :, ph:ph + h, pw:pw + w]
    return into("depth_to_space", "out", out, dx)


def kernel_to_depth(w, stride):
    """wd[f, (c*sh + r)*sw + t, a, b] = w[f, c, a*sh + r, b*sw + t], 0 past the kernel.

    w: (F, Cg, KH, KW) with 2*sh < KH <= 3*sh, likewise KW. Returns wd (F, Cg*sh*sw, 3, 3), w's dtype.
    """
    F, Cg, KH, KW = w.shape
    sh, sw = stride
    wp = np.zeros((F, Cg, 3 * sh, 3 * sw), w.dtype)
    wp[:, :, :KH, :KW] = w
    return np.ascontiguousarray(wp.reshape(F, Cg, 3, sh, 3, sw).transpose(0, 1, 3, 5, 2, 4).reshape(F, -1, 3, 3))


def kernel_from_depth(dwd, kernel_size, stride, out=None):
    """The adjoint of kernel_to_depth: dw[f, c, kh, kw] = dwd[f, (c*sh + kh % sh)*sw + kw % sw, kh // sh, kw // sw].

    dwd: (F, Cg*sh*sw, 3, 3); kernel_size (KH, KW). Returns dw (F, Cg, KH, KW), dwd's dtype.
    """
    (KH, KW), (sh, sw) = kernel_size, stride
    F, Cg = dwd.shape[0], dwd.shape[1] // (sh * sw)
    wp = dwd.reshape(F, Cg, sh, sw, 3, 3).transpose(0, 1, 4, 2, 5, 3).reshape(F, Cg, 3 * sh, 3 * sw)
    return into("kernel_from_depth", "out", out, np.ascontiguousarray(wp[:, :, :KH, :KW]))
