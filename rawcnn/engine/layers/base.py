"""The layer contract every rawcnn layer follows (docs/design.md, decision 4).

    layer.name                 str
    layer.params, layer.grads  dicts of arrays with the same keys ('w', 'b'); empty for layers without weights
    y = layer.forward(x, train=False)   (Conv2d also takes relu=, ReLU rectified=: a fused pair, Net.forward;
                                        LRN's, MaxPool2d's and ReLU's backward the same, Net.backward)
    dx = layer.backward(dy)    overwrites layer.grads, returns dx (None when need_dx is False)
    layer.output_shape(in_shape) -> out_shape   shapes without the batch axis, e.g. (C, H, W)
    layer.flops(in_shape) -> forward multiply-adds x 2 for one image

A layer keeps what its backward needs from its own forward, under a real name (`self.x`,
`self.argmax`, `self.scale`); nothing else keeps a graph.
While its Net reuses buffers (Net.reusing_buffers(), on during training), `layer.buffers` is a dict
role -> flat array ('y', 'dx', 'dw', 'scale', ...) and the layer hands the kernels views of these
as their out= arrays, so that a step after the first allocates none; otherwise it is None and
every call returns fresh arrays. Layers never branch on the backend: they
call `self.be.<op>.<op>_forward(...)` and the backend chosen by `to()` does the rest.
"""
from dataclasses import dataclass

import numpy as np

from kernels import get_backend


