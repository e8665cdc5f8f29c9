"""Random search over training hyper-parameters: each trial a short run of the same train().

A search space is a JSON object, one entry per hyper-parameter (any subset; the rest keep the
given recipe's values, with the command's flags, and the model's own dropout):

    {"lr":           {"log_uniform": [1e-4, 1e-2]},   exp(U(log lo, log hi)), lo > 0
     "momentum":     {"uniform": [0.8, 0.99]},        U(lo, hi)
     "weight_decay": {"log_uniform": [1e-5, 1e-3]},   the L2 factor
     "dropout":      {"uniform": [0.3, 0.6]},         p of every Dropout layer of the model
     "batch_size":   {"choice": [16, 32]}}            one of the listed values, equally likely
A plain number fixes a value ("momentum": 0.9). Random search rather than a grid: with few
trials it tries more distinct values of the parameters that matter (Bergstra & Bengio, JMLR 2012).
The recipe given (rawcnn.training.recipes.Recipe, with the command's flags) supplies everything
not sampled: learning rate, momentum, L2 and batch size when the space leaves them out, the init,
the input contract (uint8 data), warm-up, clipping, the selection metric, class balance, and as its
epochs the epochs of every trial.

Trial t draws its values, in the key order above, from one Generator seeded with `seed`; every
trial builds its net and trains with that same `seed` (and the augmenter restarts from the same
state), so trials differ only in the sampled values. Files in out_dir: trial_###/ (each trial's
checkpoints and curves), results.csv (one row per trial, best first by the selection metric) and
best.json (the best configuration).
"""
import csv
import dataclasses
import json
import math
import os
import time

import numpy as np
from tqdm import tqdm

from rawcnn.engine.init import parse_init, weight_std_for_build
from rawcnn.engine.models import build, load_spec
from rawcnn.engine.optim import METRIC_NAMES
from rawcnn.files.fileio import atomic_open
from rawcnn.files.validate import InputError, parse_json
from rawcnn.training.from_recipe import init_net, input_contract
from rawcnn.training.train import get_split, train

KEYS = ("lr", "momentum", "weight_decay", "dropout", "batch_size")
DISTRIBUTIONS = ("log_uniform", "uniform", "choice")
RANGES = {  # what each value must satisfy, and how to say it
    "lr": (lambda v: v > 0, "> 0"),
    "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "batch_size": (lambda v: float(v).is_integer() and v >= 1, "an integer >= 1"),
}
RESULT_FIELDS = ("rank", "trial", *KEYS, "select_by", "best_score", "best_val_acc", "best_epoch", "val_loss",
                 "status", "seconds", "out_dir")


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_value(key, v, what):
    ok, rule = RANGES[key]
    if not _is_number(v) or not ok(v):
        raise ValueError(f"search space {key!r}: {what} must be {rule}, got {v!r}")


def validate_space(space):
    """Raise ValueError naming the key at fault unless `space` is a valid search space (see above)."""
    if not isinstance(space, dict):
        raise ValueError(f"search space must be a JSON object of {{name: distribution}}, got {type(space).__name__}")
    for key, dist in space.items():
        if key not in KEYS:
            raise ValueError(f"search space: unknown key {key!r}; known keys: {', '.join(KEYS)}")
        if _is_number(dist):
            _check_value(key, dist, "the fixed value")
            continue
        if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
            raise ValueError(f"search space {key!r}: give a number or one of "
                             f"{{\"log_uniform\": [lo, hi]}}, {{\"uniform\": [lo, hi]}}, {{\"choice\": [...]}}; "
                             f"got {json.dumps(dist)}")
        kind, args = next(iter(dist.items()))
        if kind == "choice":
            _check_choice(key, args)
        else:
            _check_bounds(key, kind, args)
    return space


def _check_choice(key, args):
    """Raise ValueError unless `args`, the list of a 'choice' for `key`, is non-empty and every value fits the key."""
    if not isinstance(args, list) or not args:
        raise ValueError(f"search space {key!r}: 'choice' needs a non-empty list, got {args!r}")
    for v in args:
        _check_value(key, v, "each choice")


