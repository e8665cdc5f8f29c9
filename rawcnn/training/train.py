"""Training: SGD with momentum, the plateau schedule, checkpoints, exact resume.

Shapes: N training images, B batch, C, H, W the net's input, S the stored image side, K classes;
x (N, C, H, W) float, or (N, C, S, S) uint8 from a prepared data set; y (N,) int64; logits (B, K).

uint8 images reach the net through an input contract (rawcnn.data.preprocessing.Preprocessing): the
one given (an imported model's, e.g. 'vgg-keras'), or by default the training split's per-channel
mean taken off ('zero-center'). The contract goes into every checkpoint, so evaluation and
prediction feed the net the same numbers; the data set's own settings (ROI crop, CLAHE, sizes) go
into the checkpoint's meta as data_settings.

One epoch:
    order = rng_shuffle.permutation(N)                    a new order every epoch
    xs, ys = x[order], y[order]                           one gather into reused buffers
    for each batch b = xs[i:i+B] (a contiguous slice):
        b = augment(b)                                    translations, rotations (optional)
        logits = net.forward(to_input(b), train=True)     dropout masks from each layer's rng
        loss = softmax_cross_entropy(logits, y_b)         stops on NaN / Inf, naming epoch and batch
        net.backward(dloss/dlogits); SGD step
        (--average-epochs) fold the weights into their moving average (rawcnn.engine.optim.WeightAverage)
    validation loss and accuracy, in batches, train=False (of the average, when there is one)
then the plateau schedule (rawcnn/engine/optim.py) may divide the learning rate by 10 or stop training.

Every random choice comes from a generator with a saved state: shuffling from one seeded with
`seed`, augmentation from the augmenter's own (`augment.rng`), dropout from each Dropout layer's
own. last.h5
(every epoch) holds the weights, the momentum, the three kinds of generator state, the schedule's
counters and the history, so `resume=True` continues exactly where the run stopped: on the CPU a
run resumed after epoch k ends bit-for-bit equal to one that never stopped.

train(net, data, recipe, run) takes the recipe's SGD, schedule and hook settings from a
rawcnn.training.recipes.Recipe and everything else about the run (files, seed, resume, device,
processes, log) from a Run; rawcnn.training.from_recipe makes the net, init, input contract and
augmenter of a recipe.

Files in out_dir: last.h5, best.h5 (the best epoch by the recipe's select_by: validation accuracy,
AUC or loss), history.csv, curves.png. With weight averaging a checkpoint's params are the average and
its /weights the trained weights, which a resume continues from.

Under `mpiexec -n R` (dist=rawcnn.training.distributed.Distributed) each rank runs its share of every
global batch and the gradients are summed over ranks: see rawcnn/training/distributed.py. Rank 0 alone
logs and writes the files.
"""
import contextlib
import csv
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
from tqdm import tqdm

from kernels import get_backend
from kernels.cpu import denormals
from rawcnn.data.preprocessing import Preprocessing
from rawcnn.engine.checkpoint import (
    TrainingState,
    dropout_rng_states,
    read_checkpoint,
    save_checkpoint,
    set_dropout_rng_states,
)
from rawcnn.engine.determinism import blas_pinned
from rawcnn.engine.layers import SoftmaxCrossEntropy
from rawcnn.engine.optim import METRIC_NAMES, SGD, ReduceOnPlateau, WeightAverage
from rawcnn.files import fileio
from rawcnn.files.fileio import atomic_open, copy_atomic
from rawcnn.training import input_buffer
from rawcnn.training.distributed import CollectiveInterrupt, MicroBatches, Single
from rawcnn.training.plots import plot_curves
from rawcnn.training.recipe_hooks import RecipeHooks

RUN_FILES = ("last.h5", "best.h5", "history.csv", "curves.png")
HISTORY_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s",
                  "val_auc")
# the recipe settings a checkpoint's config repeats, which a resume compares (lr and epochs: logged when changed)
COMPARED_ON_RESUME = ("batch_size", "momentum", "weight_decay", "patience", "max_drops", "warmup_epochs",
                      "clip_norm", "select_by", "balance")

# settings a config holds only when they are on, and their value when absent (an earlier run's checkpoint)
CONFIG_WHEN_OFF = {"average_epochs": 0.0}


@dataclass(frozen=True)
class Run:
    """How one training run is carried out, apart from its recipe.

    out_dir: the run folder (last.h5, best.h5, history.csv, curves.png); seed: the shuffling
    generator's (and, by the callers' convention, the init's and the augmenter's); resume: continue
    from out_dir/last.h5; given: with resume, the names of the options the user typed (a new lr
    among them takes effect; rawcnn.app.train passes them); progress: tqdm bars; log: called with
    each message line; device: a backend name ('cpu', 'cuda', 'auto', ...; None: the net's own);
    dist: None (one process) or a rawcnn.training.distributed.Distributed (every rank calls train()
    with the same arguments; rank 0 alone logs and writes); micro_batches: None (the plain step;
    under mpiexec the ranks agree with one process to float rounding only), or M: each global batch
    as M fixed micro-batches whose gradients are summed in a fixed tree, the same bits for 1 process
    and any R ranks with R | M (rawcnn/training/distributed.py); deterministic: on the CPU, pin
    OpenBLAS to one thread while training (rawcnn.engine.determinism).
    """
    out_dir: Any
    seed: int = 0
    resume: bool = False
    given: Optional[frozenset] = None
    progress: bool = True
    log: Callable = print
    device: Optional[str] = "cpu"
    dist: Any = None
    micro_batches: Optional[int] = None
    deterministic: bool = True


