"""Heat maps: where the network looks. Three methods, each a map in [0, 1] at the input size.

Shape legend: N images, C, H, W the net's input; F channels, h, w the size of the chosen layer's
output A; K classes (the logits, the output of the last non-Softmax layer).

    channel   one channel of A (given, or the one that fires most, inside a mask when one is
              given; see activations.top_channels):      map = A[n, f]
              (Sivaramakrishnan et al.: the deepest conv layer's channel showing the strongest
              activation on the abnormal region)
    gradcam   Grad-CAM (Selvaraju et al., 2017) for class k (the predicted one by default):
                  G = d logit_k / d A                                  (N, F, h, w)
                  alpha[n, f] = mean_{i,j} G[n, f, i, j]               (N, F) channel weights
                  map = relu(sum_f alpha[n, f] * A[n, f])              (N, h, w)
    saliency  Simonyan et al. (2014): map = max_c |d logit_k / d x[n, c]|     (N, H, W)

Every map is resized to (H, W) (bilinear) and scaled to [0, 1] per image (a constant map gives 0).

The gradients come from the engine's own backward passes, no autograd, through Net's one path
inside `with net.probe():` (via Probe): one forward keeps what each layer's backward needs at
test-time behaviour (Dropout is the identity and is skipped going back), then d logit_k / d logits
= onehot(k) is passed back through the layers above A by net.backward(top=, bottom=), with no
weight gradient computed (need=("dx",) in the conv and linear kernels). Since every layer
treats images independently, one batch gives each image's gradient of its own logit. The net's
frozen/trainable flags and its weight gradients are left as they were, and what the layers kept
is dropped afterwards, so making maps for many images does not hold on to memory.
"""
from dataclasses import dataclass

import numpy as np

from kernels import to_numpy
from rawcnn.viz.activations import top_channels
from rawcnn.viz.images import resize, scale01

METHODS = ("channel", "gradcam", "saliency")


# -- layers and passes ---------------------------------------------------------------------------
def logit_layer(net):
    """Name of the layer whose output is the logits: the last one that is not a Softmax.

    net: a Net, or a model spec (a dict with "layers", each {"name", "type", ...}) such as a checkpoint's.
    """
    layers = ([(e["name"], e["type"]) for e in net["layers"]] if isinstance(net, dict)
              else [(l.name, l.kind) for l in net.layers])
    for name, kind in reversed(layers):
        if kind != "Softmax":
            return name
    raise ValueError("the net has no layer besides Softmax")


def default_layer(net):
    """The deepest Conv2d's activation: the ReLU right after the last Conv2d, or that Conv2d."""
    idx = [i for i, l in enumerate(net.layers) if l.kind == "Conv2d"]
    if not idx:
        raise ValueError("the net has no Conv2d layer; name a layer")
    i = idx[-1]
    nxt = net.layers[i + 1] if i + 1 < len(net.layers) else None
    return nxt.name if nxt is not None and nxt.kind == "ReLU" else net.layers[i].name


class Probe:
    """Context for a forward/backward used to look at the net, not to train it: Net.probe() with
    the two passes named as the heat maps use them.

    Inside: every layer computes dx, no layer computes weight gradients, Dropout is the identity.
    On exit: the flags are restored and every layer forgets what its forward kept.
    """

    def __init__(self, net):
        self.net = net
        self._ctx = None

    def __enter__(self):
        self._ctx = self.net.probe()
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        ctx, self._ctx = self._ctx, None
        return ctx.__exit__(*exc)

    def forward(self, x, upto, after=None):
        """Forward the layers after `after` (None: from the input) through `upto`, keeping what
        backward needs; returns upto's output."""
        return self.net.forward(x, upto=upto, after=after)

    def backward(self, dy, top, bottom=None):
        """Backward from the output of layer `top` to the output of layer `bottom` (None: the input).

        dy: gradient w.r.t. top's output. Returns the gradient w.r.t. bottom's output (or the input).
        """
        return self.net.backward(dy, top=top, bottom=bottom)


def _class_indices(class_index, logits):
    """(N,) int64 classes: the predicted ones (None), one for all (int), or one per image."""
    N, K = logits.shape
    if class_index is None:
        k = np.argmax(logits, axis=1)
    else:
        k = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (N,)).copy()
    if k.size and (k.min() < 0 or k.max() >= K):
        raise ValueError(f"class index {class_index!r} is outside the {K} classes of logits of shape {logits.shape}")
    return k.astype(np.int64)


def _onehot(net, classes, K):
    """(N, K) array of the net's backend and dtype, 1 at each image's class."""
    dy = np.zeros((len(classes), K), dtype=net.dtype)  # (N, K)
    dy[np.arange(len(classes)), classes] = 1.0
    return net.be.asarray(dy)


# -- the three methods ---------------------------------------------------------------------------
def gradcam_maps(net, x, layer, class_index=None):
    """Grad-CAM at `layer` before resizing.

    x: (N, C, H, W). Returns (cam float32 (N, h, w) >= 0, classes int64 (N,), logits float (N, K)).
    """
    top = logit_layer(net)
    with Probe(net) as p:
        a = p.forward(x, upto=layer)                                   # (N, F, h, w)
        if a.ndim != 4:
            raise ValueError(f"Grad-CAM needs a layer with (N, F, h, w) output; {layer!r} gives shape "
                             f"{tuple(a.shape)}")
        logits_np = to_numpy(p.forward(a, upto=top, after=layer))    # (N, K)
        classes = _class_indices(class_index, logits_np)
        g = p.backward(_onehot(net, classes, logits_np.shape[1]), top, layer)   # (N, F, h, w)
        a, g = to_numpy(a).astype(np.float64), to_numpy(g).astype(np.float64)
    alpha = g.mean(axis=(2, 3))                                         # (N, F)
    cam = np.maximum(np.einsum("nf,nfij->nij", alpha, a), 0.0)          # (N, h, w)
    return cam.astype(np.float32), classes, logits_np


