"""Shape arithmetic and argument checks shared by the three kernel tiers (reference, cpu, cuda).

Each function raises ValueError with a one-line message naming the op and the shapes at fault, or
returns the output size. The reference tier imports them like the fast tiers do, so that
kernels/reference/ holds only the math. Shape legends are the ops' own (kernels/reference/<op>.py).
"""
from typing import NamedTuple

import numpy as np

COLUMN_BUDGET_BYTES = 128 * 2**20  # im2col columns per batch slice (the conv2d kernels' and Conv2d's default)


# -- conv2d ------------------------------------------------------------------------------------
class ConvGeometry(NamedTuple):
    """Where a convolution's windows sit, the kernel size aside (w gives it): stride (sh, sw), padding
    (ph, pw), groups G. conv2d_forward and conv2d_backward take it as one keyword, geometry= (what
    cuDNN calls a convolution descriptor); they unpack it as `stride, padding, groups = geometry`."""
    stride: tuple
    padding: tuple
    groups: int


def conv2d_output_size(x_shape, kernel_size, stride, padding):
    """(OH, OW) of a convolution or im2col; ValueError when either is below 1."""
    N, C, H, W = x_shape
    (KH, KW), (sh, sw), (ph, pw) = kernel_size, stride, padding
    if sh < 1 or sw < 1 or ph < 0 or pw < 0:
        raise ValueError(f"conv2d: stride {stride} must be >= 1 and padding {padding} >= 0")
    OH = (H + 2 * ph - KH) // sh + 1
    OW = (W + 2 * pw - KW) // sw + 1
    if OH < 1 or OW < 1:
        raise ValueError(f"conv2d: input {tuple(x_shape)} with kernel {tuple(kernel_size)}, "
                         f"stride {tuple(stride)}, padding {tuple(padding)} gives output {OH}x{OW}")
    return OH, OW


def check_conv2d(x, w, b, stride, padding, groups):
    """Validate a convolution's arrays; return (OH, OW). b may be None (backward)."""
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d: x {x.shape} and w {w.shape} must both be 4-D "
                         f"(N, C, H, W) and (F, C/G, KH, KW)")
    if x.dtype != w.dtype or (b is not None and b.dtype != x.dtype):
        raise ValueError(f"conv2d: dtypes differ: x {x.shape} {x.dtype}, w {w.shape} {w.dtype}"
                         + ("" if b is None else f", b {b.shape} {b.dtype}"))
    C, F = x.shape[1], w.shape[0]
    if groups < 1 or C % groups or F % groups or C != w.shape[1] * groups:
        raise ValueError(f"conv2d: x {x.shape} and w {w.shape} do not fit groups={groups}: "
                         f"need C % G == 0, F % G == 0 and C == w.shape[1] * G")
    if b is not None and b.shape != (F,):
        raise ValueError(f"conv2d: b {b.shape} must be ({F},) for w {w.shape}")
    return conv2d_output_size(x.shape, w.shape[2:], stride, padding)


def depth_applies(kernel_size, stride):
    """A strided kernel runs as a 3x3 stride-1 one by space-to-depth (kernels/reference/space_to_depth.py):
    not stride 1, and the kernel spans three blocks of the stride on each axis, 2*s < K <= 3*s."""
    return tuple(stride) != (1, 1) and all(2 * s < k <= 3 * s for k, s in zip(kernel_size, stride, strict=True))


def check_conv2d_backward(dy, x, w, stride, padding, groups, op="conv2d_backward"):
    """Validate a convolution's backward arrays (x, w as check_conv2d; dy (N, F, OH, OW) of x's dtype);
    return (OH, OW)."""
    OH, OW = check_conv2d(x, w, None, stride, padding, groups)
    want = (x.shape[0], w.shape[0], OH, OW)
    if tuple(dy.shape) != want or dy.dtype != x.dtype:
        raise ValueError(f"{op}: dy {dy.shape} {dy.dtype} must be {want} {x.dtype} for x {x.shape} and w {w.shape}")
    return OH, OW


# -- maxpool2d ---------------------------------------------------------------------------------
def as_pair(v, name):
    """An int or a pair of ints -> (int, int); ValueError otherwise."""
    pair = (v, v) if np.ndim(v) == 0 else tuple(v)
    if len(pair) != 2 or any(int(a) != a for a in pair):
        raise ValueError(f"maxpool2d: {name} must be an int or a pair of ints, got {v!r}")
    return int(pair[0]), int(pair[1])


