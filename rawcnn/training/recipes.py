"""Named training recipes for a net trained from scratch, and what turns one into a train() call.

A recipe is every choice of `rawcnn train` that is not about files: init, input contract, SGD
settings, warm-up, clipping, augmentation, the selection metric, class balance. Two are named:

    paper    what the paper states (Sivaramakrishnan et al.; MATLAB R2017a defaults where it is
             silent): N(0, 0.01) weights, the training mean subtracted, lr 1e-3, batch 32,
             60 epochs, translations and rotations, best epoch by validation accuracy. It does
             not learn without normalisation layers: with N(0, 0.01) the logits start near 1e-3
             and the loss stays at ln 2 (bench/RESULTS.md, "Recipes on the hard synthetic set").
    default  LSUV init on standardised input, lr 1e-3, batch 16, a one-epoch linear warm-up,
             gradient-norm clipping, augmentation with small scale and brightness changes, best
             epoch by validation loss. The settings were chosen by 5-fold cross-validation on the
             hard synthetic set (bench/RESULTS.md, "Recipes on the hard synthetic set"); the
             selection metric by 5-fold cross-validation on real radiographs (bench/RESULTS.md,
             "Recipes on real radiographs"): on a small real set the epoch of best validation AUC
             is often an early, badly calibrated one (probabilities all near 1 in one fold), which
             ranks well within its fold but pools badly across folds; the epoch of least
             validation loss gave the best pooled out-of-fold AUC of every candidate.

`resolve(name, **overrides)` gives the settings dict; an override of None keeps the recipe's
value, so the command line's flags change only what the user typed.
"""
import shlex

import numpy as np

RECIPE_KEYS = ("init", "input_norm", "lr", "batch_size", "epochs", "momentum", "weight_decay", "patience",
               "max_drops", "warmup_epochs", "clip_norm", "select_by", "balance", "augment", "translate",
               "rotate", "scale", "brightness")
INPUT_NORMS = ("mean", "standardise", "none")

RECIPES = {
    "paper": {"init": "normal:0.01", "input_norm": "mean", "lr": 1e-3, "batch_size": 32, "epochs": 60,
              "momentum": 0.9, "weight_decay": 5e-4, "patience": 5, "max_drops": 3, "warmup_epochs": 0.0,
              "clip_norm": 0.0, "select_by": "val-acc", "balance": "none", "augment": True, "translate": 0.1,
              "rotate": 10.0, "scale": 0.0, "brightness": 0.0},
    "default": {"init": "lsuv", "input_norm": "standardise", "lr": 1e-3, "batch_size": 16, "epochs": 40,
                "momentum": 0.9, "weight_decay": 5e-4, "patience": 6, "max_drops": 2, "warmup_epochs": 1.0,
                "clip_norm": 5.0, "select_by": "val-loss", "balance": "none", "augment": True, "translate": 0.05,
                "rotate": 5.0, "scale": 0.05, "brightness": 0.1},
}


def resolve(name="default", **overrides):
    """The settings of recipe `name` with every non-None override applied (unknown keys refused)."""
    if name not in RECIPES:
        raise ValueError(f"--recipe must be one of {sorted(RECIPES)}, got {name!r}")
    unknown = set(overrides) - set(RECIPE_KEYS)
    if unknown:
        raise ValueError(f"recipe: unknown setting(s) {sorted(unknown)}")
    st = dict(RECIPES[name])
    st.update({k: v for k, v in overrides.items() if v is not None})
    _check_ranges(st)
    if st["input_norm"] not in INPUT_NORMS:
        raise ValueError(f"--input-norm must be one of {INPUT_NORMS}, got {st['input_norm']!r}")
    from rawcnn.engine.init import parse_init
    parse_init(st["init"])  # a clear error now rather than after loading the data
    return st


