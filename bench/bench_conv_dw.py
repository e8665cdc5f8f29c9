"""The convolution weight gradient: one GEMM per image (rawcnn's) vs one GEMM per batch slice, vs PyTorch.

    PYTHONPATH=. python bench/bench_conv_dw.py                          # every conv layer
    PYTHONPATH=. python bench/bench_conv_dw.py --models custom --repeats 5 --json dw.jsonl

Issue 14 asks for the weight gradient "by one large GEMM over the whole batch slice" if that
measures faster than rawcnn's per-image products. This measures it, for every convolution of
custom and AlexNet (batch 32, 227x227) and VGG16 (batch 4, 224x224):
  1. correctness first: the float32 dw of kernels/cpu/conv2d.py (per image and group,
     dw_g += dy[n, g] (F/G, P) @ cols[n, g]^T (P, K)) and of `one_gemm_dw` below (im2col writing
     the columns image beside image, colsT (K, N*P), then dw_g = dyT_g (F/G, N*P) @ colsT_g^T, one
     GEMM per group) against the float64 dw; max |err| / max |dw| must stay under 1e-4 (else FAIL);
  2. time of each (median of --repeats after a warm-up; im2col included in both, no dx), and
     PyTorch's weight gradient (torch.nn.grad.conv2d_weight, oneDNN) as the peer in the same run:
     "vs torch" is torch seconds / that row's seconds (> 1: faster than torch), and "one GEMM vs
     per image" is per-image seconds / one-GEMM seconds (> 1: the one GEMM is faster).
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are removed from the environment, as in bench_winograd.py.
"""
import os
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
from common import Rows, conv_layers, layer_bench_parser, layer_bench_setup, time_it  # noqa: E402

BOUND = 1e-4


def one_gemm_dw(dy, x, w, stride, padding, groups):
    """The alternative: the columns of all N images in a (C*KH*KW, N, P) layout (im2col writes
    through an (N, C*KH*KW, P) view of it), dy transposed to (F, N, P), then one GEMM per group
    whose reduction runs over every image and position at once."""
    import numpy as np

    from kernels.cpu.conv2d import _im2col_kernel
    N, F, OH, OW = dy.shape
    K, P = w[0].size, OH * OW
    Fg, CK = F // groups, K * groups
    colsT = np.empty((CK, N, P), x.dtype)
    _im2col_kernel(x, colsT.transpose(1, 0, 2), (*w.shape[2:], *stride, *padding, OH, OW))
    dyT = np.ascontiguousarray(dy.reshape(N, F, P).transpose(1, 0, 2))  # (F, N, P)
    dw2 = np.empty((F, K), x.dtype)
    for g in range(groups):
        fs, ks = slice(g * Fg, (g + 1) * Fg), slice(g * K, (g + 1) * K)
        np.matmul(dyT[fs].reshape(Fg, N * P), colsT[ks].reshape(K, N * P).T, out=dw2[fs])
    return dw2.reshape(w.shape)


def main(argv=None):
    ap = layer_bench_parser(__doc__)
    args = ap.parse_args(argv)
    torch, _ = layer_bench_setup(__file__, args)
    import numpy as np

    from kernels.cpu import conv2d as cpu
    from kernels.shapes import ConvGeometry
    from rawcnn.engine.gradcheck import max_diff
    rows = Rows(args.json)
    worst, speedups = 0.0, []
    for model, name, batch, xs, l in conv_layers(args.models.split(",")):
        rng = np.random.default_rng(0)
        hp = dict(stride=l.stride, padding=l.padding, groups=l.groups)  # one_gemm_dw's; the kernels take geometry
        geo = dict(geometry=ConvGeometry(**hp))
        x64 = np.maximum(rng.standard_normal(xs), 0)  # like a ReLU's output
        w64 = rng.standard_normal((l.out_channels, l.in_channels // l.groups, *l.kernel_size)) * 0.05
        ys = cpu.conv2d_forward(x64[:1], w64, np.zeros(l.out_channels), **geo).shape[1:]
        dy64 = rng.standard_normal((batch, *ys))
        dw64 = cpu.conv2d_backward(dy64, x64, w64, need=("dw",), **geo)[1]
        x, w, dy = (a.astype(np.float32) for a in (x64, w64, dy64))
        del x64, w64, dy64
        old = lambda: cpu.conv2d_backward(dy, x, w, need=("dw",), **geo)[1]  # noqa: E731
        one = lambda: one_gemm_dw(dy, x, w, **hp)  # noqa: E731
        err_one, err_old = max_diff(one(), dw64), max_diff(old(), dw64)
        worst = max(worst, err_one, err_old)
        status = "ok" if max(err_one, err_old) < BOUND else "FAIL"
        flops = 2 * dw64.size * dy.shape[2] * dy.shape[3] * batch
        t_one, t_old = time_it(one, repeats=args.repeats), time_it(old, repeats=args.repeats)
        t_to = None
        if torch is not None:
            xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
            t_to = time_it(lambda: torch.nn.grad.conv2d_weight(xt, w.shape, dyt, stride=l.stride,
                                                               padding=l.padding, groups=l.groups),
                           repeats=args.repeats)
        shape = f"{model} {name} {'x'.join(map(str, xs))}->{l.out_channels}" + (f" g{l.groups}" if l.groups > 1 else "")
        speedups.append(t_old.median / t_one.median)
        rows.add("conv dw per image (rawcnn)", "cpu", shape, t_old, flops / t_old.median / 1e9, "GF/s",
                 t_to.median / t_old.median if t_to else None, f"  err {err_old:.1e} {status}", err=err_old)
        rows.add("conv dw one GEMM (alt.)", "cpu", shape, t_one, flops / t_one.median / 1e9, "GF/s",
                 t_to.median / t_one.median if t_to else None,
                 f"  one GEMM vs per image {t_old.median / t_one.median:.2f}x  err {err_one:.1e}",
                 err=err_one, vs_per_image=t_old.median / t_one.median)
        if t_to is not None:
            rows.add("conv dw torch", "torch", shape, t_to, flops / t_to.median / 1e9, "GF/s")
    rows.save()
    print(f"one GEMM vs per image (> 1: one GEMM faster): {min(speedups):.2f}x .. {max(speedups):.2f}x "
          f"(median {float(np.median(speedups)):.2f}x); worst float32 error {worst:.1e} "
          f"(bound {BOUND:.0e}: {'met' if worst < BOUND else 'NOT met'})")


if __name__ == "__main__":
    main()
