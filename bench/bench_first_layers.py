"""The C = 3 first layers: the old checkout's im2col against the algorithm this checkout chooses, with torch.

    git worktree add /tmp/rawcnn-old <commit>
    PYTHONPATH=. python bench/bench_first_layers.py --old /tmp/rawcnn-old [--rounds 7]

The first convolution of each net (AlexNet conv1 11x11 stride 4, custom conv1 7x7 stride 2, VGG16
conv1_1 3x3 stride 1, all on 3 channels), at the batch of the model benchmarks: its forward, and its
weight gradient with db (need=("dw",): a first layer's training step needs no dx). "old" is the old
checkout's im2col (kernels/cpu/conv2d.py); "new" is the algorithm `auto` gives the layer here without a
cache (conv_algo.static_choice, shown in the algo column: Winograd by space-to-depth for AlexNet's
conv1). Both, and torch's conv2d / aten.convolution_backward(output_mask [False, True, True]) as the
peer, run interleaved round after round in one process (bench_ab.py's interleaved). Before timing, the
new result must lie within 1e-4 of the old one's largest value (else the row says MISMATCH).
"""
import argparse
import os
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
import common  # noqa: E402
from bench_ab import conv_case, conv_kwargs, interleaved, load_tree, rel  # noqa: E402

BOUND = 1e-4
FIRST = {"alexnet": "conv1", "custom": "conv1", "vgg16": "conv1_1"}


def first_rows(case, oc, new, algo, torch, rng, rounds):
    """Forward and weight-gradient rows of one first layer: oc (the old conv2d module) against new (this
    checkout's module for algo) and torch."""
    import numpy as np
    l, x, w, b, hp = case.l, case.x, case.w, case.b, case.hp
    wo, wn = {}, {}
    yo = oc.conv2d_forward(x, w, b, workspace=wo, **conv_kwargs(oc.conv2d_forward, hp))
    dy = rng.standard_normal(yo.shape, dtype=np.float32)
    for kind in ("fwd", "dw"):
        if kind == "fwd":
            ko, kn = conv_kwargs(oc.conv2d_forward, hp), conv_kwargs(new.conv2d_forward, hp)
            fo = lambda: oc.conv2d_forward(x, w, b, workspace=wo, **ko)  # noqa: E731
            fn = lambda: new.conv2d_forward(x, w, b, workspace=wn, **kn)  # noqa: E731
            ft = lambda: torch.nn.functional.conv2d(case.xt, case.wt, case.bt, l.stride, l.padding)  # noqa: E731
        else:
            ko = conv_kwargs(oc.conv2d_backward, hp, need=("dw",))
            kn = conv_kwargs(new.conv2d_backward, hp, need=("dw",))
            fo = lambda: oc.conv2d_backward(dy, x, w, workspace=wo, **ko)[1]  # noqa: E731
            fn = lambda: new.conv2d_backward(dy, x, w, workspace=wn, **kn)[1]  # noqa: E731
            dyt = torch.from_numpy(dy) if torch is not None else None
            ft = lambda: torch.ops.aten.convolution_backward(  # noqa: E731
                dyt, case.xt, case.wt, [l.out_channels], list(l.stride), list(l.padding), [1, 1], False, [0, 0],
                l.groups, [False, True, True])
        err = rel(fn(), fo())
        fns = {"old": fo, "new": fn, **({"torch": ft} if torch is not None else {})}
        t = interleaved(fns, rounds)
        to = t.get("torch")
        print(f"{kind:<4} {case.label:<16} {case.shape:<32} {algo:<9} {t['old'] * 1e3:8.1f} {t['new'] * 1e3:8.1f} "
              f"{(to or 0) * 1e3:9.1f} {t['old'] / t['new']:7.2f}x {(to / t['new'] if to else 0):7.2f}x"
              f"  {'ok' if err < BOUND else 'MISMATCH'} {err:.1e}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="Root of the other checkout (a git worktree).")
    ap.add_argument("--models", default="alexnet,custom,vgg16")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    threads = common.setup_threads(args.threads or common.default_threads())
    import numpy as np

    from kernels.cpu import conv2d as new_conv  # this checkout's, imported before the old one's
    from kernels.cpu import winograd as new_wino
    old = load_tree(args.old, ["kernels.cpu.conv2d"])["kernels.cpu.conv2d"]
    torch = common.try_import_torch()
    if torch is not None:
        torch.set_num_threads(threads)
    common.print_header(f"first layers, old = {os.path.abspath(args.old)}", torch=torch)
    print(f"{'op':<4} {'layer':<16} {'shape':<32} {'algo':<9} {'old ms':>8} {'new ms':>8} {'torch ms':>9} "
          f"{'speed-up':>8} {'vs torch':>8}")
    rng = np.random.default_rng(0)
    for model, name, _, xs, l in common.conv_layers(args.models.split(",")):
        if FIRST.get(model) == name:
            case = conv_case(f"{model} {name}", xs, l, rng, torch)
            first_rows(case, old, new_wino if l.algo == "winograd" else new_conv, l.algo, torch, rng, args.rounds)


if __name__ == "__main__":
    main()