def pair(v, what="value"):
    """An int or a pair -> (int, int)."""
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise ValueError(f"{what} must be an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def init_std(weight_std, shape):
    """The standard deviation of a weight init: a number, or "he" = sqrt(2 / fan_in) (He et al. 2015)."""
    if weight_std == "he":
        fan_in = int(np.prod(shape[1:]))
        return float(np.sqrt(2.0 / fan_in))
    if isinstance(weight_std, str):
        raise ValueError(f"weight init must be a number or 'he', got {weight_std!r}")
    return float(weight_std)


@dataclass(frozen=True)
class WeightInit:
    """How a Conv2d's or Linear's parameters start: w ~ N(0, std^2), b = 0, both of `dtype`.

    std: a number (0: all zeros) or "he" = sqrt(2 / fan_in) (init_std); rng: the numpy Generator the
    weights are drawn from (None: numpy.random.default_rng(0)), shared by the layers of one net so that
    one seed gives the whole net.
    """
    std: object = 0.01
    rng: object = None
    dtype: object = np.float32

    def params(self, w_shape, b_len):
        """{'w': (w_shape), 'b': (b_len,)} drawn as the class docstring says."""
        rng = self.rng if self.rng is not None else np.random.default_rng(0)
        w = rng.standard_normal(w_shape) * init_std(self.std, w_shape) if self.std else np.zeros(w_shape)
        return {"w": w.astype(self.dtype), "b": np.zeros(b_len, dtype=self.dtype)}


def device_of(a):
    """A short name of where array `a` lives."""
    if isinstance(a, np.ndarray):
        return "CPU (numpy.ndarray)"
    mod = type(a).__module__.split(".")[0]
    if mod == "cupy":
        return f"GPU {a.device.id} (cupy.ndarray)"
    return f"{type(a).__module__}.{type(a).__name__}"


class Layer:
    """Base class: holds the name, params/grads, the backend and the train flag."""

    kind = "Layer"

    def __init__(self, name):
        self.name = name
        self.params = {}
        self.grads = {}
        self.be = get_backend("cpu")
        self.trainable = True   # False: backward neither computes nor stores weight gradients (need_dw)
        self.need_dx = True     # False: the layer is the lowest one backward reaches
        self.lr_mult = 1.0      # learning-rate multiplier the optimizer applies to this layer
        self.buffers = None     # role -> flat array while the net reuses buffers (Net.reusing_buffers)
        self.dx_pool = None     # the net's two shared dx slots (a list) while it reuses buffers
        self.y_store = None     # the ReLU's buffers above this layer, where its y goes (Net: in-place ReLU)

    # -- moving between backends -------------------------------------------------------------
    def to(self, backend):
        """Move params onto `backend` (a name or a Backend); drops what forward kept."""
        be = get_backend(backend) if isinstance(backend, str) else backend
        self.be = be
        self.params = {k: be.asarray(v) for k, v in self.params.items()}
        self.grads = {}
        self.clear()
        return self

    def astype(self, dtype):
        """Cast params to `dtype` (float32 or float64)."""
        self.params = {k: v.astype(dtype) for k, v in self.params.items()}
        self.grads = {}
        return self

    def clear(self):
        """Forget what the last forward kept for backward."""

    def buffer(self, role, shape, dtype, avoid=None):
        """The out= array for one output of this layer (role 'y', 'dx', 'dw', ...): None unless the
        net reuses buffers (the kernel then allocates a fresh one); else a C-contiguous view of the
        first prod(shape) elements of the flat array kept under `role`, reallocated only when it is
        too small or of another dtype (the last, smaller batch of an epoch takes a view).

        'dx' comes from the net's two shared slots (self.dx_pool) instead: a backward reads only the
        dy the layer above wrote, so two arrays serve every layer's dx in turn; `avoid` (the dy being
        read) picks the slot that does not hold it. This keeps the backward's memory at two input
        gradients instead of one per layer.

        'y' goes to self.y_store when the net set one: the buffers of the ReLU right above, which
        then rectifies this output in place (Net._attach_buffers says when that is safe)."""
        if self.buffers is None:
            return None
        if role == "y" and self.y_store is not None:
            return _flat_view(self.y_store, "y", shape, dtype, self.be)
        if role == "dx" and self.dx_pool is not None:
            xp = self.be.xp
            slot = 1 if (avoid is not None and self.dx_pool[0] is not None
                         and xp.may_share_memory(self.dx_pool[0], avoid)) else 0
            return _flat_view(self.dx_pool, slot, shape, dtype, self.be)
        return _flat_view(self.buffers, role, shape, dtype, self.be)

    def backward_outs(self, x, w, dy=None):
        """A weighted layer's backward kernel's out= triple (dx, dw, db): buffers of x's and w's
        shapes (db: w.shape[:1]) for the outputs it computes, None for the others or without reuse;
        dy: the gradient being read (dx never lands on it)."""
        return (self.buffer("dx", x.shape, x.dtype, avoid=dy) if self.need_dx else None,
                self.buffer("dw", w.shape, w.dtype) if self.trainable else None,
                self.buffer("db", w.shape[:1], w.dtype) if self.trainable else None)

    # -- checks --------------------------------------------------------------------------------
    def check_input(self, x, ndim):
        """x must be an array of this backend with `ndim` axes and matching channels."""
        if not self.be.owns(x):
            raise ValueError(f"layer {self.name!r}: input is on {device_of(x)} but the layer computes on "
                             f"{self.be.device} (backend {self.be.name!r}); move one with .to()")
        if x.ndim != ndim:
            raise ValueError(f"layer {self.name!r} ({self!r}) expects a {ndim}-D input, got shape {tuple(x.shape)}")
        for k, v in self.params.items():
            if v.dtype != x.dtype:
                raise ValueError(f"layer {self.name!r}: input dtype {x.dtype} differs from param {k!r} dtype "
                                 f"{v.dtype}; cast the net with .astype()")

    def need(self, attr):
        """Return what forward kept under `attr`, or say clearly that backward came first."""
        v = getattr(self, attr, None)
        if v is None:
            raise RuntimeError(f"layer {self.name!r}: backward() called before forward(train=True) "
                               f"(nothing kept under {attr!r})")
        return v

    # -- description ---------------------------------------------------------------------------
    def output_shape(self, in_shape):
        return tuple(in_shape)

    def flops(self, in_shape):
        return 0

    def num_params(self):
        return int(sum(int(np.prod(v.shape)) for v in self.params.values()))

    def config(self):
        """The JSON-serialisable spec entry that rebuilds this layer (without weights)."""
        return {"type": self.kind, "name": self.name}


def _flat_view(store, key, shape, dtype, be):
    """A C-contiguous `shape` view of the flat array store[key], replaced by a new one (of exactly
    prod(shape) elements) when missing, too small, of another dtype or of another backend."""
    size, dtype = int(np.prod(shape)), np.dtype(dtype)
    buf = store[key] if isinstance(store, list) else store.get(key)
    if buf is None or buf.size < size or buf.dtype != dtype or not be.owns(buf):
        buf = be.xp.empty(size, dtype)  # flat (size,)
        store[key] = buf
    return buf[:size].reshape(tuple(shape))
