"""The classifier head after LSUV, on a prepared set: how large the training-mode logits start, and
cross-validation with the head started otherwise (issue 19, bench/RESULTS.md "Real radiographs, round 4").

    python bench/head_init.py probe DATA [--model custom-gap] [--seed 0]
    python bench/head_init.py cv DATA --head zero|train-std --out DIR [--model custom-gap] [--seed 0]

probe   builds the model, LSUV-initialises it as `rawcnn train` does (default recipe, the training
        split's first 32-image seeded batch), then prints, on the first 64 training images, the
        logits' std and the cross-entropy in test mode (dropout off: what LSUV measures) and in
        training mode (dropout on: what the first SGD steps see).
cv      `rawcnn cv --folds 5 --model MODEL` with the default recipe, except that after LSUV the last
        Linear layer is
            zero        set to 0 (weights and bias): the logits start at 0, the loss at ln 2;
            train-std   divided by the std of the net's training-mode outputs on the LSUV batch
                        (the mean of 4 dropout draws), so the training logits start at unit std.
        These are experiments, not rawcnn options: the hook replaces
        rawcnn.training.from_recipe.init_net in this process only.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import rawcnn.training.from_recipe as from_recipe  # noqa: E402
from kernels import to_numpy  # noqa: E402
from rawcnn.data import load_dataset  # noqa: E402
from rawcnn.engine.layers import SoftmaxCrossEntropy  # noqa: E402
from rawcnn.engine.models import build  # noqa: E402
from rawcnn.training.cv import cross_validate  # noqa: E402
from rawcnn.training.recipes import resolve  # noqa: E402
from rawcnn.training.train import Run, make_to_input  # noqa: E402

_lsuv_init = from_recipe.init_net


def _head(net):
    return [layer for layer in net.layers if layer.kind == "Linear"][-1]


def head_hook(kind, say=print):
    """An init_net that runs LSUV, then starts the last Linear per `kind` ('zero' or 'train-std')."""
    def init_net(net, recipe, x_train, preprocessing, *, seed=0, batch=32, log=None):
        rows = _lsuv_init(net, recipe, x_train, preprocessing, seed=seed, batch=batch, log=log)
        head, xp = _head(net), net.be.xp
        if kind == "zero":
            for p in ("w", "b"):
                head.params[p] = xp.zeros_like(head.params[p])
            say(f"head: {head.name} set to 0")
        else:
            xb = from_recipe.lsuv_batch(net, x_train, preprocessing, seed=seed, batch=batch)  # (B, C, H, W)
            s = float(np.mean([to_numpy(net.forward(xb, train=True)).std(dtype=np.float64) for _ in range(4)]))
            head.params["w"] = head.params["w"] * xp.asarray(1.0 / s, dtype=head.params["w"].dtype)
            say(f"head: {head.name} divided by {s:.3f}, its training-mode output std on the LSUV batch")
        return rows
    return init_net


def probe(path, model, seed):
    data = load_dataset(path)
    x, y = data.split("train").images, data.split("train").labels
    recipe = resolve("default")
    pp = from_recipe.input_contract(recipe.input_norm, x, x.shape[-1])
    net = build(model, num_classes=2, input_shape=(3, x.shape[-1], x.shape[-1]), seed=seed)
    from_recipe.init_net(net, recipe, x, pp, seed=seed)
    xb, yb = make_to_input(net, pp)(x[:64]), y[:64]
    crit = SoftmaxCrossEntropy().to(net.be)
    for train in (False, True):
        lg = to_numpy(net.forward(xb, train=train))  # (64, 2)
        print(f"{'training' if train else 'test'} mode: logit std {lg.std(axis=0).round(3)}, std of the "
              f"difference {np.std(lg[:, 1] - lg[:, 0]):.3f}, loss {crit.forward(lg, yb):.4f} (ln 2 = 0.6931)")
    w = to_numpy(_head(net).params["w"])
    print(f"{_head(net).name} row norms after LSUV: {np.linalg.norm(w, axis=1).round(3)}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("probe", "cv"))
    ap.add_argument("data")
    ap.add_argument("--model", default="custom-gap")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--head", choices=("zero", "train-std"))
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    if a.what == "probe":
        return probe(a.data, a.model, a.seed)
    if not (a.head and a.out):
        ap.error("cv needs --head and --out")
    from_recipe.init_net = head_hook(a.head)
    cross_validate(a.data, resolve("default"), Run(out_dir=a.out, seed=a.seed, device="cpu", log=print), folds=5,
                   model=a.model)


if __name__ == "__main__":
    main()
