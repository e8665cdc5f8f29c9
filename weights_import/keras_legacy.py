"""Keras' legacy HDF5 weight container (Keras 1.x, 2.x, tf.keras, Keras 3's legacy writer).

    /                       attrs: layer_names (or layer_names0, layer_names1, ...),
                                   backend, keras_version (both Keras >= 2.0 only)
    /<layer>                attrs: weight_names (kernel first, then bias; empty for weightless layers)
    /<layer>/<weight name>  one dataset per weight; a '/' in the weight name makes sub-groups:
                            'block1_conv1/kernel:0' lives at /block1_conv1/block1_conv1/kernel:0
A full-model save (model.save('x.h5')) puts the same structure under /model_weights and adds the
root attribute model_config (JSON), which tells the Flatten order (see convert.fc_order_from_config).

A nested model (Sequential([VGG16(include_top=False), Flatten(), Dense(...)])) is one layer group
whose weight names carry the inner layer's name ('block1_conv1/kernel:0', 'block1_conv2/kernel:0',
...): such a group is split into one SourceLayer per inner layer.
"""
import json

import h5py

from .errors import WeightsImportError
from .h5util import attr_string, attr_strings
from .source import Source, SourceLayer


def read_legacy(f, path, fmt):
    """Read a legacy weights file (fmt 'keras-h5') or full-model file ('keras-model-h5') -> Source."""
    root = f
    src = Source(path=path, format=fmt)
    if fmt == "keras-model-h5":
        if not isinstance(f.get("model_weights"), h5py.Group):
            raise WeightsImportError(f"{path}: a Keras full-model file needs a group 'model_weights'; "
                                     f"this file has {_keys(f)}")
        root = f["model_weights"]
        src.facts.append("group /model_weights (a Keras model.save file)")
        text = attr_string(f, "model_config", path)
        if text is not None:
            try:
                src.config = json.loads(text)
                src.facts.append("root attribute model_config (JSON)")
            except (json.JSONDecodeError, RecursionError) as e:  # RecursionError: nested thousands deep
                src.facts.append(f"root attribute model_config is not valid JSON ({e}); ignored")
    names = attr_strings(root, "layer_names", path)
    if names is None:
        raise WeightsImportError(f"{path}: no attribute 'layer_names' on {root.name!r}, so not a Keras "
                                 f"legacy weight file (groups: {_keys(root)})")
    chunked = "layer_names" not in root.attrs
    src.facts.append(f"attribute layer_names{' (chunked: layer_names0, ...)' if chunked else ''}: "
                     f"{len(names)} layers")
    src.backend = attr_string(root, "backend", path) or attr_string(f, "backend", path)
    src.keras_version = attr_string(root, "keras_version", path) or attr_string(f, "keras_version", path)
    src.facts.append(f"backend attribute: {src.backend!r}" if src.backend else
                     "no backend attribute")
    src.facts.append(f"keras_version attribute: {src.keras_version!r}" if src.keras_version else
                     "no keras_version attribute (a Keras 1 file)")
    for lname in names:
        g = root.get(lname)
        if not isinstance(g, h5py.Group):
            raise WeightsImportError(f"{path}: layer_names lists {lname!r} but {root.name!r} has no group of "
                                     f"that name; the file is damaged")
        wnames = attr_strings(g, "weight_names", path) or []
        weights = []
        for wn in wnames:
            ds = g.get(wn)
            if not isinstance(ds, h5py.Dataset):
                raise WeightsImportError(f"{path}: layer {lname!r} lists weight {wn!r} but {g.name}/{wn} is "
                                         f"not a dataset; the file is damaged")
            weights.append((wn, ds))
        if weights:
            src.layers += split_nested(lname, g.name, weights)
    return src


def split_nested(lname, gpath, weights):
    """One layer group -> [SourceLayer]; a nested model's group is split per inner layer.

    Inner layers are told apart by the prefix of the weight names ('block1_conv1' in
    'block1_conv1/kernel:0'); names without a '/' (Keras 1) are split where a new kernel begins.
    """
    prefixes = [wn.rsplit("/", 1)[0] if "/" in wn else None for wn, _ in weights]
    distinct = list(dict.fromkeys(prefixes))
    if len(distinct) > 1 and None not in distinct:
        return [SourceLayer(f"{lname}/{p}", gpath, [w for w, q in zip(weights, prefixes, strict=True) if q == p])
                for p in distinct]
    kernels = [i for i, (_, ds) in enumerate(weights) if len(ds.shape) >= 2]
    if len(kernels) <= 1:
        return [SourceLayer(lname, gpath, weights)]
    starts = kernels if kernels[0] == 0 else [0] + kernels[1:]
    ends = starts[1:] + [len(weights)]
    return [SourceLayer(f"{lname}/{weights[a][0]}", gpath, weights[a:b]) for a, b in zip(starts, ends, strict=True)]


def _keys(g):
    keys = list(g.keys())
    return ", ".join(keys[:8]) + (" ..." if len(keys) > 8 else "") if keys else "none"
