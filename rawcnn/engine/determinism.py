"""Same seed, same model, whatever the thread count: pinning OpenBLAS to one thread while training.

What depends on the thread count on the CPU backend (measured: tests/test_determinism.py, and
the probe in the README's training section): not the Numba kernels (every parallel loop writes
its own elements, none reduces across threads), but NumPy's BLAS. OpenBLAS picks a different
sgemm code path for one thread than for several (e.g. its "direct" small-matrix kernel is used
only single-threaded, and the K-blocking follows the thread split), so the same product
dw = dy @ cols^T can differ in the last bits with OPENBLAS_NUM_THREADS=1 and 2. SGD amplifies
last-bit differences until the runs part (the issue's runs parted at epoch 6).

Splitting the products ourselves does not help while each piece still goes through a threaded
sgemm. (The cpu tier's convolutions and Linear now do split them, but each piece runs
on a one-thread BLAS, cut by shape only: kernels/cpu/threads.py. Their results no longer depend on
the thread count with or without this pin, which still covers any other product in the loop.)
So training pins the BLAS library to one thread for the duration of the loop (the Numba
kernels keep every core) and restores the setting afterwards. The library is found among the
loaded shared objects and called through ctypes, the way threadpoolctl does it, without the
dependency (kernels/cpu/threads.py; the Winograd kernel uses it to give each of its threads a
one-thread BLAS). Where no OpenBLAS is found (another BLAS) the context says so in the log and
changes nothing.
"""
import contextlib

# one implementation of the ctypes lookup, shared with the CPU kernels' thread pool
from kernels.cpu.threads import blas_threads, openblas_controls  # noqa: F401  (re-exported)


@contextlib.contextmanager
def blas_pinned(enabled=True, threads=1, log=None):
    """Within the block, every loaded OpenBLAS runs `threads` threads; restored on exit."""
    controls = openblas_controls() if enabled else []
    if enabled and not controls and log is not None:
        log("note: no OpenBLAS found to pin to one thread; CPU training may differ with the thread count")
    with blas_threads(threads, controls) as n:
        yield n
