"""Per-op benchmarks of the cpu kernels at the real layer shapes of custom, AlexNet and VGG16.

    python bench/bench_ops.py [--quick] [--only conv2d lrn ...] [--threads N] [--json out.jsonl]

For every case: first a correctness check (the cpu kernel against the reference kernel on a
reduced shape, and against PyTorch at the full shape when torch is installed; max abs and rel
diff printed, rel = max|a - b| / max|b|), then the timing (warm-up, several runs, median and min)
of the forward and the backward, with the achieved rate:
    conv2d, linear, gemm        GFLOP/s   (2 * multiply-adds; backward = dx + dw = 2x forward)
    lrn, maxpool2d, relu, sgd   GB/s      (the bytes every array must at least move once)
and the same op in PyTorch (same thread count, no_grad forward, autograd backward), with
"vs torch" = torch time / rawcnn time (> 1: rawcnn faster).

Shapes: custom and AlexNet at batch 32 (227x227), VGG16 at batch 4 (224x224), the batches of the
model benchmarks; the layer shapes come from walking the built-in specs.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

BATCH = {"custom": 32, "alexnet": 32, "vgg16": 4}
REL_TOL = 1e-3  # float32 checks above this relative error are flagged MISMATCH


# -- layer shapes of the built-in models -------------------------------------------------------
def layer_shapes(model):
    """{layer name: (spec entry, input shape, output shape)} without allocating any weights."""
    from kernels.shapes import conv2d_output_size, pool_output_size
    from rawcnn.engine.layers.base import pair
    from rawcnn.engine.models import load_spec
    spec = load_spec(model)
    shape, out = tuple(spec["input"]), {}
    for e in spec["layers"]:
        kind, new = e["type"], shape
        if kind == "Conv2d":
            k, s, p = pair(e["kernel_size"]), pair(e.get("stride", 1)), pair(e.get("padding", 0))
            new = (e["out_channels"], *conv2d_output_size((1, *shape), k, s, p))
        elif kind == "MaxPool2d":
            k = pair(e["kernel_size"])
            s, p = pair(e.get("stride") or e["kernel_size"]), pair(e.get("padding", 0))
            c = e.get("ceil_mode", False)
            new = (shape[0], pool_output_size(shape[1], k[0], s[0], p[0], c),
                   pool_output_size(shape[2], k[1], s[1], p[1], c))
        elif kind == "Flatten":
            new = (shape[0] * shape[1] * shape[2],)
        elif kind == "Linear":
            new = (e["out_features"],)
        out[e["name"]] = (e, shape, new)
        shape = new
    return out


def fmt_shape(*dims):
    return "x".join(str(d) for d in dims)


class Ctx:
    """What every case needs: backends, rng, rows, torch (or None), options."""

    def __init__(self, args, torch, rows):
        import numpy as np

        from kernels import get_backend
        self.np, self.torch, self.rows, self.args = np, torch, rows, args
        self.cpu, self.ref = get_backend("cpu"), get_backend("reference")
        self.rng = np.random.default_rng(0)
        self.shapes = {m: layer_shapes(m) for m in BATCH}

    def randn(self, *shape, scale=1.0):
        return (self.rng.standard_normal(shape) * scale).astype(self.np.float32)

    def check(self, what, pairs):
        """Print 'check <what>: name max abs .., rel ..' for (name, got, want) triples; flag misfits."""
        parts, bad = [], False
        for name, got, want in pairs:
            err, rel = common.diff(got, want)
            bad |= rel > REL_TOL
            parts.append(f"{name} abs {err:.1e} rel {rel:.1e}")
        self.rows.note(f"check {what}: " + "; ".join(parts) + ("  MISMATCH" if bad else ""))

    def time(self, fn, target_s=None):
        """Median of 3..7 runs, fewer when one run is long (whole run stays near target_s)."""
        target_s = target_s or (0.6 if self.args.quick else 1.5)
        fn()  # warm-up: compiles, allocates, wakes the BLAS threads
        mon = common.OtherLoad().start()
        first = common.time_it(fn, repeats=1, warmup=0).median
        n = int(max(3, min(7, target_s / max(first, 1e-6))))
        t = common.time_it(fn, repeats=n - 1, warmup=0)
        return common.Timing(t.seconds + [first], mon.stop())

    def pair(self, bench, shape, rawcnn_fn, torch_fn, work, unit):
        """Time rawcnn then torch for one (bench, shape); work is FLOP or bytes per call."""
        scale = 1e9
        t = self.time(rawcnn_fn)
        tt = None
        if torch_fn is not None:
            common.settle()
            tt = self.time(torch_fn)
            common.settle()
        ratio = tt.median / t.median if tt is not None else None
        self.rows.add(bench, "rawcnn", shape, t, work / scale / t.median if work else None, unit, ratio)
        if tt is not None:
            self.rows.add(bench, "torch", shape, tt, work / scale / tt.median if work else None, unit)


# -- cases -------------------------------------------------------------------------------------
def conv_cases(quick):
    if quick:
        return [("custom", "conv1"), ("custom", "conv2"), ("alexnet", "conv2"), ("vgg16", "conv3_3")]
    return ([("custom", f"conv{i}") for i in range(1, 6)]
            + [("alexnet", n) for n in ("conv1", "conv2", "conv3", "conv5")]
            + [("vgg16", n) for n in ("conv1_1", "conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3")])


def bench_conv2d(ctx, model, name):
    from kernels.shapes import ConvGeometry
    from rawcnn.engine.layers.base import pair
    e, (C, H, W), (F, OH, OW) = ctx.shapes[model][name]
    N = BATCH[model]
    (KH, KW), s, p, G = pair(e["kernel_size"]), pair(e.get("stride", 1)), pair(e.get("padding", 0)), e.get("groups", 1)
    kw = dict(geometry=ConvGeometry(s, p, G))
    # check on a reduced shape: batch 2, the top-left corner of the image (at most 24 output rows)
    hs, ws = min(H, (min(OH, 24) - 1) * s[0] + KH), min(W, (min(OW, 24) - 1) * s[1] + KW)
    xs, ws_, bs = ctx.randn(2, C, hs, ws), ctx.randn(F, C // G, KH, KW, scale=0.05), ctx.randn(F, scale=0.1)
    ys = ctx.cpu.conv2d.conv2d_forward(xs, ws_, bs, **kw)
    dys = ctx.randn(*ys.shape)
    got, want = ctx.cpu.conv2d.conv2d_backward(dys, xs, ws_, **kw), ctx.ref.conv2d.conv2d_backward(dys, xs, ws_, **kw)
    ctx.check(f"conv2d {model}/{name} cpu vs reference at {fmt_shape(*xs.shape)}",
              [("y", ys, ctx.ref.conv2d.conv2d_forward(xs, ws_, bs, **kw)),
               ("dx", got[0], want[0]), ("dw", got[1], want[1]), ("db", got[2], want[2])])
    x, w, b = ctx.randn(N, C, H, W), ctx.randn(F, C // G, KH, KW, scale=0.05), ctx.randn(F, scale=0.1)
    dy = ctx.randn(N, F, OH, OW)
    flops = 2.0 * N * F * OH * OW * (C // G) * KH * KW
    shape = f"{fmt_shape(N, C, H, W)} k{KH}s{s[0]}p{p[0]}g{G}->{F}"
    fwd_t = bwd_t = None
    torch = ctx.torch
    if torch is not None:
        tf = torch.nn.functional
        xt, wt, bt, dyt = (torch.from_numpy(a) for a in (x, w, b, dy))
        with torch.no_grad():
            ctx.check(f"conv2d {model}/{name} cpu vs torch at full shape",
                      [("y", ctx.cpu.conv2d.conv2d_forward(x, w, b, **kw), tf.conv2d(xt, wt, bt, s, p, 1, G).numpy())])

        def fwd_t():
            with torch.no_grad():
                tf.conv2d(xt, wt, bt, s, p, 1, G)
        xg, wg, bg = (t.clone().requires_grad_() for t in (xt, wt, bt))
        yg = tf.conv2d(xg, wg, bg, s, p, 1, G)

        def bwd_t():
            torch.autograd.grad(yg, (xg, wg, bg), dyt, retain_graph=True)
    ctx.pair(f"conv2d fwd {model}/{name}", shape,
             lambda: ctx.cpu.conv2d.conv2d_forward(x, w, b, **kw), fwd_t, flops, "GF/s")
    ctx.pair(f"conv2d bwd {model}/{name}", shape,
             lambda: ctx.cpu.conv2d.conv2d_backward(dy, x, w, **kw), bwd_t, 2 * flops, "GF/s")


def bench_lrn(ctx, model, name):
    e, (C, H, W), _ = ctx.shapes[model][name]
    N = BATCH[model]
    hp = dict(size=e.get("size", 5), alpha=e.get("alpha", 1e-4), beta=e.get("beta", 0.75), k=e.get("k", 1.0))
    lrn, rlrn = ctx.cpu.lrn, ctx.ref.lrn
    xs = abs(ctx.randn(2, C, min(H, 16), min(W, 16)))
    bw = {n: v for n, v in hp.items() if n != "k"}  # lrn_backward takes no k (scale holds it)
    ys, ss = lrn.lrn_forward(xs, **hp)
    yr, sr = rlrn.lrn_forward(xs, **hp)
    dys = ctx.randn(*xs.shape)
    ctx.check(f"lrn {model}/{name} cpu vs reference at {fmt_shape(*xs.shape)}",
              [("y", ys, yr), ("scale", ss, sr), ("dx", lrn.lrn_backward(dys, xs, ys, ss, **bw),
                                                   rlrn.lrn_backward(dys, xs, yr, sr, **bw))])
    x, dy = abs(ctx.randn(N, C, H, W)), ctx.randn(N, C, H, W)
    y, scale = lrn.lrn_forward(x, **hp)
    fwd_t = bwd_t = None
    torch = ctx.torch
    if torch is not None:
        tf = torch.nn.functional
        xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
        targs = (hp["size"], hp["alpha"], hp["beta"], hp["k"])
        with torch.no_grad():
            ctx.check(f"lrn {model}/{name} cpu vs torch at full shape",
                      [("y", y, tf.local_response_norm(xt, *targs).numpy())])

        def fwd_t():
            with torch.no_grad():
                tf.local_response_norm(xt, *targs)
        xg = xt.clone().requires_grad_()
        yg = tf.local_response_norm(xg, *targs)

        def bwd_t():
            torch.autograd.grad(yg, (xg,), dyt, retain_graph=True)
    shape = f"{fmt_shape(N, C, H, W)} size{hp['size']} k{hp['k']:g}"
    ctx.pair(f"lrn fwd {model}/{name}", shape, lambda: lrn.lrn_forward(x, **hp), fwd_t, 3 * x.nbytes, "GB/s")
    ctx.pair(f"lrn bwd {model}/{name}", shape, lambda: lrn.lrn_backward(dy, x, y, scale, **bw), bwd_t,
             5 * x.nbytes, "GB/s")


def bench_maxpool2d(ctx, model, name):
    from rawcnn.engine.layers.base import pair
    e, (C, H, W), (_, OH, OW) = ctx.shapes[model][name]
    N = BATCH[model]
    k, s = pair(e["kernel_size"]), pair(e.get("stride") or e["kernel_size"])
    hp = dict(kernel_size=k, stride=s, padding=pair(e.get("padding", 0)), ceil_mode=e.get("ceil_mode", False))
    mp, rmp = ctx.cpu.maxpool2d, ctx.ref.maxpool2d
    xs = ctx.randn(2, C, min(H, 17), min(W, 17))
    (ys, ais), (yr, air) = mp.maxpool2d_forward(xs, **hp), rmp.maxpool2d_forward(xs, **hp)
    dys = ctx.randn(*ys.shape)
    ctx.check(f"maxpool2d {model}/{name} cpu vs reference at {fmt_shape(*xs.shape)}",
              [("y", ys, yr), ("argmax", ais, air), ("dx", mp.maxpool2d_backward(dys, ais, x_shape=xs.shape),
                                                     rmp.maxpool2d_backward(dys, air, x_shape=xs.shape))])
    x = ctx.randn(N, C, H, W)
    y, argmax = mp.maxpool2d_forward(x, **hp)
    dy = ctx.randn(*y.shape)
    fwd_t = bwd_t = None
    torch = ctx.torch
    if torch is not None:
        tf = torch.nn.functional
        xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
        targs = (hp["kernel_size"], hp["stride"], hp["padding"])
        with torch.no_grad():
            ctx.check(f"maxpool2d {model}/{name} cpu vs torch at full shape",
                      [("y", y, tf.max_pool2d(xt, *targs, ceil_mode=hp["ceil_mode"]).numpy())])

        def fwd_t():
            with torch.no_grad():
                tf.max_pool2d(xt, *targs, ceil_mode=hp["ceil_mode"])
        xg = xt.clone().requires_grad_()
        yg = tf.max_pool2d(xg, *targs, ceil_mode=hp["ceil_mode"])

        def bwd_t():
            torch.autograd.grad(yg, (xg,), dyt, retain_graph=True)
    shape = f"{fmt_shape(N, C, H, W)} k{k[0]}s{s[0]}->{OH}x{OW}"
    ctx.pair(f"maxpool2d fwd {model}/{name}", shape, lambda: mp.maxpool2d_forward(x, **hp), fwd_t,
             x.nbytes + y.nbytes + argmax.nbytes, "GB/s")
    ctx.pair(f"maxpool2d bwd {model}/{name}", shape, lambda: mp.maxpool2d_backward(dy, argmax, x_shape=x.shape),
             bwd_t, dy.nbytes + argmax.nbytes + x.nbytes, "GB/s")


def bench_relu(ctx, model, name):
    _, in_shape, _ = ctx.shapes[model][name]
    N = BATCH[model]
    relu, rrelu = ctx.cpu.relu, ctx.ref.relu
    xs = ctx.randn(3, 1000)
    dys = ctx.randn(3, 1000)
    ys = relu.relu_forward(xs)
    ctx.check(f"relu {model}/{name} cpu vs reference at 3x1000",
              [("y", ys, rrelu.relu_forward(xs)), ("dx", relu.relu_backward(dys, ys), rrelu.relu_backward(dys, ys))])
    x, dy = ctx.randn(N, *in_shape), ctx.randn(N, *in_shape)
    y = relu.relu_forward(x)
    fwd_t = bwd_t = None
    torch = ctx.torch
    if torch is not None:
        xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)

        def fwd_t():
            with torch.no_grad():
                torch.relu(xt)
        xg = xt.clone().requires_grad_()
        yg = torch.relu(xg)

        def bwd_t():
            torch.autograd.grad(yg, (xg,), dyt, retain_graph=True)
    shape = fmt_shape(N, *in_shape)
    ctx.pair(f"relu fwd {model}/{name}", shape, lambda: relu.relu_forward(x), fwd_t, 2 * x.nbytes, "GB/s")
    ctx.pair(f"relu bwd {model}/{name}", shape, lambda: relu.relu_backward(dy, y), bwd_t, 3 * x.nbytes, "GB/s")


def bench_linear(ctx, model, name):
    e, (D,), (K,) = ctx.shapes[model][name]
    N = BATCH[model]
    lin, rlin = ctx.cpu.linear, ctx.ref.linear
    xs, wsm, bs = ctx.randn(2, D), ctx.randn(K, D, scale=0.01), ctx.randn(K)
    dys = ctx.randn(2, K)
    got, want = lin.linear_backward(dys, xs, wsm), rlin.linear_backward(dys, xs, wsm)
    ctx.check(f"linear {model}/{name} cpu vs reference at batch 2",
              [("y", lin.linear_forward(xs, wsm, bs), rlin.linear_forward(xs, wsm, bs)),
               ("dx", got[0], want[0]), ("dw", got[1], want[1]), ("db", got[2], want[2])])
    x, w, b, dy = ctx.randn(N, D), ctx.randn(K, D, scale=0.01), ctx.randn(K), ctx.randn(N, K)
    fwd_t = bwd_t = None
    torch = ctx.torch
    if torch is not None:
        tf = torch.nn.functional
        xt, wt, bt, dyt = (torch.from_numpy(a) for a in (x, w, b, dy))

        def fwd_t():
            with torch.no_grad():
                tf.linear(xt, wt, bt)
        xg, wg, bg = (t.clone().requires_grad_() for t in (xt, wt, bt))
        yg = tf.linear(xg, wg, bg)

        def bwd_t():
            torch.autograd.grad(yg, (xg, wg, bg), dyt, retain_graph=True)
    flops = 2.0 * N * D * K
    shape = f"{fmt_shape(N, D)} -> {K}"
    ctx.pair(f"linear fwd {model}/{name}", shape, lambda: lin.linear_forward(x, w, b), fwd_t, flops, "GF/s")
    ctx.pair(f"linear bwd {model}/{name}", shape, lambda: lin.linear_backward(dy, x, w), bwd_t, 2 * flops, "GF/s")


def bench_softmax_cross_entropy(ctx, model, K):
    np = ctx.np
    N = BATCH[model]
    sce, rsce = ctx.cpu.softmax_cross_entropy, ctx.ref.softmax_cross_entropy
    logits = ctx.randn(N, K, scale=3.0)
    labels = ctx.rng.integers(0, K, N).astype(np.int64)
    loss, probs = sce.softmax_cross_entropy_forward(logits, labels)
    rloss, rprobs = rsce.softmax_cross_entropy_forward(logits, labels)
    ctx.check(f"softmax_cross_entropy {model} cpu vs reference",
              [("loss", np.float64(loss), np.float64(rloss)), ("probs", probs, rprobs),
               ("dlogits", sce.softmax_cross_entropy_backward(probs, labels),
                rsce.softmax_cross_entropy_backward(rprobs, labels))])
    fwd_t = bwd_t = None
    torch = ctx.torch
    if torch is not None:
        tf = torch.nn.functional
        lt, labt = torch.from_numpy(logits), torch.from_numpy(labels)

        def fwd_t():
            with torch.no_grad():
                tf.cross_entropy(lt, labt)
        lg = lt.clone().requires_grad_()
        loss_g = tf.cross_entropy(lg, labt)

        def bwd_t():
            torch.autograd.grad(loss_g, (lg,), retain_graph=True)
    shape = fmt_shape(N, K)
    ctx.pair(f"softmax_ce fwd {model}", shape, lambda: sce.softmax_cross_entropy_forward(logits, labels),
             fwd_t, None, "")
    ctx.pair(f"softmax_ce bwd {model}", shape, lambda: sce.softmax_cross_entropy_backward(probs, labels),
             bwd_t, None, "")


def bench_sgd(ctx, model, name):
    from rawcnn.engine.layers.base import pair
    e, in_shape, _ = ctx.shapes[model][name]
    if e["type"] == "Conv2d":
        KH, KW = pair(e["kernel_size"])
        shape_w = (e["out_channels"], in_shape[0] // e.get("groups", 1), KH, KW)
    else:
        shape_w = (e["out_features"], in_shape[0])
    hp = dict(lr=1e-3, momentum=0.9, weight_decay=5e-4)
    sgd, rsgd = ctx.cpu.sgd, ctx.ref.sgd
    ws, dws, vs = ctx.randn(1000), ctx.randn(1000), ctx.randn(1000)
    wr, vr = ws.copy(), vs.copy()
    sgd.sgd_momentum_update(ws, dws, vs, **hp)
    rsgd.sgd_momentum_update(wr, dws, vr, **hp)
    ctx.check(f"sgd {model}/{name} cpu vs reference at 1000", [("w", ws, wr), ("v", vs, vr)])
    w, dw, v = ctx.randn(*shape_w, scale=0.01), ctx.randn(*shape_w, scale=0.01), ctx.randn(*shape_w, scale=0.001)
    fwd_t = None
    torch = ctx.torch
    if torch is not None:
        p = torch.nn.Parameter(torch.from_numpy(w.copy()))
        p.grad = torch.from_numpy(dw.copy())
        opt = torch.optim.SGD([p], **hp)
        opt.step()  # creates the momentum buffer

        def fwd_t():
            opt.step()
    ctx.pair(f"sgd_momentum {model}/{name}.w", fmt_shape(*shape_w),
             lambda: sgd.sgd_momentum_update(w, dw, v, **hp), fwd_t, 5 * w.nbytes, "GB/s")


def bench_gemm(ctx, quick):
    """The raw float32 GEMM peak of numpy's BLAS (and torch's), square and at conv GEMM shapes."""
    np = ctx.np
    torch = ctx.torch
    sizes = [(1024, 1024, 1024), (2048, 2048, 2048)] + ([] if quick else [(4096, 4096, 4096)])
    # conv GEMMs as conv2d_forward issues them: (F/G, K) @ (K, OH*OW), one per image
    for model, name in (("custom", "conv2"), ("custom", "conv4"), ("vgg16", "conv3_3")):
        e, (C, _, _), (F, OH, OW) = ctx.shapes[model][name]
        k = e["kernel_size"]
        sizes.append((F, C * k * k, OH * OW))
    for M, K, Nn in sizes:
        a, b = ctx.randn(M, K), ctx.randn(K, Nn)
        out = np.empty((M, Nn), np.float32)
        tm = None
        if torch is not None:
            at, bt, ot = torch.from_numpy(a), torch.from_numpy(b), torch.empty(M, Nn)

            def tm():
                torch.matmul(at, bt, out=ot)
        ctx.pair("gemm np.matmul", f"({M}x{K}) @ ({K}x{Nn})", lambda: np.matmul(a, b, out=out), tm,
                 2.0 * M * K * Nn, "GF/s")


def run_all(ctx, quick, only):
    def want(op):
        return not only or op in only
    if want("gemm"):
        if ctx.args.wait_idle:
            common.wait_for_idle(ctx.args.wait_idle)
        bench_gemm(ctx, quick)
    plan = [
        ("conv2d", bench_conv2d, conv_cases(quick)),
        ("lrn", bench_lrn, [("custom", "norm1"), ("custom", "norm2")]
         + ([] if quick else [("alexnet", "norm1"), ("alexnet", "norm2")])),
        ("maxpool2d", bench_maxpool2d, [("custom", "pool1"), ("custom", "pool5")]
         + ([] if quick else [("custom", "pool2"), ("alexnet", "pool1"), ("vgg16", "pool1"), ("vgg16", "pool3")])),
        ("relu", bench_relu, [("custom", "relu1"), ("custom", "relu6")] + ([] if quick else [("vgg16", "relu1_2")])),
        ("linear", bench_linear, [("custom", "fc6"), ("custom", "fc7"), ("custom", "fc8")]
         + ([] if quick else [("alexnet", "fc6"), ("vgg16", "fc6")])),
        ("softmax_cross_entropy", bench_softmax_cross_entropy, [("custom", 2), ("alexnet", 1000)]),
        ("sgd", bench_sgd, [("custom", "fc6"), ("custom", "conv3")] + ([] if quick else [("vgg16", "conv5_3")])),
    ]
    for op, fn, cases in plan:
        if not want(op):
            continue
        if not os.path.exists(os.path.join(common.REPO, "kernels", "cpu", f"{op}.py")):
            ctx.rows.note(f"{op}: kernels/cpu/{op}.py does not exist yet; skipped")
            continue
        for case in cases:
            if ctx.args.wait_idle:
                common.wait_for_idle(ctx.args.wait_idle)
            fn(ctx, *case)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer shapes and shorter timings")
    ap.add_argument("--only", nargs="+", default=None,
                    help="ops to run: gemm conv2d lrn maxpool2d relu linear softmax_cross_entropy sgd")
    ap.add_argument("--threads", type=int, default=common.default_threads())
    ap.add_argument("--no-torch", action="store_true", help="time rawcnn alone even when torch is installed")
    ap.add_argument("--json", default=None, help="append the rows as JSON lines to this file")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="S",
                    help="before each case wait up to S seconds for other processes to leave the CPUs")
    args = ap.parse_args(argv)
    common.setup_threads(args.threads)
    import numba  # noqa: F401  (after setup_threads, so NUMBA_NUM_THREADS applies)
    import numpy  # noqa: F401
    torch = None if args.no_torch else common.try_import_torch()
    common.setup_threads(args.threads)
    common.print_header(f"rawcnn op benchmarks ({'quick' if args.quick else 'full'})", torch, args.no_torch)
    rows = common.Rows(args.json, meta=dict(env=common.blas_env(), threads=args.threads, cpu=common.cpu_name()))
    run_all(Ctx(args, torch, rows), args.quick, args.only)
    rows.save()


if __name__ == "__main__":
    main()
