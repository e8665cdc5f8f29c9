"""The scaling model on paper: data-parallel SGD of the custom model and VGG16 on 8-64 machines.

    python bench/scaling_model.py [--alpha-us 25] [--bucket-mb 25] [--fp16]

Nothing is timed here: every input is a stated figure (measured ones cite bench/RESULTS.md).
One step on N machines, per-rank batch b, ring allreduce in buckets:

    compute   = b * t_img                              t_img: one image's fwd + bwd + update
    window    = w * compute                            the backward left after the fc layers'
                                                       gradients exist (they come first and hold
                                                       most bytes): what their reduction can hide behind
    comm(S)   = 2 (N-1)/N * S * 8 / BW  +  2 (N-1) * ceil(S / bucket) * alpha
    step      = compute + max(0, comm(S_early) - window) + comm(S_late)
    speed-up  = N * b * t_img / step      (one machine running the same global batch N*b)
    efficiency = speed-up / N

S_early: the fc gradients (reduced while the convolutions' backward runs); S_late: the conv
gradients (the last bucket waits at the end). A model "stops scaling" at the first N where the
efficiency falls under 50 % (the machines wait for the network more than they compute).
"""
import argparse
import math

# (bytes of fc gradients, bytes of conv gradients, training GFLOP per image, window share w)
MODELS = {
    # 103.3 M parameters: fc6 84.9 M, fc7 16.8 M, fc8 8 k = 405 MB; conv 1.6 M = 6.4 MB.
    # w = 0.50: in the measured profile (RESULTS.md) 930 of the 1852 ms step is backward below fc6.
    "custom": (405.3e6, 6.4e6, 3 * 2.58, 0.50),
    # 138.4 M parameters: fc 123.6 M = 494 MB; conv 14.7 M = 59 MB. w = 0.64: convolutions are ~99 %
    # of its FLOPs and their backward is 2/3 of them.
    "vgg16": (494.5e6, 58.9e6, 3 * 30.96, 0.64),
}
# per-image training time: measured on this 2-core VM for custom (2786 ms / 32, RESULTS.md);
# VGG16 estimated from its measured forward (1148 ms / 4 images) x 3. 'gpu': an assumed node
# sustaining 25 TFLOP/s on these convolutions (an A100-class GPU at ~10-15 % of its tensor peak).
NODES = {
    "2-core VM": {"custom": 2.786 / 32, "vgg16": 3 * 1.148 / 4},
    "GPU node (25 TFLOP/s)": {m: v[2] * 1e9 / 25e12 for m, v in MODELS.items()},
}


def ring(S, N, gbps, bucket, alpha):
    if N < 2 or S <= 0:
        return 0.0
    return 2 * (N - 1) / N * S * 8 / (gbps * 1e9) + 2 * (N - 1) * math.ceil(S / bucket) * alpha


def step(model, t_img, N, b, gbps, bucket, alpha, fp16=False):
    early, late, _, w = MODELS[model]
    scale = 0.5 if fp16 else 1.0
    compute = b * t_img
    exposed = max(0.0, ring(early * scale, N, gbps, bucket, alpha) - w * compute)
    t = compute + exposed + ring(late * scale, N, gbps, bucket, alpha)
    return t, compute / t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alpha-us", type=float, default=25.0, help="per-message latency, microseconds")
    ap.add_argument("--bucket-mb", type=float, default=25.0)
    ap.add_argument("--fp16", action="store_true", help="gradients sent as float16 (half the bytes)")
    a = ap.parse_args(argv)
    alpha, bucket = a.alpha_us * 1e-6, a.bucket_mb * 1e6
    print(f"# ring allreduce, latency {a.alpha_us:g} us, buckets {a.bucket_mb:g} MB, "
          f"{'float16' if a.fp16 else 'float32'} gradients; cells: efficiency (step s)")
    for node, times in NODES.items():
        for model in MODELS:
            t_img = times[model]
            for label, per_rank in (("global batch 32", lambda N: 32 / N), ("32 per rank", lambda N: 32)):
                print(f"\n{node} | {model} (t_img {t_img * 1e3:.1f} ms) | {label}")
                print(f"{'Gb/s':>6s} " + " ".join(f"{'N=' + str(N):>14s}" for N in (8, 16, 32, 64)) + "   stops at")
                for gbps in (10, 25, 100):
                    cells, stop = [], None
                    for N in (8, 16, 32, 64):
                        b = per_rank(N)
                        if b < 1:
                            cells.append(f"{'b < 1':>14s}")
                            stop = stop or f"N={N} (b < 1)"
                            continue
                        t, eff = step(model, t_img, N, b, gbps, bucket, alpha, a.fp16)
                        cells.append(f"{eff:6.0%} ({t:5.2f})")
                        if eff < 0.5 and stop is None:
                            stop = f"N={N}"
                    print(f"{gbps:6d} " + " ".join(cells) + f"   {stop or '> 64'}")
    print("\nper-rank batch that hides the fc gradients' reduction behind the backward (N = 64):")
    for node, times in NODES.items():
        for model, (early, _, _, w) in MODELS.items():
            need = [ring(early * (0.5 if a.fp16 else 1.0), 64, g, bucket, alpha) / (w * times[model])
                    for g in (10, 25, 100)]
            print(f"  {node:22s} {model:7s} " + "  ".join(f"{g:3d} Gb/s: b >= {math.ceil(n):5d}"
                                                        for g, n in zip((10, 25, 100), need, strict=True)))


if __name__ == "__main__":
    main()
