"""Before/after: the cpu kernels of another checkout against this one's, interleaved in one process.

    git worktree add /tmp/rawcnn-old <commit>
    PYTHONPATH=. python bench/bench_ab.py --old /tmp/rawcnn-old [--ops im2col winograd linear]
                                          [--models custom,alexnet,vgg16] [--rounds 7]

Two runs of a benchmark minutes apart on a shared VM differ by up to 2x (bench/RESULTS.md), so a
change is measured here with the old and the new function called alternately, round after round,
on the same arrays, with PyTorch's op in the same rounds as the peer. The old checkout's `kernels`
package is imported under its own module objects (sys.modules swapped while it loads), so the
old functions run with the old helpers they import.

Correctness first: at every shape the new output must match the old within 1e-4 of its largest
value (Winograd against Winograd, im2col against im2col, Linear against Linear), else the row
says MISMATCH. Then, per shape, the median over the rounds of: old, new, torch; "speed-up" is
old / new, "vs torch" torch / new (> 1: rawcnn faster).

Ops, at the layer shapes and batches of the model benchmarks (custom and AlexNet 32, VGG16 4):
    im2col    kernels/cpu/conv2d.conv2d_forward at every convolution
    winograd  kernels/cpu/winograd conv2d_forward, dx, dw at every stride-1 convolution the old
              checkout's Winograd accepts
    linear    kernels/cpu/linear.linear_forward at every fully connected layer
and at the training steps' batches (custom and AlexNet 32, VGG16 8):
    first-dw  kernels/cpu/conv2d.conv2d_backward, dw only (what a training step asks of a first
              layer), at every convolution on 3 input channels, by im2col
    lrn       kernels/cpu/lrn forward and backward at every LRN layer (the torch column of the
              backward times torch.autograd.grad of the layer's output alone)
    linear-bwd kernels/cpu/linear.linear_backward, dx and dw apart, at every fully connected layer
"""
import argparse
import importlib
import inspect
import os
import sys
import time
from types import SimpleNamespace

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
import common  # noqa: E402

BOUND = 1e-4
TRAIN_BATCH = {"custom": 32, "alexnet": 32, "vgg16": 8}  # bench/bench_models.py's training steps


def load_tree(path, names):
    """{name: module} of the `kernels` modules `names` imported from checkout `path`, leaving this
    checkout's modules in sys.modules as they were."""
    own = lambda k: k == "kernels" or k.startswith("kernels.")  # noqa: E731
    saved = {k: v for k, v in sys.modules.items() if own(k)}
    for k in saved:
        del sys.modules[k]
    sys.path.insert(0, os.path.abspath(path))
    try:
        mods = {n: importlib.import_module(n) for n in names}
    finally:
        sys.path.remove(os.path.abspath(path))
        for k in [k for k in sys.modules if own(k)]:
            del sys.modules[k]
        sys.modules.update(saved)
    return mods


def conv_kwargs(fn, hp, need=None):
    """Keyword arguments of the conv kernel fn for hp = dict(stride, padding, groups) and, for a backward,
    need ("dx" and/or "dw"): geometry= and need= in this interface, stride=, padding=, groups=,
    need_dx=, need_dw= in a checkout from before it (issue 21), so that either side can be the old one."""
    if "geometry" in inspect.signature(fn).parameters:
        from kernels.shapes import ConvGeometry
        return dict(geometry=ConvGeometry(**hp), **({} if need is None else {"need": need}))
    return dict(hp, **({} if need is None else {"need_dx": "dx" in need, "need_dw": "dw" in need}))


def interleaved(fns, rounds):
    """{name: median seconds}: every fn called once per round, after one untimed call each; the order
    rotates by one every round, so that no fn always runs right after the same other one (PyTorch's
    OpenMP workers spin on after its op and take a core from whatever runs next: with a fixed order
    "old" always followed "torch", which biased the comparison towards "new")."""
    import numpy as np
    for f in fns.values():
        f()
    times = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            t = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t)
    return {k: float(np.median(v)) for k, v in times.items()}


