"""Weight files in each real layout, written with h5py, and forward passes in each SOURCE's convention.

Nothing here imports weights_import: the files are written the way Keras 1/2/3 and heuritech wrote
them (names, attributes, dtypes, layouts from docs/weights-formats.md), and the
oracles compute what the source framework computes with those weights:

    tf_forward      NHWC activations, kernels (KH, KW, C/G, F), cross-correlation, Flatten in (H, W, C)
                    order (or (C, H, W) for a channels_first Keras <= 2.1 model), Dense x @ K + b
    theano_forward  NCHW activations, kernels (F, C/G, KH, KW), TRUE convolution (scipy.signal.convolve2d
                    flips the kernel, as Theano's conv2d does), Flatten in memory order (C, H, W)

A model is a list of ops: ("conv", name, {k, cin, cout, stride, pad, groups, split}),
("pool", None, {k, s}), ("lrn", None, {n, alpha, beta, k, form}), ("flatten", None, {}),
("dense", name, {din, dout, relu}). Every conv is followed by a ReLU. A conv with `split` is stored
as G separate layers (heuritech, MMdnn) named in that list.
"""
import json

import h5py
import numpy as np
from scipy.signal import convolve2d

# -- models -----------------------------------------------------------------------------------------

def conv(name, k, cin, cout, stride=1, pad=0, groups=1, split=None):
    return ("conv", name, dict(k=k, cin=cin, cout=cout, stride=stride, pad=pad, groups=groups, split=split))


def pool(k=2, s=2):
    return ("pool", None, dict(k=k, s=s))


def lrn(n=5, alpha=1e-4, beta=0.75, k=1.0, form="caffe"):
    return ("lrn", None, dict(n=n, alpha=alpha, beta=beta, k=k, form=form))


def dense(name, din, dout, relu=True):
    return ("dense", name, dict(din=din, dout=dout, relu=relu))


FLATTEN = ("flatten", None, {})

# Mini VGG: input 3 x 16 x 12 (non-square, so an H/W mix-up shows), 3 convs, map 6 x 4 x 3 at Flatten.
VGG_MINI = [conv("block1_conv1", 3, 3, 4, pad=1), conv("block1_conv2", 3, 4, 5, pad=1), pool(),
            conv("block2_conv1", 3, 5, 6, pad=1), pool(), FLATTEN,
            dense("fc1", 72, 10), dense("fc2", 10, 9), dense("predictions", 9, 7, relu=False)]
VGG_MINI_INPUT = (3, 16, 12)


def vgg_mini_spec():
    """The rawcnn spec of VGG_MINI with Caffe names; its name starts with 'vgg' (VGG family)."""
    c = lambda n, f: {"type": "Conv2d", "name": n, "out_channels": f, "kernel_size": 3, "padding": 1}
    r = lambda n: {"type": "ReLU", "name": n}
    p = lambda n: {"type": "MaxPool2d", "name": n, "kernel_size": 2, "stride": 2}
    return {"name": "vgg16-mini", "input": list(VGG_MINI_INPUT), "layers": [
        c("conv1_1", 4), r("relu1_1"), c("conv1_2", 5), r("relu1_2"), p("pool1"),
        c("conv2_1", 6), r("relu2_1"), p("pool2"), {"type": "Flatten", "name": "flatten"},
        {"type": "Linear", "name": "fc6", "out_features": 10}, r("relu6"), {"type": "Dropout", "name": "drop6"},
        {"type": "Linear", "name": "fc7", "out_features": 9}, r("relu7"), {"type": "Dropout", "name": "drop7"},
        {"type": "Linear", "name": "fc8", "out_features": 1000}]}


