"""AlexNet files: heuritech convnets-keras and BVLC-derived Keras conversions.

heuritech/convnets-keras alexnet_weights.h5 (adapted from uoguelph-mlrg/theano_alexnet) differs
from BVLC's deploy.prototxt in three ways the weights alone do not show:
  1. order: conv -> ReLU -> max-pool -> LRN (CaffeNet / theano_alexnet), where BVLC AlexNet has
     conv -> ReLU -> LRN -> max-pool; the net is rebuilt with each pool moved before its LRN;
  2. LRN in the Krizhevsky-paper form (pylearn2 CrossChannelNormalization, heuritech's Lambda):
         scale_c = k + alpha_paper * sum_{c' in window of n} x_c'^2,   n = 5, alpha = 1e-4, k = 2
     rawcnn (Caffe) divides alpha by the window size, scale_c = k + alpha/size * sum, so the same
     scale needs alpha = alpha_paper * n = 5e-4, size 5, k 2, beta 0.75 unchanged;
  3. input RGB (mean R 123.68, G 116.779, B 103.939), where Caffe weights expect BGR.
Its kernels are Theano kernels in (F, C, KH, KW) layout (rot180, see convert.py), conv2/4/5 are
stored as two split layers each (conv_2_1 + conv_2_2, ...), and its dense_1 rows are (C, H, W).

A file is taken for heuritech's when it has that structure: an AlexNet whose Keras 1 file (no
keras_version, no backend) holds Theano-layout kernels with the grouped convolutions split.
"""
import copy

HEURITECH_LRN = {"size": 5, "alpha_paper": 1e-4, "beta": 0.75, "k": 2.0}


def looks_heuritech(src, layout, split):
    """True when a keras-h5 AlexNet file has heuritech's structure (see the module docstring)."""
    return (src.format == "keras-h5" and src.keras_version is None and src.backend is None
            and layout == "oihw" and split)


def heuritech_spec(spec):
    """BVLC AlexNet spec -> heuritech's: pool before LRN, LRN in Caffe terms. Returns (spec, [changes])."""
    spec = copy.deepcopy(spec)
    layers, changes = spec["layers"], []
    n, a, b, k = (HEURITECH_LRN[key] for key in ("size", "alpha_paper", "beta", "k"))
    for e in layers:
        if e["type"] != "LRN":
            continue
        e.update(size=n, alpha=a * n, beta=b, k=k)
        changes.append(f"{e['name']}: LRN size {n}, alpha {a * n:g} (paper alpha {a:g} x size {n}: Caffe divides "
                       f"by size, the paper does not), beta {b:g}, k {k:g}")
    i = 0
    while i < len(layers) - 1:
        if layers[i]["type"] == "LRN" and layers[i + 1]["type"] == "MaxPool2d":
            layers[i], layers[i + 1] = layers[i + 1], layers[i]
            changes.append(f"{layers[i]['name']} moved before {layers[i + 1]['name']} (heuritech / CaffeNet "
                           f"order: max-pool, then LRN)")
            i += 2
        else:
            i += 1
    spec["name"] = f"{spec.get('name', 'alexnet')}-heuritech"
    return spec, changes
