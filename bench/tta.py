"""Test-time augmentation measured after the fact on a `rawcnn cv` run: does averaging the fold
models' probabilities over shifted, zoomed or flipped copies of each test image help?

    python bench/tta.py RUN_DIR DATA.h5 [--names FILE]

RUN_DIR is a finished `rawcnn cv --out RUN_DIR` on DATA.h5 (its oof.csv names every image's fold, and
fold_<f>/best.h5 is that fold's model). Each fold model predicts its own test fold under each view
below; the script checks first that the plain view reproduces oof.csv (to 1e-5), then prints the
pooled out-of-fold AUC and the mean +- sd of the per-fold AUCs for every view and for the means of
several views. --names: a file of image names (one per line, as in oof.csv) whose pooled AUC is
printed as well (e.g. the images no recipe choice ever saw).

Views (on the stored uint8 images, before the checkpoint's input contract; borders reflected):
    none      the image as stored
    hflip     mirrored left-right (the default recipe does not train on mirrored images)
    sh++ sh-- sh+- sh-+   shifted by 3 % of the side diagonally (the training augmentation's range
              is 5 %)
    zin zout  zoomed by +-5 % about the centre
The AUCs use rawcnn.training.metrics.roc_auc.
"""
import argparse
import csv
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rawcnn.data import load_dataset  # noqa: E402
from rawcnn.engine.checkpoint import load_checkpoint  # noqa: E402
from rawcnn.training.evaluate import forward_probs  # noqa: E402
from rawcnn.training.metrics import roc_auc  # noqa: E402
from rawcnn.training.train import make_to_input  # noqa: E402


def warp(x, matrix):
    """Every plane of x (N, C, S, S) uint8 through the 2x3 affine matrix, borders reflected."""
    out = np.empty_like(x)
    S = x.shape[-1]
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            out[i, c] = cv2.warpAffine(x[i, c], matrix, (S, S), borderMode=cv2.BORDER_REFLECT)
    return out


def views(side):
    d = round(0.03 * side)
    shift = lambda dx, dy: (lambda x: warp(x, np.float32([[1, 0, dx], [0, 1, dy]])))  # noqa: E731
    zoom = lambda s: (lambda x: warp(x, cv2.getRotationMatrix2D((side / 2, side / 2), 0, s)))  # noqa: E731
    return {"none": lambda x: x, "hflip": lambda x: np.ascontiguousarray(x[..., ::-1]),
            "sh++": shift(d, d), "sh--": shift(-d, -d), "sh+-": shift(d, -d), "sh-+": shift(-d, d),
            "zin": zoom(1.05), "zout": zoom(0.95)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("data")
    ap.add_argument("--names", default=None, help="a file of image names to report apart")
    args = ap.parse_args(argv)
    allp = load_dataset(args.data).split("all")
    with open(os.path.join(args.run_dir, "oof.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    if [r["name"] for r in rows] != list(allp.names):
        raise SystemExit(f"{args.run_dir}/oof.csv does not list {args.data}'s images in its order")
    fold = np.array([int(r["fold"]) for r in rows])  # (N,) 1..k
    y = allp.labels
    V = views(allp.images.shape[-1])
    P = {v: np.full(y.size, np.nan) for v in V}  # view -> (N,) out-of-fold P(abnormal)
    for f in np.unique(fold):
        net, ck = load_checkpoint(os.path.join(args.run_dir, f"fold_{f}", "best.h5"))
        to_input = make_to_input(net, ck["preprocessing"])
        test = np.flatnonzero(fold == f)
        for v, fn in V.items():
            P[v][test] = forward_probs(net, fn(allp.images[test]), to_input=to_input)[0][:, 1]
    drift = np.abs(P["none"] - np.array([float(r["p_abnormal"]) for r in rows])).max()
    print(f"plain view vs oof.csv: max |difference| {drift:.1e}")
    if drift > 1e-5:
        raise SystemExit("the plain view does not reproduce oof.csv: wrong data set or run folder")
    chosen = None
    if args.names:
        with open(args.names) as fh:
            wanted = {line.strip() for line in fh if line.strip()}
        chosen = np.array([n in wanted for n in allp.names])
    shifts = ["none", "sh++", "sh--", "sh+-", "sh-+"]
    combos = {**{v: P[v] for v in V},
              "mean(none, hflip)": (P["none"] + P["hflip"]) / 2,
              "mean(none, 4 shifts)": np.mean([P[v] for v in shifts], axis=0),
              "mean(all but hflip)": np.mean([P[v] for v in V if v != "hflip"], axis=0),
              "mean(all 8)": np.mean([P[v] for v in V], axis=0)}
    head = f"{'view':<22} {'pooled AUC':>10} {'per-fold AUC':>15}"
    print(head + (f" {'pooled, ' + str(int(chosen.sum())) + ' named':>16}" if chosen is not None else ""))
    for name, p in combos.items():
        per = [roc_auc(y[fold == f], p[fold == f]) for f in np.unique(fold)]
        line = f"{name:<22} {roc_auc(y, p):10.3f} {np.mean(per):8.3f} +- {np.std(per, ddof=1):.3f}"
        if chosen is not None:
            line += f" {roc_auc(y[chosen], p[chosen]):16.3f}"
        print(line)


if __name__ == "__main__":
    main()
