"""Local response normalisation across channels, the CPU tier: one fused Numba pass each way.

Shapes: N batch, C channels, H, W height and width, P = H*W pixels of a plane, m <= BLOCK pixels
of one parallel job; x, y, scale, dy, dx are (N, C, H, W), seen by the kernels as (N, C, P).

The math and the derivation of the backward are in kernels/reference/lrn.py:
    scale_c = k + alpha/size * sum_{c' in [c - size//2, c + (size-1)//2]} x_c'^2,   y_c = x_c * scale_c^-beta
    dx_c    = dy_c * scale_c^-beta - (2*alpha*beta/size) * x_c * sum_{c' in [c - (size-1)//2, c + size//2]} t_c'
              with t_c' = dy_c' * y_c' / scale_c'

How it is fast. A channel window slides along c, so its sum is kept running: one channel enters
and one leaves per step (two operations, whatever the size), as Caffe's LRN does. NCHW puts the
pixels of one channel next to each other, so the running sums are a vector over a block of
pixels: for each channel the kernel streams that block of x (and of y, scale) contiguously, and
a whole pass reads and writes every array once, like a copy. Each channel is one loop over the
block that adds the entering channel, removes the leaving one and writes the output (one trip
through the float64 sums a channel, not three); the backward keeps the t of the last `size`
channels in a ring of rows, so the leaving channel's t (a float64 division) is read, not
recomputed. The same operations in the same order as the three-loop form of 2026-12-07, so the
same bits (bench/RESULTS.md, "Speed round 6"). The parallel jobs are (image, block of pixels) pairs.
Rounding: the running sums are float64 (Caffe's are float32). A value that entered and left
the window leaves a residue of about 1e-16 * (its square) in the sum, so scale carries a
relative error of about 1e-16 * (alpha/size) * max x^2 / k: below float32 rounding unless
(alpha/size) * max x^2 / k exceeds about 1e9 (with AlexNet's 2e-5 and k = 2, |x| > 3e6).
For beta = 0.75 (AlexNet, Caffe's and PyTorch's default, MATLAB's), s^-0.75 = r * sqrt(r) with
r = 1/sqrt(s): square roots vectorise, pow does not (other betas are slower; timings in
bench/RESULTS.md).
"""
import math

import numpy as np
from numba import njit, prange

from kernels.shapes import check_lrn_args, check_lrn_backward_args, out_or_empty

BLOCK = 2048  # pixels per job: the running sums (16 KiB of float64) stay in L1/L2


@njit(inline="always")
def _pow_minus_075(s):
    """s^-0.75 for s > 0 as r * sqrt(r), r = 1/sqrt(s)."""
    r = 1.0 / math.sqrt(s)
    return r * math.sqrt(r)


@njit(parallel=True, cache=True)
def _lrn_forward_kernel(x, y, scale, size, alpha, beta, k):
    N, C, P = x.shape
    lo, hi = size // 2, (size - 1) // 2  # window(c) = [c - lo, c + hi]
    a = alpha / size
    blocks = (P + BLOCK - 1) // BLOCK
    zero = np.zeros(BLOCK, x.dtype)  # stands for a channel outside [0, C): adds and removes exactly 0
    for job in prange(N * blocks):
        n, p0 = job // blocks, (job % blocks) * BLOCK
        p1 = min(P, p0 + BLOCK)
        m = p1 - p0
        acc = np.zeros(m)  # (m,) float64: sum of x^2 over the current channel window
        for e in range(min(hi, C)):  # the channels already inside window(0) before its step
            x_in = x[n, e, p0:p1]
            for i in range(m):
                v = np.float64(x_in[i])
                acc[i] += v * v
        for c in range(C):  # one pass a channel: channel c + hi enters, c - lo - 1 leaves, y_c is written
            x_in = x[n, c + hi, p0:p1] if c + hi < C else zero[:m]  # (m,) contiguous
            x_out = x[n, c - lo - 1, p0:p1] if c - lo - 1 >= 0 else zero[:m]
            xc, yc, sc = x[n, c, p0:p1], y[n, c, p0:p1], scale[n, c, p0:p1]
            if beta == 0.75:  # one loop per branch: with the branch inside, neither vectorises
                for i in range(m):
                    vi, vo = np.float64(x_in[i]), np.float64(x_out[i])
                    t = acc[i] + vi * vi  # enter, then leave: the order the sums have always had
                    t = t - vo * vo
                    acc[i] = t
                    s = k + a * t
                    sc[i] = s
                    yc[i] = xc[i] * _pow_minus_075(s)
            else:
                for i in range(m):
                    vi, vo = np.float64(x_in[i]), np.float64(x_out[i])
                    t = acc[i] + vi * vi
                    t = t - vo * vo
                    acc[i] = t
                    s = k + a * t
                    sc[i] = s
                    yc[i] = xc[i] * s ** -beta


@njit(cache=True, inline="always")
def _relu_mask(dxc, xc):
    """dxc = dxc where xc > 0, else 0 (relu_backward's rule, x the ReLU's output), over a chunk in cache."""
    for i in range(dxc.shape[0]):
        dxc[i] = dxc[i] if xc[i] > 0 else 0.0


