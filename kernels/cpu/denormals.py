"""Subnormal floats flushed to zero (FTZ and DAZ in the x86 MXCSR register): the CPU tier's setting.

Why (measured, bench/RESULTS.md "Speed round 5"): on Intel cores an arithmetic instruction that
reads or produces a subnormal float (|v| < 1.18e-38 in float32) takes a microcode assist of about a
hundred cycles. A training step whose loss saturates the softmax gets gradients near 1e-40; then
every product of the backward is subnormal: a VGG16 training step at batch 8 took 16-18 s instead of
2.3 s on the 2-core Intel VM (AMD cores have no such penalty). With FTZ (a result below the normal
range becomes 0) and DAZ (a subnormal input reads as 0) the same step takes its usual time.

What changes: only values below 1.18e-38 (float32) or 2.2e-308 (float64) become 0; every other
result is the same bits. A gradient that small moves no float32 weight (lr * 1e-38 is lost against
any weight above 1e-30), so training does not change in effect. TensorFlow runs its CPU kernels this
way; PyTorch has it as an option (torch.set_flush_denormal).

MXCSR is per thread. flush_denormals(on) sets it in the calling thread and in every thread of
Numba's pool (a parallel loop with a step per thread), records the choice, and run_jobs'
workers (kernels/cpu/threads.py) apply the recorded choice when they start a call. Threads created
later inherit the creating thread's register (POSIX: pthread_create inherits the floating-point
environment). OpenBLAS's own thread pool is not reached; the CPU tier calls OpenBLAS with one thread,
from its own threads. On a CPU that is not x86-64 this module does nothing (`supported()` is False).

Who turns it on: rawcnn's command line for every command (`rawcnn --keep-denormals CMD` leaves it off;
the choice travels in the environment variable RAWCNN_FLUSH_DENORMALS, "1" or "0", which
kernels/cpu/__init__.py applies when the CPU tier is imported), and rawcnn.training.train() when nothing
has chosen yet (flush_by_default). Kernels called from Python otherwise run as the process is set.
"""
import os
import platform

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

ENV = "RAWCNN_FLUSH_DENORMALS"
FTZ, DAZ = 1 << 15, 1 << 6  # MXCSR bits: flush results to zero, read subnormal inputs as zero
_STATE = {"flush": None}  # None: never set by this module (the process's own setting is kept)


def supported():
    """True on x86-64, where MXCSR exists."""
    return platform.machine().lower() in ("x86_64", "amd64")


def _mxcsr_call(builder, name, slot):
    fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    builder.call(fn, [builder.bitcast(slot, ir.IntType(8).as_pointer())])


@intrinsic
def _stmxcsr(typingctx):
    """The calling thread's MXCSR (x86 stmxcsr)."""
    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        _mxcsr_call(builder, "llvm.x86.sse.stmxcsr", slot)
        return builder.load(slot)
    return types.uint32(), codegen


@intrinsic
def _ldmxcsr(typingctx, value):
    """Load `value` into the calling thread's MXCSR (x86 ldmxcsr)."""
    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        builder.store(args[0], slot)
        _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()
    return types.void(value), codegen


@njit(nogil=True, cache=True)
def _set_bits(flush):
    """Set (flush True) or clear FTZ and DAZ in this thread's MXCSR; return the register after."""
    v = _stmxcsr()
    v = (v | np.uint32(FTZ | DAZ)) if flush else (v & ~np.uint32(FTZ | DAZ))
    _ldmxcsr(np.uint32(v))
    return _stmxcsr()


@njit(parallel=True, cache=True)
def _set_bits_everywhere(flush, steps, out):
    """_set_bits in `steps` iterations of a parallel loop (a step per thread of Numba's pool and more:
    every thread runs at least one); out[i] = (the thread that ran step i, its MXCSR after)."""
    for i in prange(steps):
        out[i, 1] = _set_bits(flush)
        out[i, 0] = numba.get_thread_id()


def apply_in_this_thread():
    """Apply the recorded choice to the calling thread (run_jobs' workers call this); no-op when none."""
    flush = _STATE["flush"]
    if flush is not None and supported():
        _set_bits(flush)


def flush_denormals(on=True):
    """Flush subnormals to zero (on) or keep them (off) in this thread, in Numba's pool and in the CPU
    tier's job threads from their next call. Returns the previous choice (None: never set here)."""
    prev = _STATE["flush"]
    _STATE["flush"] = bool(on)
    if supported():
        _set_bits(bool(on))
        threads = numba.get_num_threads()
        out = np.zeros((4 * threads, 2), np.int64)
        _set_bits_everywhere(bool(on), 4 * threads, out)
    return prev


def flushing():
    """True when this thread flushes subnormals to zero (FTZ and DAZ both set); False off x86-64."""
    return supported() and (int(_stmxcsr_now()) & (FTZ | DAZ)) == (FTZ | DAZ)


@njit(nogil=True, cache=True)
def _stmxcsr_now():
    return _stmxcsr()


def apply_environment():
    """Apply RAWCNN_FLUSH_DENORMALS when it is set: "1" flushes, "0" keeps subnormals (and records that
    choice, so that train() does not override it); anything else is a ValueError naming the variable."""
    value = os.environ.get(ENV)
    if value is None:
        return
    if value not in ("0", "1"):
        raise ValueError(f"{ENV} must be 0 (keep subnormal floats) or 1 (flush them to zero), got {value!r}")
    flush_denormals(value == "1")


def flush_by_default():
    """Flush subnormals to zero unless a choice was made already (flush_denormals, the environment)."""
    if _STATE["flush"] is None:
        flush_denormals(True)
