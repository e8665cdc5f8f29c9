"""The training recipe: every choice of `rawcnn train` that is not about files, as one `Recipe` value.

A recipe holds the init, the input contract, the SGD settings, warm-up, clipping, augmentation, the
selection metric and class balance. Each field of `Recipe` carries its help text and its range (or
its choices) in the field's metadata: cli.py makes the options of `train`, `cv` and `search` from
them, `Recipe.checked` validates against them, and a checkpoint records `Recipe.as_dict()`.
Two recipes are named:

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

`resolve(name, **overrides)` gives a checked Recipe; an override of None keeps the recipe's value,
so the command line's flags change only what the user typed. What turns a recipe into a trained
net (input contract, augmenter, LSUV, train()) is in rawcnn.training.from_recipe.

This module imports nothing heavy: cli.py reads its fields when `rawcnn --help` runs.
"""
import dataclasses
import math
import numbers
import shlex
from dataclasses import dataclass, field
from typing import NamedTuple

INPUT_NORMS = ("mean", "standardise", "none")
SELECT_BY = ("val-acc", "val-auc", "val-loss", "val-auc-smooth", "val-loss-smooth")
BALANCE = ("none", "sample", "weight")
AUGMENTATION = ("translate", "rotate", "scale", "brightness")  # the Augmenter's settings, used when augment is on


class Range(NamedTuple):
    """The values a numeric setting takes: lo..hi (hi None: no bound), either end excluded, whole numbers or
    reals; every value must be finite."""
    lo: float
    hi: float = None
    lo_open: bool = False
    hi_open: bool = False
    whole: bool = False

    def holds(self, v):
        """True when v is a finite number (not a bool) in the range."""
        return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) \
            and (v > self.lo if self.lo_open else v >= self.lo) \
            and (self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)) \
            and (not self.whole or float(v) == int(v))

    def __str__(self):
        close = ")" if self.hi_open or self.hi is None else "]"
        return f"{'(' if self.lo_open else '['}{self.lo}, {'inf' if self.hi is None else self.hi}{close}"


def _setting(default, help, *, range=None, choices=None):
    """A Recipe field: its default (the default recipe's value), help text, and range or choices."""
    return field(default=default, metadata={"help": help, "range": range, "choices": choices})


