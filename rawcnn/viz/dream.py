"""Deep-dream images: activation maximisation by gradient ascent on the input, through the
engine's own backward pass (no autograd), like MATLAB's deepDreamImage.

Shape legend: C, H, W the net's input; F channels, h, w a conv layer's output; K classes.

Objective, for one image x (1, C, H, W):
    a class neuron k of a Linear layer (fc8):   J(x) = y[0, k]           dJ/dy = onehot(k)
    a channel f of a 4-D layer (conv5):         J(x) = mean_{i,j} y[0, f, i, j]
                                                dJ/dy[0, f] = 1 / (h w), 0 elsewhere
and g = dJ/dx comes from passing dJ/dy back through the layers below, one backward at a time.

Ascent over octaves (coarse to fine, as deepDreamImage's pyramid levels): the image is held at
size (H, W) / octave_scale^o for o = octaves-1 .. 0. At each step the held image u is enlarged to
(H, W), jittered (rolled by a random shift), put through forward and backward, the gradient rolled
back and shrunk to u's size, then
    u <- u + lr * scale * g / mean|g|       (normalised step: the same stride whatever the layer)
    u <- (1 - l2) * u                       (L2 decay pulls values that do not help back to 0)
    u <- GaussianBlur(u, blur_sigma)        (smoothness: damps high-frequency noise)
Between octaves u is enlarged to the next size. `scale` is the typical size of an input value
(1 for inputs in [0, 1]; about 50 for 0-255 inputs minus a mean) and sets the start noise too.
Every random draw (start noise, jitter) comes from numpy.random.default_rng(seed).
"""
from dataclasses import dataclass, field

import cv2
import numpy as np

from kernels import to_numpy
from rawcnn.viz.heatmap import Probe, logit_layer
from rawcnn.viz.images import input_to_rgb


@dataclass
class Dream:
    """What `dream` returns.

    image     float32 (C, H, W), in the net's input units
    history   list of J before each step, then J of the final image (float)
    layer, channel, class_index   the target
    """
    image: np.ndarray
    history: list = field(default_factory=list)
    layer: str = ""
    channel: int = None
    class_index: int = None

    def rgb(self, gray=False):
        """The image for display: RGB float32 (H, W, 3) in [0, 1]; gray: the mean over the channels
        (what matters to a net fed R = G = B radiographs), shown in gray."""
        x = self.image.mean(axis=0, keepdims=True) if gray else self.image   # (1 or C, H, W)
        return input_to_rgb(x)


def input_scale(to_input, input_shape):
    """The typical size of an input value, for `scale`: the std of a 0..255 ramp image after to_input.

    to_input: maps uint8 (1, C, H, W) to the net's input; input_shape: (C, H, W). Returns a float > 0.
    """
    C, H, W = input_shape
    ramp = np.broadcast_to(np.linspace(0, 255, W).astype(np.uint8), (1, C, H, W))  # (1, C, H, W)
    return float(np.std(to_input(np.ascontiguousarray(ramp)))) or 1.0


def _chw_resize(u, size, interpolation=cv2.INTER_LINEAR):
    """Resize (C, h, w) to (C, H', W') channel by channel; size = (H', W')."""
    if u.shape[1:] == tuple(size):
        return u.copy()
    return np.stack([cv2.resize(c, (size[1], size[0]), interpolation=interpolation) for c in u])


def _objective_grad(p, net, x, layer, channel, class_index):
    """J and dJ/dx for x (1, C, H, W). Returns (J float, g float32 (C, H, W))."""
    y = p.forward(x, upto=layer)
    dy = np.zeros(y.shape, dtype=net.dtype)                   # like y
    if y.ndim == 4:
        dy[0, channel] = 1.0 / (y.shape[2] * y.shape[3])
        J = float(to_numpy(y[0, channel]).mean())
    else:
        dy[0, class_index] = 1.0
        J = float(to_numpy(y)[0, class_index])
    g = to_numpy(p.backward(net.be.asarray(dy), layer))[0]    # (C, H, W)
    return J, g.astype(np.float32)


