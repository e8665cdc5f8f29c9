"""k-fold cross-validation of a training recipe on a prepared data set (`rawcnn cv`).

Shape legend: N images in the set (all its splits pooled), k folds, K = 2 classes.

A small set is judged by cross-validation, not by one 10 % test split (14 images move the test
AUC by whole tenths). Procedure:

    folds     every image gets a fold 0..k-1: stratified by class, and patient-wise when the set
              knows patients (all images of a patient in one fold: a model never meets in its
              test fold a patient it trained on)
    per fold  test = fold f; of the other k-1 folds, one stratified fifth (by patient) is the
              validation part that picks the best epoch (the recipe's select_by), the rest trains.
              best.h5 then predicts the test fold: its out-of-fold probabilities.
    threshold each fold's best.h5 also scores its validation part, and a threshold is chosen there by
              a rule (rawcnn.training.metrics.choose_threshold: youden by default, or
              sensitivity=S / specificity=S), then applied to its test fold: an operating point chosen
              without the test images, unlike one read off the test ROC
    report    per fold and pooled over every out-of-fold prediction: AUC, accuracy, sensitivity,
              specificity at 0.5 and at the fold's chosen threshold; read off the pooled ROC (so
              descriptive), the sensitivity at specificity 0.90 and the specificity at sensitivity
              0.90; the pooled AUC's 95 % percentile-bootstrap interval
              (rawcnn.training.metrics.bootstrap_auc_ci, N_BOOT resamples, whole patients when the set
              knows them); mean and sd of the per-fold AUCs; one ROC figure with every fold's
              curve and the pooled one.

Files in out_dir: fold_<f>/ (each fold's training run, and val.csv: its validation images' P(abnormal)),
oof.csv (name, patient, fold, label, p_abnormal, threshold: the fold's chosen one), cv.json (the
report), cv_roc.png.

Repeated cross-validation (`rawcnn cv --repeats R`, summarise_repeats): on a hundred-odd images the
per-fold mean moves by up to 0.05 with the seed alone (bench/RESULTS.md, "Real radiographs, round 5"),
so a recipe is judged over R runs with seeds SEED .. SEED + R - 1 (other folds, other inits). The
summary gives the mean and sd of the R per-fold means, and the seed-averaged out-of-fold prediction:
each image's probabilities averaged over the R runs, every one of them from a fold model that never
trained on that image, so its pooled AUC is an honest estimate for the R x k models averaged. The
operating point is given as the mean over the R runs of each run's pooled sensitivity and specificity
at its folds' thresholds (the averaged probabilities have no validation part of their own to choose
one on).
"""
import csv
import dataclasses
import json
import math
import os
import re

import numpy as np
from matplotlib.figure import Figure

from rawcnn.data import load_dataset
from rawcnn.engine.checkpoint import load_checkpoint
from rawcnn.files.fileio import atomic_open
from rawcnn.files.jsonsafe import finite_or_null
from rawcnn.training.evaluate import forward_probs
from rawcnn.training.from_recipe import train_recipe
from rawcnn.training.metrics import (
    accuracy,
    bootstrap_auc_ci,
    choose_threshold,
    parse_threshold_rule,
    roc_auc,
    roc_curve,
    sensitivity,
    sensitivity_at_specificity,
    specificity,
    specificity_at_sensitivity,
)
from rawcnn.training.plots import _save
from rawcnn.training.train import make_to_input

N_BOOT = 2000  # bootstrap resamples for the pooled AUC's 95 % interval
ROC_READ = 0.90  # the pooled ROC is read at this specificity and at this sensitivity


def stratified_group_folds(labels, groups, k, rng):
    """A fold 0..k-1 for each image, whole groups at a time, each class spread evenly.

    labels: int (N,); groups: (N,) hashable patient ids (every image its own group when None);
    rng: numpy Generator. A group's class is its most frequent label. Returns int64 (N,).
    """
    labels = np.asarray(labels)
    groups = np.arange(labels.size) if groups is None else np.asarray(groups)
    ids, inv = np.unique(groups, return_inverse=True)  # (G,), (N,)
    g_label = np.array([np.bincount(labels[inv == g]).argmax() for g in range(ids.size)])  # (G,)
    g_size = np.bincount(inv)  # (G,) images per group
    fold_of_group = np.empty(ids.size, np.int64)  # (G,)
    for c in np.unique(g_label):
        members = rng.permutation(np.flatnonzero(g_label == c))  # this class's groups, shuffled
        members = members[np.argsort(-g_size[members], kind="stable")]  # big groups first
        load = np.zeros(k)  # (k,) images of class c given to each fold so far
        start = int(rng.integers(k))  # which fold gets the first of this class: spreads remainders
        for g in members:
            f = int(np.argmin(np.roll(load, -start))) + start
            fold_of_group[g] = f % k
            load[f % k] += g_size[g]
    return fold_of_group[inv]


