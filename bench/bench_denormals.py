"""What subnormal floats cost a backward pass, with and without flushing them (kernels/cpu/denormals.py).

    PYTHONPATH=. python bench/bench_denormals.py [--model alexnet] [--batch 16] [--rounds 3]

A softmax that the loss has saturated hands the backward a gradient near 1e-39: every product below it
is then subnormal (below 1.18e-38 in float32). Here the net's backward is run from dlogits of two
scales, 1 (normal) and 1e-39 (as a saturated loss gives), with subnormals kept and flushed to zero
(FTZ/DAZ), interleaved round after round in one process, with PyTorch's backward of the same net
(bench/torch_peer.py, the same weights) under torch.set_flush_denormal(False / True) as the peer.

Correctness first: at scale 1 flushing must give the same bits as keeping (no value is subnormal);
at scale 1e-39 the flushed gradients must differ from the kept ones by less than the smallest normal
float32 (1.18e-38) times the number of terms (they are 0 where the kept ones are subnormal).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

TINY = float(np.finfo(np.float32).tiny)


def grads_of(net):
    return {(l.name, k): np.array(g) for l in net.layers for k, g in l.grads.items()}


def check(net, backward, denormals):
    """Correctness first: flushing changes nothing at scale 1, and only sub-TINY values at 1e-39."""
    for scale in (1.0, 1e-39):
        out = {}
        for flush in (False, True):
            denormals.flush_denormals(flush)
            backward(scale)
            out[flush] = grads_of(net)
        worst = max(float(np.abs(out[True][k] - out[False][k]).max()) for k in out[True])
        sub = sum(int(np.count_nonzero((g != 0) & (np.abs(g) < TINY))) for g in out[False].values())
        print(f"check scale {scale:g}: max |flushed - kept| over every gradient {worst:.3g}; "
              f"subnormal entries of the weight gradients when kept: {sub}")
        if scale == 1.0 and worst != 0:
            sys.exit("MISMATCH: flushing changed a gradient although no value was subnormal")
        if scale != 1.0 and worst > TINY * 1e4:
            sys.exit("MISMATCH: flushing changed a gradient by more than subnormal amounts")


def torch_backward(torch, args, x, sign):
    """The peer: PyTorch's forward + backward of the same net from dlogits sign * scale."""
    from rawcnn.engine.models import build
    torch.set_num_threads(args.threads)
    import torch_peer
    model = torch_peer.peer_from_net(build(args.model, seed=0, num_classes=2, weight_std="he")).train()
    xt, st = torch.from_numpy(x), torch.from_numpy(sign)

    def peer(scale):
        model.zero_grad(set_to_none=False)
        model(xt).backward(st * scale)
    return peer


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="alexnet")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=common.default_threads())
    args = ap.parse_args(argv)
    common.setup_threads(args.threads)
    from kernels.cpu import denormals
    from rawcnn.engine.models import build
    if not denormals.supported():
        sys.exit("MXCSR exists on x86-64 only: nothing to measure here")
    torch = common.try_import_torch()
    for line in common.machine_description(torch, no_torch=torch is None):
        print(line)
    net = build(args.model, seed=0, num_classes=2, weight_std="he")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((args.batch, *net.input_shape)).astype(np.float32)
    sign = np.where(rng.random((args.batch, 2)) < 0.5, -1.0, 1.0).astype(np.float32)  # (N, 2)
    net.reuse_buffers(True)
    net.forward(x, train=True)

    def backward(scale):
        net.backward(sign * np.float32(scale), input_grad=False)

    check(net, backward, denormals)
    peer = torch_backward(torch, args, x, sign) if torch is not None else None
    cases = [(s, f) for s in (1.0, 1e-39) for f in (False, True)]
    times = {(who, s, f): [] for who in ("rawcnn", "torch") for s, f in cases}
    for _ in range(args.rounds + 1):  # the first round warms up
        for s, f in cases:
            denormals.flush_denormals(f)
            t0 = time.perf_counter()
            backward(s)
            times[("rawcnn", s, f)].append(time.perf_counter() - t0)
            if peer is not None:
                torch.set_flush_denormal(f)
                t0 = time.perf_counter()
                peer(s)
                times[("torch", s, f)].append(time.perf_counter() - t0)
    med = lambda v: float(np.median(v[1:])) * 1e3  # noqa: E731
    print(f"{args.model} batch {args.batch}, median of {args.rounds} rounds, ms "
          f"(rawcnn: backward only; torch: forward + backward, dropout as in training)")
    print(f"{'dlogits scale':>14} {'subnormals':>10} {'rawcnn ms':>10} {'torch ms':>9}")
    for s, f in cases:
        tt = f"{med(times[('torch', s, f)]):9.1f}" if peer is not None else f"{'-':>9}"
        print(f"{s:14g} {'flushed' if f else 'kept':>10} {med(times[('rawcnn', s, f)]):10.1f} {tt}")


if __name__ == "__main__":
    main()
