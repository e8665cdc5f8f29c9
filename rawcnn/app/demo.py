"""`rawcnn demo`: the project's main job, end to end, on built-in synthetic data.

Shape legend: N images, S the input size (96 here), K = 2 classes (0 normal, 1 abnormal).

Steps (each writes files under out_dir; re-running into the same out_dir replaces them):
    1. synthesize   n_images radiographs of synth_size px in the Montgomery layout, half abnormal
                    (rawcnn.data.synthesize, seeded), with lung and lesion masks   -> data/
    2. prepare      the paper's preprocessing: lung ROI crop from the lung masks, resize to 1024,
                    CLAHE, resize to S x S; stratified 70/20/10 split (seeded)     -> prepared.h5
    3. train        the paper's custom model (5 conv + 3 FC, no padding) at S x S, SGD with
                    momentum, L2 5e-4, the plateau schedule; best.h5 by validation accuracy
                                                                                   -> run/
    4. evaluate     best.h5 on the test split: accuracy, sensitivity, specificity, AUC, ROC
                                                                                   -> run/eval.json, eval_roc.png
    5. localise     every heat-map method against the test split's lesion masks (pointing game,
                    energy share, IoU; rawcnn.viz.score)                           -> run/localisation*.csv
    6. report       one HTML page: curves, metrics, filters, channels, heat maps, dream images,
                    localisation                                                   -> run/report.html
    and summary.json, everything above in one file.

What the demo changes from the paper, and why (measured on this project's synthetic set, 2 CPU
cores, seed 0; logs of the experiments are summarised in the README):
- input 96 x 96 instead of 227 x 227: the same layer recipe, 4.4x fewer FLOPs per image (the
  smallest input it takes without padding is 91: pool5 then gives 256 x 1 x 1);
- weights He-initialised, w ~ N(0, 2 / fan_in), instead of N(0, 0.01). With N(0, 0.01) each of the
  8 weight layers scales its signal by about 0.01 * sqrt(fan_in) * 0.7 (0.2-0.5 from conv2 on),
  so the logits start near 1e-3 and their gradients vanish: the paper's settings (lr 1e-3) held
  the loss at ln 2 = 0.6931 and validation accuracy at 0.5 for 6 epochs on 560 images;
- the input standardised, (x - mean) / std with the training split's pixel mean and std, instead
  of the mean alone: He weights keep the input's scale through the net, and 0-255 inputs with
  He weights diverged (NaN loss in the first epoch at lr 1e-2);
- lr 3e-3 instead of 1e-3 and 15 epochs instead of 60 (plateau patience 3), no augmentation:
  training from scratch in a few minutes; best.h5 is the epoch of best validation accuracy.
"""
import json
import math
import os
import time

import numpy as np

from kernels import get_backend
from rawcnn.app.report import ReportOptions
from rawcnn.app.viz import ScoreOptions, report, viz_score
from rawcnn.data import default_settings, load_dataset, prepare, synthesize
from rawcnn.data.preprocessing import Preprocessing
from rawcnn.files.fileio import atomic_open, check_target
from rawcnn.files.jsonsafe import finite_or_null
from rawcnn.training.evaluate import evaluate_checkpoint, save_report
from rawcnn.training.from_recipe import train_recipe
from rawcnn.training.recipes import equivalent_command, resolve
from rawcnn.training.train import Run

DEMO_SETTINGS = {"n_images": 800, "synth_size": 256, "input_size": 96, "epochs": 15, "batch_size": 32,
                 "lr": 3e-3, "momentum": 0.9, "weight_decay": 5e-4, "patience": 3, "max_drops": 3,
                 "weight_std": "he", "augment": False}
QUICK_SETTINGS = {**DEMO_SETTINGS, "n_images": 40, "synth_size": 128, "epochs": 2, "batch_size": 16}
SPLIT = (0.7, 0.2, 0.1)


def demo_paths(out_dir):
    """Where the demo writes each file under out_dir: a dict name -> path (str)."""
    out = os.fspath(out_dir)
    run = os.path.join(out, "run")
    return {"out_dir": out, "data": os.path.join(out, "data"), "prepared": os.path.join(out, "prepared.h5"),
            "run_dir": run, "best_checkpoint": os.path.join(run, "best.h5"),
            "last_checkpoint": os.path.join(run, "last.h5"), "history": os.path.join(run, "history.csv"),
            "curves": os.path.join(run, "curves.png"), "eval_json": os.path.join(run, "eval.json"),
            "roc_png": os.path.join(run, "eval_roc.png"), "localisation": os.path.join(run, "localisation.csv"),
            "localisation_images": os.path.join(run, "localisation_images.csv"),
            "report": os.path.join(run, "report.html"), "summary": os.path.join(out, "summary.json")}


