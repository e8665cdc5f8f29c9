"""Shared helpers of the benchmarks: threads, timing, peak memory, and what machine this is.

Every benchmark prints one row per (op or model, backend, shape) and a header that says where the
numbers came from: the CPU model (/proc/cpuinfo), the thread counts each library really uses,
numpy / numba / torch versions, numpy's BLAS and the OpenBLAS core type it picked, and the
OPENBLAS_* variables of the environment (OPENBLAS_CORETYPE pins OpenBLAS's kernels; on an AVX-512
machine pinning Haswell halves float32 GEMM speed, so every result says which it ran under).

Timing: `time_it` runs warm-ups (Numba compiles on first call, BLAS wakes its threads), then
`repeats` timed runs, and reports the median and the minimum. Speeds are always the median.
Memory: `peak_rss_mb` is ru_maxrss of this process; `reset_peak_rss` + `hwm_mb` measure the peak
of one stretch of code (Linux: writing 5 to /proc/self/clear_refs resets VmHWM).

This module imports numpy lazily so that `setup_threads` can set the thread variables first.
"""
import ctypes
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


# -- threads --------------------------------------------------------------------------------------
def setup_threads(n):
    """Ask every library for `n` threads; call before numpy/numba/torch are imported when possible.

    Environment variables reach libraries not yet loaded; the runtime setters below reach those
    already loaded (OpenBLAS through ctypes, Numba, torch when imported).
    """
    n = int(n)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(n)
    if "numba" in sys.modules:
        import numba
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    fn = _openblas_fn("set_num_threads", None, (ctypes.c_int,))
    if fn is not None:
        fn(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    return n


LAYER_BATCH = {"custom": 32, "alexnet": 32, "vgg16": 4}  # the targets: custom, AlexNet b32, VGG16 b4


def model_layers(models, kind, batches=LAYER_BATCH, keep=lambda layer: True):
    """(model, name, batch, x shape, layer) of every layer of type `kind` of the built-in `models` for which
    keep(layer) holds, its input at the batch batches[model]."""
    from rawcnn.engine.models import build
    out = []
    for model in models:
        net = build(model, weight_std=0.0)
        shape = net.input_shape
        for l in net.layers:
            if isinstance(l, kind) and keep(l):
                out.append((model, l.name, batches[model], (batches[model],) + tuple(shape), l))
            shape = l.output_shape(shape)
    return out


def conv_layers(models, winograd_only=False):
    """(model, name, batch, x shape, conv layer) of every convolution of the built-in `models`
    (optionally only the stride-1 ones at least 2x2, Winograd's), at the batch of LAYER_BATCH."""
    from rawcnn.engine.layers import Conv2d
    return model_layers(models, Conv2d, keep=lambda l: not winograd_only or (min(l.kernel_size) >= 2
                                                                             and l.stride == (1, 1)))


def layer_bench_parser(doc):
    """The command line the per-layer benchmarks share: --models, --repeats, --threads, --json, --no-torch."""
    import argparse
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--models", default="custom,alexnet,vgg16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="Append one JSON line per row to this file.")
    ap.add_argument("--no-torch", action="store_true")
    return ap


def layer_bench_setup(script, args):
    """The shared start of the per-layer benchmarks (bench_winograd.py, bench_conv_dw.py).

    Re-executes `script` without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE when they are set (they halve
    numpy's GEMM here and a user's machine does not set them), fixes the thread count (args.threads
    or the default) for Numba, OpenBLAS and torch, puts the repository on sys.path and prints the
    machine header. Returns (torch or None, threads).
    """
    if any(v in os.environ for v in BLAS_ENV):
        env = {k: v for k, v in os.environ.items() if k not in BLAS_ENV}
        os.execve(sys.executable, [sys.executable, os.path.abspath(script), *sys.argv[1:]], env)
    threads = setup_threads(args.threads or default_threads())
    torch = None if args.no_torch else try_import_torch()
    if torch is not None:
        torch.set_num_threads(threads)
    sys.path.insert(0, REPO)
    print("\n".join(machine_description(torch, no_torch=args.no_torch)))
    return torch, threads