@njit(parallel=True, cache=True)
def _lrn_backward_kernel(dy, x, y, scale, dx, size, alpha, beta, relu):  # noqa: C901 (one kernel: its branches
    # are the loops that vectorise, each written out once)
    N, C, P = x.shape
    hi = size // 2  # the c' whose window holds c: [c - (size - 1) // 2, c + hi]
    g = 2.0 * alpha * beta / size
    blocks = (P + BLOCK - 1) // BLOCK
    for job in prange(N * blocks):
        n, p0 = job // blocks, (job % blocks) * BLOCK
        p1 = min(P, p0 + BLOCK)
        m = p1 - p0
        acc = np.zeros(m)  # (m,) float64: sum of t = dy*y/scale over the mirrored window
        # t of the last `size` channels that entered, channel e in row e % size: the row channel
        # c + hi is about to take holds channel c + hi - size = c - (size - 1) // 2 - 1, the one
        # leaving (0 before channel 0, and 0 is what a channel past C enters with)
        ring = np.zeros((size, m))
        for e in range(min(hi, C)):
            dy_in, y_in, s_in, r = dy[n, e, p0:p1], y[n, e, p0:p1], scale[n, e, p0:p1], ring[e % size]
            for i in range(m):
                ti = np.float64(dy_in[i]) * y_in[i] / s_in[i]
                r[i] = ti
                acc[i] += ti
        for c in range(C):
            e = c + hi
            r = ring[e % size]
            dyc, xc, sc, dxc = dy[n, c, p0:p1], x[n, c, p0:p1], scale[n, c, p0:p1], dx[n, c, p0:p1]
            if e < C:
                dy_in, y_in, s_in = dy[n, e, p0:p1], y[n, e, p0:p1], scale[n, e, p0:p1]
                if beta == 0.75:
                    for i in range(m):
                        ti = np.float64(dy_in[i]) * y_in[i] / s_in[i]
                        t = acc[i] + ti  # enter, then leave, as the forward's sums
                        t = t - r[i]
                        r[i] = ti
                        acc[i] = t
                        dxc[i] = dyc[i] * _pow_minus_075(np.float64(sc[i])) - g * xc[i] * t
                else:
                    for i in range(m):
                        ti = np.float64(dy_in[i]) * y_in[i] / s_in[i]
                        t = acc[i] + ti
                        t = t - r[i]
                        r[i] = ti
                        acc[i] = t
                        dxc[i] = dyc[i] * np.float64(sc[i]) ** -beta - g * xc[i] * t
            elif beta == 0.75:  # past the last channel nothing enters
                for i in range(m):
                    t = acc[i] - r[i]
                    r[i] = 0.0
                    acc[i] = t
                    dxc[i] = dyc[i] * _pow_minus_075(np.float64(sc[i])) - g * xc[i] * t
            else:
                for i in range(m):
                    t = acc[i] - r[i]
                    r[i] = 0.0
                    acc[i] = t
                    dxc[i] = dyc[i] * np.float64(sc[i]) ** -beta - g * xc[i] * t
            if relu:  # the ReLU whose output x is, fused: its backward on the chunk just written
                _relu_mask(dxc, xc)


def lrn_forward(x, *, size, alpha, beta, k, out_y=None, out_scale=None):
    """y = x * (k + alpha/size * sum of x^2 over the channel window)^-beta.

    x: float32/float64 (N, C, H, W); out_y, out_scale: None or C-contiguous (N, C, H, W) arrays
    of x's dtype that receive y and scale (neither overlapping x)
    Returns (y, scale): both (N, C, H, W), dtype of x; scale is kept for the backward.
    """
    check_lrn_args(x, size, alpha, beta, k)
    N, C, H, W = x.shape
    x = np.ascontiguousarray(x)
    y = out_or_empty("lrn_forward", "out_y", out_y, x.shape, x.dtype)  # (N, C, H, W)
    scale = out_or_empty("lrn_forward", "out_scale", out_scale, x.shape, x.dtype)  # (N, C, H, W)
    _lrn_forward_kernel(x.reshape(N, C, H * W), y.reshape(N, C, H * W), scale.reshape(N, C, H * W),
                        int(size), float(alpha), float(beta), float(k))
    return y, scale


def lrn_backward(dy, x, y, scale, *, size, alpha, beta, out=None, relu=False):
    """dx from dy, given the forward's x, y and scale (k enters only through scale, so it is not taken).

    dy, x, y, scale: float32/float64 (N, C, H, W); out: None or a C-contiguous (N, C, H, W)
    array of dy's dtype that receives dx (overlapping none of the inputs); relu: True fuses the
    backward of the ReLU whose output x is: dx where x > 0, else 0 (relu_backward(dx, x)), each
    chunk masked while it is in cache
    Returns dx: (N, C, H, W), dtype of dy.
    """
    check_lrn_backward_args(dy, x, y, scale, size, alpha, beta)
    N, C, H, W = x.shape
    flat = [np.ascontiguousarray(a).reshape(N, C, H * W) for a in (dy, x, y, scale)]
    dx = out_or_empty("lrn_backward", "out", out, x.shape, dy.dtype)  # (N, C, H, W)
    _lrn_backward_kernel(*flat, dx.reshape(N, C, H * W), int(size), float(alpha), float(beta), bool(relu))
    return dx
