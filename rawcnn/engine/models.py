"""Model specs: a model is a JSON-serialisable list of layer descriptions.

    {"name": "custom", "input": [3, 227, 227],
     "layers": [{"type": "Conv2d", "name": "conv1", "out_channels": 96, "kernel_size": 7, "stride": 2},
                {"type": "ReLU", "name": "relu1"}, ...]}

`build(name_or_spec, num_classes=..., input_shape=..., seed=...)` returns a Net. Input channels
and features are inferred front to back, so a spec names only what a person would write down.
`num_classes` replaces the out_features of the last Linear. Weights N(0, 0.01) (or `weight_std="he"`:
N(0, 2/fan_in), He et al. 2015), biases 0, drawn
from numpy.random.default_rng(seed) layer by layer; each Dropout gets its own generator spawned
from the same seed.

Built in: `custom` (Sivaramakrishnan et al., read with MATLAB R2017a defaults: no padding),
`custom-gap` (the same five conv blocks, then global average pooling, dropout and fc8 instead of
pool5 and the 4096-wide fc6/fc7: 1.6 M parameters instead of 103.3 M; issue 19),
`alexnet` (BVLC Caffe deploy.prototxt: conv-ReLU-LRN-pool order, groups 2), `vgg16`, `vgg19`.
"""
import copy
import json
import os

import numpy as np

from rawcnn.engine.layers import LAYER_TYPES, Conv2d, Dropout, Linear, WeightInit
from rawcnn.engine.net import Net
from rawcnn.files.validate import MAX_JSON_CHARS, check_bytes, parse_json, read_text


def _conv(name, f, k, s=1, p=0, g=1):
    return {"type": "Conv2d", "name": name, "out_channels": f, "kernel_size": k, "stride": s,
            "padding": p, "groups": g}


def _relu(name):
    return {"type": "ReLU", "name": name}


def _pool(name, k=3, s=2):
    return {"type": "MaxPool2d", "name": name, "kernel_size": k, "stride": s}


def _lrn(name, size, alpha, beta, k):
    return {"type": "LRN", "name": name, "size": size, "alpha": alpha, "beta": beta, "k": k}


def _head(num_classes):
    return [{"type": "Flatten", "name": "flatten"},
            {"type": "Linear", "name": "fc6", "out_features": 4096}, _relu("relu6"),
            {"type": "Dropout", "name": "drop6", "p": 0.5},
            {"type": "Linear", "name": "fc7", "out_features": 4096}, _relu("relu7"),
            {"type": "Dropout", "name": "drop7", "p": 0.5},
            {"type": "Linear", "name": "fc8", "out_features": num_classes}]


def custom_spec():
    """The paper's 5-conv/3-FC model; LRN = MATLAB crossChannelNormalizationLayer(5) defaults."""
    lrn = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)
    return {"name": "custom", "input": [3, 227, 227], "layers": [
        _conv("conv1", 96, 7, 2), _relu("relu1"), _lrn("norm1", **lrn), _pool("pool1"),
        _conv("conv2", 128, 3), _relu("relu2"), _lrn("norm2", **lrn), _pool("pool2"),
        _conv("conv3", 256, 3), _relu("relu3"),
        _conv("conv4", 256, 3), _relu("relu4"),
        _conv("conv5", 256, 3), _relu("relu5"), _pool("pool5"),
        *_head(2)]}


def custom_gap_spec():
    """custom's five conv blocks (same names and sizes), then GlobalAvgPool, Dropout 0.5 and fc8.

    Issue 19: fc6/fc7 hold 101.7 M of custom's 103.3 M parameters, against a few hundred training
    radiographs. Here fc8 reads the 256 channel means of relu5, so the net has 1.6 M parameters
    and takes any input that leaves conv5 at least 1x1. pool5 is dropped: the average over the
    whole map already pools it (at 128 px conv5's 7x7 map would become 3x3 first, a max taken
    before the mean for no gain), and with conv5 -> mean -> fc8 linear, Grad-CAM at relu5 is the
    class activation map of Zhou et al. (CVPR 2016).
    """
    layers = custom_spec()["layers"]
    convs = layers[:[e["name"] for e in layers].index("relu5") + 1]  # conv1 .. relu5: pool5 and the fc head go
    return {"name": "custom-gap", "input": [3, 227, 227], "layers": [
        *convs,
        {"type": "GlobalAvgPool", "name": "gap"},
        {"type": "Dropout", "name": "drop", "p": 0.5},
        {"type": "Linear", "name": "fc8", "out_features": 2}]}