def default_threads():
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# -- OpenBLAS (numpy's BLAS) through ctypes ---------------------------------------------------------
def _openblas_path():
    """Path of the OpenBLAS shared library numpy loaded, from /proc/self/maps (None elsewhere)."""
    import numpy  # noqa: F401  (loads the BLAS)
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                path = line.split()[-1]
                if "openblas" in os.path.basename(path).lower() and ".so" in path:
                    return path
    except OSError:
        pass
    return None


def _openblas_fn(name, restype, argtypes=()):
    """An OpenBLAS function (`get_corename`, `get_num_threads`, ...) under any of its symbol names."""
    if "numpy" not in sys.modules:
        return None
    path = _openblas_path()
    if path is None:
        return None
    lib = ctypes.CDLL(path)
    for prefix in ("scipy_openblas_", "openblas_"):
        for suffix in ("64_", ""):
            fn = getattr(lib, f"{prefix}{name}{suffix}", None)
            if fn is not None:
                fn.restype, fn.argtypes = restype, list(argtypes)
                return fn
    return None


def blas_description():
    """One line: numpy's BLAS, its version, the core type OpenBLAS runs and its thread count."""
    import numpy as np
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        text = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older numpy: no dicts mode
        text = "unknown BLAS"
    try:
        from threadpoolctl import threadpool_info
        for info in threadpool_info():
            if info.get("user_api") == "blas":
                text += (f" [threadpoolctl: {info.get('internal_api')} {info.get('version')}, "
                         f"{info.get('architecture')}, {info.get('num_threads')} threads]")
    except ImportError:
        pass
    core = _openblas_fn("get_corename", ctypes.c_char_p)
    nthreads = _openblas_fn("get_num_threads", ctypes.c_int)
    if core is not None:
        text += f", core {core().decode()}"
    if nthreads is not None:
        text += f", {nthreads()} threads"
    return text


def blas_env():
    """'OPENBLAS_CORETYPE=Haswell OPENBLAS_L2_SIZE=512' or 'OPENBLAS_* unset'."""
    parts = [f"{k}={os.environ[k]}" for k in BLAS_ENV if k in os.environ]
    return " ".join(parts) if parts else "OPENBLAS_CORETYPE/L2_SIZE unset"


# -- the machine ---------------------------------------------------------------------------------
def cpu_name():
    """The CPU model from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def tree_hash(folder):
    """A short sha1 of the .py files under REPO/folder, to tie results to a state of the code."""
    import hashlib
    h = hashlib.sha1()
    root = os.path.join(REPO, folder)
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                h.update(os.path.relpath(path, root).encode())
                with open(path, "rb") as fh:
                    h.update(fh.read())
    return h.hexdigest()[:10]


def numba_threading_layer():
    """The threading layer Numba's parallel loops use here (runs a tiny parallel loop to find out)."""
    import numba
    import numpy as np

    @numba.njit(parallel=True)
    def touch(a):
        for i in numba.prange(a.size):
            a[i] = i
    touch(np.zeros(4))
    try:
        return numba.threading_layer()
    except ValueError:
        return "unknown"


