"""The CPU tier. Importing it starts Numba's worker threads with OpenMP told not to spin.

Why: the CPU kernels alternate Numba `prange` loops (ReLU, LRN, pooling, dropout, the SGD update:
OpenMP threads, libgomp under Numba's `omp` layer) with the job pool of kernels/cpu/threads.py
(convolutions and GEMMs on Python threads, one BLAS thread each). libgomp's default lets a worker
spin for a while after each parallel loop, waiting for the next one, so on a 2-core machine the
convolution that follows an element-wise kernel has one of its two threads competing with a
spinning OpenMP worker. With OMP_WAIT_POLICY=PASSIVE the workers sleep at once. Measured on the
2-core VM (bench/RESULTS.md, "Speed round 2"): the AlexNet training step 6-12 % faster, the custom
one 2-3 %.

How: libgomp reads its environment once, when it is loaded, and Numba loads it when its threads
first start. So the variable is set just for that moment and removed again (other OpenMP
libraries loaded later, e.g. PyTorch's own libgomp, keep their defaults). A user who sets
OMP_WAIT_POLICY or GOMP_SPINCOUNT keeps that setting; a process whose Numba threads were started
before this import keeps the default (nothing can change it then). Results do not depend on it.

It also applies RAWCNN_FLUSH_DENORMALS when the variable is set (kernels/cpu/denormals.py: the command
line sets it; "1" flushes subnormal floats to zero in every thread of the tier, "0" keeps them).
"""
import os

import numba


def _start_threads_without_spinning():
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        numba.get_num_threads()
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        numba.get_num_threads()  # starts the threading layer now (libgomp reads the variable once)
    finally:
        del os.environ["OMP_WAIT_POLICY"]


_start_threads_without_spinning()

from kernels.cpu.denormals import apply_environment  # noqa: E402  (after the threads start: it runs a parallel loop)

apply_environment()
