"""Net: an ordered list of named layers, run front to back and back to front.

    logits = net.forward(x, train=True)      # x (N, C, H, W)
    dx = net.backward(dlogits)               # fills every trainable layer's grads
    acts = net.activations(x, ["conv5"])     # raw per-channel outputs, name -> (N, F, OH, OW)
    for layer, key, param, grad in net.parameters(): ...

Backward stops at the lowest layer that still needs it: below the lowest trainable layer
nothing is computed (frozen feature extractors cost a forward only).
"""
import numpy as np

from kernels import get_backend, to_numpy


class Net:
    def __init__(self, layers, spec=None, input_shape=None):
        names = [l.name for l in layers]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"layer names must be unique; repeated: {', '.join(dup)}")
        self.layers = list(layers)
        self.spec = spec
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.be = get_backend("cpu")
        self._set_backward_reach()
        # one workspace (column / transform buffers) for all layers: they run one at a time, so
        # the buffers grow to the largest layer's need once and are reused by every layer and step
        self.workspace = {}
        for l in self.layers:
            if hasattr(l, "workspace"):
                l.workspace = self.workspace

    # -- access --------------------------------------------------------------------------------
    def __getitem__(self, name):
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(f"no layer named {name!r}; layers are: {', '.join(self.names())}")

    def __iter__(self):
        return iter(self.layers)

    def __len__(self):
        return len(self.layers)

    def names(self):
        return [l.name for l in self.layers]

    def __repr__(self):
        rows = "\n".join(f"  {l.name:10s} {l!r}" for l in self.layers)
        return f"Net(\n{rows}\n)"

    # -- compute -------------------------------------------------------------------------------
    def forward(self, x, train=False, upto=None):
        """Run the layers in order (through `upto` when given) and return the last output."""
        x = self.be.asarray(x, dtype=self.dtype) if not self.be.owns(x) else x
        for l in self.layers:
            x = l.forward(x, train=train)
            if l.name == upto:
                break
        return x

    def backward(self, dy, start=None, input_grad=True):
        """Run backward from the last layer (or from `start`) down to the lowest layer that needs it.

        input_grad=False skips the gradient w.r.t. the input (training needs only the weights': the
        first convolution then skips its col2im, as Caffe's first layer does).
        Returns dx of the input (None when the first layer is frozen or input_grad is False).
        """
        layers = self.layers
        if start is not None:
            layers = layers[:self.names().index(start) + 1]
        first = self.layers[self._lowest]
        keep = first.need_dx
        first.need_dx = keep and input_grad
        try:
            for l in reversed(layers[self._lowest:]):
                dy = l.backward(dy)
                if dy is None:  # a layer that needs no dx ends the pass
                    break
        finally:
            first.need_dx = keep
        return dy if self._lowest == 0 and input_grad else None

    def activations(self, x, names, train=False):
        """Forward `x` and return {name: output of that layer} (arrays of this backend)."""
        missing = [n for n in names if n not in self.names()]
        if missing:
            raise KeyError(f"no layer named {', '.join(map(repr, missing))}; layers are: {', '.join(self.names())}")
        want, out = set(names), {}
        last = max(self.names().index(n) for n in names)
        x = self.be.asarray(x, dtype=self.dtype) if not self.be.owns(x) else x
        for l in self.layers[:last + 1]:
            x = l.forward(x, train=train)
            if l.name in want:
                out[l.name] = x
        return out

    def predict_proba(self, x, batch_size=32):
        """Class probabilities (N, K) as a numpy array, forward in batches at test time."""
        sm = self.be.softmax
        outs = []
        for i in range(0, len(x), batch_size):
            outs.append(to_numpy(sm.softmax_forward(self.forward(x[i:i + batch_size]))))
        return np.concatenate(outs)

    # -- parameters ----------------------------------------------------------------------------
    def parameters(self, trainable_only=False):
        """Yield (layer, key, param, grad) for every parameter (grad None before a backward)."""
        for l in self.layers:
            if trainable_only and not l.trainable:
                continue
            for k, p in l.params.items():
                yield l, k, p, l.grads.get(k)

    def num_params(self):
        return sum(l.num_params() for l in self.layers)

    def state_dict(self):
        """{layer: {key: numpy array}} of every parameter."""
        return {l.name: {k: to_numpy(v) for k, v in l.params.items()} for l in self.layers if l.params}

    def load_state_dict(self, state, strict=True):
        """Copy arrays from {layer: {key: array}}, checking every shape; returns the names loaded."""
        unknown = [n for n in state if n not in self.names()]
        if strict and unknown:
            raise KeyError(f"state has layers the net lacks: {', '.join(unknown)}")
        loaded = []
        for l in self.layers:
            if l.name not in state:
                if strict and l.params:
                    raise KeyError(f"state lacks layer {l.name!r}")
                continue
            for k, v in state[l.name].items():
                if k not in l.params:
                    raise KeyError(f"layer {l.name!r} has no parameter {k!r}")
                if tuple(v.shape) != tuple(l.params[k].shape):
                    raise ValueError(f"layer {l.name!r} parameter {k!r}: expected shape "
                                     f"{tuple(l.params[k].shape)}, got {tuple(v.shape)}")
                l.params[k] = self.be.asarray(v, dtype=l.params[k].dtype)
            loaded.append(l.name)
        return loaded

    @property
    def dtype(self):
        for l in self.layers:
            for v in l.params.values():
                return v.dtype
        return np.dtype(np.float32)

    # -- placement -----------------------------------------------------------------------------
    def to(self, backend):
        """Move every layer onto `backend` ('cpu', 'cuda', 'cudasim', 'reference' or a Backend)."""
        self.be = get_backend(backend) if isinstance(backend, str) else backend
        for l in self.layers:
            l.to(self.be)
        return self

    def astype(self, dtype):
        for l in self.layers:
            l.astype(dtype)
        return self

    def freeze_through(self, name):
        """Make every layer up to and including `name` untrainable (transfer learning)."""
        idx = self.names().index(name) if name in self.names() else None
        if idx is None:
            raise KeyError(f"no layer named {name!r}; layers are: {', '.join(self.names())}")
        for i, l in enumerate(self.layers):
            l.trainable = i > idx
        self._set_backward_reach()

    def _set_backward_reach(self):
        """Backward runs down to the layer just above the highest frozen one; nothing below it.

        With no frozen layer it runs to the input (saliency and gradient checks need dx there).
        """
        frozen = [i for i, l in enumerate(self.layers) if not l.trainable]
        self._lowest = max(frozen) + 1 if frozen else 0
        for i, l in enumerate(self.layers):
            l.need_dx = not (frozen and i == self._lowest)

    # -- description ---------------------------------------------------------------------------
    def summary(self, input_shape=None):
        """Rows (name, repr, output shape, params, forward FLOPs per image) for an input shape (C, H, W)."""
        shape = tuple(input_shape or self.input_shape)
        rows = []
        for l in self.layers:
            out = l.output_shape(shape)
            rows.append((l.name, repr(l), out, l.num_params(), l.flops(shape)))
            shape = out
        return rows