class Split:
    """One split's arrays: x (N, ...) images, y (N,) int64 labels, both C-contiguous."""

    def __init__(self, x, y, name):
        x = x if getattr(x, "lazy", False) else np.ascontiguousarray(x)  # lazy: read by rows (distributed)
        y = np.ascontiguousarray(y)
        if y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(f"{name} split: images of shape {x.shape} and labels of shape {y.shape} do not "
                             f"match (need (N, ...) and (N,))")
        if y.size and not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{name} split: labels must be integers, got dtype {y.dtype}")
        if x.shape[0] == 0:
            raise ValueError(f"{name} split is empty")
        self.x, self.y, self.name = x, y.astype(np.int64), name


def get_split(data, name):
    """Split `name` of a dict {name: (x, y)}, a pair ((x, y), (x, y)) or a load_dataset result, as a Split."""
    if isinstance(data, dict):
        part = data[name]
    elif isinstance(data, (tuple, list)):
        part = data[{"train": 0, "val": 1}[name]]
    else:
        part = data.split(name)
    x, y = (part[0], part[1]) if isinstance(part, (tuple, list)) else (part.images, part.labels)
    return Split(x, y, name)


def zero_center(x, input_shape):
    """The default input contract for uint8 images: the training split's per-channel mean taken off.

    x: uint8 (N, C, S, S) training images (C = 1 or 3); input_shape: the net's (C, H, W) or None.
    Returns a rawcnn.data.preprocessing.Preprocessing (0-255 scale, RGB order, resize to the net's input).
    MATLAB's imageInputLayer, which the paper used, subtracts the training set's mean image
    ('zerocenter'); the per-channel mean is the same idea without tying the net to one image size.
    """
    mean = x.mean(axis=(0, 2, 3), dtype=np.float64)  # (C,)
    mean = tuple(float(m) for m in (np.repeat(mean, 3) if mean.size == 1 else mean))
    size = tuple(input_shape[1:]) if input_shape is not None else tuple(x.shape[2:])
    return Preprocessing(channel_order="RGB", mean=mean, scale=1.0, input_size=size, resize="direct",
                         name="zero-center", notes=("per-channel mean of the training split subtracted",))


def make_to_input(net, preprocessing):
    """The callable that turns a batch of stored images into the net's input.

    preprocessing: None (images are already float (B, C, H, W): cast to the net's dtype), or a
    rawcnn.data.preprocessing.Preprocessing (or its dict) applied to uint8 (B, C, S, S) batches.
    A one-channel net gets channel 0 of the contract's output (grey radiographs have R = G = B).
    Returns to_input(x (B, ...)) -> (B, C, H, W) array of the net's dtype. While the net reuses
    buffers (train()), that array is one kept buffer, overwritten by the next call (rawcnn.training.input_buffer).
    """
    dtype, store = net.dtype, {}
    if preprocessing is None:
        def cast(x):
            kept = input_buffer.cast_into(net, store, x, dtype)
            return np.asarray(x).astype(dtype, copy=False) if kept is None else kept
        return cast
    pp = preprocessing if isinstance(preprocessing, Preprocessing) else Preprocessing.from_json(preprocessing)
    one = net.input_shape is not None and net.input_shape[0] == 1
    if one and (len(set(pp.mean)) > 1 or (pp.std is not None and len(set(pp.std)) > 1)):
        raise ValueError(f"the net takes 1 channel but the preprocessing contract {pp.describe()!r} treats "
                         f"the 3 channels differently")

    def to_input(x):
        kept = input_buffer.contract_into(net, store, pp, x, one, dtype)
        if kept is not None:
            return kept
        x = np.asarray(x)
        y = pp.apply(x.transpose(0, 2, 3, 1) if x.ndim == 4 else x)  # (B, 3, IH, IW) float32
        return np.ascontiguousarray(y[:, :1] if one else y, dtype=dtype)
    return to_input


def fingerprint(split):
    """What identifies a training set for resume: its size, image shape and a hash of its labels."""
    return {"n": int(split.y.size), "image_shape": list(split.x.shape[1:]),
            "labels_sha1": hashlib.sha1(split.y.tobytes()).hexdigest()}


class _Diverged(Exception):
    pass


EXPLODE_FACTOR = 1e6  # a loss this many times the first epoch's (or ln K's) is a divergence, like NaN


def _exploded(loss, history, key, n_classes):
    """True when `loss` is not finite or exceeds EXPLODE_FACTOR x the first epoch's `key` loss (at least ln K)."""
    if not math.isfinite(loss):
        return True
    ref = math.log(max(int(n_classes), 2))
    if history and isinstance(history[0].get(key), (int, float)) and math.isfinite(history[0][key]):
        ref = max(ref, float(history[0][key]))
    return loss > EXPLODE_FACTOR * ref


