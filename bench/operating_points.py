"""Another threshold rule on finished cross-validations, without training again.

    python bench/operating_points.py RUN_DIR [RUN_DIR ...] --rule sensitivity=0.9 [--data SET.h5]

RUN_DIR is a finished `rawcnn cv --out RUN_DIR` (its cv.json, oof.csv and fold_<f>/). Each fold's
threshold is chosen by --rule (rawcnn.training.metrics.choose_threshold: youden, sensitivity=S,
specificity=S) on the fold's validation part and applied to its test fold, as `rawcnn cv
--threshold-rule` would have done. The validation part's probabilities come from fold_<f>/val.csv
(written by cv since 2026-12-07); for an older run give --data (the set it ran on): the folds are
rebuilt from the run's seed (rawcnn.training.cv.fold_parts) and fold_<f>/best.h5 (or last.h5) scores the
validation images again. Checked first: the rebuilt folds hold exactly the test images oof.csv gives
each fold. Prints per run the folds' thresholds and the pooled sensitivity / specificity on the
held-out folds, then their mean over the runs.
"""
import argparse
import csv
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rawcnn.training.cv import _at, _val_threshold, fold_parts, patients_of  # noqa: E402
from rawcnn.training.metrics import parse_threshold_rule  # noqa: E402


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def validation_parts(run_dir, rep, oof, data_path, patient_pattern):
    """[(labels, p_abnormal)] of each fold's validation part: val.csv, else rebuilt (see the docstring) and
    checked against the run's oof.csv rows `oof`."""
    k = rep["k"]
    files = [os.path.join(run_dir, f"fold_{f + 1}", "val.csv") for f in range(k)]
    if all(os.path.exists(p) for p in files):
        return [(np.array([int(r["label"]) for r in rows]), np.array([float(r["p_abnormal"]) for r in rows]))
                for rows in map(read_csv, files)]
    if data_path is None:
        raise SystemExit(f"{run_dir}: no fold_<f>/val.csv (a run older than them): give --data SET.h5")
    from rawcnn.data import load_dataset
    from rawcnn.engine.checkpoint import load_checkpoint
    from rawcnn.training.evaluate import forward_probs
    from rawcnn.training.train import make_to_input
    data = load_dataset(data_path)
    allp = data.split("all")
    groups = patients_of(data, patient_pattern)
    fold, splits = fold_parts(allp.labels, groups, k, rep["seed"])
    if [str(n) for n in allp.names] != [r["name"] for r in oof] or \
            not np.array_equal(fold + 1, [int(r["fold"]) for r in oof]):
        raise SystemExit(f"{run_dir}: the folds rebuilt from {data_path} and seed {rep['seed']} are not the run's")
    parts = []
    for f, (_, val, _) in enumerate(splits):
        ckpt = os.path.join(run_dir, f"fold_{f + 1}", "best.h5")
        net, ck = load_checkpoint(ckpt if os.path.exists(ckpt) else ckpt.replace("best.h5", "last.h5"), backend="cpu")
        probs, _ = forward_probs(net, allp.images[val], to_input=make_to_input(net, ck["preprocessing"]))
        parts.append((allp.labels[val], probs[:, 1]))
    return parts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="finished `rawcnn cv` folders")
    ap.add_argument("--rule", required=True, help="youden, sensitivity=S or specificity=S")
    ap.add_argument("--data", default=None, help="the set the runs used (only for runs without val.csv)")
    ap.add_argument("--patient-pattern", default=None, help="as given to the runs' `rawcnn cv`, if it was")
    a = ap.parse_args(argv)
    parse_threshold_rule(a.rule)
    sens, spec = [], []
    for run_dir in a.runs:
        rep = json.load(open(os.path.join(run_dir, "cv.json")))
        oof = read_csv(os.path.join(run_dir, "oof.csv"))
        y = np.array([int(r["label"]) for r in oof])
        p = np.array([float(r["p_abnormal"]) for r in oof])
        fold = np.array([int(r["fold"]) for r in oof]) - 1
        thr = np.empty(y.size)
        ts = []
        for f, (yv, pv) in enumerate(validation_parts(run_dir, rep, oof, a.data, a.patient_pattern)):
            t = _val_threshold(yv, pv, a.rule, lambda m, f=f: print(f"{run_dir} fold {f + 1}: {m}"))
            thr[fold == f] = t
            ts.append(t)
        at = _at(y, p, thr)
        sens.append(at["sensitivity"])
        spec.append(at["specificity"])
        print(f"{run_dir}: {a.rule} thresholds {' '.join(f'{t:.3f}' for t in ts)}; held-out pooled sensitivity "
              f"{at['sensitivity']:.3f}, specificity {at['specificity']:.3f}, accuracy {at['accuracy']:.3f}")
    if len(a.runs) > 1:
        print(f"mean of {len(a.runs)}: sensitivity {np.mean(sens):.3f}, specificity {np.mean(spec):.3f}")


if __name__ == "__main__":
    main()