def alexnet_spec():
    """BVLC AlexNet (models/bvlc_alexnet/deploy.prototxt); LRN k = 1 (Caffe's default)."""
    lrn = dict(size=5, alpha=1e-4, beta=0.75, k=1.0)
    return {"name": "alexnet", "input": [3, 227, 227], "layers": [
        _conv("conv1", 96, 11, 4), _relu("relu1"), _lrn("norm1", **lrn), _pool("pool1"),
        _conv("conv2", 256, 5, 1, 2, 2), _relu("relu2"), _lrn("norm2", **lrn), _pool("pool2"),
        _conv("conv3", 384, 3, 1, 1), _relu("relu3"),
        _conv("conv4", 384, 3, 1, 1, 2), _relu("relu4"),
        _conv("conv5", 256, 3, 1, 1, 2), _relu("relu5"), _pool("pool5"),
        *_head(1000)]}


def vgg_spec(depth):
    """VGG16 / VGG19 (Simonyan & Zisserman, configurations D and E), Caffe layer names."""
    convs = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}[depth]
    widths = (64, 128, 256, 512, 512)
    layers = []
    for b, (n, f) in enumerate(zip(convs, widths, strict=True), start=1):
        for i in range(1, n + 1):
            layers += [_conv(f"conv{b}_{i}", f, 3, 1, 1), _relu(f"relu{b}_{i}")]
        layers.append(_pool(f"pool{b}", 2, 2))
    return {"name": f"vgg{depth}", "input": [3, 224, 224], "layers": layers + _head(1000)}


BUILTIN = {"custom": custom_spec, "custom-gap": custom_gap_spec, "alexnet": alexnet_spec,
           "vgg16": lambda: vgg_spec(16), "vgg19": lambda: vgg_spec(19)}

# fields each layer type takes (besides "type" and "name"), with defaults; None = required
FIELDS = {
    "Conv2d": {"out_channels": None, "kernel_size": None, "stride": 1, "padding": 0, "groups": 1},
    "Linear": {"out_features": None},
    "ReLU": {}, "Flatten": {}, "GlobalAvgPool": {}, "Softmax": {},
    "LRN": {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 1.0},
    "MaxPool2d": {"kernel_size": None, "stride": None, "padding": 0, "ceil_mode": False},
    "Dropout": {"p": 0.5},
}


def load_spec(name_or_path):
    """A built-in model name, a path to a JSON spec file, or a spec dict -> a validated spec dict."""
    if isinstance(name_or_path, dict):
        spec, where = copy.deepcopy(name_or_path), "spec"
    elif name_or_path in BUILTIN:
        spec, where = BUILTIN[name_or_path](), f"built-in model {name_or_path!r}"
    elif os.path.exists(str(name_or_path)):
        where = f"spec file {name_or_path}"
        text = read_text(name_or_path, where, max_bytes=MAX_JSON_CHARS)  # a FIFO or device refused unread
        spec = parse_json(text, where, kind=dict, allow_null=False)
    else:
        raise ValueError(f"unknown model {name_or_path!r}: give one of {', '.join(BUILTIN)} or a path to "
                         f"a JSON spec file")
    validate_spec(spec, where)
    return spec


def validate_spec(spec, where="spec"):
    """Raise ValueError naming the entry at fault when the spec is malformed."""
    if not isinstance(spec, dict) or not isinstance(spec.get("layers"), list) or not spec["layers"]:
        raise ValueError(f"{where}: must be a JSON object with a non-empty list 'layers'")
    inp = spec.get("input")
    if not (isinstance(inp, list) and len(inp) == 3 and all(isinstance(v, int) and v > 0 for v in inp)):
        raise ValueError(f"{where}: 'input' must be [C, H, W] positive integers, got {inp!r}")
    seen = set()
    for i, entry in enumerate(spec["layers"]):
        at = f"{where}: layer entry {i} ({json.dumps(entry)[:80]})"
        if not isinstance(entry, dict):
            raise ValueError(f"{at}: must be an object")
        kind = entry.get("type")
        if kind not in FIELDS:
            raise ValueError(f"{at}: unknown layer type {kind!r}; known: {', '.join(FIELDS)}")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{at}: needs a non-empty string 'name'")
        if name in seen:
            raise ValueError(f"{at}: layer name {name!r} is used twice")
        seen.add(name)
        extra = set(entry) - set(FIELDS[kind]) - {"type", "name"}
        if extra:
            raise ValueError(f"{at}: unknown field(s) {', '.join(sorted(extra))} for {kind}; "
                             f"known: {', '.join(FIELDS[kind]) or 'none'}")
        for field, default in FIELDS[kind].items():
            if default is None and field not in entry and not (kind == "MaxPool2d" and field == "stride"):
                raise ValueError(f"{at}: {kind} needs field {field!r}")
            v = entry.get(field, default)
            ok = _field_ok(field, v)
            if not ok:
                raise ValueError(f"{at}: bad value {v!r} for field {field!r}")


