"""Which algorithm computes each convolution: im2col + GEMM or Winograd (F(4x4, 3x3), F(4x4, 5x5)).

Both compute the same function (kernels/cpu/conv2d.py, kernels/cpu/winograd.py); only speed and
float32 rounding differ (Winograd: within 1e-4 of the largest output, tests/test_kernel_winograd.py).

    im2col     every layer by im2col + GEMM (the cuda backend always does this)
    winograd   Winograd for every stride-1 layer whose kernel is at least 2x2 on the cpu/reference
               backends (5x5 by F(4x4, 5x5), other sizes than 3x3 cut into 3x3 pieces) and every strided layer whose
               kernel spans three blocks of the stride (3x3 by space-to-depth: AlexNet's conv1,
               kernels/reference/space_to_depth.py), im2col elsewhere
    auto       per layer: a timing measured on this machine for this layer shape when the cache
               holds one, else `table_choice` (Winograd on the cpu backend: see its docstring;
               im2col on the reference backend, the plain definition)
    tune       per layer, when the net is planned (`plan`): time both on random input of the
               planned batch's shape (one warm-up, the best of two), use the faster, and store it
               in the cache for `auto` to use later

The cache is JSON (never pickle) at $RAWCNN_CACHE_DIR/conv_algo.json, else
$XDG_CACHE_HOME/rawcnn/conv_algo.json, else ~/.cache/rawcnn/conv_algo.json, written to a temporary
file and renamed. Its keys name the CPU, the thread count, the dtype and the layer's full shape,
so a result measured on one machine is never used on another.

The choice is made when the net is built or planned, never inside a forward pass (Caffe's layer
factory does the same): a Conv2d starts with the choice its configuration alone gives
(`static_choice`: no cache, no timing) and `plan(net, batch, mode)` settles every layer for the
net's input at that batch size, reading the cache and, in `tune` mode, timing there. Forward and
backward then run `layer.algo`. The mode is the layer's own (`layer.conv_algo`, set by `plan` from
`--conv-algo`); there is no process-wide default. Moving a net to another backend plans it again.
"""
import json
import os
import tempfile
import time

import numba
import numpy as np

from kernels.shapes import ConvGeometry, depth_applies

ALGOS = ("auto", "im2col", "winograd", "tune")


def check_mode(algo):
    """`algo` itself when it is one of ALGOS, else ValueError naming --conv-algo."""
    if algo not in ALGOS:
        raise ValueError(f"--conv-algo must be one of {', '.join(ALGOS)}, got {algo!r}")
    return algo


def winograd_eligible(layer, backend_tier):
    """Winograd applies: stride 1 and a kernel at least 2x2 (3x3 or 5x5, or cut into 3x3 pieces:
    a 1-wide kernel would take more multiplications than it saves), or a strided kernel that spans three
    blocks of the stride (kernels.shapes.depth_applies: 3x3 by space-to-depth); a tier that has it (not cuda)."""
    stride_1 = min(layer.kernel_size) >= 2 and tuple(layer.stride) == (1, 1)
    return backend_tier in ("cpu", "reference") and (stride_1 or depth_applies(layer.kernel_size, layer.stride))


MEASURED_KERNELS = ((3, 3), (5, 5))  # the kernel sizes whose Winograd has been measured (AlexNet conv2: 5x5)
MEASURED_STRIDED = (((11, 11), (4, 4)),)  # (kernel, stride) of the strided layers measured: AlexNet conv1


