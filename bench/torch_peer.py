"""The PyTorch peer: the same architecture as a rawcnn spec, built in PyTorch, with rawcnn's weights.

Only the benchmarks import this file (the engine never imports torch). It reads the same spec
dict rawcnn.engine.models.build reads and maps each entry one to one:

    Conv2d     -> nn.Conv2d(C, F, kernel_size, stride, padding, groups=G)   w (F, C/G, KH, KW), b (F,)
    ReLU       -> nn.ReLU()
    LRN        -> nn.LocalResponseNorm(size, alpha, beta, k)   the same Caffe convention:
                  y = x / (k + alpha/size * sum of x^2 over [c - size//2, c + (size-1)//2]) ** beta
    MaxPool2d  -> nn.MaxPool2d(kernel_size, stride, padding, ceil_mode=...)
    Flatten    -> nn.Flatten()   (C, H, W order, as rawcnn)
    Linear     -> nn.Linear(D, K)   w (K, D), b (K,)
    Dropout    -> nn.Dropout(p)     (inverted dropout, as rawcnn; its own RNG)
    Softmax    -> nn.Softmax(dim=1)

The modules are created on the 'meta' device (no memory, no initialisation: VGG16's fc6 alone is
400 MB), their sizes found by running a meta tensor through them, and then every parameter is
set from rawcnn's numpy arrays with torch.from_numpy, which shares the memory (no copy; the
benchmark's peak RSS is not inflated by a second set of weights). Pass share=False for copies.

    net = rawcnn.engine.models.build("custom", seed=0)
    model = peer_from_net(net)               # nn.Sequential, children named as the rawcnn layers
"""
import collections

import numpy as np
import torch
from torch import nn

from rawcnn.engine.models import FIELDS, load_spec


def _field(entry, name):
    v = entry.get(name, FIELDS[entry["type"]].get(name))
    return tuple(v) if isinstance(v, list) else v


def resolve_spec(name_or_spec, input_shape=None, num_classes=None):
    """The spec as rawcnn.engine.models.build reads it: input_shape and num_classes applied."""
    spec = load_spec(name_or_spec)
    if input_shape is not None:
        spec["input"] = [int(v) for v in input_shape]
    if num_classes is not None:
        [e for e in spec["layers"] if e["type"] == "Linear"][-1]["out_features"] = int(num_classes)
    return spec


def build_peer(name_or_spec, input_shape=None, num_classes=None):
    """nn.Sequential of the spec's layers on the meta device (parameters still to be set)."""
    spec = resolve_spec(name_or_spec, input_shape, num_classes)
    probe = torch.empty((1, *spec["input"]), device="meta")  # (1, C, H, W)
    modules = collections.OrderedDict()
    for entry in spec["layers"]:
        kind = entry["type"]
        if kind == "Conv2d":
            m = nn.Conv2d(probe.shape[1], entry["out_channels"], _field(entry, "kernel_size"),
                          stride=_field(entry, "stride"), padding=_field(entry, "padding"),
                          groups=_field(entry, "groups"), device="meta")
        elif kind == "Linear":
            m = nn.Linear(probe.shape[1], entry["out_features"], device="meta")
        elif kind == "LRN":
            m = nn.LocalResponseNorm(_field(entry, "size"), alpha=_field(entry, "alpha"),
                                     beta=_field(entry, "beta"), k=_field(entry, "k"))
        elif kind == "MaxPool2d":
            k = _field(entry, "kernel_size")
            s = _field(entry, "stride")
            m = nn.MaxPool2d(k, stride=k if s is None else s, padding=_field(entry, "padding"),
                             ceil_mode=_field(entry, "ceil_mode"))
        elif kind == "ReLU":
            m = nn.ReLU()
        elif kind == "Flatten":
            m = nn.Flatten()
        elif kind == "Dropout":
            m = nn.Dropout(_field(entry, "p"))
        elif kind == "Softmax":
            m = nn.Softmax(dim=1)
        else:
            raise ValueError(f"torch_peer: no PyTorch counterpart for layer type {kind!r}")
        probe = m(probe)
        modules[entry["name"]] = m
    return nn.Sequential(modules)


def load_rawcnn_weights(model, net, share=True):
    """Set every parameter of `model` from the rawcnn Net `net` (layers matched by name)."""
    for name, m in model.named_children():
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        params = net[name].params
        for key, attr in (("w", "weight"), ("b", "bias")):
            a = np.ascontiguousarray(params[key], dtype=np.float32)
            t = torch.from_numpy(a) if share else torch.tensor(a)
            if tuple(t.shape) != tuple(getattr(m, attr).shape):
                raise ValueError(f"torch_peer: layer {name!r} {attr} is {tuple(getattr(m, attr).shape)} "
                                 f"in PyTorch but {tuple(t.shape)} in rawcnn")
            setattr(m, attr, nn.Parameter(t))
    return model


def peer_from_net(net, share=True):
    """The PyTorch twin of a rawcnn Net built from a spec (net.spec), holding net's weights."""
    model = build_peer(net.spec, input_shape=net.input_shape)
    return load_rawcnn_weights(model, net, share=share)