def pool_output_size(size, kernel, stride, pad, ceil_mode):
    """Output length along one axis, PyTorch's rule (pooling_output_shape), for a valid window."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1  # the last window would start inside the right padding
    return out


def maxpool2d_output_shape(x_shape, kernel_size, stride, padding, ceil_mode):
    """(N, C, OH, OW) for an (N, C, H, W) input; ValueError for an impossible configuration."""
    if len(x_shape) != 4:
        raise ValueError(f"maxpool2d: x must be (N, C, H, W), got shape {tuple(x_shape)}")
    N, C, H, W = x_shape
    (KH, KW), (SH, SW), (PH, PW) = (as_pair(kernel_size, "kernel_size"), as_pair(stride, "stride"),
                                    as_pair(padding, "padding"))
    if min(KH, KW, SH, SW) < 1 or min(PH, PW) < 0:
        raise ValueError(f"maxpool2d: kernel_size {(KH, KW)} and stride {(SH, SW)} must be >= 1, "
                         f"padding {(PH, PW)} >= 0")
    if 2 * PH > KH or 2 * PW > KW:
        raise ValueError(f"maxpool2d: padding {(PH, PW)} must be at most half of kernel_size {(KH, KW)}")
    if H + 2 * PH < KH or W + 2 * PW < KW:
        raise ValueError(f"maxpool2d: window {(KH, KW)} is larger than the padded input "
                         f"{(H + 2 * PH, W + 2 * PW)} of x {tuple(x_shape)}")
    OH = pool_output_size(H, KH, SH, PH, ceil_mode)
    OW = pool_output_size(W, KW, SW, PW, ceil_mode)
    return N, C, OH, OW


def check_maxpool2d_backward_args(dy, argmax, x_shape):
    """Raise ValueError unless dy and argmax match and every argmax lies in an (H, W) plane."""
    if len(x_shape) != 4 or dy.ndim != 4 or dy.shape != argmax.shape or tuple(dy.shape[:2]) != tuple(x_shape[:2]):
        raise ValueError(f"maxpool2d_backward: dy {dy.shape} and argmax {argmax.shape} must be one "
                         f"(N, C, OH, OW) shape matching x_shape {tuple(x_shape)}")
    if argmax.dtype != np.int64:
        raise ValueError(f"maxpool2d_backward: argmax must be int64, got {argmax.dtype}")
    H, W = x_shape[2:]
    if argmax.size and (argmax.min() < 0 or argmax.max() >= H * W):
        raise ValueError(f"maxpool2d_backward: argmax values must lie in [0, {H * W}) for planes of {(H, W)}")


def check_pool_output(op, y, dy):
    """y for a max-pool backward that fuses the ReLU below it (relu=True): given, of dy's shape and dtype."""
    if y is None:
        raise ValueError(f"{op}: relu=True needs y, the forward's output (the window maxima)")
    if tuple(y.shape) != tuple(dy.shape) or y.dtype != dy.dtype:
        raise ValueError(f"{op}: y {tuple(y.shape)} {y.dtype} must be the forward's output, {tuple(dy.shape)} "
                         f"{dy.dtype}")
    return y


# -- global_avg_pool ---------------------------------------------------------------------------
def check_global_avg_pool_args(x):
    """Raise ValueError unless x is a float32/float64 (N, C, H, W) array with H, W >= 1; return (N, C)."""
    if x.ndim != 4 or x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"global_avg_pool: x must be (N, C, H, W) with H, W >= 1, got shape {tuple(x.shape)}")
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"global_avg_pool: x must be float32 or float64, got {x.dtype}")
    return int(x.shape[0]), int(x.shape[1])


def check_global_avg_pool_backward_args(dy, x_shape):
    """Raise ValueError unless x_shape is (N, C, H, W) with H, W >= 1 and dy a float32/float64 (N, C)
    array; return x_shape as a tuple of ints."""
    shape = tuple(x_shape) if isinstance(x_shape, (tuple, list)) else ()
    if len(shape) != 4 or any(isinstance(v, bool) or int(v) != v or v < 0 for v in shape) or min(shape[2:]) < 1:
        raise ValueError(f"global_avg_pool_backward: x_shape must be (N, C, H, W) with H, W >= 1, got {x_shape!r}")
    shape = tuple(int(v) for v in shape)
    if tuple(dy.shape) != shape[:2] or dy.dtype not in (np.float32, np.float64):
        raise ValueError(f"global_avg_pool_backward: dy {tuple(dy.shape)} {dy.dtype} must be a float32 or float64 "
                         f"(N, C) = {shape[:2]} array for x_shape {shape}")
    return shape