# Twelve convs of distinct widths: Keras 3 keys conv2d ... conv2d_11 must be ordered by number.
DEEP_WIDTHS = [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
DEEP_MINI = ([conv(f"c{i}", 3, DEEP_WIDTHS[i], DEEP_WIDTHS[i + 1], pad=1) for i in range(12)]
             + [FLATTEN, dense("d0", 15 * 5 * 4, 6), dense("d1", 6, 5), dense("d2", 5, 4, relu=False)])
DEEP_MINI_INPUT = (3, 5, 4)


def deep_mini_spec():
    layers = []
    for i in range(12):
        layers += [{"type": "Conv2d", "name": f"conv{i}", "out_channels": DEEP_WIDTHS[i + 1], "kernel_size": 3,
                    "padding": 1}, {"type": "ReLU", "name": f"relu{i}"}]
    layers += [{"type": "Flatten", "name": "flatten"}, {"type": "Linear", "name": "fc6", "out_features": 6},
               {"type": "ReLU", "name": "relu_fc6"}, {"type": "Linear", "name": "fc7", "out_features": 5},
               {"type": "ReLU", "name": "relu_fc7"}, {"type": "Linear", "name": "fc8", "out_features": 4}]
    return {"name": "vgg-deep-mini", "input": list(DEEP_MINI_INPUT), "layers": layers}


# Mini AlexNet: input 3 x 55 x 71; conv1 5x5/2 -> 26x34, pool -> 12x16, conv2 (g2) -> 12x16, pool -> 5x7,
# conv3-5 -> 5x7, pool5 -> 2x3, Flatten 8*2*3 = 48.
ALEX_INPUT = (3, 55, 71)


def alexnet_mini_spec():
    """BVLC order (conv-ReLU-LRN-pool), LRN Caffe size 5 alpha 1e-4 beta .75 k 1, groups 2."""
    c = lambda n, f, k, s=1, p=0, g=1: {"type": "Conv2d", "name": n, "out_channels": f, "kernel_size": k,
                                        "stride": s, "padding": p, "groups": g}
    r = lambda n: {"type": "ReLU", "name": n}
    p = lambda n: {"type": "MaxPool2d", "name": n, "kernel_size": 3, "stride": 2}
    n = lambda nm: {"type": "LRN", "name": nm, "size": 5, "alpha": 1e-4, "beta": 0.75, "k": 1.0}
    return {"name": "alexnet-mini", "input": list(ALEX_INPUT), "layers": [
        c("conv1", 8, 5, 2), r("relu1"), n("norm1"), p("pool1"),
        c("conv2", 8, 5, 1, 2, 2), r("relu2"), n("norm2"), p("pool2"),
        c("conv3", 12, 3, 1, 1), r("relu3"), c("conv4", 12, 3, 1, 1, 2), r("relu4"),
        c("conv5", 8, 3, 1, 1, 2), r("relu5"), p("pool5"), {"type": "Flatten", "name": "flatten"},
        {"type": "Linear", "name": "fc6", "out_features": 10}, r("relu6"), {"type": "Dropout", "name": "drop6"},
        {"type": "Linear", "name": "fc7", "out_features": 9}, r("relu7"), {"type": "Dropout", "name": "drop7"},
        {"type": "Linear", "name": "fc8", "out_features": 1000}]}


def heuritech_mini():
    """heuritech's AlexNet graph at mini size: pool then paper-form LRN (alpha 1e-4, k 2, no /n), split groups."""
    paper = lrn(5, 1e-4, 0.75, 2.0, form="paper")
    return [conv("conv_1", 5, 3, 8, stride=2), pool(3, 2), paper,
            conv("conv_2", 5, 8, 8, pad=2, groups=2, split=["conv_2_1", "conv_2_2"]), pool(3, 2), paper,
            conv("conv_3", 3, 8, 12, pad=1),
            conv("conv_4", 3, 12, 12, pad=1, groups=2, split=["conv_4_1", "conv_4_2"]),
            conv("conv_5", 3, 12, 8, pad=1, groups=2, split=["conv_5_1", "conv_5_2"]), pool(3, 2), FLATTEN,
            dense("dense_1", 48, 10), dense("dense_2", 10, 9), dense("dense_3", 9, 6, relu=False)]


def bvlc_keras_mini(split):
    """A BVLC-derived AlexNet in Keras 2 layout: Caffe order and LRN, groups as one tensor or MMdnn splits."""
    caffe = lrn(5, 1e-4, 0.75, 1.0, form="caffe")
    sp = (lambda n: [f"{n}_0", f"{n}_1"]) if split else (lambda n: None)
    return [conv("conv1", 5, 3, 8, stride=2), caffe, pool(3, 2),
            conv("conv2", 5, 8, 8, pad=2, groups=2, split=sp("conv2")), caffe, pool(3, 2),
            conv("conv3", 3, 8, 12, pad=1), conv("conv4", 3, 12, 12, pad=1, groups=2, split=sp("conv4")),
            conv("conv5", 3, 12, 8, pad=1, groups=2, split=sp("conv5")), pool(3, 2), FLATTEN,
            dense("fc6", 48, 10), dense("fc7", 10, 9), dense("fc8", 9, 6, relu=False)]


# -- random weights in the source's layout ------------------------------------------------------------

def make_params(model, rng, layout, std=0.15):
    """{layer name: (kernel, bias)} float32; conv kernels 'hwio' (KH, KW, C/G, F) or 'oihw' (F, C/G, KH, KW)."""
    out = {}
    for kind, name, a in model:
        if kind == "conv":
            G = a["groups"]
            names = a["split"] or [name]
            F = a["cout"] // len(names)
            shape = (a["k"], a["k"], a["cin"] // G, F) if layout == "hwio" else (F, a["cin"] // G, a["k"], a["k"])
            for n in names:
                out[n] = ((rng.standard_normal(shape) * std).astype(np.float32),
                          (rng.standard_normal(F) * 0.1).astype(np.float32))
        elif kind == "dense":
            out[name] = ((rng.standard_normal((a["din"], a["dout"])) * std).astype(np.float32),
                         (rng.standard_normal(a["dout"]) * 0.1).astype(np.float32))
    return out


def weight_names(layer, style):
    """The weight names Keras gave a conv or dense layer's (kernel, bias)."""
    return {"keras1-th": [f"{layer}_W", f"{layer}_b"],
            "keras1-tf": [f"{layer}_W_1:0", f"{layer}_b_1:0"],
            "keras2": [f"{layer}/kernel:0", f"{layer}/bias:0"],
            "keras3": [f"{layer}/kernel", f"{layer}/bias"]}[style]


# -- writers ----------------------------------------------------------------------------------------

def _strings(values, kind):
    """A list of names as Keras stored it: 'bytes' fixed-length S array or 'vlen' variable-length str."""
    if kind == "bytes":
        return np.array([v.encode("utf-8") for v in values])
    return np.array(values, dtype=h5py.string_dtype("utf-8"))


def _set_strings(attrs, key, values, kind, chunk=0):
    if not values:
        attrs[key] = np.zeros((0,), np.float64)  # what h5py makes of Keras' `attrs[k] = []`
    elif chunk:
        for i in range(0, len(values), chunk):
            attrs[f"{key}{i // chunk}"] = _strings(values[i:i + chunk], kind)
    else:
        attrs[key] = _strings(values, kind)


def _set_str(attrs, key, value, kind):
    attrs[key] = value.encode() if kind == "bytes" else value


def layer_list(model, input_name="input_1"):
    """[(layer name, [(weight layer name, kernel/bias source name)])] in model order, weightless layers named."""
    rows, counts = [(input_name, [])], {}
    for kind, name, a in model:
        if kind == "conv" and a["split"]:
            rows += [(n, [n]) for n in a["split"]] + [(name, [])]
        elif kind in ("conv", "dense"):
            rows.append((name, [name]))
        else:
            counts[kind] = counts.get(kind, 0) + 1
            rows.append((f"{kind}_{counts[kind]}", []))
    return rows


def input_layer_name(style):
    """The name Keras gave the input layer: 'input_layer' in Keras 3, 'input_1' before."""
    return "input_layer" if style == "keras3" else "input_1"


def write_legacy(group, model, params, style, strings="bytes", backend=None, keras_version=None, chunk=0):
    """The Keras legacy container (save_weights) into an open h5py group."""
    rows = layer_list(model, input_layer_name(style))
    _set_strings(group.attrs, "layer_names", [r[0] for r in rows], strings, chunk)
    if backend is not None:
        _set_str(group.attrs, "backend", backend, strings)
    if keras_version is not None:
        _set_str(group.attrs, "keras_version", keras_version, strings)
    for lname, owners in rows:
        g = group.create_group(lname)
        names = []
        for owner in owners:
            for wn, arr in zip(weight_names(owner, style), params[owner], strict=True):
                g.create_dataset(wn, data=arr)
                names.append(wn)
        _set_strings(g.attrs, "weight_names", names, strings)


def write_weights_file(path, model, params, style, **kw):
    with h5py.File(path, "w") as f:
        write_legacy(f, model, params, style, **kw)


def keras_config(model, data_format="channels_last", flatten_format="channels_last", keras1=False):
    """A model_config JSON dict naming each layer's class and data format (as Keras serialises it)."""
    layers = [{"class_name": "InputLayer", "config": {"name": "input_1"}}]
    for kind, name, a in model:
        if kind == "conv":
            cfg = {"name": name, "filters": a["cout"]}
            cfg.update({"dim_ordering": "th" if data_format == "channels_first" else "tf"} if keras1
                       else {"data_format": data_format})
            layers.append({"class_name": "Convolution2D" if keras1 else "Conv2D", "config": cfg})
        elif kind == "flatten":
            cfg = {"name": "flatten"}
            if flatten_format is not None:
                cfg["data_format"] = flatten_format
            layers.append({"class_name": "Flatten", "config": cfg})
        elif kind == "dense":
            layers.append({"class_name": "Dense", "config": {"name": name, "units": a["dout"]}})
    return {"class_name": "Model", "config": {"name": "model_1", "layers": layers}}


def write_full_model(path, model, params, style, config, strings="bytes", backend="tensorflow",
                     keras_version="2.2.4"):
    """model.save('x.h5'): root model_config + keras_version + backend, weights under /model_weights
    (style 'keras3': with Keras 3's empty top_level_model_weights group)."""
    with h5py.File(path, "w") as f:
        _set_str(f.attrs, "model_config", json.dumps(config), strings)
        _set_str(f.attrs, "keras_version", keras_version, strings)
        _set_str(f.attrs, "backend", backend, strings)
        _set_str(f.attrs, "training_config", json.dumps({"loss": "categorical_crossentropy"}), strings)
        g = f.create_group("model_weights")
        write_legacy(g, model, params, style, strings=strings, backend=backend, keras_version=keras_version)
        if style == "keras3":
            t = g.create_group("top_level_model_weights")
            t.attrs["weight_names"] = np.zeros((0,), np.float64)
        o = f.create_group("optimizer_weights")
        o.attrs["weight_names"] = _strings(["SGD/iterations:0"], strings)
        o.create_dataset("SGD/iterations:0", data=np.int64(3))


def write_nested(path, base_model, head_model, params, style="keras2", strings="bytes", full=True):
    """Sequential([Functional base 'vgg16', Flatten, Dense ...]) saved whole: the base is ONE layer group."""
    with h5py.File(path, "w") as f:
        root = f
        if full:
            cfg = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
                {"class_name": "Functional", "config": keras_config(base_model)["config"] | {"name": "vgg16"}},
                {"class_name": "Flatten", "config": {"name": "flatten", "data_format": "channels_last"}}]}}
            _set_str(f.attrs, "model_config", json.dumps(cfg), strings)
            root = f.create_group("model_weights")
        _set_str(root.attrs, "backend", "tensorflow", strings)
        _set_str(root.attrs, "keras_version", "2.4.0", strings)
        outer = ["vgg16", "flatten"] + [name for kind, name, _ in head_model if kind == "dense"]
        _set_strings(root.attrs, "layer_names", outer, strings)
        g = root.create_group("vgg16")
        names = []
        for kind, name, _ in base_model:
            if kind == "conv":
                for wn, arr in zip(weight_names(name, style), params[name], strict=True):
                    g.create_dataset(wn, data=arr)
                    names.append(wn)
        _set_strings(g.attrs, "weight_names", names, strings)
        _set_strings(root.create_group("flatten").attrs, "weight_names", [], strings)
        for kind, name, _ in head_model:
            if kind == "dense":
                h = root.create_group(name)
                wns = weight_names(name, style)
                for wn, arr in zip(wns, params[name], strict=True):
                    h.create_dataset(wn, data=arr)
                _set_strings(h.attrs, "weight_names", wns, strings)


