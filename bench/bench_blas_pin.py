"""What `rawcnn train`'s one-thread OpenBLAS pin costs: the training step with OpenBLAS on 1 and on 2 threads.

    PYTHONPATH=. python bench/bench_blas_pin.py [--repeats 5] [--json out.jsonl]

`rawcnn train` runs its epochs inside rawcnn.engine.determinism.blas_pinned() (OpenBLAS on one thread,
the Numba kernels on every core), so that the same seed gives the same model whatever the thread
count. This times the step it runs (bench_models.rawcnn_train_step: forward, softmax-CE, backward
without the image gradient, fused SGD; kept buffers on, as train() has them) both ways, in the same
process, alternating, for two shapes: the paper's (custom net, batch 32, 227x227) and the demo's
(custom net, batch 32, 96x96). Correctness first: one step from the same weights with each setting
must give the same loss and weights within float32 rounding (the pin changes the GEMMs' summation
order, nothing else). The other row is the peer: "pin cost" = pinned seconds / unpinned seconds.
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are removed from the environment, as in bench_winograd.py.
"""
import argparse
import os
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
from common import Rows, layer_bench_setup, time_it  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="Append one JSON line per row to this file.")
    args = ap.parse_args(argv)
    args.no_torch = True  # rawcnn against itself: the unpinned step is the peer
    _, threads = layer_bench_setup(__file__, args)
    import contextlib

    import numpy as np

    from bench_models import rawcnn_train_step
    from rawcnn.engine.determinism import blas_pinned
    from rawcnn.engine.models import build
    from rawcnn.training.train import dropout_rng_states, set_dropout_rng_states
    rows = Rows(args.json)
    print(f"OpenBLAS threads unpinned: {threads}; pinned: 1 (Numba: {threads} either way)")
    for size in (227, 96):
        net = build("custom", input_shape=(1, size, size), seed=0)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((32, 1, size, size)).astype(np.float32)  # (32, 1, S, S)
        labels = rng.integers(0, 2, 32).astype(np.int64)  # (32,)
        start = {(l.name, k): p.copy() for l in net.layers for k, p in l.params.items()}
        masks = dropout_rng_states(net)
        after = {}
        net.reuse_buffers(True)
        for pinned in (False, True):  # correctness: one step from the same weights and masks each way
            for l in net.layers:
                for k in l.params:
                    l.params[k][...] = start[(l.name, k)]
            set_dropout_rng_states(net, masks)
            step = rawcnn_train_step(net)
            with blas_pinned(True) if pinned else contextlib.nullcontext():
                loss = step(x, labels)
            after[pinned] = (loss, {key: net[key[0]].params[key[1]].copy() for key in start})
        worst = max(float(np.abs(after[True][1][k] - after[False][1][k]).max() /
                          max(np.abs(after[False][1][k]).max(), 1e-30)) for k in start)
        print(f"check custom {size}x{size}: loss {after[False][0]:.6f} unpinned vs {after[True][0]:.6f} pinned; "
              f"weights after one step: worst rel diff {worst:.1e}")
        step = rawcnn_train_step(net)
        t_free = time_it(lambda: step(x, labels), repeats=args.repeats)
        with blas_pinned(True):
            t_pin = time_it(lambda: step(x, labels), repeats=args.repeats)
        shape = f"custom batch 32 {size}x{size} train"
        rows.add("train step, BLAS unpinned", "cpu", shape, t_free, 32 / t_free.median, "img/s")
        rows.add("train step, BLAS pinned", "cpu", shape, t_pin, 32 / t_pin.median, "img/s",
                 tail=f"  pin cost {t_pin.median / t_free.median:.2f}x", pin_cost=t_pin.median / t_free.median)
        net.reuse_buffers(False)
    rows.save()


if __name__ == "__main__":
    main()