# -- lrn ---------------------------------------------------------------------------------------
def check_lrn_args(x, size, alpha, beta, k):
    """Raise ValueError unless x is (N, C, H, W) float32/float64 and size >= 1."""
    if x.ndim != 4:
        raise ValueError(f"lrn: x must be (N, C, H, W), got shape {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"lrn: x must be float32 or float64, got {x.dtype}")
    if int(size) != size or size < 1:
        raise ValueError(f"lrn: size must be a positive integer, got {size!r}")


def check_lrn_backward_args(dy, x, y, scale, size, alpha, beta):
    """Raise ValueError unless dy, x, y, scale are valid and share one shape and dtype (the backward
    takes no k: k reaches it only through scale)."""
    check_lrn_args(x, size, alpha, beta, k=None)
    for name, a in (("dy", dy), ("y", y), ("scale", scale)):
        if a.shape != x.shape or a.dtype != x.dtype:
            raise ValueError(f"lrn_backward: {name} {a.shape} {a.dtype} must have the shape and dtype "
                             f"of x {x.shape} {x.dtype}")


# -- linear ------------------------------------------------------------------------------------
def check_linear_args(x, w, b):
    """Raise ValueError unless x (N, D), w (K, D), b (K,) agree in shape and dtype."""
    if x.ndim != 2 or w.ndim != 2 or b.ndim != 1 or x.shape[1] != w.shape[1] or b.shape[0] != w.shape[0]:
        raise ValueError(f"linear: need x (N, D), w (K, D), b (K,); got x {x.shape}, w {w.shape}, b {b.shape}")
    if not x.dtype == w.dtype == b.dtype or x.dtype not in (np.float32, np.float64):
        raise ValueError(f"linear: x, w, b must share one dtype, float32 or float64; "
                         f"got {x.dtype}, {w.dtype}, {b.dtype}")


def check_linear_backward_args(dy, x, w):
    """Raise ValueError unless x (N, D) and w (K, D) agree and dy is (N, K) of x's dtype."""
    check_linear_args(x, w, w[:, 0])
    if tuple(dy.shape) != (x.shape[0], w.shape[0]) or dy.dtype != x.dtype:
        raise ValueError(f"linear_backward: dy must be (N, K) = {(x.shape[0], w.shape[0])} of dtype {x.dtype}, "
                         f"got {dy.shape} {dy.dtype}")


# -- dropout -----------------------------------------------------------------------------------
def check_dropout_mask_args(p, rng, dtype):
    """Raise ValueError unless 0 <= p < 1 and dtype is float32/float64; TypeError for a non-Generator rng."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"dropout_mask: rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"dropout_mask: dtype must be float32 or float64, got {np.dtype(dtype)}")


def check_dropout_args(a, mask, name):
    """Raise ValueError unless `a` and mask share shape and dtype."""
    if a.shape != mask.shape or a.dtype != mask.dtype:
        raise ValueError(f"dropout: {name} {a.shape} {a.dtype} and mask {mask.shape} {mask.dtype} "
                         f"must share shape and dtype")


# -- softmax -----------------------------------------------------------------------------------
def check_softmax_args(x, name="x"):
    """Raise ValueError unless x is a float32/float64 (N, K) array with K >= 1."""
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"softmax: {name} must be (N, K) with K >= 1, got shape {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"softmax: {name} must be float32 or float64, got {x.dtype}")


def check_softmax_backward_args(dy, y):
    """Raise ValueError unless y is a valid softmax output (N, K) and dy has its shape."""
    check_softmax_args(y, "y")
    if dy.shape != y.shape:
        raise ValueError(f"softmax_backward: dy {dy.shape} and y {y.shape} must have one shape")


# -- softmax_cross_entropy ---------------------------------------------------------------------
def check_sce_args(logits, labels, name="logits"):
    """Raise ValueError unless logits is float (N, K) and labels integer (N,) in [0, K)."""
    if logits.ndim != 2 or logits.shape[1] < 1 or labels.shape != (logits.shape[0],):
        raise ValueError(f"softmax_cross_entropy: need {name} (N, K) and labels (N,); "
                         f"got {logits.shape} and {labels.shape}")
    if logits.dtype not in (np.float32, np.float64) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"softmax_cross_entropy: {name} must be float32/float64 and labels integer; "
                         f"got {logits.dtype} and {labels.dtype}")
    K = logits.shape[1]
    bad = np.flatnonzero((labels < 0) | (labels >= K))
    if bad.size:
        raise ValueError(f"softmax_cross_entropy: label {labels[bad[0]]} at position {bad[0]} "
                         f"is outside [0, {K}) for K = {K} classes")


# -- sgd ---------------------------------------------------------------------------------------
def check_sgd_args(w, dw, v):
    """Raise ValueError unless w, dw, v share shape and dtype and w, v are writeable and contiguous."""
    if not w.shape == dw.shape == v.shape or not w.dtype == dw.dtype == v.dtype:
        raise ValueError(f"sgd: w {w.shape} {w.dtype}, dw {dw.shape} {dw.dtype} and v {v.shape} {v.dtype} "
                         f"must share shape and dtype")
    if w.dtype not in (np.float32, np.float64):
        raise ValueError(f"sgd: arrays must be float32 or float64, got {w.dtype}")
    for name, a in (("w", w), ("v", v)):
        if not (a.flags.c_contiguous and a.flags.writeable):
            raise ValueError(f"sgd: {name} {a.shape} must be C-contiguous and writeable (it is updated in place)")


def check_average_args(avg, w, decay):
    """Raise ValueError unless avg and w share shape and float dtype, avg is writeable and contiguous,
    and 0 <= decay <= 1 (NumPy or CuPy arrays: every tier's check)."""
    if not avg.shape == w.shape or not avg.dtype == w.dtype:
        raise ValueError(f"weight average: avg {avg.shape} {avg.dtype} and w {w.shape} {w.dtype} must share "
                         f"shape and dtype")
    if avg.dtype not in (np.float32, np.float64):
        raise ValueError(f"weight average: arrays must be float32 or float64, got {avg.dtype}")
    if not (avg.flags.c_contiguous and getattr(avg.flags, "writeable", True)):  # cupy: always writeable
        raise ValueError(f"weight average: avg {avg.shape} must be C-contiguous and writeable (it is updated in "
                         f"place)")
    if not 0.0 <= float(decay) <= 1.0:
        raise ValueError(f"weight average: decay must be in [0, 1], got {decay!r}")


# -- a backward's need= and caller-given output arrays (out=, out_y=, ...) ---------------------
def backward_request(op, need, out):
    """A backward's need= and out= as (need_dx, need_dw, out_dx, out_dw, out_db); ValueError otherwise.
    conv2d_backward (every algorithm) and linear_backward take them alike.

    need: the gradients to compute, a tuple of "dx" and/or "dw" ("dw" brings db with it);
    out: None, or a triple (dx, dw, db) like the result, each an array that receives that gradient or None.
    """
    if isinstance(need, str) or not set(need) <= {"dx", "dw"}:
        raise ValueError(f"{op}: need must be a tuple of 'dx' and/or 'dw', got {need!r}")
    out = (None, None, None) if out is None else tuple(out)
    if len(out) != 3:
        raise ValueError(f"{op}: out must be None or a triple (dx, dw, db) of arrays or None, got {len(out)} items")
    return ("dx" in need, "dw" in need) + out


def check_out(op, name, out, shape, dtype):
    """Raise ValueError unless `out` (a caller-given output of op) is a C-contiguous array of
    `shape` and `dtype`; return it (None stays None)."""
    if out is None:
        return None
    shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
    if tuple(out.shape) != shape or out.dtype != dtype or not out.flags.c_contiguous:
        how = "" if out.flags.c_contiguous else " not C-contiguous"
        raise ValueError(f"{op}: {name} {tuple(out.shape)} {out.dtype}{how} must be a C-contiguous "
                         f"{shape} {dtype} array")
    return out


def out_or_empty(op, name, out, shape, dtype, empty=np.empty):
    """The checked caller-given `out`, or a new empty(shape, dtype) when it is None."""
    return empty(shape, dtype) if out is None else check_out(op, name, out, shape, dtype)


def into(op, name, out, a):
    """a written into the checked caller-given `out` and out returned; a itself when out is None
    (the reference and CUDA tiers honour out= this way)."""
    if out is None:
        return a
    check_out(op, name, out, a.shape, a.dtype)
    out[...] = a
    return out


def into_grads(op, grads, outs):
    """A backward's (dx, dw, db), each one computed written into its caller-given array of
    outs = (out_dx, out_dw, out_db) (backward_request's) when there is one, as `into` does."""
    return tuple(g if g is None else into(op, name, out, g)
                 for g, name, out in zip(grads, ("out_dx", "out_dw", "out_db"), outs, strict=True))
