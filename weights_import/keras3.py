"""Keras 3 native weights: `model.save_weights('x.weights.h5')` and model.weights.h5 inside `.keras`.

    /layers/<key>/vars/<i>           dataset i of that layer: kernel 0, bias 1
    /layers/<key>/layers/...         a nested model (Functional or Sequential) holds its own layers
    /vars, /optimizer/...            the model's own variables and the optimizer: ignored
The key is the snake_case *class* name made unique per container in model.layers order:
conv2d, conv2d_1, ..., conv2d_12; dense, dense_1, dense_2. So the order of a class's layers is the
numeric suffix (never the listing, which is string order: conv2d_10 before conv2d_2). Keras >= 3.6
also writes the real layer name as attribute `name`; it is used for the report when present.
tf.keras 2.13-2.15 wrote `_layer_checkpoint_dependencies` where Keras 3 writes `layers`.
Every Keras 3 backend computes cross-correlation, and Keras 3's Flatten always flattens (H, W, C).
"""
import json
import re

import h5py

from .errors import WeightsImportError
from .h5util import attr_string
from .source import Source, SourceLayer

LAYER_GROUPS = ("layers", "_layer_checkpoint_dependencies")


def is_keras3(f):
    """True when the file has a `layers` group whose children have `vars` (or nested `layers`)."""
    for top in LAYER_GROUPS:
        g = f.get(top)
        if isinstance(g, h5py.Group) and any(isinstance(c, h5py.Group) and ("vars" in c or "layers" in c)
                                             for c in g.values()):
            return True
    return False


def read_keras3(f, path, zip_config=None):
    """Read a Keras 3 .weights.h5 (or a .keras zip's model.weights.h5) -> Source."""
    top = next((t for t in LAYER_GROUPS if isinstance(f.get(t), h5py.Group)), None)
    if top is None:
        raise WeightsImportError(f"{path}: a Keras 3 weights file needs a group 'layers'; this file has "
                                 f"{', '.join(f.keys()) or 'no groups'}")
    src = Source(path=path, format="keras3-weights-h5")
    src.facts.append(f"group /{top} with one group per layer (Keras 3 .weights.h5 layout)"
                     + (", read from the model.weights.h5 inside a .keras zip" if zip_config is not None else ""))
    if zip_config is not None:
        try:
            src.config = json.loads(zip_config)
            src.facts.append("config.json of the .keras zip")
        except (json.JSONDecodeError, RecursionError) as e:  # RecursionError: nested thousands deep
            src.facts.append(f"config.json of the .keras zip is not valid JSON ({e}); ignored")
    src.layers = _walk(f[top], path)
    return src


def _order_key(key):
    """'conv2d' -> ('conv2d', 0), 'conv2d_12' -> ('conv2d', 12): the class's layers in model order."""
    m = re.fullmatch(r"(.*?)_(\d+)", key)
    return (m.group(1), int(m.group(2))) if m else (key, 0)


def _walk(container, path):
    """The layers of one container group, nested models first (a base model precedes its head)."""
    nested, own = [], []
    for key in sorted(container.keys(), key=_order_key):
        g = container[key]
        if not isinstance(g, h5py.Group):
            continue
        if isinstance(g.get("layers"), h5py.Group):
            nested += _walk(g["layers"], path)
        v = g.get("vars")
        if not isinstance(v, h5py.Group) or not len(v):
            continue
        idx = sorted(v.keys(), key=lambda k: int(k) if k.isdigit() else 1 << 30)
        weights = [(f"vars/{k}", v[k]) for k in idx if isinstance(v[k], h5py.Dataset)]
        name = attr_string(v, "name", path) or attr_string(g, "name", path)
        label = f"{name} ({g.name})" if name else g.name
        own.append(SourceLayer(label, v.name, weights))
    return nested + own