def patients_of(data, pattern=None):
    """(N,) patient ids: the set's own (data.patients), or names matched by regex `pattern`, or None.

    pattern: a regular expression with one group, e.g. '^(P\\d+)_' ; a name it does not match is
    an error naming the image.
    """
    own = getattr(data, "patients", None)
    if own is not None:
        return np.asarray(own)
    if pattern is None:
        return None
    rx, out = re.compile(pattern), []
    for name in data.names:
        m = rx.search(str(name))
        if m is None:
            raise ValueError(f"--patient-pattern {pattern!r} does not match image name {name!r}")
        out.append(m.group(1) if rx.groups else m.group(0))
    return np.asarray(out)


class _Part:
    def __init__(self, images, labels):
        self.images, self.labels = images, labels


class FoldData:
    """train / val (/ test) parts of a pooled set, shaped like load_dataset's result for train()."""

    def __init__(self, data, parts):
        self.parts, self.class_names = parts, data.class_names
        self.settings = getattr(data, "settings", None)

    def split(self, name):
        return self.parts[name]


def _at(y, p, threshold):
    """accuracy, sensitivity, specificity of labels y when P(abnormal) p >= threshold (scalar or (N,)) calls 1."""
    pred = (p >= threshold).astype(np.int64)
    return {"accuracy": accuracy(y, pred), "sensitivity": sensitivity(y, pred), "specificity": specificity(y, pred)}


def _metrics(y, p):
    """AUC (NaN with one class), accuracy, sensitivity, specificity at 0.5 for labels y, P(abnormal) p."""
    auc = roc_auc(y, p) if np.unique(y).size == 2 else math.nan
    return {"n": int(y.size), "auc": auc, **_at(y, p, 0.5)}


def _roc_reads(y, p):
    """The pooled ROC read at ROC_READ: sensitivity at that specificity, specificity at that sensitivity."""
    return {"at": ROC_READ, "sensitivity_at_specificity": sensitivity_at_specificity(y, p, ROC_READ),
            "specificity_at_sensitivity": specificity_at_sensitivity(y, p, ROC_READ)}


def _val_threshold(y_val, p_val, rule, log):
    """choose_threshold on a fold's validation part; 0.5 (said in the log) when that part holds one class."""
    if np.unique(y_val).size < 2:
        log(f"the validation part holds one class only: threshold 0.5 instead of {rule}")
        return 0.5
    return choose_threshold(y_val, p_val, rule)


