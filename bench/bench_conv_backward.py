"""A convolution's backward split into dx and dw, per algorithm (im2col, Winograd) and PyTorch, interleaved.

    PYTHONPATH=. python bench/bench_conv_backward.py                       # AlexNet conv2, batch 32
    PYTHONPATH=. python bench/bench_conv_backward.py --layer alexnet:conv3 --rounds 9

Issue 22 asks which half of a layer's backward is slow and by which algorithm. For one convolution
of a built-in model (at the batch of bench/common.LAYER_BATCH), in float32:
  1. correctness first: dx and dw of kernels/cpu/conv2d.py (im2col) and kernels/cpu/winograd.py
     against the float64 im2col result; max |err| / max |ref| must stay under 1e-4 (else FAIL);
  2. every op once untimed, then --rounds rounds, each op once per round in turn (the VM's speed
     moves between minutes, so only numbers from the same rounds compare): im2col dx, im2col dw,
     Winograd dx, Winograd dw, and PyTorch's (torch.ops.aten.convolution_backward, oneDNN) dx and
     dw (with db) as the peer. Each rawcnn op reuses its workspace and output buffers, as a
     training step does. Prints the median of each and "vs torch" = torch's median / this one's.
"""
import argparse
import os
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
import common  # noqa: E402

BOUND = 1e-4


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", default="alexnet:conv2", help="MODEL:LAYER, a convolution of a built-in model")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    threads = common.setup_threads(args.threads or common.default_threads())
    import numpy as np
    import torch
    torch.set_num_threads(threads)

    from kernels.cpu import conv2d, winograd
    from kernels.shapes import ConvGeometry
    model, name = args.layer.split(":")
    _, _, batch, xs, l = next(c for c in common.conv_layers([model]) if c[1] == name)
    common.print_header(f"backward of {model} {name}, batch {batch}", torch=torch)
    rng = np.random.default_rng(0)
    KH, KW = l.kernel_size
    x64 = np.maximum(rng.standard_normal(xs), 0)  # like a ReLU's output
    w64 = rng.standard_normal((l.out_channels, l.in_channels // l.groups, KH, KW)) * np.sqrt(2 / (KH * KW * xs[1]))
    geo = ConvGeometry(l.stride, l.padding, l.groups)
    dy64 = rng.standard_normal((batch, *l.output_shape(xs[1:])))
    ref = conv2d.conv2d_backward(dy64, x64, w64, geometry=geo)  # (dx, dw, db), float64
    x, w, dy = (a.astype(np.float32) for a in (x64, w64, dy64))
    xt, wt, dyt = (torch.from_numpy(a) for a in (x, w, dy))
    fns = {}
    for algo, mod in (("im2col", conv2d), ("winograd", winograd)):
        ws, outs = {}, (np.empty_like(x), np.empty_like(w), np.empty(w.shape[0], np.float32))
        for kind, pick in (("dx", 0), ("dw", 1)):
            fn = lambda mod=mod, ws=ws, outs=outs, kind=kind: mod.conv2d_backward(  # noqa: E731
                dy, x, w, geometry=geo, need=(kind,), workspace=ws, out=outs)
            got = fn()[pick]
            err = float(np.abs(got - ref[pick]).max() / np.abs(ref[pick]).max())
            print(f"{algo} {kind}: error {err:.1e} {'ok' if err < BOUND else 'FAIL'}")
            fns[f"{algo} {kind}"] = fn
    for kind, mask in (("dx", [True, False, False]), ("dw", [False, True, True])):
        fns[f"torch {kind}"] = lambda mask=mask: torch.ops.aten.convolution_backward(
            dyt, xt, wt, [wt.shape[0]], list(l.stride), list(l.padding), [1, 1], False, [0, 0], l.groups, mask)
    for f in fns.values():
        f()
    times = {k: [] for k in fns}
    for _ in range(args.rounds):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    for k, m in med.items():
        peer = med[f"torch {k.split()[1]}"]
        print(f"{k:<12} median {m * 1e3:8.1f} ms   min {min(times[k]) * 1e3:8.1f} ms   vs torch {peer / m:5.2f}x")


if __name__ == "__main__":
    main()
