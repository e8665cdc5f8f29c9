"""Layout conversions from Keras / Theano conventions to rawcnn's, and the decisions that pick them.

Shape legend: F filters out, C channels in (per group), KH, KW kernel, G groups, D features in,
K features out; (C, H, W) the feature map that Flatten turns into fc6's D = C*H*W inputs.

rawcnn holds Conv2d w as (F, C/G, KH, KW) and computes cross-correlation
    y[f, i, j] = sum_{c, a, b} w[f, c, a, b] * x[c, i + a, j + b]
and Linear w as (K, D) with y = x @ w.T, Flatten in (C, H, W) order. The sources differ as follows.

TensorFlow-layout kernels (Keras 1 'tf', every Keras >= 2 file): k (KH, KW, C, F), also
cross-correlation, so w[f, c, a, b] = k[a, b, c, f]: w = k.transpose(3, 2, 0, 1).

Theano kernels (Keras 1 'th' files, Keras 2 files with backend 'theano'): Theano's conv2d is a true
convolution, y[f, i, j] = sum_{c, a, b} k[f, c, a, b] * x[c, i + KH-1-a, j + KW-1-b]. Substituting
a' = KH-1-a, b' = KW-1-b turns it into a cross-correlation with w[f, c, a', b'] = k[f, c, KH-1-a',
KW-1-b']: the kernel rotated by 180 degrees, w = k[:, :, ::-1, ::-1] (after any transpose).

Dense kernels in every Keras file are (D, K) with y = x @ k: w = k.T.

The first Dense after Flatten: a channels-last model flattens (H, W, C), row r = (h*W + w)*C + c,
while rawcnn's input index is r' = c*H*W + h*W + w. So k.reshape(H, W, C, K), transposed to
(K, C, H, W) and flattened to (K, D), is rawcnn's w with its inputs in rawcnn's order. Later Dense
layers take vectors, not maps: a plain transpose.

Groups stored as G split layers (heuritech conv_2_1/conv_2_2, MMdnn conv2_0/conv2_1): split layer g
holds filters [g*F/G, (g+1)*F/G) on input channels [g*C, (g+1)*C) exactly as Caffe's group g does,
so the grouped kernel is their concatenation on the filter axis, group 0 first (biases likewise).
"""
import json

import numpy as np

from .errors import WeightsImportError


def hwio_to_oihw(k):
    """k (KH, KW, C, F) -> w (F, C, KH, KW)."""
    return k.transpose(3, 2, 0, 1)


def rot180(w):
    """w (F, C, KH, KW) -> the same kernels rotated 180 degrees (a Theano kernel as a correlation kernel)."""
    return w[:, :, ::-1, ::-1]


def dense_to_out_in(k, chw=None):
    """k (D, K) -> w (K, D), C-contiguous.

    With chw = (C, H, W) the inputs are also taken from (H, W, C) order to (C, H, W) order:
    k.reshape(H, W, C, K) indexes k by (h, w, c, k); transposing to (k, c, h, w) and flattening gives
    w[k, c*H*W + h*W + w] = k[(h*W + w)*C + c, k]. One copy for both steps (VGG's fc6 is 400 MB).
    """
    if chw is None:
        return np.ascontiguousarray(k.T)
    C, H, W = chw
    return k.reshape(H, W, C, -1).transpose(3, 2, 0, 1).reshape(-1, C * H * W)


def merge_groups(parts):
    """[(F/G, C, KH, KW)] * G -> (F, C, KH, KW), or [(F/G,)] * G -> (F,): group 0 first."""
    return np.concatenate(parts, axis=0)


def kernel_layouts(shape, oihw):
    """The layouts a file kernel of `shape` can be for a target (F, C, KH, KW): a subset of {'oihw', 'hwio'}."""
    F, C, KH, KW = oihw
    out = set()
    if tuple(shape) == (F, C, KH, KW):
        out.add("oihw")
    if tuple(shape) == (KH, KW, C, F):
        out.add("hwio")
    return out


LAYOUT_WORDS = {"oihw": "(F, C, KH, KW) (Theano / Keras 1 'th' layout)",
                "hwio": "(KH, KW, C, F) (TensorFlow layout)"}


def decide_flip(src, layout, override=None):
    """(flip, reason): must every conv kernel be rotated 180 degrees?"""
    if override is not None:
        return bool(override), f"kernel flip {'forced on' if override else 'forced off'} by the caller"
    if src.format == "keras3-weights-h5":
        return False, "Keras 3 files: every Keras 3 backend computes cross-correlation, like rawcnn"
    if src.backend:
        if src.backend.lower() == "theano":
            return True, ("backend attribute 'theano': Theano convolves (it flips its kernels) and rawcnn "
                          "cross-correlates, so each kernel is rotated 180 degrees")
        return False, f"backend attribute {src.backend!r} computes cross-correlation, like rawcnn"
    if layout == "oihw":
        return True, ("no backend attribute and kernels in Theano layout (F, C, KH, KW): a Keras 1 Theano "
                      "file, whose kernels are true-convolution kernels, so each is rotated 180 degrees")
    return False, ("no backend attribute and kernels in TensorFlow layout (KH, KW, C, F): TensorFlow kernels "
                   "are cross-correlation kernels, used unflipped")


def _show(v):
    """A JSON value for a message: its kind and its first characters."""
    kind = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)
    text = json.dumps(v)
    return kind if v is None else f"{kind} {text[:40]}{'...' if len(text) > 40 else ''}"


