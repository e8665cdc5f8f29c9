"""Winograd vs im2col + GEMM vs PyTorch, every stride-1 layer of custom, AlexNet, VGG16 (5x5: F(4x4, 5x5)).

    PYTHONPATH=. python bench/bench_winograd.py                 # all layers, full shapes
    PYTHONPATH=. python bench/bench_winograd.py --models vgg16 --repeats 3 --json out.jsonl

For each layer (custom and AlexNet at batch 32, VGG16 at batch 4, as the issue's targets):
  1. correctness first: float32 Winograd forward, dx and dw against the float64 direct definition
     (the cpu im2col tier in float64, itself tested against kernels/reference/conv2d.py);
     max |err| / max |y| is printed and must stay under 1e-4 (else the row says FAIL);
  2. forward time of im2col, Winograd and torch.nn.functional.conv2d (oneDNN), median of --repeats,
     then the weight gradient's (conv2d_backward with need=("dw",); torch.nn.grad.conv2d_weight);
  3. Winograd's phases (kernel, input and output transforms, the 36 GEMMs) on a roofline: bytes
     moved / copy bandwidth and flops / GEMM peak, both measured here first (np.copyto of 256 MiB;
     a 2048^3 float32 matmul), so each phase says which roof bounds it and how close it gets.

OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are removed from the environment (the script re-executes
itself without them, as bench_models.py --blas-env unset does): they halve numpy's GEMM here.
"""
import os
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
from common import Rows, conv_layers, layer_bench_parser, layer_bench_setup, time_it  # noqa: E402

BOUND = 1e-4


def roofs(repeats):
    """(copy GB/s counting read + write, float32 GEMM GFLOP/s) of this machine, measured."""
    import numpy as np
    a = np.ones(64 * 2 ** 20, np.float32)
    b = np.empty_like(a)
    t = time_it(lambda: np.copyto(b, a), repeats=repeats)
    m = np.ones((2048, 2048), np.float32)
    g = time_it(lambda: m @ m, repeats=repeats)
    return 2 * a.nbytes / t.median / 1e9, 2 * 2048 ** 3 / g.median / 1e9


