"""Transfer learning: a fresh classification head on pretrained features.

The paper this project follows fine-tunes AlexNet, VGG16 and VGG19 by replacing the 1000-way ImageNet
layer with a new 2-way one (normal / abnormal) that learns faster than the pretrained layers. The
new head is drawn as every rawcnn layer is, weights N(0, 0.01) and biases 0, from an explicit seed;
its `lr_mult` (Caffe's name) multiplies the learning rate the optimizer uses for it.
Freezing the feature extractor is `net.freeze_through(name)`.
"""
import copy

import numpy as np

from rawcnn.layers import Linear


def new_head(net, num_classes, seed, lr_mult=10.0, weight_std=0.01):
    """Replace the net's last Linear with a fresh one of `num_classes` outputs; returns the new layer.

    The new layer keeps the old one's name and input width, lives on the net's backend and dtype,
    and has layer.lr_mult = lr_mult. net.spec is updated so that checkpoints rebuild the new head.
    """
    idx = [i for i, l in enumerate(net.layers) if l.kind == "Linear"]
    if not idx:
        raise ValueError("new_head: the net has no Linear layer to replace")
    if int(num_classes) < 1:
        raise ValueError(f"new_head: num_classes must be >= 1, got {num_classes}")
    i = idx[-1]
    old = net.layers[i]
    head = Linear(old.in_features, int(num_classes), name=old.name, rng=np.random.default_rng(seed),
                  weight_std=weight_std, dtype=net.dtype)
    head.to(net.be)
    head.lr_mult = float(lr_mult)
    net.layers[i] = head
    if net.spec is not None:
        spec = copy.deepcopy(net.spec)
        for e in spec["layers"]:
            if e["name"] == old.name:
                e["out_features"] = int(num_classes)
        net.spec = spec
    net._set_backward_reach()
    return head
