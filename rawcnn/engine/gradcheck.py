"""Gradient checking by centred finite differences, in float64.

For a function y = f(x) and an upstream gradient dy, the loss is L = sum(y * dy), so
dL/dx is exactly what a backward pass returns for that dy. The numeric estimate is

    dL/dx[i] ~ sum((f(x + h e_i) - f(x - h e_i)) * dy) / (2h)

The two outputs are subtracted *before* the dot product with dy: outputs that do not depend on
x[i] are computed identically both times and cancel exactly, so round-off grows only with the
outputs x[i] touches (Caffe's checker, test_gradient_check_util.hpp, works element by element
for the same reason).

Kinks (ReLU at 0, a max-pool tie) have no derivative. As Caffe's checker does, the point is
stepped around: when the one-sided differences (f(x+h)-f(x))/h and (f(x)-f(x-h))/h disagree by
far more than curvature can explain, the element sits on a kink and is skipped (and counted).
"""
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from kernels import get_backend, to_numpy
from rawcnn.engine.layers import (
    LRN,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Linear,
    MaxPool2d,
    ReLU,
    Softmax,
    SoftmaxCrossEntropy,
    WeightInit,
)

KINK_TOL = 1e-3  # one-sided slopes differing by more than this (relative) mean a kink


def rel_error(a, b, floor=1e-12):
    """Largest elementwise relative error max |a-b| / max(|a|+|b|, floor); arrays of one shape."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), floor)))


def max_diff(a, b):
    """max|a - b| / max|b|: the error relative to the largest value (0 when both are all zero).

    For comparing tiers where entries may nearly cancel, so element-wise relative error says little.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def rel_error_map(a, b, floor=1e-12):
    """Elementwise relative error |a-b| / max(|a|+|b|, floor), same shape as a."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), floor)


def numeric_gradient(f, x, dy, h=1e-6, skip_kinks=True):
    """Centred-difference estimate of d(sum(f() * dy))/dx, perturbing `x` in place.

    f:  a callable taking no arguments that returns an array (or a tuple of arrays, matched
        with a tuple `dy`) computed from the current contents of `x`
    x:  float64 ndarray, any shape; restored exactly on return
    dy: float64 ndarray(s) shaped like f()'s output(s)
    Returns (grad, kinks): grad float64 of x.shape; kinks a bool mask of x.shape marking the
    elements stepped around (their grad entry is NaN).
    """
    if x.dtype != np.float64:
        raise ValueError(f"numeric_gradient needs float64 input, got {x.dtype}")
    dys = dy if isinstance(dy, tuple) else (dy,)

    def loss_delta(ya, yb):
        ya = ya if isinstance(ya, tuple) else (ya,)
        yb = yb if isinstance(yb, tuple) else (yb,)
        return sum(float(np.sum((np.asarray(p) - np.asarray(m)) * d)) for p, m, d in zip(ya, yb, dys, strict=True))

    grad = np.zeros(x.shape, dtype=np.float64)
    kinks = np.zeros(x.shape, dtype=bool)
    y0 = f() if skip_kinks else None
    if y0 is not None and not isinstance(y0, tuple):
        y0 = (np.array(y0, copy=True),)
    elif y0 is not None:
        y0 = tuple(np.array(t, copy=True) for t in y0)
    flat = x.reshape(-1)  # a view: writes go into x
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        yp = f()
        yp = tuple(np.array(t, copy=True) for t in yp) if isinstance(yp, tuple) else np.array(yp, copy=True)
        flat[i] = old - h
        ym = f()
        ym = tuple(np.array(t, copy=True) for t in ym) if isinstance(ym, tuple) else np.array(ym, copy=True)
        flat[i] = old
        central = loss_delta(yp, ym) / (2 * h)
        if skip_kinks:
            right = loss_delta(yp, y0) / h
            left = loss_delta(y0, ym) / h
            if abs(right - left) > KINK_TOL * max(1.0, abs(right) + abs(left)):
                kinks.reshape(-1)[i] = True
                grad.reshape(-1)[i] = np.nan
                continue
        grad.reshape(-1)[i] = central
    return grad, kinks


# ------------------------------------------------------------------------------------------------
# Layer and net checks (the `rawcnn gradcheck` command)
# ------------------------------------------------------------------------------------------------
THRESHOLD = 1e-6  # `rawcnn gradcheck` fails when any relative error exceeds this


@dataclass
class Row:
    """One checked tensor: where the analytic and numeric gradients differ most."""
    layer: str
    config: str
    tensor: str
    max_rel_error: float
    worst_index: tuple
    analytic: float
    numeric: float
    checked: int
    kinks: int

    @property
    def ok(self):
        return self.max_rel_error <= THRESHOLD


def _compare(layer, config, tensor, analytic, numeric, kinks):
    analytic = np.asarray(analytic, dtype=np.float64)
    keep = ~kinks
    err = np.where(keep, rel_error_map(analytic, np.where(keep, numeric, 0.0)), 0.0)
    i = np.unravel_index(int(np.argmax(err)), err.shape) if err.size else ()
    return Row(layer, config, tensor, float(err[i]) if err.size else 0.0, tuple(int(v) for v in i),
               float(analytic[i]) if err.size else 0.0, float(numeric[i]) if err.size else 0.0,
               int(keep.sum()), int(kinks.sum()))


def _dropout_states(layers):
    return [(l, l.rng.bit_generator.state) for l in layers if hasattr(l, "rng")]


def _restore(states):
    for l, s in states:
        l.rng.bit_generator.state = s


def check_layers(layers, x, dy=None, labels=None, config="", h=1e-6, backend="cpu"):
    """Check dx and every param grad of a chain of layers (ending in a loss when `labels` is given).

    layers: list of Layer (float64 params); x: float64 numpy input (N, ...); dy: float64 numpy shaped
    like the chain's output (ignored with labels); labels: int64 (N,) to end in SoftmaxCrossEntropy.
    Dropout generators are re-seeded before every forward, as Caffe's checker does.
    """
    be = get_backend(backend) if isinstance(backend, str) else backend
    crit = SoftmaxCrossEntropy() if labels is not None else None
    for l in layers + ([crit] if crit else []):
        l.to(be)
        l.need_dx = True
    masters = {(l.name, k): np.array(to_numpy(v), dtype=np.float64) for l in layers for k, v in l.params.items()}
    states = _dropout_states(layers)

    def run(xin):
        _restore(states)
        for l in layers:
            for k in l.params:
                l.params[k] = be.asarray(masters[(l.name, k)])
        y = be.asarray(xin)
        for l in layers:
            y = l.forward(y, train=True)
        if crit is not None:
            return np.array([crit.forward(y, labels)])
        return to_numpy(y)

    # analytic
    run(x)
    d = np.ones(1) if crit is not None else dy
    g = crit.backward(1.0) if crit is not None else be.asarray(dy)
    for l in reversed(layers):
        g = l.backward(g)
    analytic = {"x": to_numpy(g)}
    for l in layers:
        for k, v in l.grads.items():
            analytic[(l.name, k)] = to_numpy(v)
    # numeric
    name = "+".join(l.name for l in layers) if len(layers) > 1 else layers[0].name
    rows = []
    xn = np.array(x, dtype=np.float64)
    num, kinks = numeric_gradient(lambda: run(xn), xn, d, h=h)
    rows.append(_compare(name, config, "dx", analytic["x"], num, kinks))
    for l in layers:
        for k in l.params:
            m = masters[(l.name, k)]
            num, kinks = numeric_gradient(lambda: run(xn), m, d, h=h)
            rows.append(_compare(name, config, f"d{k} ({l.name})" if len(layers) > 1 else f"d{k}",
                                 analytic[(l.name, k)], num, kinks))
    return rows


def _away_from_zero(rng, shape, lo=0.1):
    """Values in [-1, -lo] U [lo, 1]: no ReLU kink within reach of the finite-difference step."""
    return rng.uniform(lo, 1.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)


def _no_ties(rng, shape):
    """A permutation of well-spaced values: no two window entries within 2h of each other."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) / n * 4.0 - 2.0).astype(np.float64)