def write_keras3(path, model, params, name_attr=True, nested=False):
    """model.save_weights('x.weights.h5') in Keras 3: layers/<snake class key>/vars/<i>, keys numbered per class."""
    with h5py.File(path, "w") as f:
        top = f.create_group("layers")
        f.create_group("vars")
        f.create_group("optimizer").create_group("vars").create_dataset("0", data=np.int64(7))
        used = {}

        def add(container, cls, layer_name, arrays):
            n = used.setdefault((container.name, cls), -1) + 1
            used[(container.name, cls)] = n
            key = cls if n == 0 else f"{cls}_{n}"
            v = container.create_group(key).create_group("vars")
            if name_attr:
                v.attrs["name"] = layer_name
            for i, arr in enumerate(arrays):
                v.create_dataset(str(i), data=arr)

        inner = top.create_group("functional").create_group("layers") if nested else top
        add(inner, "input_layer", "input_layer", [])
        for kind, name, _ in model:
            if kind == "conv":
                add(inner, "conv2d", name, params[name])
            elif kind == "pool":
                add(inner, "max_pooling2d", "pool", [])
            elif kind == "flatten":
                add(top, "flatten", "flatten", [])
            elif kind == "dense":
                add(top, "dense", name, params[name])


# -- oracles ----------------------------------------------------------------------------------------

