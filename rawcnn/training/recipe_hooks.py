"""What a training recipe adds to the plain SGD loop of rawcnn.training.train, in one place.

Shapes: N training images, B a batch, K classes; y (N,) int64 labels, logits and dlogits (B, K).

    warm-up      lr_step = lr * min(1, t / T), t = 1, 2, ... the step, T = warmup_epochs * steps
                 per epoch (Goyal et al. 2017): the first steps of a freshly initialised net
                 are its largest; a ramp keeps them from throwing it far.
    clipping     g = g * min(1, clip_norm / ||g||), ||g|| over every trainable gradient of the
                 step (Pascanu et al. 2013): one outlier batch cannot blow the weights up.
    selection    the epoch kept as best.h5, and the metric the plateau schedule watches:
                 val-acc (the paper), val-auc, val-loss (minus the loss, so higher is better) or
                 val-auc-smooth / val-loss-smooth (the mean validation AUC, or minus the mean
                 validation loss, over the last SMOOTH_EPOCHS epochs).
                 Accuracy on a few tens of validation images moves in steps of 1/N_val; AUC and
                 loss move smoothly, so they tell a better epoch from a lucky one; on ~20 real
                 validation images one epoch's AUC is itself noisy, which the mean damps.
    balance      none; 'sample': each epoch draws N images with replacement, every class with
                 the same total probability; 'weight': the loss of class k's rows is weighted
                 by N / (K * N_k) (rows of dlogits scaled by w[y_b] * B / sum(w[y_b])).

Every default (0, 0, 'val-acc', 'none': the paper recipe's) leaves the plain SGD loop as it is.
The options come from a rawcnn.training.recipes.Recipe (Recipe.hooks()), or as a dict from a library caller.
"""
import math

import numpy as np

from kernels import to_numpy
from rawcnn.training.metrics import roc_auc
from rawcnn.training.recipes import BALANCE, SELECT_BY

SMOOTH_EPOCHS = 3  # val-auc-smooth, val-loss-smooth: the mean of this epoch's value and the two before it
DEFAULTS = {"warmup_epochs": 0.0, "clip_norm": 0.0, "select_by": "val-acc", "balance": "none"}


class RecipeHooks:
    """Warm-up, gradient clipping, the selection metric and class balance for one Trainer."""

    def __init__(self, recipe, trainer):
        r = {**DEFAULTS, **(recipe or {})}
        unknown = set(r) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"recipe: unknown option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        if r["select_by"] not in SELECT_BY:
            raise ValueError(f"select_by must be one of {SELECT_BY}, got {r['select_by']!r}")
        if r["balance"] not in BALANCE:
            raise ValueError(f"balance must be one of {BALANCE}, got {r['balance']!r}")
        if not (0 <= r["warmup_epochs"] < math.inf and 0 <= r["clip_norm"] < math.inf):  # NaN and inf refused
            raise ValueError(f"warmup_epochs and clip_norm must be finite and >= 0, got {r['warmup_epochs']!r}, "
                             f"{r['clip_norm']!r}")
        self.warmup_epochs, self.clip_norm = float(r["warmup_epochs"]), float(r["clip_norm"])
        self.select_by, self.balance = r["select_by"], r["balance"]
        self.tr, self.best_score = trainer, -math.inf
        y = trainer.train_split.y
        counts = np.bincount(y, minlength=2).astype(np.float64)  # (K,)
        if self.balance != "none" and (counts == 0).any():
            raise ValueError(f"balance={self.balance!r}: the training split has no image of class(es) "
                             f"{np.flatnonzero(counts == 0).tolist()}")
        self.class_weight = y.size / (counts.size * np.maximum(counts, 1))  # (K,)

    def meta(self):
        return {"best_score": self.best_score if math.isfinite(self.best_score) else None}

    def load_meta(self, meta):
        self.best_score = meta["best_score"] if meta.get("best_score") is not None else -math.inf

    # -- the epoch ---------------------------------------------------------------------------
    def epoch_order(self, rng, y):
        """The epoch's image order (N,): a permutation, or a class-balanced draw with replacement."""
        if self.balance != "sample":
            return rng.permutation(y.size)
        p = self.class_weight[y] / self.class_weight[y].sum()  # (N,)
        return rng.choice(y.size, size=y.size, replace=True, p=p)

    def dlogits(self, d, yb):
        """d (B, K) the mean loss's gradient; with balance='weight' rows scaled by their class weight."""
        if self.balance != "weight":
            return d
        w = self.class_weight[np.asarray(yb)]  # (B,)
        xp = self.tr.net.be.xp
        return d * xp.asarray((w * w.size / w.sum())[:, None], dtype=d.dtype)

    def before_step(self, epoch, batch, steps_per_epoch):
        """Set the step's learning rate (warm-up) and clip the gradients; epoch 0-based, batch 1-based."""
        opt, lr = self.tr.opt, self.tr.sched.lr
        if self.warmup_epochs > 0:
            t = epoch * steps_per_epoch + batch
            lr = lr * min(1.0, t / (self.warmup_epochs * steps_per_epoch))
        opt.lr = lr
        if self.clip_norm > 0:
            grads = [dw for _, _, _, dw in self.tr.net.parameters(trainable_only=True) if dw is not None]
            norm = math.sqrt(sum(float((g.astype("float64") ** 2).sum()) for g in grads))
            if norm > self.clip_norm:
                for g in grads:
                    g *= g.dtype.type(self.clip_norm / norm)

    # -- validation --------------------------------------------------------------------------
    def scores(self, logits):
        """Class-1 scores (B,) numpy float64 from logits (B, K): the logit margin (monotone in p1)."""
        z = to_numpy(logits).astype(np.float64)  # (B, K)
        return z[:, 1] - np.delete(z, 1, axis=1).max(axis=1) if z.shape[1] >= 2 else z[:, 0]

    def auc(self, y, scores):
        """Validation ROC AUC, or NaN when the split lacks a class or the task is not binary."""
        y = np.asarray(y)
        if not scores or y.max(initial=0) > 1 or np.unique(y).size < 2:
            return float("nan")
        return roc_auc(y, np.concatenate(scores))

    def score(self, val_loss, val_acc, val_auc):
        """The selection metric, higher is better."""
        if self.select_by in ("val-auc", "val-auc-smooth"):
            if not math.isfinite(val_auc):
                raise ValueError(f"select_by={self.select_by!r} needs a binary validation split holding both "
                                 f"classes")
            if self.select_by == "val-auc-smooth":  # the history already holds this epoch's row
                recent = [h["val_auc"] for h in self.tr.history[-SMOOTH_EPOCHS:]]
                return float(np.mean(recent))
            return val_auc
        if self.select_by == "val-loss-smooth":  # the history already holds this epoch's row
            return -float(np.mean([h["val_loss"] for h in self.tr.history[-SMOOTH_EPOCHS:]]))
        return -val_loss if self.select_by == "val-loss" else val_acc

    def log_suffix(self, val_auc):
        return f"  auc {val_auc:.4f}" if math.isfinite(val_auc) else ""
