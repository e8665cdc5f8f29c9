"""Which algorithm computes each convolution: im2col + GEMM or Winograd F(4x4, 3x3).

Both compute the same function (kernels/cpu/conv2d.py, kernels/cpu/winograd.py); only speed and
float32 rounding differ (Winograd: within 1e-4 of the largest output, tests/test_kernel_winograd.py).

    im2col     every layer by im2col + GEMM (the cuda backend always does this)
    winograd   Winograd for every stride-1 layer whose kernel is at least 2x2 on the cpu/reference
               backends (kernels other than 3x3 cut into 3x3 pieces), im2col elsewhere
    auto       per layer: a timing measured on this machine for this layer shape when the cache
               holds one, else `table_choice` (Winograd on the cpu backend: see its docstring;
               im2col on the reference backend, the plain definition)
    tune       per layer, at its first forward: time both on the real input (one warm-up, the best
               of two), use the faster, and store it in the cache for `auto` to use later

The cache is JSON (never pickle) at $RAWCNN_CACHE_DIR/conv_algo.json, else
$XDG_CACHE_HOME/rawcnn/engine/conv_algo.json, else ~/.cache/rawcnn/engine/conv_algo.json, written to a temporary
file and renamed. Its keys name the CPU, the thread count, the dtype and the layer's full shape,
so a result measured on one machine is never used on another.

The choice is made per layer per input shape; the layer contract does not change. A process-wide
default (`set_default`, what `--conv-algo` sets) applies to every Conv2d whose own `conv_algo` is None.
"""
import json
import os
import tempfile
import time

import numpy as np

ALGOS = ("auto", "im2col", "winograd", "tune")
_DEFAULT = {"algo": "auto"}


def set_default(algo):
    """Set the algorithm every Conv2d without its own `conv_algo` uses (one of ALGOS)."""
    if algo not in ALGOS:
        raise ValueError(f"--conv-algo must be one of {', '.join(ALGOS)}, got {algo!r}")
    _DEFAULT["algo"] = algo


def get_default():
    return _DEFAULT["algo"]


def winograd_eligible(layer, backend_tier):
    """Winograd F(4x4, 3x3) applies: stride 1, a kernel at least 2x2 (3x3, or cut into 3x3 pieces:
    a 1-wide kernel would take more multiplications than it saves), a tier that has it (not cuda)."""
    return (backend_tier in ("cpu", "reference") and min(layer.kernel_size) >= 2
            and tuple(layer.stride) == (1, 1))


MEASURED_KERNELS = ((3, 3), (5, 5))  # the kernel sizes whose Winograd has been measured (AlexNet conv2: 5x5)


def table_choice(C, F, groups, OH, OW, kernel_size=(3, 3)):
    """The algorithm `auto` uses on the cpu backend for a stride-1 layer this machine has not
    measured: Winograd for 3x3 and 5x5 kernels, except for layers with fewer than 16 input
    channels per group; im2col for every other kernel size (not measured).

    The rule follows the per-layer tables of bench/bench_winograd.py and bench/bench_models.py
    (bench/RESULTS.md, "Winograd on every core" for 3x3, "Every target met in three runs" for
    AlexNet's 5x5 conv2): Winograd's forward beat im2col on every measured 3x3 and 5x5 stride-1
    layer of custom, AlexNet and VGG16 but VGG16 conv1_1, whose 3 input channels leave its
    transforms nothing to amortise. No layer between 3 and 64 input channels was measured: the
    threshold of 16 is a guess between them. `--conv-algo tune` measures the machine at hand and
    `auto` then follows the measurement.
    """
    return "winograd" if C // groups >= 16 and tuple(kernel_size) in MEASURED_KERNELS else "im2col"


# -- the on-disk cache ------------------------------------------------------------------------------
def cache_path():
    base = os.environ.get("RAWCNN_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "rawcnn")
    return os.path.join(base, "conv_algo.json")


def _machine():
    """The CPU model and the thread count: part of every cache key."""
    model = "cpu"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((l.split(":", 1)[1].strip() for l in fh if l.startswith("model name")), model)
    except OSError:
        pass
    import numba
    return f"{model}|threads={numba.get_num_threads()}"


def cache_key(layer, x_shape, dtype):
    N, C, H, W = x_shape
    return (f"{_machine()}|{np.dtype(dtype).name}|N{N}C{C}H{H}W{W}F{layer.out_channels}"
            f"p{layer.padding[0]}x{layer.padding[1]}g{layer.groups}")


def load_cache(path=None):
    """The cache as a dict (empty when missing or unreadable: it is only an optimisation)."""
    path = path or cache_path()
    try:
        with open(path) as fh:
            table = json.load(fh)
        return table if isinstance(table, dict) else {}
    except (OSError, ValueError):
        return {}


def store(key, entry, path=None):
    """Add one entry to the cache: read, update, write to a temporary file, rename."""
    path = path or cache_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    table = load_cache(path)
    table[key] = entry
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".conv_algo.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(table, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _best_of(fn, repeats=2):
    fn()  # warm-up: compiles, grows buffers
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def tune(layer, x):
    """Time both algorithms' forward on x, store the result, return the faster's name."""
    be, w, b = layer.be, layer.params["w"], layer.params["b"]
    hp = dict(stride=layer.stride, padding=layer.padding, groups=layer.groups)
    ws = {}
    t_im2col = _best_of(lambda: be.conv2d.conv2d_forward(x, w, b, budget_bytes=layer.budget_bytes, **hp))
    t_wino = _best_of(lambda: be.winograd.conv2d_forward(x, w, b, workspace=ws, **hp))
    algo = "winograd" if t_wino < t_im2col else "im2col"
    store(cache_key(layer, x.shape, x.dtype), {"algo": algo, "im2col_s": t_im2col, "winograd_s": t_wino})
    return algo


def choose(layer, x_shape, dtype, x=None):
    """The algorithm `layer` uses for an input of x_shape (x: the input itself, needed by 'tune')."""
    mode = layer.conv_algo or get_default()
    if mode not in ALGOS:
        raise ValueError(f"layer {layer.name!r}: conv_algo must be one of {', '.join(ALGOS)}, got {mode!r}")
    if mode == "im2col" or not winograd_eligible(layer, layer.be.tier):
        return "im2col"
    if mode == "winograd":
        return "winograd"
    entry = load_cache().get(cache_key(layer, x_shape, dtype))
    if entry is not None and entry.get("algo") in ("im2col", "winograd"):
        return entry["algo"]
    if mode == "tune" and x is not None:
        return tune(layer, x)
    if layer.be.tier != "cpu":  # the reference tier's auto is its plain definition, im2col
        return "im2col"
    N, C, H, W = x_shape
    KH, KW = layer.kernel_size
    OH, OW = H + 2 * layer.padding[0] - KH + 1, W + 2 * layer.padding[1] - KW + 1
    return table_choice(C, layer.out_channels, layer.groups, OH, OW, (KH, KW))


def describe(net, input_shape=None, batch=1):
    """{layer name: algorithm} for every Conv2d of net on an input (C, H, W), batch `batch`, no tuning."""
    from rawcnn.engine.layers import Conv2d
    shape, out = tuple(input_shape or net.input_shape), {}
    for l in net.layers:
        if isinstance(l, Conv2d):
            out[l.name] = choose(l, (batch,) + shape, l.params["w"].dtype)
        shape = l.output_shape(shape)
    return out