def _lrn_channels(x, axis, a):
    """LRN along `axis`: Caffe form scale = k + alpha/n * window sum, paper form scale = k + alpha * sum."""
    n, half = a["n"], a["n"] // 2
    sq = np.moveaxis(x, axis, -1) ** 2
    padded = np.pad(sq, [(0, 0)] * (sq.ndim - 1) + [(half, half)])
    C = sq.shape[-1]
    win = sum(padded[..., i:i + C] for i in range(n))  # centred window of n channels, zero outside
    alpha = a["alpha"] / n if a["form"] == "caffe" else a["alpha"]
    scale = np.moveaxis(a["k"] + alpha * win, -1, axis)
    return x / scale ** a["beta"]


def _conv_groups(op, params):
    """[(kernel, bias)] per group: split layers as stored, or one tensor cut on its filter axis."""
    a = op[2]
    if a["split"]:
        return [params[n] for n in a["split"]]
    k, b = params[op[1]]
    G = a["groups"]
    return [(kk, bb) for kk, bb in zip(np.split(k, G, axis=-1 if k.shape[-1] == a["cout"] else 0),
                                       np.split(b, G), strict=True)]


def tf_forward(x_nchw, model, params, flatten="hwc"):
    """TensorFlow semantics: NHWC, HWIO kernels, cross-correlation, Dense x @ K + b. Returns logits (N, K)."""
    x = np.asarray(x_nchw, np.float64).transpose(0, 2, 3, 1)  # (N, H, W, C)
    for op in model:
        kind, name, a = op
        if kind == "conv":
            p, s, G = a["pad"], a["stride"], a["groups"]
            xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
            outs = []
            for g, (k, b) in enumerate(_conv_groups(op, params)):
                cg = a["cin"] // G
                win = np.lib.stride_tricks.sliding_window_view(xp[..., g * cg:(g + 1) * cg], k.shape[:2], axis=(1, 2))
                win = win[:, ::s, ::s]  # (N, OH, OW, C/G, KH, KW)
                outs.append(np.einsum("nhwcij,ijcf->nhwf", win, k.astype(np.float64)) + b)
            x = np.maximum(np.concatenate(outs, axis=-1), 0)
        elif kind == "pool":
            win = np.lib.stride_tricks.sliding_window_view(x, (a["k"], a["k"]), axis=(1, 2))
            x = win[:, ::a["s"], ::a["s"]].max(axis=(-2, -1))
        elif kind == "lrn":
            x = _lrn_channels(x, 3, a)
        elif kind == "flatten":
            x = x.reshape(len(x), -1) if flatten == "hwc" else x.transpose(0, 3, 1, 2).reshape(len(x), -1)
        elif kind == "dense":
            k, b = params[name]
            x = x @ k.astype(np.float64) + b
            x = np.maximum(x, 0) if a["relu"] else x
    return x