def rel(a, b):
    import numpy as np
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def row(op, layer, shape, t, err):
    """Print one result row: t {"old", "new"[, "torch"]: median seconds}, err the new output's vs the old's."""
    to = t.get("torch")
    print(f"{op:<14} {layer:<16} {shape:<34} {t['old'] * 1e3:8.1f} {t['new'] * 1e3:8.1f} "
          f"{(to or 0) * 1e3:9.1f} {t['old'] / t['new']:7.2f}x {(to / t['new'] if to else 0):7.2f}x"
          f"  {'ok' if err < BOUND else 'MISMATCH'} {err:.1e}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="Root of the other checkout (a git worktree).")
    ap.add_argument("--ops", nargs="+", default=["im2col", "winograd", "linear"],
                    choices=["im2col", "winograd", "linear", "first-dw", "lrn", "linear-bwd"])
    ap.add_argument("--models", default="custom,alexnet,vgg16")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-torch", action="store_true", help="time old and new alone, without PyTorch's op")
    args = ap.parse_args(argv)
    common.setup_threads(args.threads or common.default_threads())
    import numpy as np

    from kernels.cpu import conv2d as new_conv  # this checkout's, imported before the old one's
    from kernels.cpu import linear as new_linear
    from kernels.cpu import lrn as new_lrn
    from kernels.cpu import winograd as new_wino
    old = load_tree(args.old, ["kernels.cpu.conv2d", "kernels.cpu.winograd", "kernels.cpu.linear",
                               "kernels.cpu.lrn"])
    torch = None if args.no_torch else common.try_import_torch()
    if torch is not None:
        torch.set_num_threads(args.threads or common.default_threads())
    common.print_header(f"before/after, old = {os.path.abspath(args.old)}", torch=torch)
    print(f"{'op':<14} {'layer':<16} {'shape':<34} {'old ms':>8} {'new ms':>8} {'torch ms':>9} "
          f"{'speed-up':>8} {'vs torch':>8}")
    models = args.models.split(",")
    rng = np.random.default_rng(0)
    for model, name, _, xs, l in common.conv_layers(models):
        case = conv_case(f"{model} {name}", xs, l, rng, torch)
        if "im2col" in args.ops:
            im2col_rows(case, old["kernels.cpu.conv2d"], new_conv, torch, args.rounds)
        if "winograd" in args.ops and l.stride == (1, 1) and min(l.kernel_size) >= 2:
            winograd_rows(case, old["kernels.cpu.winograd"], new_wino, torch, rng, args.rounds)
    if "linear" in args.ops:
        linear_rows(models, old["kernels.cpu.linear"], new_linear, torch, rng, args.rounds)
    if "first-dw" in args.ops:
        first_dw_rows(models, old["kernels.cpu.conv2d"], new_conv, torch, rng, args.rounds)
    if "lrn" in args.ops:
        lrn_rows(models, old["kernels.cpu.lrn"], new_lrn, torch, rng, args.rounds)
    if "linear-bwd" in args.ops:
        linear_backward_rows(models, old["kernels.cpu.linear"], new_linear, torch, rng, args.rounds)


def train_layers(models, kind):
    """(model, name, batch, x shape, layer) of every layer of type `kind` in `models` at TRAIN_BATCH."""
    return common.model_layers(models, kind, TRAIN_BATCH)


def first_dw_rows(models, oc, new_conv, torch, rng, rounds):
    """conv2d_backward(need dw) by im2col at every convolution on 3 channels (a first layer: no dx)."""
    import numpy as np

    from rawcnn.engine.layers import Conv2d
    for model, _, _, xs, l in train_layers(models, Conv2d):
        if l.in_channels != 3:
            continue
        case = conv_case(f"{model} {l.name}", xs, l, rng, torch)
        y = new_conv.conv2d_forward(case.x, case.w, case.b, **conv_kwargs(new_conv.conv2d_forward, case.hp))
        dy = rng.standard_normal(y.shape, dtype=np.float32)
        bo = conv_kwargs(oc.conv2d_backward, case.hp, need=("dw",))
        bn = conv_kwargs(new_conv.conv2d_backward, case.hp, need=("dw",))
        wo, wn = {}, {}
        fns = {"old": lambda: oc.conv2d_backward(dy, case.x, case.w, workspace=wo, **bo),
               "new": lambda: new_conv.conv2d_backward(dy, case.x, case.w, workspace=wn, **bn)}
        err = rel(fns["new"]()[1], fns["old"]()[1])
        if torch is not None:
            dyt = torch.from_numpy(dy)
            fns["torch"] = lambda: torch.nn.grad.conv2d_weight(case.xt, case.wt.shape, dyt, l.stride, l.padding, 1,
                                                               l.groups)
        row("im2col dw", case.label, case.shape, interleaved(fns, rounds), err)


def lrn_rows(models, olrn, new_lrn, torch, rng, rounds):
    """lrn_forward and lrn_backward at every LRN layer of `models` (input ReLU-like, >= 0)."""
    import numpy as np

    from rawcnn.engine.layers import LRN
    for model, _, _, xs, l in train_layers(models, LRN):
        x = np.maximum(rng.standard_normal(xs, dtype=np.float32), 0)
        dy = rng.standard_normal(xs, dtype=np.float32)
        hp = dict(size=l.size, alpha=l.alpha, beta=l.beta)
        shape = f"{'x'.join(map(str, xs))} size {l.size}"
        yo, so = olrn.lrn_forward(x, k=l.k, **hp)
        yn, sn = new_lrn.lrn_forward(x, k=l.k, **hp)
        fwd = {"old": lambda: olrn.lrn_forward(x, k=l.k, out_y=yo, out_scale=so, **hp),
               "new": lambda: new_lrn.lrn_forward(x, k=l.k, out_y=yn, out_scale=sn, **hp)}
        bwd = {"old": lambda: olrn.lrn_backward(dy, x, yo, so, **hp),
               "new": lambda: new_lrn.lrn_backward(dy, x, yn, sn, **hp)}
        if torch is not None:
            xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
            fwd["torch"] = lambda: torch.nn.functional.local_response_norm(xt, l.size, l.alpha, l.beta, l.k)
            xg = xt.clone().requires_grad_(True)
            yt = torch.nn.functional.local_response_norm(xg, l.size, l.alpha, l.beta, l.k)
            bwd["torch"] = lambda: torch.autograd.grad(yt, xg, dyt, retain_graph=True)
        row("lrn fwd", f"{model} {l.name}", shape, interleaved(fwd, rounds), rel(yn, yo))
        row("lrn bwd", f"{model} {l.name}", shape, interleaved(bwd, rounds), rel(bwd["new"](), bwd["old"]()))


def linear_backward_rows(models, ol, new_linear, torch, rng, rounds):
    """linear_backward's dx and dw, apart, at every fully connected layer of `models` at TRAIN_BATCH."""
    import numpy as np

    from rawcnn.engine.layers import Linear
    for model, _, N, _xs, l in train_layers(models, Linear):
        D, K = l.in_features, l.out_features
        x = rng.standard_normal((N, D), dtype=np.float32)
        w = rng.standard_normal((K, D), dtype=np.float32) * np.float32(0.01)
        dy = rng.standard_normal((N, K), dtype=np.float32)
        for kind, pick in (("dx", 0), ("dw", 1)):
            fns = {"old": lambda kind=kind: ol.linear_backward(dy, x, w, need=(kind,)),
                   "new": lambda kind=kind: new_linear.linear_backward(dy, x, w, need=(kind,))}
            err = rel(fns["new"]()[pick], fns["old"]()[pick])
            if torch is not None:
                xt, wt, dyt = (torch.from_numpy(a) for a in (x, w, dy))
                fns["torch"] = (lambda: dyt @ wt) if kind == "dx" else (lambda: dyt.t() @ xt)
            row(f"linear {kind}", f"{model} {l.name}", f"{N}x{D} -> {K}", interleaved(fns, rounds), err)


def conv_case(label, xs, l, rng, torch):
    """One convolution's inputs, drawn from rng: x (ReLU-like, >= 0) of shape xs, He-scaled w, b; with
    torch, tensors on the same memory (xt, wt, bt; else None). Returns them with label ("model layer"),
    shape (the rows' shape column), the Conv2d l and hp = dict(stride, padding, groups)."""
    import numpy as np
    KH, KW = l.kernel_size
    x = np.maximum(rng.standard_normal(xs, dtype=np.float32), 0)
    w = (rng.standard_normal((l.out_channels, l.in_channels // l.groups, KH, KW), dtype=np.float32)
         * np.float32(np.sqrt(2 / (KH * KW * l.in_channels / l.groups))))
    b = rng.standard_normal(l.out_channels, dtype=np.float32)
    shape = f"{'x'.join(map(str, xs))} k{KH}s{l.stride[0]}p{l.padding[0]}g{l.groups}->{l.out_channels}"
    xt = wt = bt = None
    if torch is not None:
        xt, wt, bt = (torch.from_numpy(a) for a in (x, w, b))
    return SimpleNamespace(label=label, shape=shape, l=l, hp=dict(stride=l.stride, padding=l.padding, groups=l.groups),
                           x=x, w=w, b=b, xt=xt, wt=wt, bt=bt)


def im2col_rows(case, oc, new_conv, torch, rounds):
    """The im2col forward of `case`: the old checkout's conv2d module oc against this one's (and torch)."""
    l, x, w, b, xt, wt, bt = case.l, case.x, case.w, case.b, case.xt, case.wt, case.bt
    wo, wn = {}, {}
    ko, kn = conv_kwargs(oc.conv2d_forward, case.hp), conv_kwargs(new_conv.conv2d_forward, case.hp)
    yo = oc.conv2d_forward(x, w, b, workspace=wo, **ko)
    yn = new_conv.conv2d_forward(x, w, b, workspace=wn, **kn)
    fns = {"old": lambda: oc.conv2d_forward(x, w, b, workspace=wo, out=yo, **ko),
           "new": lambda: new_conv.conv2d_forward(x, w, b, workspace=wn, out=yn, **kn)}
    if torch is not None:  # tensors made from numpy arrays need no grad: no graph is built
        fns["torch"] = lambda: torch.nn.functional.conv2d(xt, wt, bt, l.stride, l.padding, 1, l.groups)
    row("im2col fwd", case.label, case.shape, interleaved(fns, rounds), rel(yn, yo))


def winograd_rows(case, ow, new_wino, torch, rng, rounds):
    """Winograd forward, dx and dw of `case`: the old checkout's winograd module ow against this one's (and
    torch); nothing when the old Winograd does not take the kernel size."""
    import numpy as np
    l, x, w, b, xt, wt, bt = case.l, case.x, case.w, case.b, case.xt, case.wt, case.bt
    hp = case.hp
    ko, kn = conv_kwargs(ow.conv2d_forward, hp), conv_kwargs(new_wino.conv2d_forward, hp)
    try:
        yo = ow.conv2d_forward(x, w, b, workspace={}, **ko)
    except ValueError:  # the old checkout's Winograd does not take this kernel size
        return
    wo, wn = {}, {}
    yn = new_wino.conv2d_forward(x, w, b, workspace=wn, **kn)
    dy = rng.standard_normal(yn.shape, dtype=np.float32)
    dyt = torch.from_numpy(dy) if torch is not None else None
    for kind in ("fwd", "dx", "dw"):
        if kind == "fwd":
            fo = lambda: ow.conv2d_forward(x, w, b, workspace=wo, out=yo, **ko)  # noqa: E731
            fn = lambda: new_wino.conv2d_forward(x, w, b, workspace=wn, out=yn, **kn)  # noqa: E731
            ft = lambda: torch.nn.functional.conv2d(xt, wt, bt, 1, l.padding, 1, l.groups)  # noqa: E731
            pick = 0
        else:
            bo = conv_kwargs(ow.conv2d_backward, hp, need=(kind,))
            bn = conv_kwargs(new_wino.conv2d_backward, hp, need=(kind,))
            fo = lambda bo=bo: ow.conv2d_backward(dy, x, w, workspace=wo, **bo)  # noqa: E731
            fn = lambda bn=bn: new_wino.conv2d_backward(dy, x, w, workspace=wn, **bn)  # noqa: E731
            if kind == "dx":
                ft = lambda: torch.nn.grad.conv2d_input(xt.shape, wt, dyt, 1, l.padding, 1, l.groups)  # noqa: E731
            else:
                ft = lambda: torch.nn.grad.conv2d_weight(xt, wt.shape, dyt, 1, l.padding, 1, l.groups)  # noqa: E731
            pick = 0 if kind == "dx" else 1
        ro, rn = fo(), fn()
        err = rel(rn, ro) if kind == "fwd" else rel(rn[pick], ro[pick])
        fns = {"old": fo, "new": fn}
        if torch is not None:
            fns["torch"] = ft
        row(f"winograd {kind}", case.label, case.shape, interleaved(fns, rounds), err)


def linear_rows(models, ol, new_linear, torch, rng, rounds):
    """linear_forward at every fully connected layer of `models`: the old checkout's linear module ol
    against this one's (and torch)."""
    import numpy as np

    from rawcnn.engine.layers import Linear
    from rawcnn.engine.models import build
    for model in models:
        net = build(model, weight_std=0.0)
        shape_in = net.input_shape
        for l in net.layers:
            if isinstance(l, Linear):
                N, D, K = common.LAYER_BATCH[model], l.in_features, l.out_features
                x = rng.standard_normal((N, D), dtype=np.float32)
                w = rng.standard_normal((K, D), dtype=np.float32) * np.float32(0.01)
                b = rng.standard_normal(K, dtype=np.float32)
                yo, yn = np.empty((N, K), np.float32), np.empty((N, K), np.float32)
                fns = {"old": lambda: ol.linear_forward(x, w, b, out=yo),
                       "new": lambda: new_linear.linear_forward(x, w, b, out=yn)}
                if torch is not None:
                    xt, wt, bt = (torch.from_numpy(a) for a in (x, w, b))
                    fns["torch"] = lambda: torch.nn.functional.linear(xt, wt, bt)
                t = interleaved(fns, rounds)
                row("linear fwd", f"{model} {l.name}", f"{N}x{D} -> {K}", t, rel(yn, yo))
            shape_in = l.output_shape(shape_in)


if __name__ == "__main__":
    main()