def _check_outputs(paths):
    """Refuse (OverwriteError) when out_dir already holds anything the demo would write or delete."""
    for key, p in paths.items():
        if key in ("out_dir", "run_dir"):
            continue
        if key == "data":
            if os.path.isdir(p) and any(os.scandir(p)):
                check_target(p, "synthetic data folder")
        elif os.path.lexists(p):
            check_target(p)
    run = paths["run_dir"]
    if os.path.isdir(run) and any(os.scandir(run)):
        check_target(run, "run folder")


def standardise(x, input_size):
    """The input contract: (x - mean) / std with the pixel mean and std of the training images.

    x: uint8 (N, C, S, S) training images; input_size: S. Returns a rawcnn.data.preprocessing.Preprocessing.
    """
    mean, std = float(x.mean(dtype=np.float64)), float(x.std(dtype=np.float64))
    if not std > 0:
        raise ValueError(f"standardise: the training images (shape {x.shape}) are constant; nothing to learn")
    return Preprocessing(channel_order="RGB", mean=(mean,) * 3, std=(std,) * 3, input_size=(input_size, input_size),
                         resize="direct", name="standardise",
                         notes=("pixel mean and std of the training split: (x - mean) / std",))


_strict = finite_or_null


def _data(paths, st, seed, progress, log):
    """Steps 1-2: synthesize and prepare. Returns the loaded PreparedData."""
    log(f"synthesizing {st['n_images']} radiographs ({st['synth_size']} px, seed {seed}) in {paths['data']}")
    synthesize(paths["data"], st["n_images"], size=st["synth_size"], seed=seed, abnormal_fraction=0.5,
               progress=progress, overwrite=True)
    log(f"preparing them (lung ROI crop, 1024 px, CLAHE, {st['input_size']} px) into {paths['prepared']}")
    summary = prepare(paths["data"], paths["prepared"], settings=default_settings(st["input_size"]), seed=seed,
                      split=SPLIT, progress=progress)
    c = summary.counts
    log(f"split (normal/abnormal): train {c[0, 0]}/{c[0, 1]}, val {c[1, 0]}/{c[1, 1]}, test {c[2, 0]}/{c[2, 1]}")
    return load_dataset(paths["prepared"])


def demo_recipe(st):
    """The demo's training settings as a rawcnn.training.recipes.Recipe (what `rawcnn train` flags spell)."""
    init = st["weight_std"] if st["weight_std"] == "he" else f"normal:{st['weight_std']}"
    return resolve("default", init=init, input_norm="standardise", lr=st["lr"], batch_size=st["batch_size"],
                   epochs=st["epochs"], momentum=st["momentum"], weight_decay=st["weight_decay"],
                   patience=st["patience"], max_drops=st["max_drops"], warmup_epochs=0.0, clip_norm=0.0,
                   select_by="val-acc", balance="none", augment=st["augment"], translate=0.05, rotate=5.0,
                   scale=0.0, brightness=0.0)


def _train(paths, st, data, seed, backend, progress, log):
    """Step 3: build the custom net and train it with the demo's recipe. Returns train()'s dict."""
    r = train_recipe(data, demo_recipe(st), Run(out_dir=paths["run_dir"], seed=seed, device=backend,
                                                progress=progress, log=log), model="custom")
    if r["status"] == "interrupted":
        raise KeyboardInterrupt(r["reason"])
    if r["status"] == "diverged" or r["best_checkpoint"] is None:
        raise RuntimeError(f"demo training {r['status']}: {r['reason']}")
    return r


def _localise(paths, data, backend, progress=False):
    """Step 5: every heat-map method's scores on the test split. Returns a dict for the summary."""
    t = viz_score(paths["best_checkpoint"], data, paths["localisation"], ScoreOptions(split="test"), device=backend,
                  progress=progress)
    rows = {r["method"]: {k: r[k] for k in ("n", "layer", "pointing", "energy_lesion", "iou")} for r in t["summary"]}
    best = max(rows, key=lambda m: -1.0 if math.isnan(rows[m]["pointing"]) else rows[m]["pointing"])
    return {"methods": rows, "best_method": best, "best_pointing": rows[best]["pointing"], "channel": t["channel"]}