def theano_forward(x_nchw, model, params, flatten="chw"):
    """Theano semantics: NCHW, (F, C/G, KH, KW) kernels, TRUE convolution, Dense x @ K + b."""
    x = np.asarray(x_nchw, np.float64)
    for op in model:
        kind, name, a = op
        if kind == "conv":
            p, s, G = a["pad"], a["stride"], a["groups"]
            xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
            outs = []
            for g, (k, b) in enumerate(_conv_groups(op, params)):
                cg = a["cin"] // G
                xg = xp[:, g * cg:(g + 1) * cg]
                y = np.stack([np.stack([sum(convolve2d(xg[n, c], k[f, c].astype(np.float64), mode="valid")
                                            for c in range(cg)) + b[f] for f in range(k.shape[0])])
                              for n in range(len(x))])
                outs.append(y[:, :, ::s, ::s])
            x = np.maximum(np.concatenate(outs, axis=1), 0)
        elif kind == "pool":
            win = np.lib.stride_tricks.sliding_window_view(x, (a["k"], a["k"]), axis=(2, 3))
            x = win[:, :, ::a["s"], ::a["s"]].max(axis=(-2, -1))
        elif kind == "lrn":
            x = _lrn_channels(x, 1, a)
        elif kind == "flatten":
            x = x.reshape(len(x), -1) if flatten == "chw" else x.transpose(0, 2, 3, 1).reshape(len(x), -1)
        elif kind == "dense":
            k, b = params[name]
            x = x @ k.astype(np.float64) + b
            x = np.maximum(x, 0) if a["relu"] else x
    return x


