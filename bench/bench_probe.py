"""What need=("dx",) saves in a heat-map backward: saliency of the custom model with and without weight gradients.

Net.probe() runs the backward of heat maps and saliency with no weight gradient (the conv and linear
kernels get need=("dx",), so conv backward skips its im2col and the dw products). This
script times one saliency backward (logits -> input) of the built-in `custom` model at 227 px,
probe as it is against the same probe with every layer's weight gradients switched back on,
after checking that both give the same input gradient. No peer: PyTorch has no such switch to
compare with (its autograd computes only what is asked for, like need=("dx",)).

    python bench/bench_probe.py [--batch 4] [--repeats 5] [--threads 2]
"""
import argparse

import common


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=common.default_threads())
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    common.setup_threads(a.threads)
    import numpy as np

    from rawcnn.engine import models
    common.print_header(f"saliency backward of custom, batch {a.batch}, with and without weight gradients",
                        no_torch=True)
    net = models.build("custom", seed=a.seed)
    x = np.random.default_rng(a.seed).standard_normal((a.batch, 3, 227, 227)).astype(np.float32)
    top = net.names()[-1]

    def backward(with_dw):
        with net.probe():
            if with_dw:
                for l in net.layers:
                    l.trainable = True
            logits = net.forward(x)
            dy = np.zeros_like(logits)
            dy[:, 1] = 1.0
            return net.backward(dy, top=top)

    dx0, dx1 = backward(False), backward(True)
    print(common.fmt_diff("dx, need_dw=False vs True", dx0, dx1))
    assert np.allclose(dx0, dx1, rtol=1e-5, atol=1e-7 * float(np.abs(dx1).max()))
    rows = {}
    for with_dw in (True, False):
        t = common.time_it(lambda: backward(with_dw), repeats=a.repeats, warmup=1)
        rows[with_dw] = t
        print(f"{'with weight gradients' if with_dw else 'need_dw=False (probe)':28s} forward+backward "
              f"median {t.median * 1e3:8.1f} ms  min {t.min * 1e3:8.1f} ms  (other load {t.others:.0%})")
    print(f"need_dw=False takes {rows[False].median / rows[True].median:.2f}x the time with weight gradients")


if __name__ == "__main__":
    main()