def _walk_config(config, where):
    """Every {'class_name': ..., 'config': ...} entry of a Keras model config, in order, nested models included.

    Walked with a list, not recursion (the JSON came from the file). Checked on the way: the config
    is an object, every entry's class_name is a string, every 'layers' field of an entry's config
    is a list. An entry's config is an object for a layer, or a list (a Keras 2.0 Sequential).
    """
    if not isinstance(config, dict):
        raise WeightsImportError(f"{where}: the model config should be a JSON object (class_name, config), got "
                                 f"{_show(config)}")
    todo = [config]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            if "class_name" in node:
                cfg = node.get("config")
                name = cfg.get("name") if isinstance(cfg, dict) else None
                label = f"layer {name!r}" if isinstance(name, str) else "a layer"
                if not isinstance(node["class_name"], str):
                    raise WeightsImportError(f"{where}: {label}: field 'class_name' should be a string, got "
                                             f"{_show(node['class_name'])}")
                if isinstance(cfg, dict) and "layers" in cfg and not isinstance(cfg["layers"], list):
                    raise WeightsImportError(f"{where}: {label} ({node['class_name']}): field 'layers' should be a "
                                             f"list of layers, got {_show(cfg['layers'])}")
                yield node
            todo.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            todo.extend(reversed(node))


CONV_CLASSES = ("Conv2D", "Convolution2D")
DATA_FORMATS = ("channels_last", "channels_first")
FORMAT_FIELDS = {"data_format": DATA_FORMATS, "dim_ordering": ("tf", "th")}  # Keras >= 2, Keras 1


def _layer_config(entry, i, where):
    """A Conv2D / Flatten entry's config, with name, data_format and dim_ordering checked -> dict."""
    cls, cfg = entry["class_name"], entry.get("config")
    if not isinstance(cfg, dict):
        raise WeightsImportError(f"{where}: {cls} entry {i} of the config: field 'config' should be an object, got "
                                 f"{_show(cfg)}")
    name = cfg.get("name")
    if "name" in cfg and not isinstance(name, str):
        raise WeightsImportError(f"{where}: {cls} entry {i} of the config: field 'name' should be a string, got "
                                 f"{_show(name)}")
    label = f"layer {name!r} ({cls})" if name else f"{cls} entry {i} of the config"
    for field, allowed in FORMAT_FIELDS.items():
        if field in cfg and (cls in CONV_CLASSES or field == "data_format") and cfg[field] not in allowed:
            # `not in` compares with ==, so a list or an object here is refused, never hashed
            raise WeightsImportError(f"{where}: {label}: field {field!r} should be "
                                     f"{' or '.join(repr(a) for a in allowed)}, got {_show(cfg[field])}")
    return cfg


def fc_order_from_config(config, where="the model config"):
    """(order, reason) read from a Keras model config, or None when it does not say.

    channels_last model: Flatten sees (H, W, C). channels_first model: Keras >= 2.2 and Keras 3 Flatten
    (config data_format 'channels_first') permute to channels-last first, so (H, W, C) again; a Flatten
    without data_format (Keras 1, Keras <= 2.1.5) or with 'channels_last' flattens memory order (C, H, W).
    config: parsed JSON from the file, so every field read is type-checked first; WeightsImportError
    names `where` (the file and the attribute or member), the layer and the field.
    """
    convs, flats = [], []
    for i, e in enumerate(_walk_config(config, where)):
        if e["class_name"] in CONV_CLASSES:
            convs.append(_layer_config(e, i, where))
        elif e["class_name"] == "Flatten":
            flats.append(_layer_config(e, i, where))
    if not convs:
        return None
    conv, flat = convs[0], flats[0] if flats else None
    df = conv.get("data_format") or {"tf": "channels_last", "th": "channels_first"}.get(conv.get("dim_ordering"))
    if df is None:
        return None
    if df == "channels_last":
        return "hwc", "model config: Conv2D data_format channels_last, so Flatten takes (H, W, C) order"
    fdf = flat.get("data_format") if flat else None
    if fdf == "channels_first":
        return "hwc", ("model config: channels_first model whose Flatten has data_format channels_first: it "
                       "permutes to channels-last before flattening, so (H, W, C) order")
    return "chw", (f"model config: channels_first model whose Flatten has data_format {fdf!r}: it flattens "
                   f"memory order, (C, H, W)")


def decide_fc_order(src, layout, override=None):
    """(order, reason): 'hwc' (fc6 rows must be permuted) or 'chw' (already rawcnn's order)."""
    if override is not None:
        if override not in ("hwc", "chw"):
            raise ValueError(f"fc_order must be 'hwc' or 'chw', got {override!r}")
        return override, "fc6 row order forced by the caller"
    if src.config is not None:
        where = f"{src.path}: " + ("config.json of the .keras zip" if src.format == "keras3-weights-h5"
                                   else "root attribute model_config")
        found = fc_order_from_config(src.config, where)
        if found:
            return found
    if src.format == "keras3-weights-h5":
        return "hwc", "Keras 3 Flatten always flattens in (H, W, C) order"
    if layout == "oihw":
        return "chw", ("Theano-layout (Keras 1 'th') file: its Flatten took memory order of (C, H, W) maps, "
                       "rawcnn's order")
    if src.keras_version is None:
        return "hwc", "Keras 1 'tf' layout file: its Flatten took memory order of (H, W, C) maps"
    return "hwc", ("weights-only Keras >= 2 file: assumed channels_last or Keras >= 2.2 (Flatten in (H, W, C) "
                   "order); a channels_first model saved by Keras 2.0-2.1.5 has (C, H, W) rows: then pass "
                   "fc_order='chw'")