def _check_bounds(key, kind, args):
    """Raise ValueError unless `args` is a [lo, hi] that `kind` ('uniform' or 'log_uniform') can draw `key` from."""
    if key == "batch_size":
        raise ValueError(f"search space 'batch_size': use {{\"choice\": [...]}} or a fixed integer, not {kind!r}")
    if not (isinstance(args, list) and len(args) == 2 and all(_is_number(v) for v in args)
            and args[0] < args[1]):
        raise ValueError(f"search space {key!r}: {kind!r} needs [lo, hi] with lo < hi, got {args!r}")
    for v in args:
        _check_value(key, v, f"each bound of {kind!r}")
    if kind == "log_uniform" and args[0] <= 0:
        raise ValueError(f"search space {key!r}: 'log_uniform' needs lo > 0, got {args!r}")


def load_space(space):
    """A dict, a JSON string or a path to a JSON file -> a validated search space dict."""
    if isinstance(space, (str, os.PathLike)):
        text = str(space)
        if os.path.exists(text):
            with open(text) as fh:
                text = fh.read()
        try:
            space = parse_json(text, "search space")
        except InputError as e:
            raise ValueError(f"{e}; give a JSON object or a file holding one") from None
    return validate_space(space)


def sample(space, rng):
    """One configuration {key: value} drawn from `space` with numpy Generator `rng`."""
    out = {}
    for key in KEYS:
        if key not in space:
            continue
        dist = space[key]
        if _is_number(dist):
            v = dist
        else:
            kind, args = next(iter(dist.items()))
            if kind == "choice":
                v = args[int(rng.integers(len(args)))]
            elif kind == "uniform":
                v = float(rng.uniform(args[0], args[1]))
            else:
                v = float(np.exp(rng.uniform(np.log(args[0]), np.log(args[1]))))
        out[key] = int(v) if key == "batch_size" else float(v)
    return out


def _trial_net(model, config, num_classes, input_shape, seed, weight_std):
    """Build the trial's net, every Dropout layer's p set to config['dropout'] when given."""
    spec = load_spec(model)
    if "dropout" in config:
        drops = [e for e in spec["layers"] if e["type"] == "Dropout"]
        if not drops:
            raise ValueError(f"search space 'dropout': model {spec.get('name', '?')!r} has no Dropout layer")
        for e in drops:
            e["p"] = config["dropout"]
    return build(spec, num_classes=num_classes, input_shape=input_shape, seed=seed, weight_std=weight_std)


def _data_shape(data):
    """(num_classes, input_shape) of the nets data trains: a prepared set's class count and (3, S, S)
    for its S x S uint8 images; None for what the data does not say (the model's own)."""
    names, x = getattr(data, "class_names", None), get_split(data, "train").x
    return (len(names) if names else None), ((3, x.shape[-1], x.shape[-1]) if x.dtype == np.uint8 else None)


def _recipe_trial(model, config, recipe, data, seed):
    """A trial's net under `recipe`, and train()'s preprocessing (None for float data)."""
    num_classes, input_shape = _data_shape(data)
    net = _trial_net(model, config, num_classes, input_shape, seed, weight_std_for_build(parse_init(recipe.init)))
    x = get_split(data, "train").x
    if x.dtype != np.uint8:
        return net, None
    pre = input_contract(recipe.input_norm, x, x.shape[-1])
    init_net(net, recipe, x, pre, seed=seed)
    return net, pre


def _sort_key(row):
    """Best first by the recipe's selection metric (AUC or accuracy: higher; loss: lower), then by
    validation loss, then trial number."""
    loss = row["val_loss"] if row["val_loss"] is not None else math.inf
    score = row.get("best_score")
    if score is None:
        return (math.inf, loss, row["trial"])
    lower_is_better = METRIC_NAMES.get(row.get("select_by"), ("", False))[1]  # a loss
    return (score if lower_is_better else -score, loss, row["trial"])


def _write_results(rows, out_dir):
    path = os.path.join(out_dir, "results.csv")
    with atomic_open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=RESULT_FIELDS)
        w.writeheader()
        w.writerows({k: row.get(k, "") for k in RESULT_FIELDS} for row in rows)
    return path


