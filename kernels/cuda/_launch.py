"""What every CUDA-tier launcher shares: the array module, the grid size, the input checks.

The same launchers run in two places:
    a real GPU       CuPy arrays; Numba launches its kernels on them through
                     __cuda_array_interface__ (no copies), matrix products go to cuBLAS via CuPy;
    the simulator    NumPy arrays; Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1) runs every
                     thread as Python, so the kernels are tested on machines without a GPU.
Which one is fixed per process (Numba reads NUMBA_ENABLE_CUDASIM once): `device_arrays` checks
that the inputs live there and returns the array module, and a launcher allocates with it, so it
never names numpy or cupy itself.

Kernels are 1-D: thread i of the grid handles item i (an output element, a row, ...), and each
kernel starts with the bounds guard `if i < n`, since the last block overhangs.
"""
import contextlib
import warnings

import numpy as np
from numba import config, cuda

THREADS = 128  # threads per block: a multiple of the 32-thread warp


def simulated():
    """True when this process runs Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)."""
    return bool(config.ENABLE_CUDASIM)


def array_module():
    """The array module of this process's CUDA tier: numpy under the simulator, else cupy."""
    if simulated():
        return np
    import cupy  # optional: the cuda extra
    return cupy


def device_arrays(op, **arrays):
    """Check that every array lives where this process's kernels run; return its array module.

    Under the simulator that is numpy; on a GPU, cupy. A NumPy array handed to a real kernel would
    be copied to the GPU and back on every launch without a word, so it is refused instead.
    """
    want = array_module()
    for name, a in arrays.items():
        if not isinstance(a, want.ndarray):
            raise TypeError(f"{op}: {name} is a {type(a).__module__}.{type(a).__name__}; the CUDA tier "
                            f"needs {want.__name__} arrays here (move it with Backend.asarray)")
    return want


def check_float(op, **arrays):
    """Raise ValueError unless every array is float32 or float64, all of one dtype."""
    dtypes = {np.dtype(a.dtype) for a in arrays.values()}
    if len(dtypes) != 1 or not dtypes <= {np.dtype(np.float32), np.dtype(np.float64)}:
        got = ", ".join(f"{name} {a.shape} {a.dtype}" for name, a in arrays.items())
        raise ValueError(f"{op}: arrays must be float32 or float64, all of one dtype; got {got}")


def scalar(dtype, v):
    """v as a scalar of `dtype`, so that a float32 kernel does its arithmetic in float32."""
    return np.dtype(dtype).type(v)


def launch(kernel, n, *args):
    """Run `kernel` on a 1-D grid of at least n threads; nothing when n == 0.

    A block is THREADS threads, or fewer (rounded up to a warp) when n is small: on a GPU this
    changes nothing, and under the simulator every idle thread costs Python time.
    """
    if n == 0:
        return
    threads = min(THREADS, 32 * -(-n // 32))
    blocks = -(-n // threads)
    kernel[blocks, threads](*(_device_view(a) for a in args))


def _device_view(a):
    """A CuPy array as a Numba device array, without the host-side wait Numba adds by default.

    Numba otherwise synchronises the stream a CuPy array names, argument by argument, at every
    launch. The kernel runs on CUDA's default stream, which is CuPy's default too (and waits for
    CuPy's other blocking streams), so the work is ordered without the host waiting on the GPU.
    NumPy arrays and scalars (the simulator's arguments) pass through unchanged.
    """
    if hasattr(a, "__cuda_array_interface__"):
        return cuda.as_cuda_array(a, sync=False)
    return a


@contextlib.contextmanager
def uint64_wraparound():
    """Silence NumPy's overflow warning for uint64 arithmetic that wraps on purpose (a hash).

    On a GPU uint64 multiplication wraps modulo 2**64 silently; the simulator runs the same
    arithmetic on NumPy scalars, which wrap identically but warn. Only the simulator needs this.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)
        yield


@cuda.jit(device=True, cache=True)
def clamp(v, lo, hi):
    """v limited to [lo, hi], for ints inside kernels (the builtin min/max do not compile for CUDA
    in numba 0.68: they resolve to the one-argument iterable form)."""
    if v < lo:
        return lo
    if v > hi:
        return hi
    return v
