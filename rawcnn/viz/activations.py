"""Per-channel activations of any layer: the raw arrays, a grid of maps scaled to [0, 1], and the
channels that fire most (overall, or inside a region such as a lesion).

Shape legend: N images, C, H, W the net's input; F channels, h, w a layer's output size;
H', W' a mask's size (any; it is resized to (h, w)).

Ranking (top_channels), for each channel f of activations a (F, h, w):
    no mask:   score[f] = mean_{i,j} a[f, i, j]
    mask m:    m' = m resized to (h, w) by area averaging, so m'[i, j] is the share of the
               activation cell (i, j) that the region covers, in [0, 1];
               score[f] = sum_{i,j} m'[i, j] a[f, i, j] / sum_{i,j} m'[i, j]
               (the mean activation inside the region: the automatic answer to "which channel
               shows the strongest activation on the abnormal location")
    contrast:  the mean inside minus the mean outside (1 - m'), which prefers channels that fire on
               the region and not everywhere.
With N images (N, F, h, w) the scores are averaged over the images (masks (N, H', W'); images whose
mask is empty are left out).
"""
import os

import cv2
import h5py
import numpy as np

from rawcnn.files.fileio import atomic_path, inside
from rawcnn.viz.images import montage, scale_channels, write_png


def layer_activations(net, x, layer, batch_size=16):
    """The raw output of `layer` for images x (N, C, H, W), as a numpy array (N, F, h, w) or (N, D)."""
    x = np.asarray(x) if not net.be.owns(x) else x
    if x.ndim != 4:
        raise ValueError(f"layer_activations expects x of shape (N, C, H, W), got {tuple(x.shape)}")
    net[layer]  # a clear KeyError for an unknown name
    return net.predict(x, batch_size, upto=layer, softmax=False)