def random_search(space, n_trials, data, recipe, run, *, model="custom", augment=None):
    """Train `n_trials` nets with hyper-parameters drawn from `space`; rank them by the selection metric.

    space: dict, JSON string or JSON file (see the module docstring); data: as train() takes it;
    recipe: a rawcnn.training.recipes.Recipe for what is not sampled (the module docstring), its
    epochs the epochs of every trial; run: a rawcnn.training.train.Run whose out_dir holds the trials
    and the tables and whose seed draws the trials and seeds every one. model: a built-in name, spec
    file or spec dict, built for a prepared set's class count and image size. augment: None or an
    augmenter (train()'s), restarted from the same state in every trial.
    Each trial runs train() for the recipe's epochs at a constant learning rate (the plateau
    schedule's patience is the whole trial). A Ctrl-C ends the search after the trial it hits.
    Returns the result rows (dicts with RESULT_FIELDS), best first by the recipe's selection metric
    (select_by: validation accuracy, AUC or loss), then by validation loss.
    """
    space = load_space(space)
    epochs_per_trial, out_dir, seed, log = recipe.epochs, run.out_dir, run.seed, run.log
    if int(n_trials) < 1 or int(epochs_per_trial) < 1:
        raise ValueError(f"n_trials and epochs_per_trial must be >= 1, got {n_trials!r} and {epochs_per_trial!r}")
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    aug_state = augment.rng.bit_generator.state if augment is not None else None
    rows = []
    with tqdm(total=int(n_trials), unit="trial", desc="search", disable=not run.progress) as bar:
        for t in range(1, int(n_trials) + 1):
            config = sample(space, rng)
            net, pre = _recipe_trial(model, config, recipe, data, seed)
            trial_dir = os.path.join(out_dir, f"trial_{t:03d}")
            shown = ", ".join(f"{k} {v:.4g}" for k, v in config.items())
            log(f"trial {t}/{n_trials}: {shown or 'defaults'}")
            t0 = time.perf_counter()
            if augment is not None:  # every trial sees the same augmentation stream
                augment.rng.bit_generator.state = aug_state
            trial = recipe.replace(patience=epochs_per_trial, max_drops=0,
                                   **{k: v for k, v in config.items() if k != "dropout"})
            trial_run = dataclasses.replace(run, out_dir=trial_dir, log=lambda m, t=t: log(f"  [trial {t}] {m}"))
            r = train(net, data, trial, trial_run, augment=augment, preprocessing=pre)
            best = r["history"][r["best_epoch"] - 1] if r["best_epoch"] else None
            rows.append({"trial": t, **config, "select_by": r["select_by"], "best_score": r["best_score"],
                         "best_val_acc": r["best_val_acc"], "best_epoch": r["best_epoch"],
                         "val_loss": best["val_loss"] if best else None, "status": r["status"],
                         "seconds": round(time.perf_counter() - t0, 3), "out_dir": trial_dir})
            bar.update(1)
            top = min(rows, key=_sort_key)["best_score"]
            bar.set_postfix({r["select_by"]: "-" if top is None else f"{top:.4f}"})
            if r["status"] == "interrupted":
                log(f"search interrupted in trial {t}; writing the results of the trials so far")
                break
    rows.sort(key=_sort_key)
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    _write_results(rows, out_dir)  # results.csv; the caller (the CLI) says where the files are
    top = rows[0]
    best = {"trial": top["trial"], "select_by": top["select_by"], "best_score": top["best_score"],
            "best_val_acc": top["best_val_acc"], "best_epoch": top["best_epoch"],
            "config": {k: top[k] for k in KEYS if k in top}, "epochs_per_trial": int(epochs_per_trial),
            "seed": seed, "checkpoint": os.path.join(top["out_dir"], "best.h5")}
    with atomic_open(os.path.join(out_dir, "best.json"), "w") as fh:
        json.dump(best, fh, indent=1)
    for line in format_table(rows):
        log(line)
    return rows


def format_table(rows):
    """The result rows as aligned text lines (rank, trial, the sampled values, accuracy, status)."""
    keys = [k for k in KEYS if any(k in row for row in rows)]
    head = ["rank", "trial", *keys, "select_by", "best_score", "best_val_acc", "best_epoch", "status"]

    def cell(v):
        return "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
    table = [head] + [[cell(row.get(k)) for k in head] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    return ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in table]  # a cell per column