def run_demo(out_dir, *, seed=0, device="cpu", quick=False, overrides=None, progress=True, log=print):
    """Synthesize, prepare, train, evaluate, localise and report (module docstring) under out_dir.

    The settings are DEMO_SETTINGS (or QUICK_SETTINGS with quick=True: a run of tens of seconds for
    tests, far too short to learn) with `overrides` applied: None or a dict of n_images, input_size,
    epochs (a value of None keeps the setting's). device: a backend name ('cpu', 'auto', 'cuda',
    'cudasim'). log: called with each message line.
    Returns the summary dict also written to summary.json: seed, device, quick, settings, counts
    ((3, 2) [split, class] image counts), train, test (metrics), localisation, seconds, paths.
    """
    st = dict(QUICK_SETTINGS if quick else DEMO_SETTINGS)
    unknown = set(overrides or ()) - {"n_images", "input_size", "epochs"}
    if unknown:
        raise ValueError(f"run_demo: unknown setting(s) {sorted(unknown)}; n_images, input_size and epochs can change")
    st.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if st["n_images"] < 20:
        raise ValueError(f"run_demo: n_images must be >= 20 so that every split gets images of both classes, "
                         f"got {st['n_images']}")
    be = get_backend(device)
    log(f"rawcnn demo on {be.name} ({be.device}), seed {seed}{' (quick)' if quick else ''}")
    paths, sec, t0 = demo_paths(out_dir), {}, time.perf_counter()
    _check_outputs(paths)
    data = _data(paths, st, seed, progress, log)
    sec["data"] = time.perf_counter() - t0
    r = _train(paths, st, data, seed, be.name, progress, log)
    sec["train"] = time.perf_counter() - t0 - sec["data"]
    log(f"evaluating {paths['best_checkpoint']} on the test split")
    ev = evaluate_checkpoint(paths["best_checkpoint"], data, split="test", device=be.name)
    save_report(ev, paths["run_dir"])
    log("scoring each heat-map method against the test split's lesion masks")
    loc = _localise(paths, data, be.name, progress)
    log(f"writing the report (filters, channels, heat maps, dream images) to {paths['report']}")
    report(paths["run_dir"], data=data, checkpoint=paths["best_checkpoint"], out=paths["report"],
           options=ReportOptions(title=f"rawcnn demo: custom model on synthetic radiographs (seed {seed})"),
           device=be.name, progress=progress)
    sec["evaluate_and_report"] = time.perf_counter() - t0 - sec["data"] - sec["train"]
    sec["total"] = time.perf_counter() - t0
    keys = ("n", "accuracy", "sensitivity", "specificity", "precision", "f1", "auc", "loss", "confusion_matrix")
    summary = _strict({"seed": seed, "device": be.name, "quick": bool(quick), "settings": st,
                       "counts": data.counts().tolist(),
                       "train": {k: r[k] for k in ("status", "reason", "epoch", "best_epoch", "best_val_acc")},
                       "test": {k: ev.get(k) for k in keys}, "localisation": loc, "seconds": sec, "paths": paths,
                       "train_command": equivalent_command(demo_recipe(st), paths["prepared"],
                                                           os.path.join(paths["out_dir"], "run-cli"), seed=seed,
                                                           device=be.name)})
    with atomic_open(paths["summary"], "w") as fh:
        json.dump(summary, fh, indent=1)
    for line in format_summary(summary):
        log(line)
    return summary


def format_summary(s):
    """The demo's closing lines: test metrics, localisation, timings and where every file is."""
    t, loc = s["test"], s["localisation"]
    p = s["paths"]

    def f(v):
        return "n/a" if v is None else f"{v:.3f}"
    return [f"test ({t['n']} images): accuracy {f(t['accuracy'])}, sensitivity {f(t['sensitivity'])}, "
            f"specificity {f(t['specificity'])}, AUC {f(t['auc'])}",
            f"pointing game on the abnormal test images: best method {loc['best_method']} "
            f"{f(loc['best_pointing'])} ("
            + ", ".join(f"{m} {f(v['pointing'])}" for m, v in loc["methods"].items()) + ")",
            f"time: data {s['seconds']['data']:.0f} s, training {s['seconds']['train']:.0f} s, evaluation and "
            f"report {s['seconds']['evaluate_and_report']:.0f} s, total {s['seconds']['total']:.0f} s",
            "the same training from the command line:",
            f"  {s['train_command']}",
            f"synthetic data   {p['data']}",
            f"prepared set     {p['prepared']}",
            f"checkpoints      {p['best_checkpoint']} (best), {p['last_checkpoint']} (last)",
            f"curves           {p['curves']} ({p['history']})",
            f"evaluation       {p['eval_json']}, ROC {p['roc_png']}",
            f"localisation     {p['localisation']} ({p['localisation_images']})",
            f"report           {p['report']}",
            f"summary          {p['summary']}"]
