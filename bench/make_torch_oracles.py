"""Freeze PyTorch's float64 forward and backward of conv2d, LRN and max-pool into tests/data/torch_oracles.npz.

The tests that compare rawcnn's kernels with PyTorch would be skipped wherever torch is absent
(CI). This script runs torch once, on small odd-shaped cases (stride, padding, groups, even LRN
windows, ceil_mode), and writes the inputs, torch's outputs and torch's version into one compact
file; tests/test_torch_oracles.py (reference and cpu tiers) and tests/cuda/test_cuda_torch_oracles.py
(the CUDA tier) check every backend against it without torch.

    python bench/make_torch_oracles.py                      # writes tests/data/torch_oracles.npz
    python bench/make_torch_oracles.py --out /tmp/o.npz --seed 0

Layout of the file (numpy arrays, no pickle): 'torch_version', 'seed' and, for case i of op
'conv2d' / 'lrn' / 'maxpool2d', '<op>/<i>/params' (a JSON string of the hyper-parameters) and
'<op>/<i>/<name>' for each array: conv2d x, w, b, dy -> y, dx, dw, db; lrn x, dy -> y, dx;
maxpool2d x, dy -> y, dx (x has no ties, so the winner is unambiguous).
"""
import argparse
import json
import os

import numpy as np

CONV = [  # x shape (N, C, H, W), F, kernel (KH, KW), stride, padding, groups
    dict(x=(2, 3, 7, 9), F=4, kernel=(3, 3), stride=(1, 1), padding=(0, 0), groups=1),
    dict(x=(2, 4, 9, 8), F=6, kernel=(3, 2), stride=(2, 1), padding=(1, 2), groups=2),
    dict(x=(1, 6, 11, 10), F=3, kernel=(5, 5), stride=(3, 2), padding=(2, 1), groups=3),
    dict(x=(3, 2, 5, 5), F=2, kernel=(1, 1), stride=(1, 1), padding=(0, 0), groups=1),
    dict(x=(1, 3, 13, 13), F=4, kernel=(7, 7), stride=(2, 2), padding=(3, 3), groups=1),
]
LRN = [  # x shape, size, alpha, beta, k
    dict(x=(2, 7, 4, 5), size=5, alpha=1e-4, beta=0.75, k=2.0),
    dict(x=(2, 5, 3, 3), size=4, alpha=0.3, beta=0.5, k=1.0),   # even window: [c - 2, c + 1]
    dict(x=(1, 3, 2, 4), size=7, alpha=2.0, beta=1.3, k=0.5),   # window wider than C
]
POOL = [  # x shape, kernel, stride, padding, ceil_mode
    dict(x=(2, 3, 7, 6), kernel=(3, 3), stride=(2, 2), padding=(1, 1), ceil_mode=True),
    dict(x=(1, 2, 9, 8), kernel=(3, 2), stride=(2, 2), padding=(0, 0), ceil_mode=False),
    dict(x=(2, 2, 6, 7), kernel=(2, 3), stride=(1, 2), padding=(1, 1), ceil_mode=True),
    dict(x=(1, 4, 13, 13), kernel=(3, 3), stride=(2, 2), padding=(0, 0), ceil_mode=True),
]


def make(seed=0):
    import torch
    import torch.nn.functional as tf
    rng = np.random.default_rng(seed)
    out = {"torch_version": np.array(torch.__version__), "seed": np.array(seed)}

    def grad(*arrays):
        return [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]

    for i, c in enumerate(CONV):
        C = c["x"][1]
        x, w, b = rng.standard_normal(c["x"]), rng.standard_normal((c["F"], C // c["groups"]) + c["kernel"]), \
            rng.standard_normal(c["F"])
        tx, tw, tb = grad(x, w, b)
        ty = tf.conv2d(tx, tw, tb, stride=c["stride"], padding=c["padding"], groups=c["groups"])
        dy = rng.standard_normal(tuple(ty.shape))
        ty.backward(torch.tensor(dy))
        params = {k: c[k] for k in ("stride", "padding", "groups")}
        out.update(_case("conv2d", i, params, x=x, w=w, b=b, dy=dy, y=ty.detach().numpy(),
                         dx=tx.grad.numpy(), dw=tw.grad.numpy(), db=tb.grad.numpy()))
    for i, c in enumerate(LRN):
        x = rng.standard_normal(c["x"]) * 2
        (tx,) = grad(x)
        ty = tf.local_response_norm(tx, c["size"], alpha=c["alpha"], beta=c["beta"], k=c["k"])
        dy = rng.standard_normal(tuple(ty.shape))
        ty.backward(torch.tensor(dy))
        params = {k: c[k] for k in ("size", "alpha", "beta", "k")}
        out.update(_case("lrn", i, params, x=x, dy=dy, y=ty.detach().numpy(), dx=tx.grad.numpy()))
    for i, c in enumerate(POOL):
        x = rng.permutation(int(np.prod(c["x"]))).reshape(c["x"]) / 7.0 - 3.0  # distinct values: no ties
        (tx,) = grad(x)
        ty = tf.max_pool2d(tx, c["kernel"], c["stride"], c["padding"], ceil_mode=c["ceil_mode"])
        dy = rng.standard_normal(tuple(ty.shape))
        ty.backward(torch.tensor(dy))
        params = {"kernel_size": c["kernel"], "stride": c["stride"], "padding": c["padding"],
                  "ceil_mode": c["ceil_mode"]}
        out.update(_case("maxpool2d", i, params, x=x, dy=dy, y=ty.detach().numpy(), dx=tx.grad.numpy()))
    return out


def _case(op, i, params, **arrays):
    d = {f"{op}/{i}/params": np.array(json.dumps(params))}
    d.update({f"{op}/{i}/{k}": np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()})
    return d


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data",
                                                  "torch_oracles.npz"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    data = make(a.seed)
    tmp = a.out + ".tmp.npz"
    np.savez_compressed(tmp, **data)
    os.replace(tmp, a.out)
    n = sum(1 for k in data if k.endswith("/params"))
    print(f"wrote {os.path.normpath(a.out)}: {n} cases, torch {data['torch_version']}, "
          f"{os.path.getsize(a.out)} bytes")


if __name__ == "__main__":
    main()
