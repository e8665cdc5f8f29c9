"""Net: an ordered list of named layers, run front to back and back to front.

    logits = net.forward(x, train=True)      # x (N, C, H, W)
    dx = net.backward(dlogits)               # fills every trainable layer's grads
    a = net.forward(x, upto="relu5")         # through one layer; net.forward(a, after="relu5") goes on
    probs = net.predict(x, batch_size=32)    # test time, in batches, numpy (N, K)
    with net.streaming():                    # test-time forwards in two alternating output buffers
        y = net.forward(x)                   # (predict does this); y is overwritten by the next forward
    with net.probe():                        # look inside (heat maps, saliency, trace): no weight grads
        g = net.backward(dy, top="fc8", bottom="relu5")
    acts = net.activations(x, ["conv5"])     # raw per-channel outputs, name -> (N, F, OH, OW)
    net.replace_head(2, seed=0); net.freeze_through("pool5")    # transfer learning
    for layer, key, param, grad in net.parameters(): ...
    with net.reusing_buffers():              # training: every layer's outputs and gradients in kept
        ...                                  # buffers, overwritten by the next step (train() does this)

Backward stops at the lowest layer that still needs it: below the lowest trainable layer
nothing is computed (frozen feature extractors cost a forward only).
"""
import copy
from contextlib import contextmanager

import numpy as np

from kernels import get_backend, to_numpy
from rawcnn.engine import conv_algo
from rawcnn.engine.layers import Linear, WeightInit