def try_import_torch():
    """torch, or None when it is not installed (the benchmarks then time rawcnn alone)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def machine_description(torch=None, no_torch=False):
    """Lines for the header of every benchmark run (no_torch: the user turned the peer off)."""
    import numba
    import numpy as np
    lines = [f"device  : {cpu_name()} ({default_threads()} cores usable), {platform.system()} "
             f"{platform.release()}, Python {platform.python_version()}",
             f"versions: numpy {np.__version__}, numba {numba.__version__} (threads "
             f"{numba.get_num_threads()}, layer {numba_threading_layer()}), torch {torch.__version__ if torch else '-'}"
             + (f" (threads {torch.get_num_threads()}, {torch.backends.cpu.get_cpu_capability()})"
                if torch else ""),
             f"BLAS    : {blas_description()}",
             f"code    : kernels/cpu sha1 {tree_hash('kernels/cpu')}, rawcnn sha1 {tree_hash('rawcnn')}",
             f"env     : {blas_env()}; load average before start {os.getloadavg()[0]:.2f}"]
    if torch is None:
        lines.append("peer: torch not used (--no-torch)" if no_torch else "peer: torch not installed")
    return lines


def print_header(title, torch=None, no_torch=False):
    print(f"== {title} ==")
    for line in machine_description(torch, no_torch):
        print(line)
    sys.stdout.flush()


# -- timing --------------------------------------------------------------------------------------
class Timing:
    """Seconds of `repeats` runs: median (the figure reported) and min."""

    def __init__(self, seconds, others=None):
        self.seconds = list(seconds)
        self.others = others
        self.median = statistics.median(self.seconds)
        self.min = min(self.seconds)

    def __repr__(self):
        return f"Timing(median={self.median * 1e3:.2f} ms, min={self.min * 1e3:.2f} ms, n={len(self.seconds)})"


def time_it(fn, repeats=5, warmup=1):
    """Call fn() `warmup` times untimed, then `repeats` times timed; return a Timing.

    Timing.others is the share of the CPUs other processes used during the timed runs.
    """
    for _ in range(warmup):
        fn()
    seconds = []
    mon = OtherLoad().start()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t0)
    t = Timing(seconds)
    t.others = mon.stop()
    return t


def settle(seconds=0.3):
    """Sleep a moment so that another library's spinning worker threads go idle before timing."""
    time.sleep(seconds)