def _mask_weights(mask, hw):
    """A region mask (H', W') (bool or 0..255 or 0..1) -> area shares float64 (h, w) in [0, 1]."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"a mask must be 2-D (H', W'), got shape {m.shape}")
    m = (m > 0).astype(np.float32)                                              # (H', W')
    return cv2.resize(m, (hw[1], hw[0]), interpolation=cv2.INTER_AREA).astype(np.float64)  # (h, w)


def channel_scores(acts, mask=None, contrast=False):
    """Each channel's score per image (the module docstring's ranking), for images with a region.

    acts: (F, h, w) or (N, F, h, w); mask: None, (H', W') for all, or (N, H', W').
    Returns float64 (M, F): one row per image whose mask is not empty (all N without a mask).
    """
    a = np.asarray(acts, dtype=np.float64)
    if a.ndim == 3:
        a = a[None]                                                    # (1, F, h, w)
        if mask is not None and np.ndim(mask) == 3:
            raise ValueError(f"channel_scores: one image's acts {np.shape(acts)} need one mask (H', W'), "
                             f"got {np.shape(mask)}")
    if a.ndim != 4:
        raise ValueError(f"channel scores need acts (F, h, w) or (N, F, h, w), got shape {a.shape}")
    N, F, h, w = a.shape
    if mask is None:
        return a.mean(axis=(2, 3))                                     # (N, F)
    masks = np.asarray(mask)
    masks = np.broadcast_to(masks, (N,) + masks.shape) if masks.ndim == 2 else masks
    if masks.ndim != 3 or masks.shape[0] != N:
        raise ValueError(f"channel scores: masks of shape {np.shape(mask)} do not match acts of shape "
                         f"{np.shape(acts)} (need (H', W') or (N, H', W'))")
    rows = []
    for n in range(N):
        m = _mask_weights(masks[n], (h, w))                            # (h, w)
        if m.sum() <= 0:
            continue
        score = (a[n] * m).sum(axis=(1, 2)) / m.sum()                  # (F,) mean inside
        out = 1.0 - m                                                  # (h, w)
        if contrast and out.sum() > 0:
            score = score - (a[n] * out).sum(axis=(1, 2)) / out.sum()  # minus the mean outside
        rows.append(score)
    return np.array(rows, dtype=np.float64).reshape(len(rows), F)     # (M, F)


def _best(scores, k):
    """The k best channels of scores (F,), ties to the lower index. Returns (int64 (k,), float64 (k,))."""
    F = scores.shape[0]
    k = F if k is None else k
    if not 1 <= int(k) <= F:
        raise ValueError(f"k must be in [1, {F}] for {F} channels, got {k}")
    order = np.argsort(-scores, kind="stable")[:int(k)]
    return order.astype(np.int64), scores[order]


def top_channels(acts, k=1, mask=None, contrast=False):
    """The k channels with the highest mean activation (inside `mask` when given), best first.

    acts: (F, h, w) or (N, F, h, w) (scores averaged over the images); mask: None, (H', W'), or
    (N, H', W') with 4-D acts; contrast: score by mean inside minus mean outside the mask.
    Returns (channels int64 (k,), scores float64 (k,)).
    """
    rows = channel_scores(acts, mask, contrast)                       # (M, F)
    if rows.shape[0] == 0:
        raise ValueError("top_channels: every mask is empty; nothing to rank inside")
    return _best(rows.mean(axis=0), k)


def rank_channels(net, images, layer, masks=None, k=1, contrast=False, to_input=None, batch_size=16):
    """top_channels over many images, batch by batch (only the (F,) score sums are kept).

    images: (N, ...) what to_input maps to (B, C, H, W) net input (default: cast to the net's dtype);
    masks: None or (N, H', W'); k: None ranks every channel.
    Returns (channels int64 (k,), scores float64 (k,)).
    """
    to_input = to_input or (lambda x: np.asarray(x).astype(net.dtype))
    if masks is not None and len(masks) != len(images):
        raise ValueError(f"rank_channels: {len(images)} images but masks of shape {np.shape(masks)}")
    total, count = 0.0, 0
    for i in range(0, len(images), int(batch_size)):
        a = layer_activations(net, to_input(images[i:i + batch_size]), layer, batch_size)  # (B, F, h, w)
        if a.ndim != 4:
            raise ValueError(f"layer {layer!r} gives output of shape {a.shape}, not channel maps (B, F, h, w)")
        rows = channel_scores(a, None if masks is None else masks[i:i + batch_size], contrast)  # (M, F)
        total, count = total + rows.sum(axis=0), count + rows.shape[0]
    if count == 0:
        raise ValueError("rank_channels: no image (with a non-empty mask) to rank on")
    return _best(total / count, k)


def activation_grid(acts, channels=None, ncols=None, tile=64, highlight=()):
    """The channels of one image's activations, each scaled to [0, 1], as a labelled grid.

    acts: (F, h, w); channels: which ones to show (default all); highlight: channels whose label
    gets a '*'. Returns RGB float32 (GH, GW, 3).
    """
    a = np.asarray(acts)
    if a.ndim != 3:
        raise ValueError(f"activation_grid expects one image's activations (F, h, w), got shape {a.shape}")
    channels = list(range(a.shape[0])) if channels is None else [int(c) for c in channels]
    scaled = scale_channels(a[channels])                               # (len(channels), h, w)
    labels = [f"{c}*" if c in set(highlight) else str(c) for c in channels]
    return montage(list(scaled), labels=labels, ncols=ncols, tile_size=(tile, tile))


def save_activations(net, x, layer, out_dir, stem="activations", raw_format="npy", k=0, mask=None):
    """Write one image's activations of `layer`: a grid PNG and the raw array.

    x: (C, H, W) or (1, C, H, W); raw_format: 'npy' or 'h5' (dataset 'activations', attrs layer);
    k > 0 also ranks the channels (inside `mask` (H', W') when given) and marks the top k (at most
    the layer's channel count: more is an error naming the layer).
    Returns {'png': path, 'raw': path, 'top': channels int64 (k,) or None, 'scores': ...}.
    """
    if raw_format not in ("npy", "h5"):
        raise ValueError(f"raw_format must be 'npy' or 'h5', got {raw_format!r}")
    x = np.asarray(x)
    x = x[None] if x.ndim == 3 else x
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"save_activations takes one image (C, H, W) or (1, C, H, W), got shape {x.shape}")
    a = layer_activations(net, x, layer)[0]                            # (F, h, w) or (D,)
    if a.ndim != 3:
        raise ValueError(f"layer {layer!r} gives output of shape {a.shape}, not per-channel maps (F, h, w)")
    if k and int(k) > a.shape[0]:
        raise ValueError(f"top {k}: layer {layer!r} has only {a.shape[0]} channels")
    top, scores = top_channels(a, k, mask) if k else (None, None)
    os.makedirs(out_dir, exist_ok=True)
    base = inside(out_dir, f"{stem}_{layer}")  # names from data and specs never leave out_dir
    png = write_png(base + ".png", activation_grid(a, highlight=() if top is None else top.tolist()))
    raw = f"{base}.{raw_format}"
    with atomic_path(raw) as tmp:
        if raw_format == "npy":
            with open(tmp, "wb") as fh:
                np.save(fh, a)
        else:
            with h5py.File(tmp, "w") as f:
                f.create_dataset("activations", data=a)
                f.attrs["layer"] = layer
    return {"png": png, "raw": raw, "top": top, "scores": scores}