def _starts(a, buf):
    """True when `a` is the C-contiguous view that Layer.buffer gives of the flat buffer `buf` (the same
    first element): a layer that asks for `buf` again gets `a` itself."""
    if buf is None or a.dtype != buf.dtype or a.size > buf.size or not a.flags.c_contiguous:
        return False
    address = lambda v: v.data.ptr if hasattr(v.data, "ptr") else v.__array_interface__["data"][0]  # noqa: E731
    return address(a) == address(buf)


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
        self._probing = False
        self.conv_batch = None  # the batch size conv_algo.plan last settled the Conv2d layers for
        self._set_backward_reach()
        # one workspace (column / transform buffers) for all layers: they run one at a time, so
        # the buffers grow to the largest layer's need once and are reused by every layer and step
        self.workspace = {}
        for l in self.layers:
            if hasattr(l, "workspace"):
                l.workspace = self.workspace
        # per-layer output buffers (layer name -> {role: flat array}), used only while reuse is on
        self._reuse, self._buffers = False, {}
        self._slots = None  # the two output buffers while streaming() (test-time forwards), else None
        # forward fuses each Conv2d + ReLU pair inside the span it runs (the conv's kernel writes max(y, 0), the ReLU
        # passes it on), backward each ReLU into the LRN or MaxPool2d above it: one pass over an activation saved
        # each, the same bits (False runs them apart; docs/design.md, point 5)
        self.fuse_relu = True

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
    def _span(self, lo_name, hi_name):
        """Indices [lo, hi) of the layers strictly after `lo_name` (None: from the first) through
        `hi_name` (None: the last)."""
        names = self.names()
        for n in (lo_name, hi_name):
            if n is not None and n not in names:
                raise KeyError(f"no layer named {n!r}; layers are: {', '.join(names)}")
        lo = names.index(lo_name) + 1 if lo_name is not None else 0
        hi = names.index(hi_name) + 1 if hi_name is not None else len(names)
        if lo > hi:
            raise ValueError(f"layer {lo_name!r} comes after {hi_name!r}")
        return lo, hi

    def forward(self, x, train=False, upto=None, *, after=None):
        """Run the layers in order and return the last output.

        x: the input (N, C, H, W), or the output of layer `after` when given (the pass then starts
        just above it); upto: the last layer to run (None: the whole net). Inside `with
        net.probe():` every layer keeps what its backward needs while computing as at test time.
        """
        x = self.be.asarray(x, dtype=self.dtype) if not self.be.owns(x) else x
        lo, hi = self._span(after, upto)
        probing = self._probing
        if self._slots is not None and not train and not probing:
            return self._stream(x, self.layers[lo:hi])
        for l, fused in self._fusing(self.layers[lo:hi]):
            # a probe keeps every layer's state but Dropout's, which is the identity at test time
            x = l.forward(x, train=train or (probing and l.kind != "Dropout"), **fused)
        return x

    def _fusing(self, layers):
        """(layer, keywords for its forward) for `layers` in order: a Conv2d with a ReLU right above it in
        `layers` gets relu=True (its kernel rectifies y as it writes it) and that ReLU rectified=True (it
        passes y on). A ReLU outside the span is not fused: the conv's own output is what the caller asked
        for (net.forward(x, upto="conv5")). activations() runs the layers apart, so every conv's output it
        returns is the one before the ReLU."""
        fused = False
        for l, above in zip(layers, layers[1:] + [None], strict=True):
            kw = {"rectified": True} if fused else {}
            fused = (self.fuse_relu and l.kind == "Conv2d" and above is not None and above.kind == "ReLU")
            yield l, ({"relu": True} if fused else kw)

    def _stream(self, x, layers):
        """Test-time forward through `layers` with every output in one of the two slots (streaming()):
        a layer writes into the slot that does not hold its input, so the output it overwrites is the
        one of two layers below, which nothing reads any more. A ReLU whose input is the y a layer
        below wrote into a slot rectifies it there, in place (as training's reuse does, _attach_buffers):
        nothing reads that output again, and one pass over memory is saved."""
        slots, xp = self._slots, self.be.xp
        held = self._slot_of(x)
        for l, fused in self._fusing(layers):
            kept = l.buffers
            in_place = l.kind == "ReLU" and held is not None and _starts(x, slots[held].get("y"))
            l.buffers = slots[held if in_place else (1 if held == 0 else 0)]
            try:
                x = l.forward(x, train=False, **fused)
            finally:
                l.buffers = kept
            held = self._slot_of(x, xp)  # Dropout returns its input, Flatten a view of it: still that slot
        return x

    def _slot_of(self, a, xp=None):
        """0 or 1: the streaming slot whose arrays `a` lies in, None when in neither (a fresh array, the input)."""
        xp = xp or self.be.xp
        for i, slot in enumerate(self._slots):
            if any(xp.may_share_memory(a, buf) for buf in slot.values()):
                return i
        return None

    @contextmanager
    def streaming(self):
        """Context for test-time forwards of many batches (predict does this): every layer writes its
        output into one of two buffers kept for the whole context, the one its input is not in, so a
        forward after the first allocates no activations and holds at most two at a time (fresh
        arrays, the default, cost a page fault per page of every output on some machines: bench/RESULTS.md,
        "Speed round 5"). What forward returns inside is overwritten by the next forward:
        copy what you keep. Forwards with train=True and probes inside run as outside it."""
        prev, prev_reuse = self._slots, self._reuse
        self._slots = ({}, {})
        self._reuse = False
        self._attach_buffers()
        try:
            yield self
        finally:
            self._slots, self._reuse = prev, prev_reuse
            if not prev_reuse:
                self._buffers = {}
            self._attach_buffers()

    def backward(self, dy, top=None, bottom=None, input_grad=True, start=None, on_layer_grads=None):
        """Run backward from the output of layer `top` (None: the last) down to the output of layer
        `bottom` (None: the input), stopping early at the lowest layer that needs it (frozen layers).

        dy: gradient w.r.t. top's output. Fills every trainable layer's grads on the way.
        input_grad=False skips the gradient w.r.t. the input (training needs only the weights': the
        first convolution then skips its col2im, as Caffe's first layer does). `start` is the old
        name of `top`.
        on_layer_grads: None or a callable(layer) run right after each layer with parameters has
        filled its grads (data-parallel training starts their reduction there).
        Returns the gradient w.r.t. bottom's output (or the input); None when the pass ends early
        (a frozen layer below, or input_grad False).
        """
        top = start if top is None else top
        lo, hi = self._span(bottom, top)
        lo_reach = max(lo, self._lowest)
        first = self.layers[lo_reach] if lo_reach < hi else None
        keep = first.need_dx if first is not None else None
        if first is not None:
            first.need_dx = keep and (input_grad or lo_reach > 0)
        try:
            for l, fused in reversed(self._fusing_back(self.layers[lo_reach:hi])):
                if self._probing and l.kind == "Dropout":
                    continue  # identity at test time
                dy = l.backward(dy, **fused)
                if on_layer_grads is not None and l.params:
                    on_layer_grads(l)
                if dy is None:  # a layer that needs no dx ends the pass
                    break
        finally:
            if first is not None:
                first.need_dx = keep
        return dy if lo_reach == lo and (input_grad or lo > 0) else None

    def _fusing_back(self, layers):
        """(layer, keywords for its backward) for `layers` in order: an LRN or MaxPool2d with a ReLU right below it
        in `layers` gets relu=True (its kernel applies that ReLU's backward, dx * (x > 0) with x its own input, the
        ReLU's output, as it writes dx) and the ReLU rectified=True (it passes dx on). A ReLU outside the span is
        not fused: the gradient at its output is what the caller asked for (bottom="relu5"). (A Conv2d above a
        ReLU is not fused: masking Winograd's dx tile by tile saved nothing measurable, bench/RESULTS.md.)"""
        fused = {}
        for below, l in zip([None] + layers[:-1], layers, strict=True):
            fused_here = (self.fuse_relu and l.kind in ("LRN", "MaxPool2d") and below is not None
                          and below.kind == "ReLU")
            fused[l.name] = {"relu": True} if fused_here else {}
            if fused_here:
                fused[below.name] = {"rectified": True}
        return [(l, fused[l.name]) for l in layers]

    @contextmanager
    def probe(self):
        """Context for forward/backward passes that look at the net instead of training it
        (heat maps, saliency, trace).

        Inside: forward keeps what backward needs but computes as at test time (Dropout is the
        identity, and skipped going back); backward reaches the input whatever is frozen, every
        layer computes dx and no layer computes weight gradients (no dw asked of the conv and linear kernels).
        On exit: the frozen/trainable flags and the weight gradients are as before, and every
        layer forgets what its forward kept.
        """
        saved = [(l.need_dx, l.trainable, dict(l.grads)) for l in self.layers]
        lowest, probing = self._lowest, self._probing
        for l in self.layers:
            l.need_dx, l.trainable = True, False
        self._lowest, self._probing = 0, True
        try:
            with self.reusing_buffers(False):  # fresh arrays: heat maps and traces keep them
                yield self
        finally:
            for l, (need_dx, trainable, grads) in zip(self.layers, saved, strict=True):
                l.need_dx, l.trainable, l.grads = need_dx, trainable, grads
                l.clear()
            self._lowest, self._probing = lowest, probing

    # -- buffer reuse --------------------------------------------------------------------------
    def _attach_buffers(self):
        pool = self._buffers.setdefault(None, [None, None]) if self._reuse else None  # the dx slots
        for l in self.layers:
            l.buffers = self._buffers.setdefault(l.name, {}) if self._reuse else None
            l.dx_pool = pool
        # In-place ReLU (Caffe's top == bottom, torchvision's inplace=True): a Conv2d or Linear writes its
        # y into the kept y of the ReLU right above it, which rectifies it there. Safe because their
        # backwards read their input, never their output, and the ReLU's reads only its own y: one
        # activation kept per conv + ReLU pair instead of two (VGG16 batch 8: 434 MB less).
        for below, above in zip(self.layers, self.layers[1:] + [None], strict=True):
            in_place = self._reuse and below.kind in ("Conv2d", "Linear") and getattr(above, "kind", "") == "ReLU"
            below.y_store = above.buffers if in_place else None

    def reuse_buffers(self, on=True):
        """Turn buffer reuse on or off for good (off frees the buffers). See reusing_buffers()."""
        self._reuse = bool(on)
        if not self._reuse:
            self._buffers = {}
        self._attach_buffers()
        return self

    @contextmanager
    def reusing_buffers(self, on=True):
        """Context in which every layer writes its forward outputs (y, LRN's scale, max-pool's
        argmax, dropout's mask), its backward's dx and its weight gradients into buffers it keeps
        across calls (layer.buffers, reallocated only when a shape outgrows them or the dtype
        changes): a training step after the first allocates none of them. What a forward or backward
        returns inside is overwritten by the next call of the same layer, so callers that keep
        outputs must copy them; train() turns reuse on around its epochs. on=False inside (predict,
        activations and probe do this) gives fresh arrays again without dropping the buffers.
        On exit the previous state is back; buffers are freed when reuse was off before."""
        prev = self._reuse
        self._reuse = bool(on)
        self._attach_buffers()
        try:
            yield self
        finally:
            self._reuse = prev
            if not prev:
                self._buffers = {}
            self._attach_buffers()

    def activations(self, x, names, train=False):
        """Forward `x` and return {name: output of that layer} (arrays of this backend)."""
        with self.reusing_buffers(False):  # fresh arrays: the caller keeps them
            return self._activations(x, names, train)

    def _activations(self, x, names, train):
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

    def predict(self, x, batch_size=32, *, upto=None, softmax=True, to_input=None, progress=None):
        """Test-time forward of `x` in batches, as one numpy array.

        x: (N, C, H, W), numpy or this backend's array (each batch is moved over on its own);
        upto: the last layer (None: the whole net); softmax: apply a softmax to the output when
        the net does not end in a Softmax layer (class probabilities (N, K)); to_input: an optional
        callable mapping a (B, ...) slice of x to the net's (B, C, H, W) input (e.g. uint8 images
        through the checkpoint's input contract); progress: an optional callable wrapping the
        batch range (e.g. tqdm).
        Returns (N, ...) numpy array (the net's dtype).
        """
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        # every batch's output is copied out, so the layers' outputs can live in two alternating
        # buffers (streaming()): no activation allocated after the first batch, two held at a time
        with self.streaming():
            return self._predict(x, batch_size, upto, softmax, to_input, progress)

    def _predict(self, x, batch_size, upto, softmax, to_input, progress):
        hi = self._span(None, upto)[1]
        ends_in_softmax = self.layers[hi - 1].kind == "Softmax"
        starts = range(0, len(x), int(batch_size))
        outs = []
        for i in (progress(starts) if progress is not None else starts):
            xb = x[i:i + int(batch_size)]
            y = self.forward(to_input(xb) if to_input is not None else xb, upto=upto)
            if softmax and not ends_in_softmax:
                y = self.be.softmax.softmax_forward(y)
            outs.append(np.array(to_numpy(y), copy=True))  # (B, ...) the next batch overwrites y
        if not outs:
            raise ValueError("predict: no images (x has length 0)")
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
        if self.conv_batch is not None:  # the Conv2d algorithms, settled again for this backend
            conv_algo.plan(self, self.conv_batch)
        self._buffers = {}  # the old backend's arrays
        self._attach_buffers()
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

    def replace_head(self, num_classes, seed, lr_mult=10.0, weight_std=0.01):
        """Replace the last Linear with a fresh one of `num_classes` outputs; returns the new layer.

        Transfer learning as in the paper this project follows: the 1000-way ImageNet layer becomes
        a new 2-way one that learns faster (`lr_mult`, Caffe's name, multiplies its learning rate).
        The new layer keeps the old one's name and input width, is drawn as every rawcnn layer is
        (weights N(0, weight_std), biases 0) from the explicit `seed`, and lives on the net's backend
        and dtype; net.spec is updated so that checkpoints rebuild the new head.
        """
        idx = [i for i, l in enumerate(self.layers) if l.kind == "Linear"]
        if not idx:
            raise ValueError("replace_head: the net has no Linear layer to replace")
        if int(num_classes) < 1:
            raise ValueError(f"replace_head: num_classes must be >= 1, got {num_classes}")
        i = idx[-1]
        old = self.layers[i]
        head = Linear(old.in_features, int(num_classes), name=old.name,
                      init=WeightInit(weight_std, np.random.default_rng(seed), self.dtype))
        head.to(self.be)
        head.lr_mult = float(lr_mult)
        self.layers[i] = head
        if self.spec is not None:
            spec = copy.deepcopy(self.spec)
            for e in spec["layers"]:
                if e["name"] == old.name:
                    e["out_features"] = int(num_classes)
            self.spec = spec
        self._set_backward_reach()
        self._attach_buffers()
        return head

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