# -- other load on the machine -------------------------------------------------------------------
def cpu_stat():
    """The clock ticks of all CPUs since boot, from the first line of /proc/stat: user, nice, system, idle,
    iowait, irq, softirq, steal (None elsewhere)."""
    try:
        with open("/proc/stat") as fh:
            vals = [int(v) for v in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return vals if len(vals) == 8 else None


def _cpu_jiffies():
    """(busy, total) clock ticks of all CPUs since boot (None elsewhere)."""
    vals = cpu_stat()
    if vals is None:
        return None
    total = sum(vals)
    return total - vals[3] - vals[4], total  # idle and iowait are not busy


def steal_share(before, after):
    """The share of all CPU time between two cpu_stat() readings that the hypervisor gave to other guests
    (steal): a VM's time taken by its host's other tenants, which no process in the VM can see. None when
    either reading is missing."""
    if before is None or after is None:
        return None
    total = sum(after) - sum(before)
    return (after[7] - before[7]) / total if total > 0 else None


class OtherLoad:
    """The share of all CPUs that other processes used between start() and stop() (0..1).

    Two cores are easily shared: a teammate's job on one core halves what a 2-thread benchmark
    gets, and a BLAS that splits each GEMM over 2 threads then waits for the descheduled one. Every
    timed row records this figure so a disturbed row can be recognised.
    """

    def start(self):
        self.j0, self.t0 = _cpu_jiffies(), os.times()
        return self

    def stop(self):
        j1, t1 = _cpu_jiffies(), os.times()
        if self.j0 is None or j1 is None or j1[1] - self.j0[1] < 40:
            return None  # under ~0.2 s of 2 CPUs the tick counts say nothing
        hz = os.sysconf("SC_CLK_TCK")
        own = ((t1.user - self.t0.user) + (t1.system - self.t0.system)) * hz
        return max(0.0, ((j1[0] - self.j0[0]) - own) / (j1[1] - self.j0[1]))


def wait_for_idle(max_wait_s, threshold=0.1):
    """Sleep in 1 s samples until other processes use < threshold of the CPUs, at most max_wait_s.

    Returns the last sampled share (None without /proc/stat).
    """
    waited, share = 0.0, None
    while True:
        mon = OtherLoad().start()
        time.sleep(1.0)
        share = mon.stop()
        waited += 1.0
        if share is None or share < threshold or waited >= max_wait_s:
            return share


# -- memory --------------------------------------------------------------------------------------
def peak_rss_mb():
    """Peak resident memory of this process so far, MiB (ru_maxrss is KiB on Linux)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2 ** 20


def _status_mb(field, path="/proc/self/status"):
    """A "Field: N kB" line of a /proc file, in MiB (None where it is missing)."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_mb():
    """Resident memory now, MiB (None where /proc is missing)."""
    return _status_mb("VmRSS")


def hwm_mb():
    """Peak resident memory since the last reset_peak_rss (or since start), MiB."""
    return _status_mb("VmHWM")


def anon_huge_mb():
    """Anonymous memory now backed by transparent huge pages, MiB (AnonHugePages of /proc/self/smaps_rollup;
    None where it is missing): a process whose big arrays got 4 KiB pages instead runs its memory-bound passes
    slower, which reads as noise between runs."""
    return _status_mb("AnonHugePages", "/proc/self/smaps_rollup")


def reset_peak_rss():
    """Reset VmHWM to the current RSS (Linux >= 4.0); True when it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


# -- diffs and rows ------------------------------------------------------------------------------
def diff(a, b):
    """(max abs diff, max abs diff / max |b|) of two arrays (b the trusted one)."""
    import numpy as np
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"diff: shapes differ: {a.shape} vs {b.shape}")
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return err, err / scale if scale > 0 else err


def fmt_diff(what, a, b):
    err, rel = diff(a, b)
    return f"{what}: max abs {err:.2e}, rel {rel:.2e}"


class Rows:
    """Prints the result table as it goes and keeps the rows for a --json file."""

    HEAD = (f"{'bench':<28} {'backend':<7} {'shape':<34} {'median ms':>10} {'min ms':>9} "
            f"{'rate':>15} {'vs torch':>9}")

    def __init__(self, json_path=None, meta=None):
        self.rows, self.json_path, self.meta = [], json_path, meta or {}
        print(self.HEAD)
        print("-" * len(self.HEAD))

    def add(self, bench, backend, shape, timing, rate=None, unit="", ratio=None, tail="", **extra):
        """rate: work per second in `unit`; ratio: torch seconds / rawcnn seconds (> 1: rawcnn faster).

        tail: more text printed at the end of the row (memory figures); extra: more JSON fields.
        """
        rate_s = f"{rate:9.1f} {unit:<5}" if rate is not None else ""
        if timing.others is not None:
            tail = f"  others {timing.others * 100:3.0f}%" + tail
        ratio_s = f"{ratio:8.2f}x" if ratio is not None else ""
        print(f"{bench:<28} {backend:<7} {shape:<34} {timing.median * 1e3:10.2f} {timing.min * 1e3:9.2f} "
              f"{rate_s:>15} {ratio_s:>9}{tail}")
        sys.stdout.flush()
        row = dict(bench=bench, backend=backend, shape=shape, median_s=timing.median, min_s=timing.min,
                   repeats=len(timing.seconds), rate=rate, unit=unit, ratio=ratio, others=timing.others,
                   **extra, **self.meta)
        self.rows.append(row)

    def note(self, text):
        print(f"  {text}")
        sys.stdout.flush()

    def save(self):
        if self.json_path:
            with open(self.json_path, "a") as fh:
                for row in self.rows:
                    fh.write(json.dumps(row) + "\n")


def run_child(cmd, env, who, shown=8):
    """Run a bench's child process; its one result is the JSON after "ROW " on stdout. A child that fails
    or prints no row ends the bench (its output's tail on stderr, the command's last `shown` words)."""
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    rows = [json.loads(line[4:]) for line in p.stdout.splitlines() if line.startswith("ROW ")]
    if p.returncode != 0 or not rows:
        sys.stderr.write(p.stdout[-2000:] + p.stderr[-3000:])
        raise SystemExit(f"{who}: child {' '.join(cmd[-shown:])} failed (exit {p.returncode})")
    return rows[0]