def cross_validate(data, recipe, run, *, folds=5, model="custom", patient_pattern=None, init_from=None,
                   threshold_rule="youden"):
    """Cross-validate `recipe` (a rawcnn.training.recipes.Recipe) on every image of `data`.

    data: a prepared set's path or load_dataset's result, two classes. run: a
    rawcnn.training.train.Run whose out_dir holds the folds' runs and the report, whose seed assigns
    the folds and trains every fold, and whose device, progress and log every fold uses.
    init_from: a checkpoint every fold's net starts from (rawcnn.training.from_recipe.train_recipe;
    e.g. pretrained on synthetic radiographs), else `model` is built and initialised per the recipe.
    threshold_rule: how each fold's threshold is chosen on its validation part (choose_threshold).
    Returns the report dict (also cv.json): folds (per-fold metrics, best epoch, the chosen threshold and
    the metrics at it), pooled (out-of-fold metrics at 0.5 and at each image's fold threshold, the ROC
    reads), auc_mean, auc_sd, settings (the recipe), seed, threshold_rule, paths.
    """
    parse_threshold_rule(threshold_rule)  # a bad rule fails before any training
    out_dir, seed, device, log = run.out_dir, run.seed, run.device, run.log
    data = load_dataset(data) if isinstance(data, (str, os.PathLike)) else data
    if len(data.class_names) != 2:
        raise ValueError(f"rawcnn cv: needs a two-class set, {getattr(data, 'path', 'the set')} has "
                         f"{len(data.class_names)} classes")
    k = int(folds)
    allp = data.split("all")
    y = allp.labels
    if k < 2 or np.bincount(y, minlength=2).min() < k:
        raise ValueError(f"rawcnn cv: --folds {k} needs 2 <= folds <= the smaller class's size "
                         f"({np.bincount(y, minlength=2).min()})")
    groups = patients_of(data, patient_pattern)
    fold, splits = fold_parts(y, groups, k, seed)  # (N,), k x (train, val, test)
    os.makedirs(out_dir, exist_ok=True)
    oof = np.full(y.size, np.nan)  # (N,) out-of-fold P(abnormal)
    thr = np.full(y.size, np.nan)  # (N,) the threshold of each image's fold, chosen on that fold's validation part
    rows = []
    for f, (tr, val, test) in enumerate(splits):
        parts = {n: _Part(allp.images[i], y[i]) for n, i in (("train", tr), ("val", val), ("test", test))}
        run_dir = os.path.join(out_dir, f"fold_{f + 1}")
        log(f"fold {f + 1}/{k}: train {tr.size}, validation {val.size}, test {test.size} images")
        fold_run = dataclasses.replace(run, out_dir=run_dir, log=lambda m, f=f: log(f"  [fold {f + 1}] {m}"))
        r = train_recipe(FoldData(data, parts), recipe, fold_run, model=model, init_from=init_from)
        if r["status"] == "interrupted":
            raise KeyboardInterrupt(r["reason"])
        ckpt = r["best_checkpoint"] or r["last_checkpoint"]
        net, ck = load_checkpoint(ckpt, backend=device)
        to_input = make_to_input(net, ck["preprocessing"])
        probs, _ = forward_probs(net, allp.images[test], to_input=to_input)
        oof[test] = probs[:, 1]
        val_probs, _ = forward_probs(net, allp.images[val], to_input=to_input)  # apart: test's bits unchanged
        _write_val(run_dir, allp.names, groups, y, val, val_probs[:, 1])
        thr[test] = t = _val_threshold(y[val], val_probs[:, 1], threshold_rule, fold_run.log)
        m = _metrics(y[test], oof[test])
        at = _at(y[test], oof[test], t)
        rows.append({"fold": f + 1, **m, "best_epoch": r["best_epoch"], "status": r["status"],
                     "threshold": t, "at_threshold": at})
        log(f"fold {f + 1}/{k}: AUC {m['auc']:.3f}, accuracy {m['accuracy']:.3f}, sensitivity "
            f"{m['sensitivity']:.3f}, specificity {m['specificity']:.3f} (best epoch {r['best_epoch']}, "
            f"{r['status']}); at the validation's {threshold_rule} threshold {t:.3f}: sensitivity "
            f"{at['sensitivity']:.3f}, specificity {at['specificity']:.3f}")
    aucs = np.array([r["auc"] for r in rows], dtype=np.float64)
    pooled = _metrics(y, oof)
    pooled["auc_ci95"] = list(bootstrap_auc_ci(y, oof, groups, n_boot=N_BOOT, level=0.95, seed=seed))
    pooled["at_threshold"] = _at(y, oof, thr)
    pooled["roc_reads"] = _roc_reads(y, oof)
    report = {"folds": rows, "pooled": pooled, "auc_mean": float(np.nanmean(aucs)), "threshold_rule": threshold_rule,
              "auc_sd": float(np.nanstd(aucs, ddof=1)) if k > 1 else 0.0, "settings": recipe.as_dict(), "seed": seed,
              "model": model, "init_from": None if init_from is None else os.fspath(init_from), "k": k,
              "patient_wise": groups is not None}
    report["paths"] = _write(out_dir, report, allp, y, fold, oof, thr, groups)
    for line in format_report(report):
        log(line)
    return report


def fold_parts(y, groups, k, seed):
    """cross_validate's split: (fold (N,) int64, [(train, val, test) index arrays for each fold]).

    fold: stratified_group_folds(y, groups, k) drawn from default_rng(seed); fold f's test part is fold f,
    and of the rest one stratified fifth (by patient) drawn from default_rng([seed, f]) is its validation part.
    """
    fold = stratified_group_folds(y, groups, k, np.random.default_rng(seed))  # (N,)
    splits = []
    for f in range(k):
        test, rest = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        g_rest = None if groups is None else groups[rest]
        inner = stratified_group_folds(y[rest], g_rest, 5, np.random.default_rng([seed, f]))
        splits.append((rest[inner != 0], rest[inner == 0], test))
    return fold, splits


