"""Local response normalisation across channels, the CUDA tier (Caffe/PyTorch convention).

Shapes: N batch, C channels, H, W height and width; x, y, scale, dy, dx are all (N, C, H, W).

Forward (Krizhevsky et al. 2012, section 3.3, as Caffe's LRNLayer computes it), per pixel (n, h, w):
    window(c) = [c - size//2, c + (size-1)//2] clipped to [0, C)
    scale_c   = k + alpha/size * sum_{c' in window(c)} x_c'^2
    y_c       = x_c * scale_c^-beta
Backward (derivation in kernels/reference/lrn.py):
    dx_c = dy_c * scale_c^-beta
           - (2*alpha*beta/size) * x_c * sum_{c' : c in window(c')} dy_c' * y_c' / scale_c'
where the c' whose window holds c are [c - (size-1)//2, c + size//2] clipped to [0, C).

One thread per output element, each way, in one pass. Forward: thread (n, c, h, w) sums its own
window of `size` squares, rather than one thread per pixel sliding a running window down the
channels (Caffe's LRNFillScale): size is 5 in every model here, the extra reads hit the cache
(threads of neighbouring w read neighbouring addresses), and C times more threads keep the GPU
busy. Backward: thread (n, c, h, w) sums dy*y/scale over the mirrored window the same way.
"""
from numba import cuda

from kernels.cuda._launch import check_float, clamp, device_arrays, launch, scalar
from kernels.cuda.relu import relu_backward
from kernels.shapes import check_lrn_args, check_lrn_backward_args, out_or_empty

# kernels


@cuda.jit(cache=True)
def _lrn_forward_kernel(x, size, alpha_over_size, beta, k, y, scale):
    """x, y, scale (N, C, H, W); thread i, element i in row-major order."""
    i = cuda.grid(1)
    if i < x.size:
        N, C, H, W = x.shape
        w, h, c, n = i % W, (i // W) % H, (i // (W * H)) % C, i // (W * H * C)
        s = k  # k arrives in x's dtype, so a float32 sum stays float32
        for c2 in range(clamp(c - size // 2, 0, C), clamp(c + (size - 1) // 2 + 1, 0, C)):  # window(c)
            s += alpha_over_size * x[n, c2, h, w] * x[n, c2, h, w]
        scale[n, c, h, w] = s
        y[n, c, h, w] = x[n, c, h, w] * s ** -beta


@cuda.jit(cache=True)
def _lrn_backward_kernel(dy, x, y, scale, size, two_alpha_beta_over_size, beta, dx):
    """dy, x, y, scale, dx (N, C, H, W); thread i, element i in row-major order."""
    i = cuda.grid(1)
    if i < x.size:
        N, C, H, W = x.shape
        w, h, c, n = i % W, (i // W) % H, (i // (W * H)) % C, i // (W * H * C)
        t = 0.0  # sum of dy*y/scale over the c2 whose window holds c (at most size terms, added in float64)
        for c2 in range(clamp(c - (size - 1) // 2, 0, C), clamp(c + size // 2 + 1, 0, C)):  # c in window(c2)
            t += dy[n, c2, h, w] * y[n, c2, h, w] / scale[n, c2, h, w]
        dx[n, c, h, w] = (dy[n, c, h, w] * scale[n, c, h, w] ** -beta
                          - two_alpha_beta_over_size * x[n, c, h, w] * t)

# launchers


def lrn_forward(x, *, size, alpha, beta, k, out_y=None, out_scale=None):
    """y = x * (k + alpha/size * sum of x^2 over the channel window)^-beta.

    x: float32/float64 (N, C, H, W)
    Returns (y, scale): both (N, C, H, W), dtype of x; scale is kept for the backward
    (out_y, out_scale, when given, receive them).
    """
    xp = device_arrays("lrn_forward", x=x)
    check_lrn_args(x, size, alpha, beta, k)
    x = xp.ascontiguousarray(x)
    y = out_or_empty("lrn_forward", "out_y", out_y, x.shape, x.dtype, xp.empty)  # (N, C, H, W)
    scale = out_or_empty("lrn_forward", "out_scale", out_scale, x.shape, x.dtype, xp.empty)  # (N, C, H, W)
    dt = x.dtype
    launch(_lrn_forward_kernel, x.size, x, int(size), scalar(dt, alpha / size), scalar(dt, beta),
           scalar(dt, k), y, scale)
    return y, scale


def lrn_backward(dy, x, y, scale, *, size, alpha, beta, out=None, relu=False):
    """dx from dy, given the forward's x, y and scale (k enters only through scale, so it is not taken).

    dy, x, y, scale: float32/float64 (N, C, H, W); relu: True also runs the backward of the ReLU whose output x
    is (relu_backward's kernel on dx in place, a second launch)
    Returns dx: (N, C, H, W), dtype of dy (out, when given, receives it).
    """
    xp = device_arrays("lrn_backward", dy=dy, x=x, y=y, scale=scale)
    check_lrn_backward_args(dy, x, y, scale, size, alpha, beta)
    check_float("lrn_backward", dy=dy, x=x, y=y, scale=scale)
    dy, x, y, scale = (xp.ascontiguousarray(a) for a in (dy, x, y, scale))
    dx = out_or_empty("lrn_backward", "out", out, dy.shape, dy.dtype, xp.empty)  # (N, C, H, W)
    dt = dy.dtype
    launch(_lrn_backward_kernel, x.size, dy, x, y, scale, int(size),
           scalar(dt, 2 * alpha * beta / size), scalar(dt, beta), dx)
    return relu_backward(dx, x, out=dx) if relu else dx
