"""The hand-written kernels, one module per operation, in three tiers.

`get_backend(name)` is the one place that picks a tier; layers never branch on it.

    reference  plain NumPy loops, the definition (slow; tests and teaching)
    cpu        NumPy + Numba @njit kernels, NumPy BLAS for matrix products
    cuda       Numba @cuda.jit kernels over CuPy arrays, cuBLAS through CuPy
    cudasim    the same CUDA kernels over NumPy arrays, run by Numba's CUDA simulator
    auto       cuda when a GPU answers, else cpu

See kernels/README.md for the function names every tier provides.
"""
import importlib
import os
import sys

import numpy as np

OPS = ("conv2d", "relu", "lrn", "maxpool2d", "global_avg_pool", "linear", "dropout", "softmax",
       "softmax_cross_entropy", "sgd", "winograd")
BACKENDS = ("reference", "cpu", "cuda", "cudasim")


class BackendUnavailable(RuntimeError):
    """A backend was asked for that this machine or process cannot run."""


class Backend:
    """One tier of kernels plus its array module.

    Attributes: `name`, `xp` (numpy or cupy), `device` (a human-readable device name), and one
    attribute per op module (`be.conv2d.conv2d_forward`, `be.lrn.lrn_backward`, ...).
    """

    def __init__(self, name, tier, xp, device):
        self.name, self.tier, self.xp, self.device = name, tier, xp, device

    def __getattr__(self, op):
        # op modules load on first use, so building a net compiles nothing it will not run
        if op not in OPS:
            raise AttributeError(f"backend {self.name!r} has no op {op!r}")
        mod = importlib.import_module(f"kernels.{self.tier}.{op}")
        setattr(self, op, mod)
        return mod

    def asarray(self, a, dtype=None):
        """Move `a` onto this backend (a copy only when needed)."""
        if self.xp is np:
            return np.ascontiguousarray(to_numpy(a), dtype=dtype)
        return self.xp.ascontiguousarray(self.xp.asarray(a, dtype=dtype))

    def owns(self, a):
        """True when array `a` lives where this backend computes."""
        return isinstance(a, self.xp.ndarray)

    def __repr__(self):
        return f"Backend({self.name!r} on {self.device})"


def to_numpy(a):
    """Any backend's array -> numpy.ndarray (copies from the GPU)."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "get"):  # cupy.ndarray
        return a.get()
    return np.asarray(a)


_CACHE = {}


def cuda_unavailable_reason():
    """None when a real CUDA GPU is usable from this process, else one line saying why not."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return "this process runs Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
    try:
        import cupy  # optional: the cuda extra
    except Exception as e:  # ImportError, or a CUDA library that fails to load
        return f"CuPy is not importable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        return f"no CUDA driver or device answers ({type(e).__name__}: {str(e).splitlines()[0]})"
    if n < 1:
        return "the CUDA driver reports no device"
    try:
        from numba import cuda  # optional: numba-cuda, the cuda extra
        if not cuda.is_available():
            return "numba-cuda cannot use the GPU (cuda.is_available() is False)"
    except Exception as e:
        return f"numba-cuda is not importable ({type(e).__name__}: {e})"
    return None


def cudasim_unavailable_reason():
    """None when the CUDA simulator can run in this process, else one line saying why not."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return None
    if "numba" in sys.modules:
        return ("Numba was already imported without NUMBA_ENABLE_CUDASIM=1; the simulator is chosen "
                "per process: start it with NUMBA_ENABLE_CUDASIM=1")
    return None


def get_backend(name="cpu"):
    """Return the Backend called `name` (reference, cpu, cuda, cudasim or auto)."""
    if name == "auto":
        name = "cuda" if cuda_unavailable_reason() is None else "cpu"
    if name in _CACHE:
        return _CACHE[name]
    if name == "reference":
        be = Backend("reference", "reference", np, "CPU (NumPy reference loops)")
    elif name == "cpu":
        be = Backend("cpu", "cpu", np, "CPU (Numba)")
    elif name == "cudasim":
        why = cudasim_unavailable_reason()
        if why:
            raise BackendUnavailable(f"backend 'cudasim' is unavailable: {why}")
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
        be = Backend("cudasim", "cuda", np, "Numba CUDA simulator (NumPy arrays)")
    elif name == "cuda":
        why = cuda_unavailable_reason()
        if why:
            raise BackendUnavailable(f"backend 'cuda' is unavailable: {why}")
        import cupy  # optional: the cuda extra
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        dev = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        be = Backend("cuda", "cuda", cupy, dev)
    else:
        raise ValueError(f"unknown backend {name!r}; choose one of auto, {', '.join(BACKENDS)}")
    _CACHE[name] = be
    return be
