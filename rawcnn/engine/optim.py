"""SGD with momentum and L2 weight decay, and the plateau learning-rate schedule.

Shapes: every parameter w, its gradient dw and its velocity v share one shape and dtype (a conv
weight (F, C/G, KH, KW), a bias (F,), a linear weight (K, D), ...).

SGD (Caffe's SGDSolver form; the paper trains with "SGD with momentum, L2 5e-4"):
    v = momentum * v - lr_layer * (dw + weight_decay * w)
    w = w + v
where lr_layer = lr * layer.lr_mult (a fine-tuned model's new head learns faster) and
weight_decay * w is the gradient of the L2 penalty (weight_decay / 2) * |w|^2. The penalty is
applied to weights only, not to biases (decay_biases=False): biases carry no capacity worth
penalising, and MATLAB's trainNetwork (BiasL2Factor 0), which the paper used, does the same.
The per-parameter update is one fused in-place kernel, `be.sgd.sgd_momentum_update`.

Weight averaging (`rawcnn train --average-epochs E`; WeightAverage): an exponential moving average
of the trainable weights, updated after every step,
    avg = decay * avg + (1 - decay) * w,    decay = max(0, 1 - 1 / (E * steps per epoch))
(a horizon of about E epochs), started as a copy of the weights after the run's first step. The
trainer validates, selects and saves the average; SGD keeps training the weights themselves.

Plateau schedule (the paper: lr 1e-3 divided by 10 when validation accuracy stalls, three times):
after each epoch the validation accuracy is compared with the best so far; an epoch that does not
beat it (strictly) counts towards `patience`. When `patience` such epochs have passed in a row the
learning rate is multiplied by `factor` (0.1: divided by 10) and the count restarts (the best so
far is kept); after `max_drops` drops the next run of `patience` stalled epochs ends training.
"""
import contextlib

import numpy as np

from kernels import to_numpy


def by_layer(arrays):
    """{(layer name, key): array} as {layer: {key: numpy array}}, the form checkpoints store."""
    out = {}
    for (name, key), a in arrays.items():
        out.setdefault(name, {})[key] = to_numpy(a)
    return out


class SGD:
    """SGD with momentum and L2 decay over every trainable parameter of `net`.

    Velocity buffers live on the net's backend, one per (layer name, key), created at zero on
    the first step that has a gradient for that parameter.
    """

    def __init__(self, net, lr=1e-3, momentum=0.9, weight_decay=5e-4, decay_biases=False):
        if not lr > 0:
            raise ValueError(f"SGD: lr must be > 0, got {lr!r}")
        if not 0 <= momentum < 1:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum!r}")
        if not weight_decay >= 0:
            raise ValueError(f"SGD: weight_decay must be >= 0, got {weight_decay!r}")
        self.net = net
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self.decay_biases = bool(decay_biases)
        self.velocity = {}  # (layer name, key) -> array shaped like the parameter

    def __repr__(self):
        return (f"SGD(lr={self.lr:g}, momentum={self.momentum:g}, weight_decay={self.weight_decay:g}, "
                f"decay_biases={self.decay_biases})")

    def decay_for(self, key):
        """The L2 factor for parameter `key`: weights ('w') always, biases only with decay_biases."""
        return self.weight_decay if key == "w" or self.decay_biases else 0.0

    def _buffer(self, layer, key, w):
        """The velocity of (layer, key), created at zero or moved to the parameter's backend."""
        be = self.net.be
        v = self.velocity.get((layer.name, key))
        if v is None or not be.owns(v) or v.shape != w.shape or v.dtype != w.dtype:
            v = be.xp.zeros_like(w) if v is None else be.asarray(v, dtype=w.dtype)  # shape of w
            if v.shape != w.shape:
                raise ValueError(f"SGD: velocity of {layer.name}/{key} has shape {tuple(v.shape)}, "
                                 f"the parameter {tuple(w.shape)}")
            self.velocity[(layer.name, key)] = v
        return v

    def step(self):
        """Update every trainable parameter that has a gradient, in place."""
        sgd = self.net.be.sgd
        for layer, key, w, dw in self.net.parameters(trainable_only=True):
            if dw is None:
                continue
            v = self._buffer(layer, key, w)
            sgd.sgd_momentum_update(w, dw, v, lr=self.lr * layer.lr_mult, momentum=self.momentum,
                                    weight_decay=self.decay_for(key))

    def state(self):
        """The momentum as {layer: {key: numpy array}} (what save_checkpoint stores)."""
        return by_layer(self.velocity)

    def load_state(self, momentum):
        """Restore velocities from {layer: {key: array}}; every entry must match a parameter's shape."""
        params = {(l.name, k): w for l, k, w, _ in self.net.parameters()}
        velocity = {}
        for name, d in (momentum or {}).items():
            for key, v in d.items():
                if (name, key) not in params:
                    raise ValueError(f"SGD.load_state: the net has no parameter {name}/{key}")
                w = params[(name, key)]
                if tuple(v.shape) != tuple(w.shape):
                    raise ValueError(f"SGD.load_state: momentum {name}/{key} has shape {tuple(v.shape)}, "
                                     f"the parameter {tuple(w.shape)}")
                velocity[(name, key)] = self.net.be.asarray(np.asarray(v), dtype=w.dtype)
        self.velocity = velocity


