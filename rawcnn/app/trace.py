"""One image through the network, layer by layer: the table a teacher puts on a slide.

Shape legend: C, H, W the net's input; K classes (the logits: the output of the last layer that
is not a Softmax).

Forward, for each layer: its output shape, min / mean / max, and for a ReLU the fraction of its
outputs that are exactly zero (the units it switched off). Then one backward of the
softmax cross-entropy loss for class k (given, or the predicted one):

    loss = -log softmax(logits)[k],   dlogits = softmax(logits) - onehot(k)

run one layer at a time (Net.backward(dy, top=layer, bottom=the layer below)), recording for each
layer the norm of the gradient w.r.t. its output and of its weight gradients, and finally the norm
of the gradient w.r.t. the input. Everything runs inside Net.probe() (test-time behaviour: Dropout
is the identity), with weight gradients switched on for the pass; the net's own flags and
gradients are left as they were.
"""
import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from kernels import to_numpy
from rawcnn.data import load_image
from rawcnn.data.contract import contract_of, file_to_input
from rawcnn.engine.checkpoint import load_checkpoint
from rawcnn.engine.layers import SoftmaxCrossEntropy
from rawcnn.engine.models import build
from rawcnn.training.evaluate import _checkpoint_input


@dataclass
class TraceRow:
    """One layer of the trace. grad_out: |d loss / d output| (None above the logits); grads:
    {param key: |d loss / d param|}."""
    name: str
    kind: str
    shape: tuple
    min: float
    mean: float
    max: float
    zero_fraction: float = None
    grad_out: float = None
    grads: dict = field(default_factory=dict)


@dataclass
class Trace:
    """What `trace` returns: the rows front to back, the class the loss used, the loss, the
    probabilities (K,), |d loss / d input| and a note on how the input was made (e.g. the lung
    ROI from the locator; '' when nothing needs saying)."""
    rows: list
    class_index: int
    loss: float
    probs: np.ndarray
    grad_input: float
    note: str = ""


def _logit_index(net):
    for i in range(len(net.layers) - 1, -1, -1):
        if net.layers[i].kind != "Softmax":
            return i
    raise ValueError("the net has no layer besides Softmax")


def trace(net, x, class_index=None):
    """Trace one image x (C, H, W) or (1, C, H, W) through `net`; class_index None: the predicted class.

    Returns Trace.
    """
    x = np.asarray(x) if not net.be.owns(x) else x
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"trace expects one image (C, H, W) or (1, C, H, W), got shape {tuple(x.shape)}")
    top = _logit_index(net)
    names = net.names()
    rows = []
    with net.probe():
        for l in net.layers:
            l.trainable = True  # weight gradients for this pass (probe() restores the flags)
        a, after, logits = x, None, None
        for i, l in enumerate(net.layers):
            a = net.forward(a, upto=l.name, after=after)
            after = l.name
            v = to_numpy(a).astype(np.float64)
            zeros = float(np.mean(v == 0)) if l.kind == "ReLU" else None
            rows.append(TraceRow(l.name, l.kind, tuple(v.shape[1:]), float(v.min()), float(v.mean()),
                                 float(v.max()), zeros))
            if i == top:
                logits = a
        K = int(logits.shape[1])
        k = int(np.argmax(to_numpy(logits)[0])) if class_index is None else int(class_index)
        if not 0 <= k < K:
            raise ValueError(f"class index {class_index} is outside the {K} classes of the net")
        crit = SoftmaxCrossEntropy().to(net.be)
        loss = float(crit.forward(logits, np.array([k])))
        probs = to_numpy(crit.probs)[0].astype(np.float64)
        g = crit.backward()
        for i in range(top, -1, -1):
            rows[i].grad_out = float(np.linalg.norm(to_numpy(g)))
            g = net.backward(g, top=names[i], bottom=names[i - 1] if i > 0 else None)
            rows[i].grads = {key: float(np.linalg.norm(to_numpy(v))) for key, v in net.layers[i].grads.items()}
        grad_input = float(np.linalg.norm(to_numpy(g)))
    return Trace(rows, k, loss, probs, grad_input)


def format_trace(t):
    """The trace as fixed-width text: one row per layer, then the class, the loss and |dL/dx|."""
    head = ["layer", "type", "output", "min", "mean", "max", "zeros", "|dL/dy|", "|dL/dw|", "|dL/db|"]

    def num(v):
        return "" if v is None else f"{v:.4g}"

    rows = [[r.name, r.kind, "x".join(map(str, r.shape)), num(r.min), num(r.mean), num(r.max),
             "" if r.zero_fraction is None else f"{100 * r.zero_fraction:.1f}%", num(r.grad_out),
             num(r.grads.get("w")), num(r.grads.get("b"))] for r in t.rows]
    widths = [max(len(s) for s in col) for col in zip(head, *rows, strict=True)]
    lines = ["  ".join(c.ljust(w) if j < 3 else c.rjust(w)
                       for j, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
             for r in [head] + rows]
    lines.append(f"loss -log p[{t.class_index}] = {t.loss:.6g} (p = {t.probs[t.class_index]:.4g}); "
                 f"|dL/dx| at the input = {t.grad_input:.4g}")
    if t.note:
        lines.append(f"input: {t.note}")
    return "\n".join(lines)


def trace_command(model, image=None, random=False, class_index=None, seed=0, device="cpu"):
    """`rawcnn trace`: load a checkpoint (.h5) or build a model (name or spec file), make its input
    from an image file (a checkpoint's input contract, the same path as `predict`:
    rawcnn.data.contract.file_to_input; else the gray image resized to the input and scaled to [0, 1])
    or from N(0, 1) noise of the given seed, and trace it. Returns Trace."""

    if (image is None) == (not random):
        raise ValueError("give one of --input IMAGE or --random")
    if str(model).endswith((".h5", ".hdf5")) and os.path.exists(model):
        net, ck = load_checkpoint(model, backend=device)
    else:
        net, ck = build(model, seed=seed), None
        net.to(device)
    if net.input_shape is None:
        raise ValueError(f"{model}: the model records no input shape")
    C, H, W = net.input_shape
    note = ""
    if random:
        x = np.random.default_rng(seed).standard_normal((1, C, H, W)).astype(net.dtype)
    elif ck is not None and ck.get("preprocessing") is not None:  # predict's path (rawcnn.data.contract)
        _, to_input = _checkpoint_input(net, ck, model)
        x, _, note = file_to_input(image, contract_of(ck), to_input)  # (1, C, H, W)
    else:

        img = cv2.resize(load_image(image), (W, H), interpolation=cv2.INTER_AREA)  # (H, W) uint8
        x = np.repeat((img.astype(np.float32) / 255.0)[None, None], C, axis=1).astype(net.dtype)
    t = trace(net, x, class_index)
    t.note = note
    return t