def images(rng, shape, n=2):
    """Inputs on the scale pretrained nets see: 0-255 pixels minus about the ImageNet mean."""
    return (rng.uniform(0, 255, (n,) + tuple(shape)) - 120.0).astype(np.float32)


# -- real-size structure files (datasets left unallocated: reading gives zeros, the file stays small) ---

VGG_BLOCKS = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


def vgg_real_layers(depth, top=True):
    """[(keras name, kernel shape in HWIO, bias shape)] of keras-applications VGG16/VGG19."""
    rows, cin = [], 3
    for b, (n, f) in enumerate(zip(VGG_BLOCKS[depth], (64, 128, 256, 512, 512), strict=True), start=1):
        for i in range(1, n + 1):
            rows.append((f"block{b}_conv{i}", (3, 3, cin, f), (f,)))
            cin = f
    if top:
        rows += [("fc1", (25088, 4096), (4096,)), ("fc2", (4096, 4096), (4096,)),
                 ("predictions", (4096, 1000), (1000,))]
    return rows


def write_real_vgg(path, depth, top, style, layout, data=None, strings="bytes"):
    """A keras-applications VGG file at real shapes; only the datasets named in `data` hold values.

    data: {dataset key 'layer' or 'layer/kernel-rows': array}; fc1 is chunked so that a few rows can be
    written without allocating its 400 MB.
    """
    data = data or {}
    rows = vgg_real_layers(depth, top)
    with h5py.File(path, "w") as f:
        names = ["input_1"]
        for b in range(1, 6):
            names += [r[0] for r in rows if r[0].startswith(f"block{b}_")] + [f"block{b}_pool"]
        names += (["flatten", "fc1", "fc2", "predictions"] if top else [])
        _set_strings(f.attrs, "layer_names", names, strings)
        shapes = {r[0]: r[1:] for r in rows}
        for lname in names:
            g = f.create_group(lname)
            if lname not in shapes:
                _set_strings(g.attrs, "weight_names", [], strings)
                continue
            kshape, bshape = shapes[lname]
            if len(kshape) == 4 and layout == "oihw":
                kshape = (kshape[3], kshape[2], kshape[0], kshape[1])
            wn = weight_names(lname, style)
            chunks = (64, 4096) if lname == "fc1" else None
            k = g.create_dataset(wn[0], shape=kshape, dtype="<f4", chunks=chunks)
            g.create_dataset(wn[1], shape=bshape, dtype="<f4")
            if lname in data:
                k[...] = data[lname]
            for rows_key, arr in data.items():
                if rows_key.startswith(f"{lname}/rows"):
                    for r, row in arr:
                        k[r] = row
            _set_strings(g.attrs, "weight_names", wn, strings)


