"""Same seed, same model, whatever the thread count: pinning OpenBLAS to one thread while training.

What depends on the thread count on the CPU backend (measured: tests/test_determinism.py, and
the probe in the README's training section): not the Numba kernels (every parallel loop writes
its own elements, none reduces across threads), but NumPy's BLAS. OpenBLAS picks a different
sgemm code path for one thread than for several (e.g. its "direct" small-matrix kernel is used
only single-threaded, and the K-blocking follows the thread split), so the same product
dw = dy @ cols^T can differ in the last bits with OPENBLAS_NUM_THREADS=1 and 2. SGD amplifies
last-bit differences until the runs part (the issue's runs parted at epoch 6).

Splitting the products ourselves does not help while each piece still goes through a threaded
sgemm. So training pins the BLAS library to one thread for the duration of the loop (the Numba
kernels keep every core) and restores the setting afterwards. The library is found among the
loaded shared objects and called through ctypes, the way threadpoolctl does it, without the
dependency. Where no OpenBLAS is found (another BLAS) the context says so in the log and
changes nothing.
"""
import contextlib
import ctypes

# (set, get) symbol pairs: NumPy's wheels ship scipy-openblas with prefixed 64-bit-int symbols
SYMBOLS = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
           ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
           ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
           ("openblas_set_num_threads", "openblas_get_num_threads"))


def _loaded_libraries():
    """Paths of the shared objects mapped into this process whose name mentions BLAS (Linux)."""
    import numpy  # noqa: F401  (loads NumPy's BLAS)
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "/" in line}
    except OSError:
        return []
    return sorted(p for p in paths if "blas" in p.lower() and ".so" in p)


def openblas_controls():
    """[(set_num_threads, get_num_threads)] ctypes functions of every loaded OpenBLAS."""
    out = []
    for path in _loaded_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in SYMBOLS:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                setf, getf = getattr(lib, set_name), getattr(lib, get_name)
                setf.argtypes, setf.restype, getf.restype = [ctypes.c_int], None, ctypes.c_int
                out.append((setf, getf))
                break
    return out


@contextlib.contextmanager
def blas_pinned(enabled=True, threads=1, log=None):
    """Within the block, every loaded OpenBLAS runs `threads` threads; restored on exit."""
    controls = openblas_controls() if enabled else []
    if enabled and not controls and log is not None:
        log("note: no OpenBLAS found to pin to one thread; CPU training may differ with the thread count")
    before = [getf() for _, getf in controls]
    for setf, _ in controls:
        setf(int(threads))
    try:
        yield len(controls)
    finally:
        for (setf, _), n in zip(controls, before):
            setf(int(n))