def saliency_maps(net, x, class_index=None):
    """|d logit_k / d x| maxed over channels. x: (N, C, H, W).

    Returns (sal float32 (N, H, W) >= 0, classes int64 (N,), logits float (N, K)).
    """
    top = logit_layer(net)
    with Probe(net) as p:
        logits = p.forward(x, upto=top)                                 # (N, K)
        logits_np = to_numpy(logits)
        classes = _class_indices(class_index, logits_np)
        dx = to_numpy(p.backward(_onehot(net, classes, logits_np.shape[1]), top))  # (N, C, H, W)
    return np.abs(dx).max(axis=1).astype(np.float32), classes, logits_np


def channel_maps(net, x, layer, channel=None, mask=None):
    """One channel of `layer`'s output per image: `channel`, or the strongest (inside `mask`).

    x: (N, C, H, W); channel: None, an int, or (N,) ints; mask: None, (H', W') or (N, H', W')
    (any size; resized to the map). Returns (maps float32 (N, h, w), channels int64 (N,), logits (N, K)).
    """
    top = logit_layer(net)
    acts = net.activations(x, [layer, top])
    a, logits = to_numpy(acts[layer]), to_numpy(acts[top])
    if a.ndim != 4:
        raise ValueError(f"channel maps need a layer with (N, F, h, w) output; {layer!r} gives shape {a.shape}")
    N, F = a.shape[:2]
    if channel is None:
        masks = [None] * N if mask is None else np.broadcast_to(np.asarray(mask), (N,) + np.shape(mask)[-2:])
        channels = np.array([top_channels(a[n], 1, masks[n])[0][0] for n in range(N)], dtype=np.int64)
    else:
        channels = np.broadcast_to(np.asarray(channel, dtype=np.int64), (N,)).copy()
        if channels.min() < 0 or channels.max() >= F:
            raise ValueError(f"channel {channel!r} is outside the {F} channels of {layer!r} (shape {a.shape})")
    return a[np.arange(N), channels].astype(np.float32), channels, logits


@dataclass
class Heatmaps:
    """What `heatmaps` returns.

    maps      float32 (N, H, W) in [0, 1], at the input size
    classes   int64 (N,) the class each map explains (for 'channel': the predicted class)
    channels  int64 (N,) the channel shown ('channel'), else None
    logits    float (N, K)
    method, layer  as used
    """
    maps: np.ndarray
    classes: np.ndarray
    channels: np.ndarray
    logits: np.ndarray
    method: str
    layer: str


def heatmaps(net, x, method="gradcam", *, layer=None, class_index=None, channel=None, mask=None,
             batch_size=16):
    """Heat maps of images `x` by `method` ('channel', 'gradcam' or 'saliency'), in batches.

    x: (N, C, H, W) network input; layer: default the deepest conv activation (default_layer);
    class_index: None (predicted), an int or (N,) ints; channel, mask: for 'channel' (see
    channel_maps; mask (N, H', W') or one (H', W') for all). Returns Heatmaps.
    """
    if method not in METHODS:
        raise ValueError(f"unknown heat-map method {method!r}; choose one of {', '.join(METHODS)}")
    x = np.asarray(x) if not net.be.owns(x) else x
    if x.ndim != 4:
        raise ValueError(f"heatmaps expects x of shape (N, C, H, W), got {tuple(x.shape)}")
    if method != "saliency":
        layer = layer if layer is not None else default_layer(net)
        net[layer]  # a clear KeyError for an unknown name
    N, H, W = x.shape[0], x.shape[2], x.shape[3]
    maps = np.zeros((N, H, W), dtype=np.float32)          # (N, H, W)
    classes = np.zeros(N, dtype=np.int64)                  # (N,)
    channels = np.zeros(N, dtype=np.int64) if method == "channel" else None
    logits = None                                          # (N, K) once K is known
    for i in range(0, N, int(batch_size)):
        sl = slice(i, min(i + int(batch_size), N))
        xb = x[sl]
        cls = class_index if np.ndim(class_index) == 0 else np.asarray(class_index)[sl]
        if method == "gradcam":
            m, k, lg = gradcam_maps(net, xb, layer, cls)
        elif method == "saliency":
            m, k, lg = saliency_maps(net, xb, cls)
        else:
            mk = mask if mask is None or np.ndim(mask) == 2 else np.asarray(mask)[sl]
            ch = channel if np.ndim(channel) == 0 else np.asarray(channel)[sl]
            m, channels[sl], lg = channel_maps(net, xb, layer, ch, mk)
            k = np.argmax(lg, axis=1)
        for j in range(m.shape[0]):
            maps[i + j] = scale01(resize(m[j], (H, W)))
        classes[sl] = k
        if logits is None:
            logits = np.zeros((N, lg.shape[1]), dtype=np.float32)  # (N, K)
        logits[sl] = lg
    return Heatmaps(maps, classes, channels, logits, method, layer)