@dataclass(frozen=True)
class Recipe:
    """One training recipe. The defaults are the `default` recipe's; `RECIPES` names the recipes."""
    init: str = _setting("lsuv", "normal:STD (or a bare STD), he (N(0, 2/fan_in)) or lsuv (orthonormal, then unit "
                                 "output variance per layer on a batch).")
    input_norm: str = _setting("standardise", "mean: the training mean subtracted (the paper); standardise: "
                                              "(x - mean) / std; none. Stored in the checkpoint's input contract.",
                               choices=INPUT_NORMS)
    lr: float = _setting(1e-3, "Learning rate.", range=Range(0, lo_open=True))
    batch_size: int = _setting(16, "Images per SGD step (under mpiexec, the global batch).",
                               range=Range(1, 65536, whole=True))
    epochs: int = _setting(40, "The last epoch to run.", range=Range(1, 100_000, whole=True))
    momentum: float = _setting(0.9, "SGD momentum.", range=Range(0, 1, hi_open=True))
    weight_decay: float = _setting(5e-4, "L2 on weights.", range=Range(0))
    patience: int = _setting(6, "Epochs without a better selection metric before the learning rate is divided "
                                "by 10.", range=Range(1, 100_000, whole=True))
    max_drops: int = _setting(2, "Learning-rate drops before a further plateau stops training.",
                              range=Range(0, 1000, whole=True))
    warmup_epochs: float = _setting(1.0, "Linear learning-rate warm-up (0: none).", range=Range(0, 100_000))
    clip_norm: float = _setting(5.0, "Clip the gradient's global norm (0: none).", range=Range(0))
    select_by: str = _setting("val-loss", "The metric that picks best.h5 and drives the plateau schedule "
                                          "(val-auc-smooth, val-loss-smooth: the mean validation AUC or loss of the "
                                          "last 3 epochs).",
                              choices=SELECT_BY)
    average_epochs: float = _setting(0.0, "Weight averaging: validate, select and save (best.h5) an exponential "
                                          "moving average of the weights over about this many epochs, updated "
                                          "after every step (0: off; the checkpoints then also hold the trained "
                                          "weights, for resume).", range=Range(0, 100_000))
    balance: str = _setting("none", "Class balance: balanced sampling, or class-weighted loss.", choices=BALANCE)
    augment: bool = _setting(True, "Augmentation on or off.")
    translate: float = _setting(0.05, "Augmentation: max shift (fraction of the side).",
                                range=Range(0, 1, hi_open=True))
    rotate: float = _setting(5.0, "Augmentation: max rotation (degrees).", range=Range(0, 180))
    scale: float = _setting(0.05, "Augmentation: max zoom change (fraction).", range=Range(0, 1, hi_open=True))
    brightness: float = _setting(0.1, "Augmentation: max brightness change (fraction).",
                                 range=Range(0, 1, hi_open=True))

    def checked(self):
        """This recipe with whole numbers as int and the other numbers as float; ValueError naming the flag
        of the first setting out of its range or choices, or of an init that is not normal:STD, he or lsuv."""
        from rawcnn.engine.init import parse_init  # heavy: loads Numba; `rawcnn --help` imports this module
        fix = {}
        for f in dataclasses.fields(self):
            r, v = f.metadata["range"], getattr(self, f.name)
            if r is None:
                continue
            if not r.holds(v):
                raise ValueError(f"{flag(f.name)} must be a finite {'whole ' if r.whole else ''}number in {r}, "
                                 f"got {v!r}")
            fix[f.name] = int(v) if r.whole else float(v)
        for f in dataclasses.fields(self):
            choices, v = f.metadata["choices"], getattr(self, f.name)
            if choices is not None and v not in choices:
                raise ValueError(f"{flag(f.name)} must be one of {choices}, got {v!r}")
        parse_init(self.init)  # a clear error now rather than after loading the data
        return dataclasses.replace(self, **fix)

    def replace(self, **changes):
        """A checked copy with `changes` applied; a change of None keeps the value, an unknown name is refused."""
        unknown = set(changes) - set(FIELDS)
        if unknown:
            raise ValueError(f"recipe: unknown setting(s) {sorted(unknown)}")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None}).checked()

    def as_dict(self):
        """{setting: value} in field order (what cv.json and a checkpoint's meta record)."""
        return dataclasses.asdict(self)

    def hooks(self):
        """The rawcnn.training.recipe_hooks options of this recipe: warm-up, clipping, selection, balance."""
        return {k: getattr(self, k) for k in ("warmup_epochs", "clip_norm", "select_by", "balance")}

    def cli_flags(self):
        """The `rawcnn train` flags that spell this recipe out in full (a list of strings)."""
        out = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "augment" or (f.name in AUGMENTATION and not self.augment):
                continue
            out += [flag(f.name), f"{v:g}" if isinstance(v, float) else str(v)]
        return out if self.augment else out + ["--no-augment"]


FIELDS = tuple(f.name for f in dataclasses.fields(Recipe))

RECIPES = {
    "paper": Recipe(init="normal:0.01", input_norm="mean", lr=1e-3, batch_size=32, epochs=60, momentum=0.9,
                    weight_decay=5e-4, patience=5, max_drops=3, warmup_epochs=0.0, clip_norm=0.0, select_by="val-acc",
                    balance="none", augment=True, translate=0.1, rotate=10.0, scale=0.0, brightness=0.0),
    "default": Recipe(),
}


def flag(name):
    """The command-line flag of setting `name`: --batch-size for batch_size."""
    return "--" + name.replace("_", "-")


def resolve(name="default", **overrides):
    """Recipe `name` with every non-None override applied, checked (unknown settings refused)."""
    if name not in RECIPES:
        raise ValueError(f"--recipe must be one of {sorted(RECIPES)}, got {name!r}")
    return RECIPES[name].replace(**overrides)


def equivalent_command(recipe, data_path, out_dir, seed=0, device="cpu", model="custom"):
    """One `rawcnn train` command line (str) that trains what rawcnn.training.from_recipe.train_recipe(recipe)
    trains."""
    args = ["rawcnn", "train", "--model", model, "--data", str(data_path), "--out", str(out_dir),
            *recipe.cli_flags(), "--seed", str(seed), "--device", device]
    return " ".join(shlex.quote(a) for a in args)