# the range of every numeric setting (the command line's flags have the same): (low, high, low excluded,
# high excluded, whole number); None: no bound. Every value must be finite.
RANGES = {"lr": (0, None, True, False, False), "batch_size": (1, 65536, False, False, True),
          "epochs": (1, 100_000, False, False, True), "momentum": (0, 1, False, True, False),
          "weight_decay": (0, None, False, False, False), "patience": (1, 100_000, False, False, True),
          "max_drops": (0, 1000, False, False, True), "warmup_epochs": (0, 100_000, False, False, False),
          "clip_norm": (0, None, False, False, False), "translate": (0, 1, False, True, False),
          "rotate": (0, 180, False, False, False), "scale": (0, 1, False, True, False),
          "brightness": (0, 1, False, True, False)}


def _check_ranges(st):
    """ValueError naming the flag of the first setting that is not a finite number in its RANGES range."""
    import math
    for key, (lo, hi, lo_open, hi_open, whole) in RANGES.items():
        v, flag = st[key], "--" + key.replace("_", "-")
        ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v) \
            and (v > lo if lo_open else v >= lo) and (hi is None or (v < hi if hi_open else v <= hi)) \
            and (not whole or float(v) == int(v))
        if not ok:
            close = ")" if hi_open or hi is None else "]"
            span = f"{'(' if lo_open else '['}{lo}, {'inf' if hi is None else hi}{close}"
            raise ValueError(f"{flag} must be a finite {'whole ' if whole else ''}number in {span}, got {v!r}")


def input_contract(norm, x, input_size):
    """The input contract for uint8 training images x (N, C, S, S) under --input-norm `norm`.

    mean: the training split's per-channel mean subtracted (the paper; rawcnn.training.train.zero_center);
    standardise: (x - mean) / std with the training split's pixel mean and std;
    none: the 0-255 pixel values as they are. Returns a rawcnn.data.preprocessing.Preprocessing.
    """
    from rawcnn.data.preprocessing import Preprocessing
    from rawcnn.training.train import zero_center
    size = (int(input_size), int(input_size))
    if norm == "mean":
        return zero_center(x, (x.shape[1], *size))
    if norm == "standardise":
        mean, std = float(x.mean(dtype=np.float64)), float(x.std(dtype=np.float64))
        if not std > 0:
            raise ValueError(f"--input-norm standardise: the training images (shape {x.shape}) are constant")
        return Preprocessing(channel_order="RGB", mean=(mean,) * 3, std=(std,) * 3, input_size=size,
                             resize="direct", name="standardise",
                             notes=("pixel mean and std of the training split: (x - mean) / std",))
    if norm == "none":
        return Preprocessing(channel_order="RGB", mean=(0.0,) * 3, input_size=size, resize="direct", name="none",
                             notes=("0-255 pixel values, no normalisation",))
    raise ValueError(f"--input-norm must be one of {INPUT_NORMS}, got {norm!r}")


def augmenter(st, seed):
    """The recipe's Augmenter (None when augment is off), seeded."""
    if not st["augment"]:
        return None
    from rawcnn.data import Augmenter
    return Augmenter(max_translate=st["translate"], max_rotate_deg=st["rotate"], rng=seed,
                     max_scale=st["scale"], max_brightness=st["brightness"])


def hooks(st):
    """The rawcnn.training.recipe_hooks options of a recipe (train()'s recipe= argument)."""
    return {k: st[k] for k in ("warmup_epochs", "clip_norm", "select_by", "balance")}


def init_net(net, st, x_train, preprocessing, *, seed=0, batch=32, log=None):
    """Finish a freshly built net's init: LSUV on a seeded batch of training images (no-op otherwise).

    x_train: uint8 (N, C, S, S) training images; preprocessing: their input contract.
    """
    from rawcnn.engine.init import apply_init, parse_init
    from rawcnn.training.train import make_to_input
    init = parse_init(st["init"])
    if init[0] != "lsuv":
        return None
    pick = np.sort(np.random.default_rng(seed).choice(len(x_train), size=min(batch, len(x_train)), replace=False))
    xb = make_to_input(net, preprocessing)(x_train[pick])  # (B, C, H, W)
    return apply_init(net, init, batch=xb, seed=seed, log=log)