def write_real_heuritech(path, data=None):
    """heuritech's alexnet_weights.h5 at real shapes (Keras 1 Theano, split groups), mostly unallocated."""
    data = data or {}
    shapes = [("conv_1", (96, 3, 11, 11)), ("conv_2_1", (128, 48, 5, 5)), ("conv_2_2", (128, 48, 5, 5)),
              ("conv_3", (384, 256, 3, 3)), ("conv_4_1", (192, 192, 3, 3)), ("conv_4_2", (192, 192, 3, 3)),
              ("conv_5_1", (128, 192, 3, 3)), ("conv_5_2", (128, 192, 3, 3)), ("dense_1", (9216, 4096)),
              ("dense_2", (4096, 4096)), ("dense_3", (4096, 1000))]
    weighted = dict(shapes)
    names = ["input_1", "conv_1", "maxpooling2d_1", "convpool_1", "zeropadding2d_1", "lambda_1", "lambda_2",
             "conv_2_1", "conv_2_2", "conv_2", "maxpooling2d_2", "lambda_3", "zeropadding2d_2", "conv_3",
             "zeropadding2d_3", "lambda_4", "lambda_5", "conv_4_1", "conv_4_2", "conv_4", "zeropadding2d_4",
             "lambda_6", "lambda_7", "conv_5_1", "conv_5_2", "conv_5", "convpool_5", "flatten", "dense_1",
             "dropout_1", "dense_2", "dropout_2", "dense_3", "softmax"]
    with h5py.File(path, "w") as f:
        _set_strings(f.attrs, "layer_names", names, "bytes")
        for lname in names:
            g = f.create_group(lname)
            if lname not in weighted:
                _set_strings(g.attrs, "weight_names", [], "bytes")
                continue
            wn = weight_names(lname, "keras1-th")
            k = g.create_dataset(wn[0], shape=weighted[lname], dtype="<f4")
            g.create_dataset(wn[1], shape=(weighted[lname][0 if len(weighted[lname]) == 4 else 1],), dtype="<f4")
            if lname in data:
                k[...] = data[lname]
            _set_strings(g.attrs, "weight_names", wn, "bytes")