class WeightAverage:
    """An exponential moving average of `net`'s trainable parameters (see the module's docstring).

    update() after every SGD step; `with applied():` the net holds the average (the trained weights
    are set aside and put back on leaving), and trained() gives those weights meanwhile. The average
    lives on the net's backend, one array per (layer name, key): memory for one more copy of the
    trained weights, and one more while applied.
    """

    def __init__(self, net, decay):
        if not 0.0 <= float(decay) <= 1.0:
            raise ValueError(f"WeightAverage: decay must be in [0, 1], got {decay!r}")
        self.net, self.decay = net, float(decay)
        self.avg = None     # {(layer name, key): array}: None before the first update
        self._kept = None   # {(layer name, key): numpy array}: the trained weights while applied

    @staticmethod
    def decay_for(epochs, steps_per_epoch):
        """The decay of a horizon of `epochs` epochs of `steps_per_epoch` steps: max(0, 1 - 1/(epochs x steps))."""
        return max(0.0, 1.0 - 1.0 / (float(epochs) * int(steps_per_epoch)))

    def _trained(self):
        return [(l.name, k, w) for l, k, w, _ in self.net.parameters(trainable_only=True)]

    def update(self):
        """Fold the net's weights into the average (the first call copies them)."""
        if self.avg is None:
            self.avg = {(n, k): w.copy() for n, k, w in self._trained()}
            return
        update = self.net.be.sgd.weight_average_update
        for n, k, w in self._trained():
            a = self.avg.get((n, k))
            if a is None or a.shape != w.shape or not self.net.be.owns(a):
                raise ValueError(f"WeightAverage: no average of the shape of {n}/{k} {tuple(w.shape)} on the net's "
                                 f"backend (the net changed after the average began)")
            update(a, w, decay=self.decay)

    @contextlib.contextmanager
    def applied(self):
        """Inside, the net's trainable parameters hold the average (nothing changes before the first update)."""
        if self.avg is None or self._kept is not None:
            yield
            return
        params = self._trained()
        self._kept = {(n, k): to_numpy(w).copy() for n, k, w in params}
        try:
            for n, k, w in params:
                w[...] = self.avg[(n, k)]
            yield
        finally:
            be = self.net.be
            for n, k, w in params:
                w[...] = be.asarray(self._kept[(n, k)], dtype=w.dtype)
            self._kept = None

    def trained(self):
        """While applied: the trained weights {layer: {key: numpy array}}, every parameter of each layer that
        has a trainable one (what a checkpoint stores beside the average); None otherwise."""
        return None if self._kept is None else by_layer(self._kept)

    def state(self):
        """The average as {layer: {key: numpy array}}, or None before the first update."""
        return None if self.avg is None else by_layer(self.avg)

    def load_state(self, state):
        """Continue from an average {layer: {key: array}} of the trainable parameters' shapes. A trainable
        parameter it has no average for (a layer frozen when it was saved) starts from the net's weights.
        Returns the names ['layer/key'] started so."""
        params = {(n, k): w for n, k, w in self._trained()}
        got = {(n, k): v for n, d in (state or {}).items() for k, v in d.items() if (n, k) in params}
        for (n, k), v in got.items():
            if tuple(v.shape) != tuple(params[(n, k)].shape):
                raise ValueError(f"WeightAverage.load_state: average {n}/{k} has shape {tuple(v.shape)}, the "
                                 f"parameter {tuple(params[(n, k)].shape)}")
        be = self.net.be
        self.avg = {key: be.asarray(np.array(got[key]), dtype=w.dtype) if key in got else w.copy()
                    for key, w in params.items()}
        return sorted(f"{n}/{k}" for n, k in set(params) - set(got))


