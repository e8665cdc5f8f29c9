"""Whole tasks behind the `rawcnn` commands that need more than one library call.

cli.py parses options and calls one function here (or in rawcnn.viz.commands); these functions
hold the little glue a task needs: building or loading the net, the new head and frozen layers of
transfer learning, the augmenter, the input contract.
"""
import json
import os

import numpy as np


def build_training_net(model, *, weights=None, num_classes=None, input_size=None, seed=0, init=0.01,
                       new_head_lr_mult=10.0, freeze_through=None, log=print):
    """(net, preprocessing) for `rawcnn train`.

    model: a built-in name or spec file (ignored for architecture when `weights` is given: the
    checkpoint's spec is used); weights: a rawcnn checkpoint (e.g. from `rawcnn import-weights`)
    whose weights start training; with num_classes differing from the checkpoint's, the last
    Linear is replaced by a fresh one with lr_mult = new_head_lr_mult (the paper's fine-tuning).
    preprocessing: the weights' input contract (dict) or None (train.py then zero-centres on the
    training split).
    """
    from .checkpoint import load_checkpoint
    from .models import build
    if weights is None:
        shape = (3, input_size, input_size) if input_size else None
        net = build(model, num_classes=num_classes or 2, input_shape=shape, seed=seed, weight_std=init)
        pre = None
    else:
        net, ck = load_checkpoint(weights)
        pre = ck.get("preprocessing")
        last = [l for l in net.layers if l.kind == "Linear"][-1]
        if num_classes and num_classes != last.out_features:
            net.replace_head(num_classes, seed=seed, lr_mult=new_head_lr_mult)
            log(f"replaced {last.name} ({last.out_features} outputs) with a fresh {num_classes}-way layer, "
                f"learning-rate multiplier {new_head_lr_mult:g}")
        if input_size and pre:
            from .preprocessing import Preprocessing
            pre = Preprocessing.from_json(pre).with_input_size(input_size).to_dict()
        if pre:  # trained on a prepared set of grey radiographs from here on (rawcnn.contract)
            pre = {**pre, "decode": "gray"}
    if freeze_through:
        net.freeze_through(freeze_through)
        log(f"frozen: every layer through {freeze_through} (no weight gradients, no backward below)")
    return net, pre


def run_training(model, data_path, out_dir, *, weights=None, num_classes=None, input_size=None,
                 new_head_lr_mult=10.0, freeze_through=None, init=0.01, epochs=60, batch_size=32, lr=1e-3,
                 momentum=0.9, weight_decay=5e-4, patience=5, max_drops=3, seed=0, translate=0.1,
                 rotate=10.0, augment=True, resume=False, device="cpu", progress=True, log=print, classes=None,
                 given=None, settings=None):
    """`rawcnn train`: build or load the net, train it on a prepared set; returns train()'s dict.

    Under `mpiexec -n R` every rank runs this; each reads only its rows of the set (rawcnn.distributed).
    A set whose class names or order differ from those of `weights` (when it keeps its head) or of
    the run being resumed is refused, unless `classes` maps them (rawcnn.contract.match_classes).
    given: with resume, the names of the options the user typed (the command line passes them):
    the model then defaults to the run's own (last.h5's spec) and a new lr takes effect.
    settings: None, or a recipe's settings (rawcnn.recipes.resolve), which then decide init, the
    input contract (unless --weights brings its own), augmentation and the recipe hooks, and
    override the keyword arguments of the same names.
    """
    if settings is not None:
        from .init import parse_init, weight_std_for_build
        init = weight_std_for_build(parse_init(settings["init"]))
        epochs, batch_size, lr, momentum = (settings["epochs"], settings["batch_size"], settings["lr"],
                                            settings["momentum"])
        weight_decay, patience, max_drops = settings["weight_decay"], settings["patience"], settings["max_drops"]
    from .checkpoint import read_checkpoint
    from .contract import contract_of, match_classes
    from .data import Augmenter
    from .distributed import from_environment, open_sharded
    from .train import train
    if resume and given is not None:
        model, weights = _resume_model(out_dir, model, weights, given)
    dist = from_environment(device)
    data = open_sharded(data_path, dist)  # load_dataset(data_path) in one process
    ref, what = None, "checkpoint"
    last = os.path.join(out_dir, "last.h5")
    if resume and os.path.exists(last):
        ref, what = contract_of(read_checkpoint(last)).class_names, f"checkpoint {last} (resume)"
    elif weights:
        ref = contract_of(read_checkpoint(weights)).class_names
        if ref is not None and len(ref) != (num_classes or len(data.class_names)):
            ref = None  # a new head: the old names do not apply
        what = f"checkpoint {weights}"
    note = match_classes(data, ref, classes, what=what)
    if note and dist.is_root:
        log(note)
    k = num_classes or len(data.class_names)
    if not weights and input_size is None:
        input_size = int(data.split("train").images.shape[-1])
    net, pre = build_training_net(model, weights=weights, num_classes=k, input_size=input_size, seed=seed,
                                  init=init, new_head_lr_mult=new_head_lr_mult, freeze_through=freeze_through,
                                  log=log)
    aug = Augmenter(max_translate=translate, max_rotate_deg=rotate, rng=seed) if augment else None
    recipe = None
    if settings is not None:
        from . import recipes
        aug, recipe = recipes.augmenter(settings, seed), recipes.hooks(settings)
        if pre is None:
            x = data.split("train").images  # (N, C, S, S) uint8
            pre = recipes.input_contract(settings["input_norm"], x, input_size).to_dict()
            if not resume:
                recipes.init_net(net, settings, x, pre, seed=seed, log=log)
        else:
            log("note: --weights brings its own weights and input contract; the recipe's init and input-norm "
                "are not used")
    return train(net, data, out_dir=out_dir, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                 weight_decay=weight_decay, patience=patience, max_drops=max_drops, seed=seed, augment=aug,
                 preprocessing=pre, resume=resume, progress=progress, log=log, device=device,
                 dist=dist if dist.size > 1 else None, given=set(given or ()), recipe=recipe)



