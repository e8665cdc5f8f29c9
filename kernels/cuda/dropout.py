"""Inverted dropout, the CUDA tier: one thread per element.

Shapes: any; x, y, dy, dx and mask all have one shape. Kernels see flat views.

Training (kernels/reference/dropout.py): each element is kept with probability 1 - p and scaled
by 1/(1 - p), so nothing needs rescaling at test time.
    u ~ Uniform[0, 1) per element; mask = 1/(1 - p) where u >= p, else 0
    y = x * mask
Backward: y is linear in x with the mask as a fixed diagonal, so dx = dy * mask.

Random numbers on the device. dropout_mask draws one 64-bit seed from the caller's numpy
Generator; element i then takes the (i+1)-th output of a SplitMix64 generator started at that
seed (Steele, Lea, Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014):
    z_i = seed + (i + 1) * 0x9E3779B97F4A7C15      (mod 2**64)
    u_i = top 53 bits of mix(z_i) / 2**53           (mix: two xor-shift-multiply rounds)
The i-th output is a closed formula of (seed, i), so every thread computes its own with no
state to carry: the same seed gives the same mask whatever the launch shape, on a GPU and in the
simulator alike. (It is not the stream numpy's rng.random would give, so the masks differ from
the reference and CPU tiers; each tier is reproducible on its own.)
"""
import numba
import numpy as np
from numba import cuda

from kernels.cuda._launch import array_module, check_float, device_arrays, launch, uint64_wraparound
from kernels.shapes import check_dropout_args, check_dropout_mask_args, out_or_empty

# kernels


@cuda.jit(device=True, cache=True)
def splitmix64(seed, i):
    """The (i+1)-th output of SplitMix64 seeded with `seed`: uint64 arithmetic, wrapping mod 2**64."""
    z = seed + numba.uint64(i + 1) * numba.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> numba.uint64(30))) * numba.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> numba.uint64(27))) * numba.uint64(0x94D049BB133111EB)
    return z ^ (z >> numba.uint64(31))


@cuda.jit(cache=True)
def _dropout_mask_kernel(seed, p, keep_scale, mask):
    """mask flat (size,); element i kept (keep_scale) where u_i >= p, else 0."""
    i = cuda.grid(1)
    if i < mask.size:
        u = numba.float64(splitmix64(seed, i) >> numba.uint64(11)) * (1.0 / 9007199254740992.0)  # / 2**53
        mask[i] = keep_scale if u >= p else 0


@cuda.jit(cache=True)
def _multiply_kernel(a, mask, out):
    """a, mask, out flat (size,): out = a * mask (forward: x, y; backward: dy, dx)."""
    i = cuda.grid(1)
    if i < a.size:
        out[i] = a[i] * mask[i]

# launchers


def dropout_mask(shape, *, p, rng, dtype, out=None, work=None):
    """Draw a mask of 0 and 1/(1-p) values on the device; the same rng state gives the same mask.

    shape: tuple; p: drop probability in [0, 1); rng: numpy.random.Generator (one seed is drawn);
    dtype: float32 or float64
    work: accepted for the shared signature (the cpu tier's uniform draws); unused, one seed is drawn.
    Returns mask: `shape`, `dtype`, a cupy array on a GPU (numpy under the simulator); out, when
    given, receives it.
    """
    check_dropout_mask_args(p, rng, dtype)
    xp = array_module()
    seed = rng.integers(0, 2**64, dtype=np.uint64)  # one draw: the whole mask follows from it
    mask = out_or_empty("dropout_mask", "out", out, shape, dtype, xp.empty)  # (shape)
    with uint64_wraparound():
        launch(_dropout_mask_kernel, mask.size, seed, np.float64(p), mask.dtype.type(1 / (1 - p)),
               mask.reshape(-1))
    return mask


def _apply(op, a, mask, name, out=None):
    """a * mask through the kernel, after the reference's checks."""
    xp = device_arrays(op, **{name: a, "mask": mask})
    check_dropout_args(a, mask, name)
    check_float(op, **{name: a})
    a, mask = xp.ascontiguousarray(a), xp.ascontiguousarray(mask)
    out = out_or_empty(op, "out", out, a.shape, a.dtype, xp.empty)  # shape of a
    launch(_multiply_kernel, a.size, a.reshape(-1), mask.reshape(-1), out.reshape(-1))
    return out


def dropout_forward(x, mask, out=None):
    """y = x * mask.

    x: float32/float64, any shape; mask: same shape and dtype
    Returns y: shape and dtype of x (out, when given, receives it).
    """
    return _apply("dropout_forward", x, mask, "x", out)


def dropout_backward(dy, mask, out=None):
    """dx = dy * mask.

    dy: float32/float64, any shape; mask: same shape and dtype
    Returns dx: shape and dtype of dy (out, when given, receives it).
    """
    return _apply("dropout_backward", dy, mask, "dy", out)
