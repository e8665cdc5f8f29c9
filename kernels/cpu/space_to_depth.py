"""Space-to-depth: a strided convolution as a 3x3 stride-1 one on sh*sw times the channels (cpu tier).

Shape legend and math: kernels/reference/space_to_depth.py. Here the two maps of the input are
Numba loops, one image per job of run_jobs (kernels/cpu/threads.py), each a copy of runs of the
image with the stride's residues split apart; the kernel's maps are the reference's (a few KB).
They only copy, so they give the reference's bits.
"""
import numpy as np
from numba import njit

from kernels.cpu.conv2d import _valid_range
from kernels.cpu.threads import run_jobs
from kernels.reference.space_to_depth import kernel_from_depth, kernel_to_depth
from kernels.shapes import out_or_empty

__all__ = ["depth_to_space", "kernel_from_depth", "kernel_to_depth", "space_to_depth"]


@njit(cache=True, nogil=True)
def _space_to_depth_image(x, xd, n, geo):
    """xd[n] (C*sh*sw, HD, WD) from x[n] (C, H, W), every entry written; geo = (sh, sw, ph, pw)."""
    sh, sw, ph, pw = geo
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    HD, WD = xd.shape[2], xd.shape[3]
    for c in range(C):
        for r in range(sh):
            for t in range(sw):
                d = (c * sh + r) * sw + t
                lo, hi = _valid_range(t - pw, sw, W, WD)  # the j whose column j*sw + t - pw is on the image
                for i in range(HD):
                    h = i * sh + r - ph
                    row = xd[n, d, i]  # (WD,) view
                    if h < 0 or h >= H:
                        row[:] = 0
                        continue
                    row[:lo] = 0
                    row[hi:] = 0
                    for j in range(lo, hi):
                        row[j] = x[n, c, h, j * sw + t - pw]


@njit(cache=True, nogil=True)
def _depth_to_space_image(dxd, dx, n, geo):
    """dx[n] (C, H, W) from dxd[n] (C*sh*sw, HD, WD), space-to-depth's adjoint: 0 where no entry went."""
    sh, sw, ph, pw = geo
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    HD, WD = dxd.shape[2], dxd.shape[3]
    dx[n] = 0
    for c in range(C):
        for r in range(sh):
            for t in range(sw):
                d = (c * sh + r) * sw + t
                lo, hi = _valid_range(t - pw, sw, W, WD)
                ilo, ihi = _valid_range(r - ph, sh, H, HD)
                for i in range(ilo, ihi):
                    h = i * sh + r - ph
                    for j in range(lo, hi):
                        dx[n, c, h, j * sw + t - pw] = dxd[n, d, i, j]


def space_to_depth(x, *, stride, padding, out_size, out=None):
    """xd[n, (c*sh + r)*sw + t, i, j] = x[n, c, i*sh + r - ph, j*sw + t - pw], 0 off the image.

    x: (N, C, H, W); out_size: (OH, OW), the strided convolution's output size; out: None or a
    C-contiguous array of the result's shape and x's dtype (a workspace buffer).
    Returns xd (N, C*sh*sw, OH + 2, OW + 2), x's dtype (out when given).
    """
    N, C = x.shape[:2]
    (sh, sw), (OH, OW) = stride, out_size
    xd = out_or_empty("space_to_depth", "out", out, (N, C * sh * sw, OH + 2, OW + 2), x.dtype)
    x = np.ascontiguousarray(x)
    geo = (int(sh), int(sw), int(padding[0]), int(padding[1]))
    run_jobs(lambda _, n: _space_to_depth_image(x, xd, n, geo), range(N))
    return xd


def depth_to_space(dxd, *, x_shape, stride, padding, out=None):
    """The adjoint of space_to_depth: dx[n, c, h, w] = dxd at the one entry x[n, c, h, w] went to, 0 if none.

    dxd: (N, C*sh*sw, HD, WD); x_shape: (N, C, H, W); out: None or a C-contiguous x_shape array.
    Returns dx (N, C, H, W), dxd's dtype (out when given).
    """
    dx = out_or_empty("depth_to_space", "out", out, x_shape, dxd.dtype)
    dxd = np.ascontiguousarray(dxd)
    geo = (int(stride[0]), int(stride[1]), int(padding[0]), int(padding[1]))
    run_jobs(lambda _, n: _depth_to_space_image(dxd, dx, n, geo), range(dx.shape[0]))
    return dx