METRIC_NAMES = {"val-acc": ("validation accuracy", False), "val-auc": ("validation AUC", False),
                "val-loss": ("validation loss", True),
                "val-auc-smooth": ("validation AUC (mean of the last 3 epochs)", False),
                "val-loss-smooth": ("validation loss (mean of the last 3 epochs)", True)}
# select_by -> (the metric's name in messages, whether the score is the negated value)


class ReduceOnPlateau:
    """lr *= factor after `patience` epochs without a better selection metric, at most `max_drops` times.

    `update(epoch, score)` takes the epoch's score (higher is better: validation accuracy by
    default; `select_by` names another, e.g. 'val-auc', or 'val-loss' whose score is minus the
    loss) and returns (event, reason): event is None, "drop" or "stop", and reason a sentence
    naming the metric and saying why (for the log). `lr` holds the current learning rate.
    """

    def __init__(self, lr, patience=5, max_drops=3, factor=0.1, select_by="val-acc"):
        if int(patience) < 1:
            raise ValueError(f"plateau schedule: patience must be >= 1 epoch, got {patience!r}")
        if int(max_drops) < 0:
            raise ValueError(f"plateau schedule: max_drops must be >= 0, got {max_drops!r}")
        if not 0 < factor < 1:
            raise ValueError(f"plateau schedule: factor must be in (0, 1), got {factor!r}")
        if select_by not in METRIC_NAMES:
            raise ValueError(f"plateau schedule: select_by must be one of {sorted(METRIC_NAMES)}, got {select_by!r}")
        self.lr, self.patience, self.max_drops, self.factor = float(lr), int(patience), int(max_drops), float(factor)
        self.metric, self.negated = METRIC_NAMES[select_by]
        self.best, self.best_epoch = -np.inf, 0
        self.wait = 0    # epochs in a row without a new best
        self.drops = 0   # learning-rate drops so far

    def update(self, epoch, score):
        """Take epoch `epoch`'s score (higher is better); returns (None | "drop" | "stop", reason)."""
        if score > self.best:
            self.best, self.best_epoch, self.wait = float(score), int(epoch), 0
            return None, ""
        self.wait += 1
        if self.wait < self.patience:
            return None, ""
        best = -self.best if self.negated else self.best
        stalled = (f"{self.metric} has not improved on {best:.4f} (epoch {self.best_epoch}) "
                   f"for {self.wait} epoch{'s' if self.wait > 1 else ''}")
        if self.drops < self.max_drops:
            old = self.lr
            self.lr *= self.factor
            self.drops += 1
            self.wait = 0
            return "drop", f"{stalled}: lr {old:.3g} -> {self.lr:.3g} (drop {self.drops} of {self.max_drops})"
        return "stop", f"{stalled} after the last of {self.max_drops} lr drops: stopping"

    def state(self):
        """JSON-serialisable state (for checkpoints)."""
        return {"lr": self.lr, "patience": self.patience, "max_drops": self.max_drops, "factor": self.factor,
                "best": None if self.best == -np.inf else self.best, "best_epoch": self.best_epoch,
                "wait": self.wait, "drops": self.drops}

    def load_state(self, state):
        """Restore the counters (and lr) from state(); patience, max_drops, factor stay as constructed."""
        self.lr = float(state["lr"])
        self.best = -np.inf if state["best"] is None else float(state["best"])
        self.best_epoch, self.wait, self.drops = int(state["best_epoch"]), int(state["wait"]), int(state["drops"])
