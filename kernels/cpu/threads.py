"""Running independent jobs on every core, each with a one-thread BLAS: the CPU tier's thread pool.

Why (measured, bench/RESULTS.md "Winograd on every core, one BLAS thread each"): a kernel that
alternates Numba `prange` loops (OpenMP threads) with NumPy matmuls (OpenBLAS's own threads)
hands the cores from one thread pool to the other at every switch; each pool spins a while after
its part, so on a 2-core machine the other pool's second thread waits, and blocks of work that
should take a millisecond take ten. Here instead each of `threads` Python threads takes whole
jobs (a block of tiles: transform in, 36 GEMMs, transform out) from a shared queue and runs
them to the end: the Numba functions it calls are serial and release the GIL (`nogil=True`), and
OpenBLAS is held at one thread for the duration (`one_thread_blas`), so each job runs on one
core with its buffers in that core's cache, and no job waits for another.

Results do not depend on which thread runs a job or on the thread count: every job writes its own
outputs, and a one-thread GEMM's result does not depend on the caller.

OpenBLAS is found among the loaded shared objects and called through ctypes, the way threadpoolctl
does it, without the dependency (rawcnn/engine/determinism.py pins it the same way for training).
"""
import contextlib
import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy  # noqa: F401  (loads NumPy's BLAS before the library maps are read)

from kernels.cpu.denormals import apply_in_this_thread

# (set, get) symbol pairs: NumPy's wheels ship scipy-openblas with prefixed 64-bit-int symbols
SYMBOLS = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
           ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
           ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
           ("openblas_set_num_threads", "openblas_get_num_threads"))

_CONTROLS = []  # [controls], found once
_POOL = {}  # {"pid", "threads", "pool"}: one executor per process


def _loaded_libraries():
    """Paths of the shared objects mapped into this process whose name mentions BLAS (Linux)."""
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


def cached_openblas_controls():
    """openblas_controls(), looked up on the first call only (reading /proc/self/maps costs ~1 ms)."""
    if not _CONTROLS:
        _CONTROLS.append(openblas_controls())
    return _CONTROLS[0]


@contextlib.contextmanager
def blas_threads(threads, controls):
    """Within the block every OpenBLAS in `controls` runs `threads` threads; restored on exit."""
    before = [getf() for _, getf in controls]
    for setf, _ in controls:
        setf(int(threads))
    try:
        yield len(controls)
    finally:
        for (setf, _), n in zip(controls, before, strict=True):  # before: one count per control
            if n != threads:
                setf(int(n))


def one_thread_blas():
    """Within the block every loaded OpenBLAS runs one thread (restored on exit); no-op without one."""
    return blas_threads(1, cached_openblas_controls())


def _executor(threads):
    """The process's pool of `threads` workers (a new one after a fork or a thread-count change)."""
    if _POOL.get("pid") != os.getpid() or _POOL.get("threads") != threads:
        old = _POOL.get("pool") if _POOL.get("pid") == os.getpid() else None
        if old is not None:
            old.shutdown(wait=True)
        _POOL.update(pid=os.getpid(), threads=threads,
                     pool=ThreadPoolExecutor(threads, thread_name_prefix="rawcnn-cpu"))
    return _POOL["pool"]


def workers(n_jobs, threads=None):
    """The threads run_jobs uses for n_jobs jobs: min(threads, n_jobs), at least 1 (workers 0 .. that - 1)."""
    return max(1, min(int(threads or numba.get_num_threads()), n_jobs))


def run_jobs(fn, jobs, threads=None):
    """Call fn(worker, job) for every job, on min(threads, len(jobs)) threads, one BLAS thread each.

    worker: 0 .. threads-1, the index of the thread running the job (for its private buffers);
    threads: Numba's thread count by default (what NUMBA_NUM_THREADS / numba.set_num_threads say).
    Jobs are taken from a shared queue in order, so a thread that is descheduled holds up no other.
    The first exception a job raises is raised here, after every thread has stopped; a Ctrl-C
    while waiting stops the workers after their current job, and is raised once they have.
    """
    jobs = list(jobs)
    threads = workers(len(jobs), threads)
    with one_thread_blas():
        if threads == 1:
            for job in jobs:
                fn(0, job)
            return
        lock, queue = threading.Lock(), iter(jobs)
        failed = []

        def worker(index):
            apply_in_this_thread()  # flush subnormals or not, as flush_denormals last chose (kernels/cpu/denormals.py)
            while not failed:
                with lock:
                    job = next(queue, None)
                if job is None:
                    return
                try:
                    fn(index, job)
                except BaseException as exc:  # stop the others; re-raised below
                    failed.append(exc)
                    raise

        futures = [_executor(threads).submit(worker, i) for i in range(threads)]
        try:
            for f in futures:
                f.exception()  # wait for all before raising
        except BaseException as exc:  # Ctrl-C while waiting: the workers stop after their current job
            failed.append(exc)
            for f in futures:
                f.exception()  # no job still writes into the caller's arrays once this returns
            raise
        if failed:
            raise failed[0]