def layer_cases():
    """(layer type, config text, factory(rng) -> (layers, x, labels or None)) for every layer type."""
    f64 = np.float64

    def conv(C, F, k, s, p, g, shape, algo="im2col"):
        def make(rng):
            l = Conv2d(C, F, k, s, p, g, name="conv", init=WeightInit(0.5, rng, f64))
            l.set_algo(algo)  # named in the config: each algorithm is checked on its own
            l.params["b"] = rng.standard_normal(F).astype(f64)
            return [l], rng.standard_normal(shape), None
        return make

    def lrn(size, k, shape):
        return lambda rng: ([LRN(size, alpha=0.5, beta=0.75, k=k, name="norm")],
                            rng.standard_normal(shape), None)

    def pool(k, s, p, ceil, shape):
        return lambda rng: ([MaxPool2d(k, s, p, ceil, name="pool")], _no_ties(rng, shape), None)

    def linear(rng, K=5, labels=None):
        l = Linear(7, K, name="fc", init=WeightInit(0.5, rng, f64))
        l.params["b"] = rng.standard_normal(K)
        return [l], rng.standard_normal((3, 7)), labels

    def dropout(rng):
        return [Dropout(0.4, name="drop", rng=np.random.default_rng(7))], rng.standard_normal((4, 9)), None

    def small_net(rng):
        layers = [Conv2d(3, 4, 3, 2, 1, name="conv1", init=WeightInit(0.5, rng, f64)), ReLU(name="relu1"),
                  LRN(3, alpha=0.3, beta=0.75, k=2.0, name="norm1"), MaxPool2d(3, 2, 0, True, name="pool1"),
                  Conv2d(4, 4, 2, 1, 1, 2, name="conv2", init=WeightInit(0.5, rng, f64)), ReLU(name="relu2"),
                  Flatten(name="flatten"), Linear(36, 6, name="fc1", init=WeightInit(0.3, rng, f64)),
                  ReLU(name="relu3"), Dropout(0.3, name="drop1", rng=np.random.default_rng(3)),
                  Linear(6, 3, name="fc2", init=WeightInit(0.3, rng, f64))]
        for l in layers:
            if "b" in l.params:
                l.params["b"] = rng.standard_normal(l.params["b"].shape) * 0.1
        return layers, rng.standard_normal((2, 3, 9, 7)), np.array([0, 2])

    return [
        ("Conv2d", "3->4 k3 s1 p0", conv(3, 4, 3, 1, 0, 1, (2, 3, 5, 5))),
        ("Conv2d", "3->4 k3 s1 p0 winograd", conv(3, 4, 3, 1, 0, 1, (2, 3, 5, 5), "winograd")),
        ("Conv2d", "4->6 k3 s1 p1 g2 winograd (tiles cut at the edges)",
         conv(4, 6, 3, 1, 1, 2, (1, 4, 9, 7), "winograd")),
        ("Conv2d", "4->4 k5 s1 p2 g2 winograd (F(4x4, 5x5))", conv(4, 4, 5, 1, 2, 2, (1, 4, 8, 7), "winograd")),
        ("Conv2d", "2->3 k3 s2 p1 (stride 2)", conv(2, 3, 3, 2, 1, 1, (2, 2, 7, 7))),
        ("Conv2d", "4->4 k2x3 s(1,2) p(1,0) g2 non-square", conv(4, 4, (2, 3), (1, 2), (1, 0), 2, (1, 4, 5, 8))),
        ("ReLU", "x away from 0", lambda rng: ([ReLU(name="relu")], _away_from_zero(rng, (2, 3, 4, 5)), None)),
        ("LRN", "size 3, k 1", lrn(3, 1.0, (2, 5, 3, 4))),
        ("LRN", "size 5, k 2", lrn(5, 2.0, (2, 7, 3, 3))),
        ("LRN", "size 7, k 0.5", lrn(7, 0.5, (1, 9, 2, 3))),
        ("MaxPool2d", "k2 s2", pool(2, 2, 0, False, (2, 3, 4, 6))),
        ("MaxPool2d", "k3 s2 p1", pool(3, 2, 1, False, (2, 2, 7, 5))),
        ("MaxPool2d", "k3 s2 ceil_mode non-square", pool(3, 2, 0, True, (1, 3, 8, 6))),
        ("GlobalAvgPool", "(2,3,4,5)", lambda rng: ([GlobalAvgPool(name="gap")], rng.standard_normal((2, 3, 4, 5)),
                                                    None)),
        ("Linear", "7->5", linear),
        ("Dropout", "p 0.4, generator re-seeded", dropout),
        ("Softmax", "K 5", lambda rng: ([Softmax(name="prob")], rng.standard_normal((3, 5)) * 2, None)),
        ("Flatten", "(2,3,2,2)", lambda rng: ([Flatten(name="flatten")], rng.standard_normal((2, 3, 2, 2)), None)),
        ("SoftmaxCrossEntropy", "K 4, through a Linear", lambda rng: linear(rng, 4, np.array([0, 3, 2]))),
        ("Net", "conv-relu-lrn-pool-conv(g2)-fc-relu-dropout-fc + loss", small_net),
    ]