def _field_ok(field, v):
    if v is None:
        return field == "stride"
    if field in ("kernel_size", "stride", "padding"):
        vals = v if isinstance(v, list) else [v]
        lo = 0 if field == "padding" else 1
        return len(vals) in (1, 2) and all(isinstance(t, int) and t >= lo for t in vals)
    if field in ("out_channels", "out_features", "groups", "size"):
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1
    if field == "p":
        return isinstance(v, (int, float)) and 0 <= v < 1
    if field == "ceil_mode":
        return isinstance(v, bool)
    return isinstance(v, (int, float)) and not isinstance(v, bool)


MAX_SIDE = 16384  # the largest input side or layer width a spec may ask for


def _check_size(spec, name, kind, shape, kw, itemsize, total):
    """ValueError before allocating when a layer's weights or activations would not fit the memory budget.

    shape: the layer's input (C, H, W) or (D,); total: [bytes of weights so far] (updated).
    """
    where = f"model {spec.get('name', '?')!r}: layer {name!r} ({kind})"
    width = kw.get("out_channels", kw.get("out_features"))
    if any(int(v) > MAX_SIDE * MAX_SIDE for v in shape) or (width is not None and width > 1 << 20):
        raise ValueError(f"{where}: input {tuple(shape)} or width {width} is beyond any real model; check the spec")
    n = 0
    if kind == "Conv2d":
        k = kw["kernel_size"]
        k = k if isinstance(k, list) else [k, k]
        n = int(width) * (int(shape[0]) // max(1, int(kw.get("groups", 1)))) * int(k[0]) * int(k[-1]) + int(width)
    elif kind == "Linear":
        n = int(width) * int(np.prod(shape)) + int(width)
    total[0] += n * itemsize
    check_bytes(total[0], where, "the weights up to this layer")
    check_bytes(int(np.prod([float(v) for v in shape])) * itemsize * 4, where,
                f"one image's activations at input {tuple(shape)}")


def build(name_or_spec, num_classes=None, input_shape=None, seed=0, dtype=np.float32, weight_std=0.01):
    """Build a Net from a built-in name, a spec file path or a spec dict.

    num_classes: replaces the last Linear's out_features; input_shape: (C, H, W) replaces spec['input'].
    Every layer's shape is checked front to back; a mismatch names the layer and the shapes.
    """
    spec = load_spec(name_or_spec)
    if input_shape is not None:
        spec["input"] = [int(v) for v in input_shape]
    if num_classes is not None:
        last = [e for e in spec["layers"] if e["type"] == "Linear"]
        if not last:
            raise ValueError(f"model {spec.get('name', '?')!r} has no Linear layer to give {num_classes} classes")
        last[-1]["out_features"] = int(num_classes)
    init = WeightInit(weight_std, np.random.default_rng(seed), dtype)  # one generator: one seed gives the net
    drop_seeds = np.random.SeedSequence(seed).spawn(len(spec["layers"]))
    shape, layers, total = tuple(spec["input"]), [], [0]
    for i, entry in enumerate(spec["layers"]):
        kw = {k: v for k, v in entry.items() if k not in ("type", "name")}
        kind, name = entry["type"], entry["name"]
        _check_size(spec, name, kind, shape, kw, np.dtype(dtype).itemsize, total)
        if kind == "Conv2d":
            layer = Conv2d(shape[0], name=name, init=init, **kw)
        elif kind == "Linear":
            if len(shape) != 1:
                raise ValueError(f"model {spec.get('name', '?')!r}: layer {name!r} (Linear) gets input of "
                                 f"shape {shape}; put a Flatten or a GlobalAvgPool before it")
            layer = Linear(shape[0], name=name, init=init, **kw)
        elif kind == "Dropout":
            layer = Dropout(name=name, rng=np.random.default_rng(drop_seeds[i]), **kw)
        else:
            layer = LAYER_TYPES[kind](name=name, **kw)
        try:
            shape = layer.output_shape(shape)
        except ValueError as e:
            raise ValueError(f"model {spec.get('name', '?')!r}: {e}") from None
        layers.append(layer)
    return Net(layers, spec=spec, input_shape=tuple(spec["input"]))
