"""Which kind of weight file this is, read from its structure (groups and attributes), never its name.

    root attribute format = 'rawcnn-checkpoint'          -> rawcnn
    group layers/<key>/vars (Keras 3 object tree)        -> keras3-weights-h5
    group model_weights (+ attribute model_config)       -> keras-model-h5
    root attribute layer_names (or layer_names0)         -> keras-h5
    root attribute nb_layers, groups layer_0 ...         -> Keras 0.x: refused (no layer names, and
                                                            the kernel convention is not recorded)
heuritech-alexnet is a keras-h5 file recognised after reading (convert.py decides it from the
kernels' layout and the split group layers, see alexnet.py); it can also be named explicitly.
"""
import h5py

from .errors import WeightsImportError
from .h5util import attr_string, get_attr
from .keras3 import is_keras3

FORMATS = {
    "keras-h5": "Keras 1/2/3 legacy HDF5 weights (save_weights): keras-applications VGG16/VGG19 "
                "files in tf or th dim ordering, with or without top",
    "keras-model-h5": "Keras 1/2/3 full-model HDF5 (model.save('x.h5')): model_weights + model_config",
    "keras3-weights-h5": "Keras 3 .weights.h5 (layers/<class key>/vars/<i>), or a .keras zip holding one",
    "heuritech-alexnet": "heuritech convnets-keras alexnet_weights.h5 (Keras 1, Theano kernels, split "
                         "groups, pool-before-LRN, paper-form LRN, RGB input)",
    "rawcnn": "a rawcnn checkpoint (passed through)",
}


def detect_format(f, path):
    """Return (format, reason) for the open HDF5 file `f`; WeightsImportError when none fits."""
    if attr_string(f, "format", path) == "rawcnn-checkpoint":
        return "rawcnn", "root attribute format = 'rawcnn-checkpoint'"
    if is_keras3(f):
        return "keras3-weights-h5", "group layers/ whose children hold vars/ groups (Keras 3 object tree)"
    if isinstance(f.get("model_weights"), h5py.Group):
        return "keras-model-h5", "group model_weights (Keras model.save file)"
    if get_attr(f, "layer_names", path) is not None or get_attr(f, "layer_names0", path) is not None:
        return "keras-h5", "root attribute layer_names (Keras legacy save_weights file)"
    if get_attr(f, "nb_layers", path) is not None:
        raise WeightsImportError(f"{path}: a Keras 0.x file (root attribute nb_layers, groups layer_0 ...): "
                                 f"it records neither layer names nor the kernel convention, so it is not "
                                 f"supported; load it in Keras and save it again with save_weights")
    keys = ", ".join(list(f.keys())[:8]) or "none"
    attrs = ", ".join(list(f.attrs.keys())[:8]) or "none"
    raise WeightsImportError(f"{path}: unknown weight file layout (root groups: {keys}; root attributes: "
                             f"{attrs}); known formats: {', '.join(FORMATS)}")


def check_forced(f, path, fmt):
    """Raise unless the file's structure allows reading it as `fmt` (named by the caller)."""
    if fmt not in FORMATS:
        raise WeightsImportError(f"{path}: unknown format {fmt!r}; choose auto or one of {', '.join(FORMATS)}")
    ok = {"rawcnn": attr_string(f, "format", path) == "rawcnn-checkpoint",
          "keras3-weights-h5": is_keras3(f),
          "keras-model-h5": isinstance(f.get("model_weights"), h5py.Group),
          "keras-h5": get_attr(f, "layer_names", path) is not None or get_attr(f, "layer_names0", path) is not None,
          }
    ok["heuritech-alexnet"] = ok["keras-h5"]
    if not ok[fmt]:
        found = "unknown"
        try:
            found = detect_format(f, path)[0]
        except WeightsImportError:
            pass
        raise WeightsImportError(f"{path}: the file's structure is not {fmt!r} ({FORMATS[fmt]}); it looks "
                                 f"like {found!r}")