class Trainer:
    """The state of one training run (net, optimizer, schedule, generators, history); call train().

    After an interrupt or a divergence the net in memory holds the partial epoch's weights;
    last.h5 holds the last completed epoch.
    """

    def __init__(self, net, data, recipe, run, *, augment=None, preprocessing=None, on_batch=None):
        """recipe: a rawcnn.training.recipes.Recipe (its SGD, schedule and hook settings); run: a Run;
        augment, preprocessing, on_batch: as train() takes them."""
        batch_size, micro_batches = recipe.batch_size, run.micro_batches
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if augment is not None and not isinstance(getattr(augment, "rng", None), np.random.Generator):
            raise ValueError("augment must be callable as augment(x) and keep its numpy Generator as .rng "
                             "(like rawcnn.data.Augmenter), so that its state can be saved and restored")
        self.net, self.log, self.progress, self.on_batch = net, run.log, run.progress, on_batch
        self.recipe, self.run = recipe, run
        self.dist = run.dist if run.dist is not None else Single()
        self.micro = None  # MicroBatches: the step's gradients independent of the number of ranks
        if micro_batches is not None:
            if int(micro_batches) > int(batch_size):
                raise ValueError(f"--micro-batches {micro_batches} is more than --batch-size {batch_size}: "
                                 f"each micro-batch needs a row")
            if int(micro_batches) > 1 or self.dist.size > 1:  # 1 in one process: the plain step, the same bits
                self.micro = MicroBatches(int(micro_batches), self.dist)
        self.collective_stop = False  # set when Ctrl-C stopped every rank at the same collective
        self.train_split, self.val_split = get_split(data, "train"), get_split(data, "val")
        if preprocessing is None and not np.issubdtype(self.train_split.x.dtype, np.floating):
            preprocessing = zero_center(self.train_split.x, net.input_shape)
        self.set_preprocessing(preprocessing)
        self.data_meta = {"data_settings": getattr(data, "settings", None),
                          "class_names": getattr(data, "class_names", None)}
        self.batch_size, self.augment, self.seed = int(batch_size), augment, int(run.seed)
        self.opt = SGD(net, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
        self.sched = ReduceOnPlateau(recipe.lr, patience=recipe.patience, max_drops=recipe.max_drops)
        self.crit = SoftmaxCrossEntropy().to(net.be)
        self.rng_shuffle = np.random.default_rng(self.seed)
        self.history, self.epoch, self.best_epoch, self.best_val_acc = [], 0, 0, -math.inf
        self.n_classes = 2
        self.out_dir = os.fspath(run.out_dir)
        self.last_path = os.path.join(self.out_dir, "last.h5")
        self.best_path = os.path.join(self.out_dir, "best.h5")
        self.config = {**{k: getattr(recipe, k) for k in COMPARED_ON_RESUME}, "seed": self.seed,
                       "augment": repr(augment),
                       "layers": {l.name: [l.lr_mult, l.trainable] for l in net.layers if l.params}}
        if self.micro is not None:  # absent otherwise: checkpoints of earlier runs compare equal on resume
            self.config["micro_batches"] = self.micro.M
        self.average = None  # WeightAverage (--average-epochs): what is validated, selected and saved
        if recipe.average_epochs > 0:
            steps = -(-self.train_split.y.size // int(batch_size))  # per epoch
            self.average = WeightAverage(net, WeightAverage.decay_for(recipe.average_epochs, steps))
            self.config["average_epochs"] = float(recipe.average_epochs)  # absent when off, as micro_batches
        self.hooks = RecipeHooks(recipe.hooks(), self)  # warm-up, clipping, selection metric, class balance
        self.sched.metric, self.sched.negated = METRIC_NAMES[self.hooks.select_by]  # named in its messages
        if self.dist.size > 1 and self.hooks.balance == "weight" and self.micro is None:
            raise ValueError("--balance weight is not available in data-parallel training without "
                             "--micro-batches (each rank would normalise its own rows' weights); use "
                             "--balance sample, or --micro-batches")
        self.val_auc = math.nan  # set by validate()
        self._check_input_shape()
        n = self.train_split.y.size if self.dist.size == 1 else 0  # ranks read their rows batch by batch
        self.xs = np.empty((n, *self.train_split.x.shape[1:]), self.train_split.x.dtype)  # (N, ...) shuffled images
        self.ys = np.empty(n, dtype=np.int64)        # (N,) their labels

    def set_preprocessing(self, preprocessing):
        """Use `preprocessing` (None, a Preprocessing or its dict) to feed the net; kept for checkpoints."""
        self.to_input = make_to_input(self.net, preprocessing)
        self.preprocessing = (preprocessing.to_dict() if hasattr(preprocessing, "to_dict")
                              else preprocessing)

    def _check_input_shape(self):
        want = self.net.input_shape
        got = tuple(np.shape(self.to_input(self.val_split.x[:1]))[1:])
        if want is not None and got != tuple(want):
            raise ValueError(f"the net takes inputs of shape {tuple(want)} (C, H, W) but the data gives "
                             f"{got} (images of shape {self.train_split.x.shape[1:]} as stored)")

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self, path, status, reason=""):
        if not self.dist.is_root:  # one writer
            return
        meta = {"schedule": self.sched.state(), "epochs": getattr(self, "epochs", None),
                "best_val_acc": self.best_val_acc if self.best_epoch else None,
                "best_epoch": self.best_epoch, "config": self.config, "train_data": fingerprint(self.train_split),
                "status": status, "reason": reason, "recipe": self.recipe.as_dict(), **self.data_meta,
                **self.hooks.meta()}
        rng_state = {"shuffle": self.rng_shuffle.bit_generator.state,
                     "augment": self.augment.rng.bit_generator.state if self.augment is not None else None}
        state = TrainingState(epoch=self.epoch, lr=self.sched.lr, momentum=self.opt.state(), rng_state=rng_state,
                              history=self.history,
                              weights=self.average.trained() if self.average is not None else None)
        save_checkpoint(path, self.net, state=state, preprocessing=self.preprocessing, meta=meta)

    def _restore_layer_settings(self, saved, given):
        """Give the net the checkpoint's per-layer learning-rate multipliers and frozen layers (a
        fine-tuning run's new head, --freeze-through), unless the resume names those options anew
        (then the difference is logged as a changed setting)."""
        if not isinstance(saved, dict) or {"new_head_lr_mult", "freeze_through"} & set(given or ()):
            return
        layers = {l.name: l for l in self.net.layers if l.params}
        ok = set(saved) == set(layers) and all(
            isinstance(v, list) and len(v) == 2 and isinstance(v[0], (int, float)) and not isinstance(v[0], bool)
            and math.isfinite(v[0]) and v[0] >= 0 and isinstance(v[1], bool) for v in saved.values())
        if not ok:
            return  # an unreadable record: the config comparison below names the difference
        for name, (mult, trainable) in saved.items():
            layers[name].lr_mult, layers[name].trainable = float(mult), trainable
        order = [i for i, l in enumerate(self.net.layers) if l.params]
        first = next((i for i in order if self.net.layers[i].trainable), len(self.net.layers))
        if all(not self.net.layers[i].trainable for i in order if i < first) and first > order[0]:
            for l in self.net.layers[:first]:  # --freeze-through: nothing below the first trained layer
                l.trainable = False
        self.net._set_backward_reach()
        self.config["layers"] = {l.name: [l.lr_mult, l.trainable] for l in self.net.layers if l.params}

    def restore(self, path, given=(), lr=None, epochs=None):
        """Load everything a run needs from `path` (last.h5); returns its meta.

        given: the options the user gave with the resume; a new `lr` among them replaces the
        checkpoint's learning rate (logged), a new `epochs` is logged. A net whose spec differs from
        the checkpoint's is refused (the model cannot change on resume).
        """
        ck = read_checkpoint(path)
        meta = ck["meta"] or {}
        self._check_resumable(path, ck, meta)
        try:
            self.net.load_state_dict(ck["params"])
        except (KeyError, ValueError) as e:
            raise ValueError(f"{path} does not fit this net: {e}") from None
        set_dropout_rng_states(self.net, ck["dropout_rng"] or {})
        self.opt.load_state(ck["momentum"])
        self.sched.load_state(meta["schedule"])
        self.opt.lr = self.sched.lr
        self.rng_shuffle.bit_generator.state = ck["rng_state"]["shuffle"]
        if self.augment is not None:
            self.augment.rng.bit_generator.state = ck["rng_state"]["augment"]
        self.set_preprocessing(ck["preprocessing"])
        self.history, self.epoch = list(ck["history"] or []), ck["epoch"]
        self.best_epoch = int(meta.get("best_epoch") or 0)
        self.best_val_acc = meta["best_val_acc"] if meta.get("best_val_acc") is not None else -math.inf
        self.hooks.load_meta(meta)
        self._restore_layer_settings(meta["config"].get("layers"), given)
        self._restore_micro_batches(path, meta["config"].get("micro_batches"), given)
        self._restore_average(path, ck)  # after the layer settings: the average covers the trained layers
        self._warn_changed_config(meta["config"])
        self._take_new_lr_and_epochs(meta, given, lr, epochs)
        return meta

    def _restore_average(self, path, ck):
        """After the params are loaded: a checkpoint that holds trained weights beside its params (an averaged
        run's) gives the net those weights, and the params become this run's average (when it averages)."""
        if ck.get("weights") is None:
            return  # not averaged, or saved before the first step: the average starts at the next step
        try:
            self.net.load_state_dict(ck["weights"], strict=False)
        except (KeyError, ValueError) as e:
            raise ValueError(f"{path}: its trained weights (/weights) do not fit this net: {e}") from None
        if self.average is not None:
            self.average.load_state(ck["params"])  # a layer frozen when saved: its params are its weights
        else:
            self.log(f"resume: {path}'s params are an average of the weights (--average-epochs); training "
                     f"continues from the trained weights it also holds, without averaging")

    def _check_resumable(self, path, ck, meta):
        """Refuse a checkpoint `ck` (read from `path`; meta: its meta or {}) that this run cannot continue:
        another model, not a training checkpoint, other training data, or trained with (without)
        augmentation when this run is without (with)."""
        if ck["spec"] != json.loads(json.dumps(self.net.spec)):
            raise ValueError(f"{path} holds another model ({ck['spec'].get('name', '?')!r}, "
                             f"{len(ck['spec'].get('layers', []))} layers) than the one given "
                             f"({self.net.spec.get('name', '?')!r}); the model cannot change on resume: "
                             f"resume with the run's model, or train into a new --out")
        if not isinstance(meta.get("schedule"), dict) or not isinstance(ck["rng_state"], dict) \
                or not isinstance(meta.get("config"), dict):
            raise ValueError(f"{path}: not a training checkpoint (no schedule, generator state or config in it)")
        if meta.get("train_data") != fingerprint(self.train_split):
            raise ValueError(f"{path} was trained on other data ({meta.get('train_data')}); this training set is "
                             f"{fingerprint(self.train_split)}; resume needs the same training set")
        if (self.augment is None) != (ck["rng_state"].get("augment") is None):
            raise ValueError(f"{path} was trained {'with' if self.augment is None else 'without'} augmentation; "
                             f"resume it the same way")

    def _restore_micro_batches(self, path, saved_m, given):
        """Train in the checkpoint's micro-batches (its config's `saved_m`, logged) when the resume names
        no --micro-batches of its own and this run has none, so that it keeps the run's bits with any
        number of ranks; refuses a saved count that is not 1..batch size."""
        if self.micro is None and saved_m is not None and "micro_batches" not in set(given or ()):
            if not isinstance(saved_m, int) or isinstance(saved_m, bool) or not 1 <= saved_m <= self.batch_size:
                raise ValueError(f"{path}: its config's micro_batches {saved_m!r} is not a count from 1 to the "
                                 f"batch size {self.batch_size}")
            if saved_m > 1 or self.dist.size > 1:  # the run's micro-batches: the same bits with any R
                try:
                    self.micro = MicroBatches(saved_m, self.dist)
                except ValueError as e:
                    raise ValueError(f"{e} ({path} was trained with it)") from None
                self.config["micro_batches"] = saved_m
                self.log(f"resume: --micro-batches {saved_m}, as {path} was trained")

    def _warn_changed_config(self, saved):
        """Log a warning for each setting of this run's config that differs from the checkpoint's (`saved`)."""
        off = {k: v for k, v in CONFIG_WHEN_OFF.items() if k not in self.config or k not in saved}
        mine, theirs = {**off, **self.config}, {**off, **saved}
        changed = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
        for k, (old, new) in changed.items():
            self.log(f"warning: resuming with {k} = {new} (the checkpoint was trained with {old}); "
                     f"the run will not repeat an uninterrupted one exactly")

    def _take_new_lr_and_epochs(self, meta, given, lr, epochs):
        """Use a learning rate the resume names anew (`lr`, 'lr' in `given`) in place of the checkpoint's,
        and the resume's epoch limit; each change from the checkpoint's (`meta`) is logged."""
        if "lr" in given and lr is not None and float(lr) != self.sched.lr:
            self.log(f"resume: learning rate changed from {self.sched.lr:g} (the checkpoint's) to {float(lr):g}")
            self.sched.lr = self.opt.lr = float(lr)
        old_epochs = meta.get("epochs")
        if epochs is not None and old_epochs is not None and int(old_epochs) != int(epochs):
            self.log(f"resume: epoch limit changed from {old_epochs} to {epochs}")
        if epochs is not None:
            self.epochs = int(epochs)

    def repair(self, meta):
        """After a kill, bring best.h5 and history.csv to what an uninterrupted run has at this epoch.

        A kill between writing last.h5 and copying it to best.h5 leaves best.h5 one improvement
        behind; last.h5's meta says which epoch is best, and when that is last.h5's own epoch the
        copy is redone. history.csv is rewritten from last.h5's history.
        """
        best_epoch = int(meta.get("best_epoch") or 0)
        if best_epoch and best_epoch == self.epoch:
            try:
                ok = read_checkpoint(self.best_path)["epoch"] == best_epoch
            except (ValueError, OSError):
                ok = False
            if not ok:
                copy_atomic(self.last_path, self.best_path, fsync=True)
                self.log(f"resume: {self.best_path} rewritten from {self.last_path} (epoch {best_epoch}, the best; "
                         f"an earlier run was stopped between the two writes)")
        elif best_epoch and not os.path.exists(self.best_path):
            self.log(f"warning: {self.best_path} (epoch {best_epoch}) is missing and cannot be rebuilt")
        if self.history:
            self.write_history()

    def write_history(self):
        if not self.dist.is_root:
            return
        path = os.path.join(self.out_dir, "history.csv")
        with atomic_open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=HISTORY_FIELDS)
            w.writeheader()
            w.writerows(self.history)

    # -- the loop ------------------------------------------------------------------------------
    def run_epoch(self, bar):
        """Train one epoch; returns (mean loss, accuracy, seconds)."""
        net, crit, opt, xp = self.net, self.crit, self.opt, self.net.be.xp
        x, y, B = self.train_split.x, self.train_split.y, self.batch_size
        order = self.hooks.epoch_order(self.rng_shuffle, y)  # (N,)
        if self.dist.size == 1 and self.micro is None:
            np.take(x, order, axis=0, out=self.xs)
            np.take(y, order, out=self.ys)
        total_loss, correct, t0 = 0.0, 0, time.perf_counter()
        for b, i in enumerate(range(0, y.size, B), start=1):
            if self.micro is not None:  # fixed micro-batches, gradients summed in a fixed tree: any R
                loss, right, where = self.micro.step(self, order[i:i + B])
                n = min(B, y.size - i)
                if _exploded(loss, self.history, "train_loss", self.n_classes):
                    raise _Diverged(f"the training loss became {loss}{where} at epoch {self.epoch + 1}, batch "
                                    f"{b} (images {i + 1}..{i + n} of the shuffled epoch) with lr {opt.lr:g}")
                self.hooks.before_step(self.epoch, b, -(-y.size // B))
                self.step()
                total_loss, correct = total_loss + loss * n, correct + right
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                bar.update(n)
                if self.on_batch is not None:
                    self.on_batch(self.epoch + 1, b, loss)
                continue
            if self.dist.size > 1:  # this rank's rows of the batch; gradients summed over ranks
                loss, right, where = self.dist.train_step(self, order[i:i + B])
                n = min(B, y.size - i)
                if not math.isfinite(loss):
                    raise _Diverged(f"the training loss became {loss}{where} at epoch {self.epoch + 1}, batch "
                                    f"{b} (images {i + 1}..{i + n} of the shuffled epoch) with lr {opt.lr:g}")
                self.hooks.before_step(self.epoch, b, -(-y.size // B))  # warm-up, clipping of the summed grads
                self.step()
                total_loss, correct = total_loss + loss * n, correct + right
                bar.update(n)
                if self.on_batch is not None:
                    self.on_batch(self.epoch + 1, b, loss)
                continue
            xb, yb = self.xs[i:i + B], self.ys[i:i + B]  # (B, ...), (B,) contiguous slices
            if self.augment is not None:
                xb = self.augment(xb)
            logits = net.forward(self.to_input(xb), train=True)  # (B, K)
            loss = crit.forward(logits, yb)
            if _exploded(loss, self.history, "train_loss", logits.shape[1]):
                raise _Diverged(f"the training loss became {loss} at epoch {self.epoch + 1}, batch {b} "
                                f"(images {i + 1}..{i + yb.size} of the shuffled epoch) with lr {opt.lr:g}")
            correct += int((xp.argmax(logits, axis=1) == crit.labels).sum())
            net.backward(self.hooks.dlogits(crit.backward(), yb), input_grad=False)
            self.hooks.before_step(self.epoch, b, -(-y.size // B))
            self.step()
            total_loss += loss * yb.size
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            bar.update(yb.size)
            if self.on_batch is not None:
                self.on_batch(self.epoch + 1, b, loss)
        return total_loss / y.size, correct / y.size, time.perf_counter() - t0

    def step(self):
        """The SGD step, then the weight average's update (--average-epochs)."""
        self.opt.step()
        if self.average is not None:
            self.average.update()

    def validate(self):
        """Mean loss and accuracy over the validation split, forward only, in batches."""
        if self.dist.size > 1:
            return self.dist.validate(self)
        net, crit, xp = self.net, self.crit, self.net.be.xp
        x, y, B = self.val_split.x, self.val_split.y, self.batch_size
        total_loss, correct, scores = 0.0, 0, []
        for i in range(0, y.size, B):
            logits = net.forward(self.to_input(x[i:i + B]), train=False)  # (B, K)
            total_loss += crit.forward(logits, y[i:i + B]) * logits.shape[0]
            self.n_classes = logits.shape[1]
            correct += int((xp.argmax(logits, axis=1) == crit.labels).sum())
            scores.append(self.hooks.scores(logits))
        self.val_auc = self.hooks.auc(y, scores)
        return total_loss / y.size, correct / y.size

    def finish_epoch(self, train_loss, train_acc, seconds, epochs):
        """Validate, record, checkpoint and log epoch self.epoch; returns the schedule's event. With weight
        averaging the net holds the average meanwhile: it is validated, selected and saved as the params."""
        with self.average.applied() if self.average is not None else contextlib.nullcontext():
            return self._finish_epoch(train_loss, train_acc, seconds, epochs)

    def _finish_epoch(self, train_loss, train_acc, seconds, epochs):
        val_loss, val_acc = self.validate()
        if _exploded(val_loss, self.history, "val_loss", self.n_classes):
            raise _Diverged(f"the validation loss became {val_loss:g} at epoch {self.epoch} (more than "
                            f"{EXPLODE_FACTOR:g} x the first epoch's, or not finite): the run diverged")
        lr = self.opt.lr
        self.history.append({"epoch": self.epoch, "train_loss": train_loss, "train_acc": train_acc,
                             "val_loss": val_loss, "val_acc": val_acc, "lr": lr, "seconds": seconds,
                             "images_per_s": self.train_split.y.size / seconds, "val_auc": self.val_auc})
        score = self.hooks.score(val_loss, val_acc, self.val_auc)  # higher is better; val_acc by default
        improved = score > self.hooks.best_score
        if improved:
            self.best_val_acc, self.best_epoch, self.hooks.best_score = val_acc, self.epoch, score
        event, reason = self.sched.update(self.epoch, score)
        self.opt.lr = self.sched.lr
        status = "stopped" if event == "stop" else ("completed" if self.epoch >= epochs else "running")
        self.save(self.last_path, status, reason)
        if improved and self.dist.is_root:  # best.h5 is a copy of last.h5: a resume can redo it after a kill
            copy_atomic(self.last_path, self.best_path, fsync=True)
        self.write_history()
        self.log(f"epoch {self.epoch}/{epochs}  train loss {train_loss:.4f} acc {train_acc:.4f}  "
                 f"val loss {val_loss:.4f} acc {val_acc:.4f}  lr {lr:.3g}  {seconds:.2f} s "
                 f"({self.train_split.y.size / seconds:.1f} img/s){self.hooks.log_suffix(self.val_auc)}"
                 f"{'  * best' if improved else ''}")
        if event:
            self.log(f"{'lr drop' if event == 'drop' else 'stop'}: {reason}")
        return event, reason


def _progress_bar(progress, total, desc):
    return tqdm(total=total, unit="img", unit_scale=False, desc=desc, leave=False, disable=not progress,
                dynamic_ncols=True)


def train(net, data, recipe, run, *, augment=None, preprocessing=None, on_batch=None):
    """Train `net` on data's 'train' split, validating on 'val' after every epoch.

    net: a Net (rawcnn.engine.models.build; lr_mult and frozen layers as the caller set them).
    data: rawcnn.data.load_dataset's result (uint8 images), a dict {'train': (x, y), 'val': (x, y)}
    or a pair ((x, y), (x, y)) with x float (N, C, H, W) or uint8 (N, C, S, S), y int (N,).
    recipe: a rawcnn.training.recipes.Recipe; train() reads its lr, batch_size, epochs (the last
    epoch to run, 1-based), momentum, weight_decay, patience and max_drops (the plateau schedule),
    and its warm-up, clipping, selection metric and class balance (rawcnn.training.recipe_hooks);
    its init, input_norm and augmentation are what the caller built the net, `preprocessing` and
    `augment` from (rawcnn.training.from_recipe). run: a Run (files, seed, resume, device, ranks, log).
    augment: None or an augmenter called as augment(x) with its Generator as augment.rng
    (rawcnn.data.Augmenter); preprocessing: the input contract for uint8 images (a Preprocessing or
    its dict; None: zero-center); on_batch: None or a callable on_batch(epoch, batch, loss) run
    after every step (both 1-based).
    Returns a dict: status ('completed', 'stopped', 'interrupted', 'diverged'), reason, epoch
    (the last completed), best_epoch, best_val_acc, history, last_checkpoint, best_checkpoint.
    """
    epochs = recipe.epochs
    run = _open_run(net, run)
    tr = Trainer(net, data, recipe, run, augment=augment, preprocessing=preprocessing, on_batch=on_batch)
    tr.epochs = int(epochs)
    if run.resume:
        finished = _resume(tr, recipe, run)
        if finished is not None:
            return finished
    else:
        _start_afresh(tr, run)
    split = f" in {tr.micro.M} micro-batches" if tr.micro else ""
    flushed = ""
    if net.be.name == "cpu":  # subnormal gradients cost Intel cores ~100 cycles an operation (kernels/cpu/denormals.py)
        denormals.flush_by_default()
        flushed = ", subnormal floats flushed to zero" if denormals.flushing() else ""
    run.log(f"training on {net.be.device}: {tr.train_split.y.size} train / {tr.val_split.y.size} validation "
            f"images, batch {tr.batch_size}{split}, {tr.opt!r}, plateau patience {recipe.patience}, at most "
            f"{recipe.max_drops} drops, epochs {tr.epoch + 1}..{epochs}{flushed}")
    with blas_pinned(net.be.name == "cpu" and run.deterministic, log=run.log), tr.dist.deferred_interrupts(), \
            net.reusing_buffers(), _quiet_float_errors():  # buffers kept: no per-step allocation
        status, reason = _loop(tr, epochs)
    _end_ranks_out_of_step(tr, status, reason)
    _log_end(tr, status, reason)
    if tr.history and tr.dist.is_root:
        plot_curves(tr.history, os.path.join(run.out_dir, "curves.png"))
    return _result(tr, status, reason)


def _run_files(run):
    """The paths of the files a run writes in its out_dir (RUN_FILES)."""
    return [os.path.join(run.out_dir, n) for n in RUN_FILES]


def _open_run(net, run):
    """Before the Trainer: move `net` to the run's device, make out_dir and (on rank 0) remove the
    temporaries a killed run left there. Returns the Run this rank trains with: `run` itself, or on
    ranks other than 0 a copy that neither logs nor shows progress bars."""
    dist = run.dist
    if run.device is not None and run.device != net.be.name:
        net.to(get_backend(run.device))
    os.makedirs(run.out_dir, exist_ok=True)
    if dist is not None and not dist.is_root:
        run = dataclasses.replace(run, log=lambda msg: None, progress=False)
    if dist is None or dist.is_root:
        for p in fileio.remove_stale_temporaries(run.out_dir, RUN_FILES):
            run.log(f"removed {p}, a temporary left by a run that was killed")
    return run


def _resume(tr, recipe, run):
    """Continue the run in run.out_dir: restore `tr` from last.h5 and repair best.h5 and history.csv
    after a kill. Returns train()'s result when there is nothing left to train (the run stopped, or
    reached the epoch limit), else None."""
    epochs = recipe.epochs
    if not os.path.exists(tr.last_path):
        raise ValueError(f"resume: {tr.last_path} does not exist; nothing to resume (train without --resume)")
    for p in _run_files(run):  # --resume is the permission to rewrite the run's own files
        fileio.mark_created(p)
    meta = tr.restore(tr.last_path, given=set(run.given or ()), lr=recipe.lr, epochs=epochs)
    if tr.dist.is_root:
        tr.repair(meta)
    if meta.get("status") == "stopped" or tr.epoch >= epochs:
        why = meta.get("reason") if meta.get("status") == "stopped" else f"the epoch limit is {epochs}"
        run.log(f"nothing to resume: {tr.last_path} holds epoch {tr.epoch} ({why})")
        if tr.history and tr.dist.is_root:
            plot_curves(tr.history, os.path.join(run.out_dir, "curves.png"))
        return _result(tr, meta.get("status") or "completed", why)
    run.log(f"resuming from {tr.last_path} after epoch {tr.epoch} (lr {tr.opt.lr:.3g})")
    return None


def _start_afresh(tr, run):
    """Begin a new run: (rank 0) refuse an earlier run's files unless overwriting is allowed, drop an
    earlier run's best.h5, and save last.h5 at epoch 0."""
    if tr.dist.is_root:  # one writer: the other ranks neither check nor touch the run's files
        fileio.check_targets(_run_files(run), "file of an earlier run")
        if fileio.overwrite_allowed() and os.path.exists(tr.best_path) and not fileio.created_here(tr.best_path):
            os.remove(tr.best_path)  # an earlier run's best.h5 must not pass for this run's
    tr.save(tr.last_path, "running")  # epoch 0: an interrupt in epoch 1 still leaves a checkpoint


def _end_ranks_out_of_step(tr, status, reason):
    """After an interrupt that did not stop every rank at the same collective, log it and abort the
    MPI job (exit code 130): the ranks can no longer meet. Does nothing otherwise."""
    if status == "interrupted" and tr.dist.size > 1 and not tr.collective_stop:  # ranks out of step: end them
        if not tr.dist.is_root:
            time.sleep(5)  # rank 0, interrupted too, says what it keeps before it ends the job
        tr.log(f"{status}: {reason}")
        sys.stdout.flush()
        time.sleep(1.0)  # let mpiexec forward the line before the abort tears the job down
        tr.dist.abort(130)


def _log_end(tr, status, reason):
    """Log how the run ended (a stop's reason was logged with its epoch) and which epoch is best.h5."""
    if status != "stopped":  # a stop's reason was logged with its epoch
        tr.log(f"{status}: {reason}")
    if tr.best_epoch:
        acc = "" if tr.hooks.select_by == "val-acc" else f" (validation accuracy {tr.best_val_acc:.4f})"
        tr.log(f"best epoch {tr.best_epoch} by {_selected_by(tr)}{acc}: {tr.best_path}; last: {tr.last_path}")


def _best_value(tr):
    """The best epoch's value of the selection metric: AUC, accuracy or loss (not negated)."""
    return -tr.hooks.best_score if METRIC_NAMES[tr.hooks.select_by][1] else tr.hooks.best_score


def _selected_by(tr):
    """'validation AUC 0.9123' (or accuracy, or loss): what picked best.h5, with its value."""
    return f"{METRIC_NAMES[tr.hooks.select_by][0]} {_best_value(tr):.4f}"


def _warm_up(tr):
    """One forward and backward on two training images before the first progress bar, so that Numba's
    compilation does not inflate the first epoch's ETA. Weights, momentum and every generator stay as
    they were (the dropout generators are put back), so a run is the same with or without it."""
    states = dropout_rng_states(tr.net)
    logits = tr.net.forward(tr.to_input(tr.train_split.x[:2]), train=True)  # (2, K)
    tr.crit.forward(logits, tr.train_split.y[:2])
    tr.net.backward(tr.crit.backward(), input_grad=False)
    set_dropout_rng_states(tr.net, states)


@contextlib.contextmanager
def _quiet_float_errors():
    """No NumPy overflow / invalid-value / divide-by-zero warnings while training: a loss gone inf or NaN is
    caught by _exploded and reported as one divergence line, which the warnings would only precede. A
    warnings filter rather than np.errstate alone, because the CPU kernels' BLAS jobs run on worker
    threads, which np.errstate (a per-thread setting) does not reach."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"(overflow|invalid value|divide by zero) encountered", RuntimeWarning)
        yield


def _loop(tr, epochs):
    """Run epochs until the limit, a stop, Ctrl-C or a non-finite loss; returns (status, reason)."""
    bar, current = None, tr.epoch + 1
    if tr.epoch < epochs:
        _warm_up(tr)
    try:
        while tr.epoch < epochs:
            current = tr.epoch + 1
            bar = _progress_bar(tr.progress, tr.train_split.y.size, f"epoch {current}/{epochs}")
            train_loss, train_acc, seconds = tr.run_epoch(bar)
            bar.close()
            tr.epoch += 1
            event, why = tr.finish_epoch(train_loss, train_acc, seconds, epochs)
            if event == "stop":
                return "stopped", why
        return "completed", f"reached the epoch limit ({epochs})"
    except KeyboardInterrupt as e:
        tr.collective_stop = isinstance(e, CollectiveInterrupt)  # every rank stopped at the same step
        return "interrupted", (f"interrupted (Ctrl-C) during epoch {current}; {tr.last_path} holds epoch "
                               f"{_saved_epoch(tr)}: continue with resume")
    except _Diverged as e:
        return "diverged", (f"{e}; stopped. The last good checkpoint, {tr.last_path}, holds epoch "
                            f"{_saved_epoch(tr)}; try a smaller learning rate")
    finally:
        if bar is not None:
            bar.close()


def _saved_epoch(tr):
    """The epoch last.h5 holds now (read back: an interrupt may have hit while it was written)."""
    try:
        return read_checkpoint(tr.last_path)["epoch"]
    except (ValueError, OSError):
        return "none"


def _result(tr, status, reason):
    return {"status": status, "reason": reason, "epoch": tr.epoch, "best_epoch": tr.best_epoch,
            "best_val_acc": tr.best_val_acc if tr.best_epoch else None, "history": tr.history,
            "select_by": tr.hooks.select_by, "best_score": _best_value(tr) if tr.best_epoch else None,
            "last_checkpoint": tr.last_path,
            "best_checkpoint": tr.best_path if os.path.exists(tr.best_path) else None}