def _resume_model(out_dir, model, weights, given):
    """(model, weights) for a resume: the run's own spec unless --model or --weights was given (then the
    net built from them must match the run's, which Trainer.restore checks)."""
    from .checkpoint import read_checkpoint
    last = os.path.join(os.fspath(out_dir), "last.h5")
    if "model" in given or "weights" in given or not os.path.exists(last):
        return model, weights
    return read_checkpoint(last)["spec"], None


def format_metrics(result):
    """A few lines of text for evaluate()'s dict."""
    keys = ("n", "accuracy", "sensitivity", "specificity", "precision", "f1", "auc")
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4f}" if np.isfinite(v) else "undefined (no case of the class it needs)"
        return str(v)
    lines = [f"{k:12s} {fmt(result.get(k))}" for k in keys if k in result]
    cm = result.get("confusion_matrix")
    if cm is not None:
        cm = np.asarray(cm)
        names = result.get("class_names") or [f"class {k}" for k in range(len(cm))]
        w = max(6, *(len(n) for n in names))
        lines.append("confusion matrix (rows: true class, columns: predicted)")
        lines.append(" " * (w + 2) + " ".join(f"{n:>{w}s}" for n in names))
        lines += [f"  {names[k]:>{w}s}" + "".join(f" {int(v):{w}d}" for v in row) for k, row in enumerate(cm)]
    return "\n".join(lines)


def predict_top(checkpoint, images, top=5, class_names=None, device="cpu", masks=None, masks_dir=None, log=None):
    """Rows (image, [(class index, name or None, probability), ...]) of the `top` classes per image.

    Names come from the class_names file when given, else from the checkpoint (meta class_names).
    masks / masks_dir: lung masks per image (--mask) or a folder matched by name (--masks).
    """
    from .checkpoint import read_checkpoint
    from .contract import contract_of, masks_for
    from .evaluate import predict
    names = None
    if class_names:
        with open(class_names) as fh:
            names = [line.strip() for line in fh if line.strip()]
    else:
        names = contract_of(read_checkpoint(checkpoint)).class_names
    lung = masks_for(list(images), masks, masks_dir)
    probs = predict(checkpoint, list(images), device=device, lung_masks=lung, log=log)
    if names is not None and len(names) != probs.shape[1] and not class_names:
        names = None  # the checkpoint's names belong to another head (e.g. before fine-tuning)
    if names is not None and len(names) != probs.shape[1]:
        raise ValueError(f"{class_names}: {len(names)} class names for a model with {probs.shape[1]} classes")
    rows = []
    for path, p in zip(images, probs):
        order = np.argsort(-p, kind="stable")[:top]
        rows.append((path, [(int(i), names[i] if names else None, float(p[i])) for i in order]))
    return rows


def write_json(path, obj):
    """Write JSON to a temporary file, then rename it onto `path`."""
    from .fileio import atomic_open
    with atomic_open(path, "w") as fh:
        json.dump(obj, fh, indent=1, default=float)


def format_score_table(res):
    """The localisation summary (viz score) as fixed-width text, one row per method."""
    from .viz.score import COLUMNS
    head = ["method", "n", *COLUMNS]
    rows = [[str(r.get(k)) if not isinstance(r.get(k), float) else f"{r[k]:.3f}" for k in head]
            for r in res["summary"]]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [head] + rows]
    channel = f", channel {res['channel']}" if res.get("channel") is not None else ""
    lines.append(f"layer {res.get('layer')}" + channel)
    return "\n".join(lines)