def run_gradcheck(layer="all", backend="cpu", seed=0, h=1e-6, progress=False):
    """Check every layer type (or one) and a small net end to end; returns the list of Rows.

    progress: show a tqdm bar over the cases (the CLI does; finite differences take a while)."""
    cases = layer_cases()
    kinds = sorted({c[0] for c in cases})
    if layer != "all" and layer not in kinds:
        raise ValueError(f"unknown layer {layer!r}; choose all or one of {', '.join(kinds)}")
    rows = []
    todo = [c for c in cases if layer == "all" or c[0] == layer]
    for kind, config, make in tqdm(todo, desc="gradcheck", unit="case", disable=not progress, leave=False):
        rng = np.random.default_rng(seed)
        layers, x, labels = make(rng)
        dy = None
        if labels is None:  # a random upstream gradient shaped like the chain's output
            be = get_backend(backend) if isinstance(backend, str) else backend
            out = be.asarray(x)
            for l in layers:
                l.to(be)
                out = l.forward(out, train=True)
            dy = rng.standard_normal(tuple(out.shape))
        # the end-to-end net ends in a scalar loss, whose round-off (eps*|L|/h) would swamp its
        # smallest gradient entries at h = 1e-6; a larger step trades it for a small truncation error.
        # A convolution is linear in x and w (no truncation error at any step), and Winograd's
        # transforms (entries up to 8) round ~5x more than the direct sum: at h = 1e-6 that reached
        # 1.5e-7 on the smallest dx entries, so its configs take the larger step too
        step = max(h, 1e-4) if kind == "Net" or "winograd" in config else h
        for r in check_layers(layers, x, dy, labels, config=config, h=step, backend=backend):
            r.layer = kind if kind != "Net" else "Net (end to end)"
            rows.append(r)
    return rows


def format_rows(rows):
    """A fixed-width table of Rows, one line each, with PASS/FAIL."""
    head = (f"{'layer':20s} {'configuration':44s} {'tensor':14s} {'max rel err':>11s} {'worst index':16s} "
            f"{'analytic':>13s} {'numeric':>13s} {'kinks':>5s}  result")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.layer:20s} {r.config[:44]:44s} {r.tensor[:14]:14s} {r.max_rel_error:11.2e} "
                     f"{str(r.worst_index)[:16]:16s} {r.analytic:13.6e} {r.numeric:13.6e} {r.kinks:5d}  "
                     f"{'PASS' if r.ok else 'FAIL'}")
    return "\n".join(lines)