def table_choice(C, F, groups, OH, OW, kernel_size=(3, 3), stride=(1, 1)):
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
    A strided layer runs Winograd by space-to-depth (3x3 on C*sh*sw channels) where measured only:
    AlexNet's conv1, 11x11 stride 4 on 3 channels (bench/RESULTS.md, "Speed round 2").
    """
    if tuple(stride) != (1, 1):
        return "winograd" if (tuple(kernel_size), tuple(stride)) in MEASURED_STRIDED else "im2col"
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
    return f"{model}|threads={numba.get_num_threads()}"


def cache_key(layer, x_shape, dtype):
    """The cache's key for `layer` on input x_shape: machine, dtype, every dimension of the problem."""
    N, C, H, W = x_shape
    (KH, KW), (sh, sw) = layer.kernel_size, layer.stride
    return (f"{_machine()}|{np.dtype(dtype).name}|N{N}C{C}H{H}W{W}F{layer.out_channels}"
            f"k{KH}x{KW}s{sh}x{sw}p{layer.padding[0]}x{layer.padding[1]}g{layer.groups}")


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
    geometry = ConvGeometry(layer.stride, layer.padding, layer.groups)
    ws = {}
    t_im2col = _best_of(lambda: be.conv2d.conv2d_forward(x, w, b, geometry=geometry, budget_bytes=layer.budget_bytes))
    t_wino = _best_of(lambda: be.winograd.conv2d_forward(x, w, b, geometry=geometry, workspace=ws))
    algo = "winograd" if t_wino < t_im2col else "im2col"
    store(cache_key(layer, x.shape, x.dtype), {"algo": algo, "im2col_s": t_im2col, "winograd_s": t_wino})
    return algo


def _mode(layer):
    mode = layer.conv_algo or "auto"
    if mode not in ALGOS:
        raise ValueError(f"layer {layer.name!r}: conv_algo must be one of {', '.join(ALGOS)}, got {mode!r}")
    return mode


def static_choice(layer):
    """The algorithm `layer`'s configuration, mode and backend give without an input shape: no cache, no
    timing ('auto' and 'tune' follow table_choice on the cpu backend, im2col on the reference one)."""
    mode = _mode(layer)
    if mode == "im2col" or not winograd_eligible(layer, layer.be.tier):
        return "im2col"
    if mode == "winograd":
        return "winograd"
    if layer.be.tier != "cpu":  # the reference tier's auto is its plain definition, im2col
        return "im2col"
    return table_choice(layer.in_channels, layer.out_channels, layer.groups, None, None, layer.kernel_size,
                        layer.stride)


def choose(layer, x_shape, dtype, x=None, table=None):
    """The algorithm `layer` uses for an input of x_shape: its mode, then the cache (`table`: the cache
    already read, else read here), then with x given and mode 'tune' a timing, else static_choice."""
    mode = _mode(layer)
    if mode in ("im2col", "winograd") or not winograd_eligible(layer, layer.be.tier):
        return static_choice(layer)
    entry = (load_cache() if table is None else table).get(cache_key(layer, x_shape, dtype))
    if entry is not None and entry.get("algo") in ("im2col", "winograd"):
        return entry["algo"]
    if mode == "tune" and x is not None:
        return tune(layer, x)
    return static_choice(layer)


def plan(net, batch=1, mode=None, seed=0):
    """Settle the algorithm of every Conv2d of `net` for inputs of `batch` images; returns {name: algo}.

    mode (one of ALGOS) becomes every Conv2d's `conv_algo` first; None keeps each layer's own. In
    'tune' mode a layer the cache does not know is timed here, on random input from
    numpy.random.default_rng(seed) (the timing does not depend on the values)."""
    if mode is not None:
        check_mode(mode)
    table, shape, out = load_cache(), tuple(net.input_shape), {}
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if layer.kind == "Conv2d":
            if mode is not None:
                layer.conv_algo = mode
            dtype = layer.params["w"].dtype
            x_shape = (int(batch),) + shape
            x = None
            if _mode(layer) == "tune" and winograd_eligible(layer, layer.be.tier):
                x = layer.be.asarray(rng.standard_normal(x_shape).astype(dtype))
            layer.algo = out[layer.name] = choose(layer, x_shape, dtype, x=x, table=table)
        shape = layer.output_shape(shape)
    net.conv_batch = int(batch)
    return out


def describe(net, input_shape=None, batch=1):
    """{layer name: algorithm} for every Conv2d of net on an input (C, H, W), batch `batch`: what plan
    would choose, without tuning and without changing the net."""
    table, shape, out = load_cache(), tuple(input_shape or net.input_shape), {}
    for l in net.layers:
        if l.kind == "Conv2d":
            out[l.name] = choose(l, (batch,) + shape, l.params["w"].dtype, table=table)
        shape = l.output_shape(shape)
    return out