def _write_val(run_dir, names, groups, y, val, p_val):
    """run_dir/val.csv: the fold's validation images and best.h5's P(abnormal) on them (another threshold
    rule can be applied to them later: bench/operating_points.py)."""
    with atomic_open(os.path.join(run_dir, "val.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "patient", "label", "p_abnormal"])
        for i, p in zip(val, p_val, strict=True):
            w.writerow([names[i], groups[i] if groups is not None else names[i], int(y[i]), f"{p:.6f}"])


def _write(out_dir, report, allp, y, fold, oof, thr, groups):
    """oof.csv, cv.json and cv_roc.png, each through a temporary file. Returns their paths."""
    paths = {"oof": os.path.join(out_dir, "oof.csv"), "json": os.path.join(out_dir, "cv.json"),
             "roc": os.path.join(out_dir, "cv_roc.png")}
    with atomic_open(paths["oof"], "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "patient", "fold", "label", "p_abnormal", "threshold"])
        for i in range(y.size):
            w.writerow([allp.names[i], groups[i] if groups is not None else allp.names[i], int(fold[i]) + 1,
                        int(y[i]), f"{oof[i]:.6f}", f"{thr[i]:.6f}"])
    fig = Figure(figsize=(5.5, 5.5))
    ax = fig.subplots()
    for f in range(report["k"]):
        sel = fold == f
        if np.unique(y[sel]).size == 2:
            fpr, tpr, _ = roc_curve(y[sel], oof[sel])
            ax.plot(fpr, tpr, lw=1, alpha=0.6, label=f"fold {f + 1} (AUC {report['folds'][f]['auc']:.3f})")
    fpr, tpr, _ = roc_curve(y, oof)
    ax.plot(fpr, tpr, "k-", lw=2.5, label=f"pooled out-of-fold (AUC {report['pooled']['auc']:.3f})")
    at = report["pooled"]["at_threshold"]
    ax.plot([1 - at["specificity"]], [at["sensitivity"]], "ko", ms=8, mfc="w", mew=2,
            label=f"at each fold's threshold ({report['threshold_rule']} on validation)")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    ax.set_xlabel("false-positive rate (1 - specificity)")
    ax.set_ylabel("true-positive rate (sensitivity)")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"{report['k']}-fold cross-validation, mean AUC {report['auc_mean']:.3f} "
                 f"+- {report['auc_sd']:.3f}")
    fig.tight_layout()
    _save(fig, paths["roc"])
    with atomic_open(paths["json"], "w") as fh:
        json.dump(finite_or_null({**report, "paths": paths}), fh, indent=1)
    return paths


def format_report(rep):
    """The per-fold table and the pooled line, as text lines."""
    def f(v):
        return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"
    lines = [" " * 19 + " at 0.5 ".center(34, "-") + "  " + " at the validation's threshold ".center(35, "-"),
             "fold     n    AUC  accuracy  sensitivity  specificity  threshold  sensitivity  specificity  best epoch"]
    for r in rep["folds"]:
        at = r["at_threshold"]
        lines.append(f"{r['fold']:4d}  {r['n']:4d}  {f(r['auc']):>5s}  {f(r['accuracy']):>8s}  "
                     f"{f(r['sensitivity']):>11s}  {f(r['specificity']):>11s}  {f(r['threshold']):>9s}  "
                     f"{f(at['sensitivity']):>11s}  {f(at['specificity']):>11s}  {r['best_epoch']:>10}")
    p = rep["pooled"]
    ci = p.get("auc_ci95")
    ci = f" (95 % bootstrap interval {f(ci[0])}-{f(ci[1])})" if ci else ""
    at, rd = p["at_threshold"], p["roc_reads"]
    lines.append(f"pooled out-of-fold ({p['n']} images): AUC {f(p['auc'])}{ci}, accuracy {f(p['accuracy'])}, "
                 f"sensitivity {f(p['sensitivity'])}, specificity {f(p['specificity'])}")
    lines.append(f"pooled at each fold's threshold ({rep['threshold_rule']} on its validation part): accuracy "
                 f"{f(at['accuracy'])}, sensitivity {f(at['sensitivity'])}, specificity {f(at['specificity'])}")
    lines.append(f"read off the pooled ROC (descriptive, not held out): sensitivity "
                 f"{f(rd['sensitivity_at_specificity'])} at specificity >= {rd['at']:.2f}, specificity "
                 f"{f(rd['specificity_at_sensitivity'])} at sensitivity >= {rd['at']:.2f}")
    lines.append(f"per-fold AUC {f(rep['auc_mean'])} +- {f(rep['auc_sd'])} (mean +- sd over {rep['k']} folds)")
    return lines


def summarise_repeats(reports, out_dir, log=print):
    """The summary of R cross-validations of one set (cross_validate's reports, R >= 2): repeats.json and
    oof_mean.csv in out_dir (through temporary files), its lines logged. Returns the summary dict.

    Each report's oof.csv is read back (every run covers the same N images, in the same order); the
    seed-averaged prediction is their mean P(abnormal) per image.
    """
    runs = []
    for rep in reports:
        with open(rep["paths"]["oof"], newline="") as fh:
            runs.append(list(csv.DictReader(fh)))
    names = [row["name"] for row in runs[0]]
    if any([row["name"] for row in r] != names for r in runs[1:]):
        raise ValueError("rawcnn cv --repeats: the runs' oof.csv files list different images")
    y = np.array([int(row["label"]) for row in runs[0]])  # (N,)
    p = np.mean([[float(row["p_abnormal"]) for row in r] for r in runs], axis=0)  # (N,) seed-averaged
    groups = None if not reports[0]["patient_wise"] else np.array([row["patient"] for row in runs[0]])
    means = np.array([rep["auc_mean"] for rep in reports], dtype=np.float64)  # (R,) per-fold means
    pooled = _metrics(y, p)
    pooled["auc_ci95"] = list(bootstrap_auc_ci(y, p, groups, n_boot=N_BOOT, level=0.95, seed=reports[0]["seed"]))
    pooled["roc_reads"] = _roc_reads(y, p)
    summary = {"repeats": [{"seed": rep["seed"], "auc_mean": rep["auc_mean"], "auc_sd": rep["auc_sd"],
                            "pooled_auc": rep["pooled"]["auc"], "json": rep["paths"]["json"]} for rep in reports],
               "auc_mean_of_means": float(np.nanmean(means)),
               "auc_sd_of_means": float(np.nanstd(means, ddof=1)),
               "pooled_auc_mean": float(np.nanmean([rep["pooled"]["auc"] for rep in reports])),
               "at_threshold_mean": {m: float(np.nanmean([rep["pooled"]["at_threshold"][m] for rep in reports]))
                                     for m in ("accuracy", "sensitivity", "specificity")},
               "threshold_rule": reports[0]["threshold_rule"], "seed_averaged": pooled, "k": reports[0]["k"]}
    paths = {"oof_mean": os.path.join(out_dir, "oof_mean.csv"), "json": os.path.join(out_dir, "repeats.json")}
    with atomic_open(paths["oof_mean"], "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "patient", "label", "p_abnormal"])
        for i, row in enumerate(runs[0]):
            w.writerow([row["name"], row["patient"], int(y[i]), f"{p[i]:.6f}"])
    summary["paths"] = paths
    with atomic_open(paths["json"], "w") as fh:
        json.dump(finite_or_null(summary), fh, indent=1)
    for line in format_repeats(summary):
        log(line)
    return summary


def format_repeats(summary):
    """The summary of repeated cross-validations, as text lines."""
    r = len(summary["repeats"])
    seeds = ", ".join(str(x["seed"]) for x in summary["repeats"])
    each = ", ".join(f"{x['auc_mean']:.3f}" for x in summary["repeats"])
    sa = summary["seed_averaged"]
    lo, hi = sa["auc_ci95"]
    return [f"{r} cross-validations (seeds {seeds}): per-fold AUC means {each}",
            f"per-fold AUC {summary['auc_mean_of_means']:.3f} +- {summary['auc_sd_of_means']:.3f} (mean +- sd of "
            f"the {r} means); pooled out-of-fold AUC {summary['pooled_auc_mean']:.3f} (mean of the {r})",
            f"at each fold's threshold ({summary['threshold_rule']} on its validation part), mean of the {r}: "
            f"sensitivity {summary['at_threshold_mean']['sensitivity']:.3f}, specificity "
            f"{summary['at_threshold_mean']['specificity']:.3f}",
            f"seed-averaged out-of-fold ({sa['n']} images, each averaged over {r} models that never trained on it): "
            f"AUC {sa['auc']:.3f} (95 % bootstrap interval {lo:.3f}-{hi:.3f}), accuracy {sa['accuracy']:.3f}; "
            f"read off its ROC: sensitivity {sa['roc_reads']['sensitivity_at_specificity']:.3f} at specificity "
            f">= {sa['roc_reads']['at']:.2f}, specificity {sa['roc_reads']['specificity_at_sensitivity']:.3f} at "
            f"sensitivity >= {sa['roc_reads']['at']:.2f}"]