@dataclass(frozen=True)
class Ascent:
    """How `dream` climbs (the module docstring's symbols): `octaves` image sizes octave_scale apart,
    `steps` steps at each, step size `lr` (times scale), L2 decay `l2`, a Gaussian blur of `blur_sigma`
    pixels after each step, shifts of up to `jitter` pixels (None: 2 % of the input side, 4 at 227),
    and `scale`, the typical size of an input value."""
    octaves: int = 3
    octave_scale: float = 1.4
    steps: int = 20
    lr: float = 0.05
    l2: float = 1e-3
    blur_sigma: float = 0.5
    jitter: object = None
    scale: float = 1.0


def dream(net, layer=None, *, channel=None, class_index=None, ascent=None, seed=0, input_shape=None):
    """Gradient-ascent image that maximises a class neuron or a conv channel (see the module doc).

    layer: default the logit layer (a class neuron, class_index required); a 4-D layer needs
    `channel`; ascent: an Ascent (None: its defaults); input_shape (C, H, W): default net.input_shape.
    Returns Dream.
    """
    a = ascent or Ascent()
    octaves, octave_scale, steps, lr, l2 = a.octaves, a.octave_scale, a.steps, a.lr, a.l2
    blur_sigma, jitter, scale = a.blur_sigma, a.jitter, a.scale
    layer = layer if layer is not None else logit_layer(net)
    net[layer]
    C, H, W = tuple(input_shape or net.input_shape or ())
    if octaves < 1 or steps < 1 or octave_scale < 1.0:
        raise ValueError(f"dream needs octaves >= 1, steps >= 1, octave_scale >= 1; got {octaves}, {steps}, "
                         f"{octave_scale}")
    jitter = int(round(0.02 * min(H, W))) if jitter is None else int(jitter)
    rng = np.random.default_rng(seed)
    sizes = [(max(1, round(H / octave_scale ** o)), max(1, round(W / octave_scale ** o)))
             for o in reversed(range(int(octaves)))]
    u = (0.1 * scale * rng.standard_normal((C,) + sizes[0])).astype(np.float32)   # (C, h0, w0)
    history = []
    with Probe(net) as p:
        y = p.forward(np.zeros((1, C, H, W), dtype=net.dtype), upto=layer)
        if y.ndim == 4 and (channel is None or not 0 <= int(channel) < y.shape[1]):
            raise ValueError(f"layer {layer!r} has output (1, F, h, w) = {tuple(y.shape)}; give channel in "
                             f"[0, {y.shape[1]})")
        if y.ndim == 2 and (class_index is None or not 0 <= int(class_index) < y.shape[1]):
            raise ValueError(f"layer {layer!r} has output (1, K) = {tuple(y.shape)}; give class_index in "
                             f"[0, {y.shape[1]})")
        for size in sizes:
            u = _chw_resize(u, size)                                              # (C, h, w)
            for _ in range(int(steps)):
                sy, sx = (rng.integers(-jitter, jitter + 1, size=2) if jitter else (0, 0))
                x = np.roll(_chw_resize(u, (H, W)), (sy, sx), axis=(1, 2))[None]  # (1, C, H, W)
                J, g = _objective_grad(p, net, x, layer, channel, class_index)
                history.append(J)
                g = _chw_resize(np.roll(g, (-sy, -sx), axis=(1, 2)), size, cv2.INTER_AREA)  # (C, h, w)
                u = u + lr * scale * g / (np.abs(g).mean() + 1e-12)
                u = u * (1.0 - l2)
                if blur_sigma > 0:
                    u = np.stack([cv2.GaussianBlur(c, (0, 0), blur_sigma) for c in u])
        image = _chw_resize(u, (H, W)).astype(np.float32)                        # (C, H, W)
        history.append(_objective_grad(p, net, image[None], layer, channel, class_index)[0])
    return Dream(image, history, layer, None if channel is None else int(channel),
                 None if class_index is None else int(class_index))
