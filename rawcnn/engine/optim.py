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

Plateau schedule (the paper: lr 1e-3 divided by 10 when validation accuracy stalls, three times):
after each epoch the validation accuracy is compared with the best so far; an epoch that does not
beat it (strictly) counts towards `patience`. When `patience` such epochs have passed in a row the
learning rate is multiplied by `factor` (0.1: divided by 10) and the count restarts (the best so
far is kept); after `max_drops` drops the next run of `patience` stalled epochs ends training.
"""
import numpy as np

from kernels import to_numpy


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
        out = {}
        for (name, key), v in self.velocity.items():
            out.setdefault(name, {})[key] = to_numpy(v)
        return out

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