def train_recipe(data, out_dir, st, *, model="custom", seed=0, device="cpu", progress=True, log=print,
                 init_from=None):
    """Build `model` for data's image size, initialise it, train it with recipe settings `st`.

    data: rawcnn.data.load_dataset's result (or anything with .split(name).images / .labels and
    class_names). init_from: a rawcnn checkpoint whose model and weights start training instead
    (fine-tuning, e.g. from a net trained on synthetic radiographs; `model` and the recipe's init
    are then unused, its input contract is made afresh from `data` per the recipe's input_norm, and
    a head of another class count is replaced by a fresh layer). Returns train()'s dict.
    """
    from rawcnn.engine.init import parse_init, weight_std_for_build
    from rawcnn.engine.models import build
    from rawcnn.training.train import train
    x = data.split("train").images  # (N, C, S, S) uint8
    S = int(x.shape[-1])
    K = len(data.class_names)
    pp = input_contract(st["input_norm"], x, S)
    if init_from is not None:
        net = start_from(init_from, K, S, seed=seed, log=log)
    else:
        net = build(model, num_classes=K, input_shape=(3, S, S), seed=seed,
                    weight_std=weight_std_for_build(parse_init(st["init"])))
        init_net(net, st, x, pp, seed=seed, log=log)
    return train(net, data, out_dir=out_dir, epochs=st["epochs"], batch_size=st["batch_size"], lr=st["lr"],
                 momentum=st["momentum"], weight_decay=st["weight_decay"], patience=st["patience"],
                 max_drops=st["max_drops"], seed=seed, augment=augmenter(st, seed), preprocessing=pp,
                 progress=progress, log=log, device=device, recipe=hooks(st))


def start_from(path, num_classes, size, *, seed=0, log=print):
    """The net of checkpoint `path` for fine-tuning on S x S images of num_classes classes: its weights,
    a fresh last Linear (seeded) when the class count differs. ValueError when its input is not 3 x S x S."""
    from rawcnn.engine.checkpoint import load_checkpoint
    net, _ = load_checkpoint(path)
    if tuple(net.input_shape) != (3, size, size):
        raise ValueError(f"--init-from {path}: the checkpoint's model takes {'x'.join(map(str, net.input_shape))} "
                         f"input, the data set holds 3x{size}x{size} images; prepare the set at its size")
    last = [layer for layer in net.layers if layer.kind == "Linear"][-1]
    if last.out_features != num_classes:
        net.replace_head(num_classes, seed=seed, lr_mult=1.0)
        log(f"init from {path}: {last.name} ({last.out_features} outputs) replaced by a fresh {num_classes}-way layer")
    else:
        log(f"init from {path}: every layer's weights, the head included")
    return net


def cli_flags(st):
    """The `rawcnn train` flags that spell out recipe settings `st` in full (a list of strings)."""
    out = ["--init", str(st["init"]), "--input-norm", st["input_norm"]]
    for k in ("lr", "batch_size", "epochs", "momentum", "weight_decay", "patience", "max_drops", "warmup_epochs",
              "clip_norm"):
        out += [f"--{k.replace('_', '-')}", f"{st[k]:g}" if isinstance(st[k], float) else str(st[k])]
    out += ["--select-by", st["select_by"], "--balance", st["balance"]]
    if st["augment"]:
        for k in ("translate", "rotate", "scale", "brightness"):
            out += [f"--{k}", f"{st[k]:g}"]
    else:
        out.append("--no-augment")
    return out


def equivalent_command(st, data_path, out_dir, seed=0, device="cpu", model="custom"):
    """One `rawcnn train` command line (str) that trains what train_recipe(st) trains."""
    args = ["rawcnn", "train", "--model", model, "--data", str(data_path), "--out", str(out_dir),
            *cli_flags(st), "--seed", str(seed), "--device", device]
    return " ".join(shlex.quote(a) for a in args)
