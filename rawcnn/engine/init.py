"""Weight initialisation: N(0, std^2), He, and LSUV (layer-sequential unit-variance).

Shape legend: F a layer's outputs (filters or features), K its fan-in (C/G * KH * KW, or D);
a Conv2d weight (F, C/G, KH, KW) and a Linear weight (F, D) are seen as (F, K) matrices here.
B the batch LSUV measures on, (B, C, H, W) in the net's input layout.

    normal:STD  w ~ N(0, STD^2)                         (the paper: STD = 0.01, MATLAB's default)
    he          w ~ N(0, 2 / K)                         (He et al. 2015: keeps ReLU signal variance)
    lsuv        w = orthonormal rows (or columns), then, layer by layer from the input, w /= std(y)
                until the layer's output y on a data batch has variance 1 +- tol
                (Mishkin & Matas, "All you need is a good init", ICLR 2016, Algorithm 1)

Biases start at 0 in every scheme. Why LSUV: the custom model has no normalisation layer, so the
scale of each layer's output is whatever the init and the input make of it. He init assumes
zero-mean, unit-variance inputs and exact ReLU halving; LRN, max-pooling and a real input break
both, and eight layers compound the error. LSUV measures the actual scale on data and fixes it.
"""
import numpy as np

from kernels import to_numpy
from rawcnn.engine.determinism import blas_pinned

WEIGHT_KINDS = ("Conv2d", "Linear")


def parse_init(text):
    """'normal:STD' (or a bare number, read as STD), 'he' or 'lsuv' -> ('normal', std) | ('he',) | ('lsuv',)."""
    t = str(text).strip().lower()
    if t in ("he", "lsuv"):
        return (t,)
    std = t.split(":", 1)[1] if t.startswith("normal:") else t
    try:
        v = float(std)
    except ValueError:
        raise ValueError(f"--init must be normal:STD, he or lsuv, got {text!r}") from None
    if not v > 0:
        raise ValueError(f"--init normal:STD needs STD > 0, got {text!r}")
    return ("normal", v)


def weight_std_for_build(init):
    """What rawcnn.engine.models.build's weight_std takes for a parsed init (lsuv starts from He, then reinits)."""
    return init[1] if init[0] == "normal" else "he"


def orthonormal(rng, F, K, dtype=np.float32):
    """An (F, K) matrix with orthonormal rows (F <= K) or columns (F > K), from a Gaussian's QR.

    rng: numpy Generator. The sign fix (q * sign(diag r)) makes q Haar-distributed (Mezzadri 2007).
    """
    a = rng.standard_normal((max(F, K), min(F, K)), dtype=np.float32 if dtype == np.float32 else np.float64)
    q, r = np.linalg.qr(a)  # q (max, min) orthonormal columns
    q = q * np.sign(np.diag(r))
    return (q.T if F <= K else q).astype(dtype)  # (F, K)


def lsuv(net, x, *, seed=0, tol=0.1, max_iter=10, log=None):
    """LSUV-initialise every Conv2d and Linear of `net` in place, measuring on the batch x.

    x: (B, C, H, W) float, the net's input (already through the input contract).
    seed: the orthonormal draws; tol: stop when |var(y) - 1| < tol; max_iter: rescalings per layer.
    Returns [(layer name, output std before the last rescale, rescalings)], one per weight layer.
    """
    with blas_pinned(net.be.name == "cpu"):  # the QR and the measurements: thread-count independent
        return _lsuv(net, x, seed, tol, max_iter, log)


def _lsuv(net, x, seed, tol, max_iter, log):
    rng = np.random.default_rng(seed)
    be = net.be
    h = be.asarray(np.asarray(x), dtype=net.dtype)  # (B, C, H, W) the running activation
    rows = []
    for layer in net.layers:
        if layer.kind in WEIGHT_KINDS and layer.params:
            w = layer.params["w"]
            F = w.shape[0]
            q = orthonormal(rng, F, int(np.prod(w.shape[1:])), dtype=np.dtype(str(w.dtype)))  # (F, K)
            layer.params["w"] = be.asarray(q.reshape(tuple(w.shape)), dtype=w.dtype)
            layer.params["b"] = be.xp.zeros_like(layer.params["b"])
            std, it = _rescale_to_unit_variance(layer, h, be.xp, w.dtype, tol, max_iter)
            rows.append((layer.name, std, it))
            if log is not None:
                log(f"lsuv: {layer.name} output std {std:.3f} after {it} measurement(s)")
        h = layer.forward(h, train=False)
    return rows


def _rescale_to_unit_variance(layer, h, xp, dtype, tol, max_iter):
    """Measure the std of layer's output on h and divide its w by it, until var(y) is 1 +- tol or
    max_iter measurements were made. xp: the backend's array module; dtype: w's. Returns (std, measurements)."""
    for it in range(1, max_iter + 1):
        std = float(to_numpy(layer.forward(h, train=False)).std(dtype=np.float64))
        if not std > 0:
            raise ValueError(f"lsuv: layer {layer.name!r} gives a constant output on the batch; "
                             f"check the input contract")
        if abs(std * std - 1.0) < tol:
            return std, it
        layer.params["w"] = layer.params["w"] * xp.asarray(1.0 / std, dtype=dtype)
    return std, max_iter


def apply_init(net, init, *, batch=None, seed=0, log=None):
    """Apply a parsed init to a freshly built net; only lsuv does anything here (it needs `batch`).

    normal and he are drawn by rawcnn.engine.models.build (weight_std); batch: (B, C, H, W) net input.
    """
    if init[0] != "lsuv":
        return None
    if batch is None:
        raise ValueError("--init lsuv needs a batch of training images to measure on")
    return lsuv(net, batch, seed=seed, log=log)