def phases(x, w, b, padding, groups, repeats):
    """(seconds, bytes, flops) of each Winograd phase for one call, as the by-rows schedule runs it.

    One block of rows (kernels/cpu/winograd.rows_per_block) is timed on one thread with a
    one-thread BLAS, as each worker runs it, and the time scaled by blocks / threads: the call's
    time if the workers never waited for each other (the kernel transform is timed whole).
    """
    import numba
    import numpy as np

    from kernels.cpu import winograd as W
    from kernels.cpu.threads import one_thread_blas
    N, C, H, Wd = x.shape
    F, Cg = w.shape[:2]
    OH, OW = H + 2 * padding[0] - 2, Wd + 2 * padding[1] - 2
    TH, TW = -(-OH // 4), -(-OW // 4)
    T = N * TH * TW
    R = W.rows_per_block(Cg, F // groups, TW, N * TH, x.itemsize)
    k = np.array([2, 4, 5, 8], np.float32)
    U = W.kernel_transform(w, groups)
    V = np.empty((36, Cg, R * TW), np.float32)
    M = np.empty((36, F // groups, R * TW), np.float32)
    y = np.empty((N, F, OH, OW), np.float32)
    share = groups * -(-N * TH // R) / numba.get_num_threads()  # blocks per thread
    t_u = time_it(lambda: W.kernel_transform(w, groups, U), repeats=repeats).median
    with one_thread_blas():
        t_in = time_it(lambda: W._input_pieces(x, 0, Cg, (*padding, 1, 1), (TH, TW, 0), k, V, 0),
                       repeats=repeats).median
        t_mm = time_it(lambda: np.matmul(U[0], V, out=M), repeats=repeats).median
        t_out = time_it(lambda: W._output_rows(M, b, 0, (TH, TW, 0), k, y, False), repeats=repeats).median
    # bytes: what each phase reads and writes once over the whole call
    return {"kernel": (t_u, w.nbytes + U.nbytes, 2 * 36 * 15 * w.size / 9),
            "input": (t_in * share, (x.nbytes + 36 * C * T * 4), 2 * 2 * 6 * 6 * 6 * C * T),
            "gemm": (t_mm * share, 36 * 4 * (Cg * F + (C + F) * T), 2 * 36 * F * Cg * T),
            "output": (t_out * share, 36 * F * T * 4 + y.nbytes, 2 * (4 * 6 * 6 + 4 * 4 * 6) * F * T)}


def main(argv=None):
    ap = layer_bench_parser(__doc__)
    ap.add_argument("--errors-only", action="store_true", help="Only step 1 (the float32 error), no timing.")
    args = ap.parse_args(argv)
    torch, _ = layer_bench_setup(__file__, args)
    import numpy as np

    from kernels.cpu import conv2d as im2col
    from kernels.cpu import winograd
    from kernels.shapes import ConvGeometry
    from rawcnn.engine.gradcheck import max_diff
    copy_gbs, gemm_gflops = roofs(args.repeats) if not args.errors_only else (0, 0)
    if not args.errors_only:
        print(f"roofs   : copy {copy_gbs:.1f} GB/s (read + write), float32 GEMM 2048^3 {gemm_gflops:.1f} GFLOP/s")
    rows = Rows(args.json, meta={"copy_GBs": copy_gbs, "gemm_GFLOPs": gemm_gflops})
    worst = 0.0
    for model, name, batch, xs, l in conv_layers(args.models.split(","), winograd_only=True):
        rng = np.random.default_rng(0)
        x64 = np.maximum(rng.standard_normal(xs), 0)  # like a ReLU's output
        KH, KW = l.kernel_size
        fan_in = KH * KW * l.in_channels / l.groups
        w64 = rng.standard_normal((l.out_channels, l.in_channels // l.groups, KH, KW)) * np.sqrt(2 / fan_in)
        b64 = rng.standard_normal(l.out_channels) * 0.1
        hp = dict(geometry=ConvGeometry((1, 1), l.padding, l.groups))
        x, w, b = (a.astype(np.float32) for a in (x64, w64, b64))
        y_def = im2col.conv2d_forward(x64, w64, b64, **hp)
        dy64 = rng.standard_normal(y_def.shape)
        err_y = max_diff(winograd.conv2d_forward(x, w, b, **hp), y_def)
        dx_def, dw_def, _ = im2col.conv2d_backward(dy64, x64, w64, **hp)
        dy = dy64.astype(np.float32)
        dx32, dw32, _ = winograd.conv2d_backward(dy, x, w, **hp)
        err_dx, err_dw = max_diff(dx32, dx_def), max_diff(dw32, dw_def)
        err_dw_im2col = max_diff(im2col.conv2d_backward(dy, x, w, need=("dw",), **hp)[1], dw_def)
        del y_def, dx_def, dw_def, dy64, dx32, dw32
        worst = max(worst, err_y, err_dx, err_dw)
        shape = (f"{model} {name} {'x'.join(map(str, xs))}->{l.out_channels}"
                 + (f" g{l.groups}" if l.groups > 1 else "") + (f" k{KH}x{KW}" if (KH, KW) != (3, 3) else ""))
        errs = f"err y {err_y:.1e} dx {err_dx:.1e} dw {err_dw:.1e} (im2col dw {err_dw_im2col:.1e})"
        status = "ok" if max(err_y, err_dx, err_dw) < BOUND else "FAIL"
        if args.errors_only:
            print(f"{shape:<44} {errs} {status}", flush=True)
            continue
        flops = 2 * batch * l.out_channels * (l.in_channels // l.groups) * KH * KW * y_def_shape(xs, l)
        ws = {}
        t_im = time_it(lambda: im2col.conv2d_forward(x, w, b, **hp), repeats=args.repeats)
        t_wi = time_it(lambda: winograd.conv2d_forward(x, w, b, workspace=ws, **hp), repeats=args.repeats)
        t_to = None
        if torch is not None:
            xt, wt, bt = (torch.from_numpy(a) for a in (x, w, b))
            with torch.no_grad():
                t_to = time_it(lambda: torch.nn.functional.conv2d(xt, wt, bt, padding=l.padding, groups=l.groups),
                               repeats=args.repeats)
        tail = f"  {errs} {status}"
        rows.add("conv im2col fwd", "cpu", shape, t_im, flops / t_im.median / 1e9, "GF/s",
                 t_to.median / t_im.median if t_to else None)
        rows.add("conv winograd fwd", "cpu", shape, t_wi, flops / t_wi.median / 1e9, "GF/s",
                 t_to.median / t_wi.median if t_to else None, tail, err_y=err_y, err_dx=err_dx)
        if t_to is not None:
            rows.add("conv torch fwd", "torch", shape, t_to, flops / t_to.median / 1e9, "GF/s")
        # the weight gradient alone (as training's first layer and a frozen-below fine-tune need it)
        bw = dict(need=("dw",), **hp)
        t_im_dw = time_it(lambda: im2col.conv2d_backward(dy, x, w, workspace=ws, **bw), repeats=args.repeats)
        t_wi_dw = time_it(lambda: winograd.conv2d_backward(dy, x, w, workspace=ws, **bw), repeats=args.repeats)
        t_to_dw = None
        if torch is not None:
            dyt = torch.from_numpy(dy)
            with torch.no_grad():
                t_to_dw = time_it(lambda: torch.nn.grad.conv2d_weight(xt, wt.shape, dyt, padding=l.padding,
                                                                      groups=l.groups), repeats=args.repeats)
        rows.add("conv im2col dw", "cpu", shape, t_im_dw, flops / t_im_dw.median / 1e9, "GF/s",
                 t_to_dw.median / t_im_dw.median if t_to_dw else None)
        rows.add("conv winograd dw", "cpu", shape, t_wi_dw, flops / t_wi_dw.median / 1e9, "GF/s",
                 t_to_dw.median / t_wi_dw.median if t_to_dw else None, err_dw=err_dw)
        if t_to_dw is not None:
            rows.add("conv torch dw", "torch", shape, t_to_dw, flops / t_to_dw.median / 1e9, "GF/s")
        if (KH, KW) != (3, 3):
            rows.note("phases: timed for 3x3 kernels only (F(4x4, 3x3)'s)")
            continue
        ph = phases(x, w, b, l.padding, l.groups, args.repeats)
        parts = []
        for k, (t, nbytes, fl) in ph.items():
            gbs, gfl = nbytes / t / 1e9, fl / t / 1e9
            bound = "mem" if fl / nbytes < gemm_gflops / copy_gbs else "flop"
            frac = gbs / copy_gbs if bound == "mem" else gfl / gemm_gflops
            parts.append(f"{k} {t * 1e3:.1f} ms {gbs:.1f} GB/s {gfl:.0f} GF/s ({bound}, {frac:.0%} of roof)")
        rows.note("; ".join(parts))
    rows.save()
    print(f"worst float32 Winograd error vs the direct definition: {worst:.2e} (bound {BOUND:.0e}: "
          f"{'met' if worst < BOUND else 'NOT met'})")


def y_def_shape(xs, l):
    """OH*OW of the layer for input xs."""
    N, C, H, W = xs
    return (H + 2 * l.padding[0] - l.kernel_size[0] + 1) * (W + 2 * l.padding[1] - l.kernel_size[1] + 1)


if __name__ == "__main__":
    main()
