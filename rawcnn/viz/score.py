"""Localisation scores: does a heat map point at the lesion? Measured against ground-truth masks.

Shape legend: H, W a map's and its masks' size; N images; M images with a lesion in a split.

For a heat map v (H, W) >= 0 and binary masks L (lesion) and G (lungs), both (H, W):
    pointing game   hit = L[argmax v] (Zhang et al., 2016): the map's maximum lies in the lesion;
                    with tolerance t pixels, L is first dilated by a (2t+1) x (2t+1) square.
    energy share    e_L = sum(v * L) / sum(v): the share of the map's mass inside the lesion
                    (e_G likewise for the lungs). A flat map scores the lesion's area share, the
                    `lesion_area` column, which is the chance level to compare against.
    IoU             B = (v >= threshold); IoU = |B and L| / |B or L|.
    lungs only      (no lesion mask, e.g. the Montgomery set as NLM ships it) pointing_lung =
                    G[argmax v]; energy_lung as above; energy_border = the share of the map on
                    the outer BORDER (10 %) of each side, energy_corners = the share on the four
                    CORNER (15 %) squares, where film markers and labels sit: a network that
                    looks there has learnt the scanner, not the lungs.
Undefined values are NaN, never a silent 0: e.g. an all-zero map has no energy share. All-zero
maps (Grad-CAM gives them when every channel weight is negative) are counted per method
(`zero_maps`) and left out of the means, not averaged in as misses.
A map of another size than the masks is resized to them (bilinear) first.

Which images are scored: those of the split with a non-empty lesion mask; when the split has none,
those with a lung mask (the lesion columns are then NaN and the lung and border columns say
where the maps point).

`localisation_table` makes maps for the lesion-marked images of one split of a prepared data set
(rawcnn.data.dataset.load_dataset), batch by batch, keeping only the scores, and writes
    <out>.csv           one row per method: means over the images
    <out>_images.csv    one row per (image, method)
For the 'channel' method the channel is fixed before looking at the scored split: the one with
the highest mean activation inside the lesions of `select_split` (default 'train'), so the test
split's own masks never choose it.
"""
import csv
import os
from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

from rawcnn.files.fileio import atomic_open
from rawcnn.viz.activations import rank_channels
from rawcnn.viz.heatmap import METHODS, default_layer, heatmaps
from rawcnn.viz.images import resize

COLUMNS = ("pointing", "energy_lesion", "energy_lung", "iou", "lesion_area", "pointing_lung", "energy_border",
           "energy_corners", "zero_maps")
BORDER, CORNER = 0.10, 0.15


def _binary(mask, name):
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W), got shape {m.shape}")
    return m > 0


def _fit(heat, shape):
    """The map as float64 (H, W) at the masks' size, checked finite and non-negative."""
    v = np.asarray(heat, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"a heat map must be 2-D (H, W), got shape {v.shape}")
    if v.shape != tuple(shape):
        v = resize(v, shape).astype(np.float64)
    if not np.all(np.isfinite(v)) or v.min() < 0:
        raise ValueError("a heat map must be finite and non-negative")
    return v


def pointing_game(heat, lesion, tolerance=0):
    """True when the map's maximum (first in row-major order on ties) lies in the lesion.

    heat: (h, w) >= 0; lesion: (H, W) mask; tolerance: pixels by which the lesion is dilated.
    Returns bool, or None when the lesion is empty.
    """
    L = _binary(lesion, "lesion")
    if not L.any():
        return None
    if tolerance > 0:
        k = 2 * int(tolerance) + 1
        L = cv2.dilate(L.astype(np.uint8), np.ones((k, k), np.uint8)) > 0
    v = _fit(heat, L.shape)
    i, j = np.unravel_index(np.argmax(v), v.shape)
    return bool(L[i, j])


def energy_share(heat, mask):
    """sum(heat inside mask) / sum(heat), NaN for an all-zero map. heat (h, w) >= 0; mask (H, W)."""
    M = _binary(mask, "mask")
    v = _fit(heat, M.shape)
    total = v.sum()
    return float(v[M].sum() / total) if total > 0 else float("nan")


def iou(heat, mask, threshold=0.5):
    """IoU of (heat >= threshold) with the mask, NaN when both are empty. heat (h, w); mask (H, W)."""
    M = _binary(mask, "mask")
    B = _fit(heat, M.shape) >= threshold
    union = np.logical_or(B, M).sum()
    return float(np.logical_and(B, M).sum() / union) if union else float("nan")


def score_map(heat, lesion, lung=None, threshold=0.5, tolerance=0):
    """Every score of one map: {'pointing', 'energy_lesion', 'energy_lung', 'iou', 'lesion_area'}.

    heat: (h, w) >= 0; lesion, lung: (H, W) masks (lung None -> energy_lung NaN). Floats
    (pointing as 1.0 / 0.0, NaN where undefined).
    """
    L = _binary(lesion, "lesion")
    hit = pointing_game(heat, L, tolerance)
    return {"pointing": float("nan") if hit is None else float(hit),
            "energy_lesion": energy_share(heat, L) if L.any() else float("nan"),
            "energy_lung": energy_share(heat, lung) if lung is not None else float("nan"),
            "iou": iou(heat, L, threshold),
            "lesion_area": float(L.mean())}


def frame_masks(shape):
    """(border, corners): (H, W) bool masks of the outer BORDER band and the four CORNER squares."""
    H, W = shape
    border = np.zeros(shape, bool)
    by, bx = max(1, round(BORDER * H)), max(1, round(BORDER * W))
    border[:by], border[-by:], border[:, :bx], border[:, -bx:] = True, True, True, True
    corners = np.zeros(shape, bool)
    cy, cx = max(1, round(CORNER * H)), max(1, round(CORNER * W))
    for ys in (slice(0, cy), slice(H - cy, H)):
        for xs in (slice(0, cx), slice(W - cx, W)):
            corners[ys, xs] = True
    return border, corners


def lung_scores(heat, lung=None):
    """Scores that need no lesion mask: {'pointing_lung', 'energy_border', 'energy_corners'} (NaN
    where undefined; pointing_lung NaN without a lung mask). heat: (h, w) >= 0; lung: (H, W) or None."""
    shape = np.shape(lung) if lung is not None else np.shape(heat)
    v = _fit(heat, shape)
    border, corners = frame_masks(shape)
    if v.sum() == 0:
        return {"pointing_lung": float("nan"), "energy_border": float("nan"), "energy_corners": float("nan")}
    pointing = float("nan")
    if lung is not None and _binary(lung, "lung").any():
        pointing = float(_binary(lung, "lung")[np.unravel_index(np.argmax(v), v.shape)])
    return {"pointing_lung": pointing, "energy_border": energy_share(v, border),
            "energy_corners": energy_share(v, corners)}


def _write_csv(path, fields, rows):
    with atomic_open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


@dataclass(frozen=True)
class ScoreSettings:
    """How localisation_table scores: the maps' `layer` (None: the deepest conv activation), the class
    Grad-CAM and saliency explain (`class_index`, 1 = abnormal; None = the predicted one), for 'channel'
    a fixed `channel` or one chosen on `select_split` (module docstring), the map `threshold`, the
    pointing game's `tolerance` in pixels, and `batch_size` images per forward."""
    layer: object = None
    class_index: object = 1
    channel: object = None
    select_split: str = "train"
    threshold: float = 0.5
    tolerance: int = 0
    batch_size: int = 16


def lesion_marked(split):
    """Indices of a split's images with a non-empty lesion mask: the images localisation_table scores."""
    return np.flatnonzero(split.has_lesion_mask & (split.lesion_masks.reshape(len(split.labels), -1).max(axis=1) > 0))


def localisation_table(net, data, split="test", methods=METHODS, settings=None, *, to_input=None, out=None,
                       progress=False):
    """Score every method on the images of `split` that have a non-empty lesion mask.

    data: a PreparedData (load_dataset; rawcnn.data.boxes.apply_boxes puts lesion boxes in it);
    settings: a ScoreSettings (None: its defaults); to_input: maps a (B, C, S, S) uint8 slice to the
    net's input (default: cast to the net's dtype); out: path stem of the CSV files, or None.
    Returns {'summary': [row per method], 'images': [row per (image, method)], 'channel': int or None,
    'layer': str, 'paths': [written CSVs]}.
    """
    st = settings or ScoreSettings()
    layer, class_index, channel, select_split = st.layer, st.class_index, st.channel, st.select_split
    threshold, tolerance, batch_size = st.threshold, st.tolerance, st.batch_size
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}")
    layer = layer if layer is not None else default_layer(net)
    to_input = to_input or (lambda x: np.asarray(x).astype(net.dtype))
    s = data.split(split)
    keep = lesion_marked(s)
    if keep.size == 0:  # lungs only (module docstring)
        keep = np.flatnonzero(s.has_lung_mask & (s.lung_masks.reshape(len(s.labels), -1).max(axis=1) > 0))
    if keep.size == 0:
        raise ValueError(f"{data.path}: split {split!r} has no image with a non-empty lesion or lung mask to score")
    if "channel" in methods and channel is None:
        sel = data.split(select_split)
        use = np.flatnonzero(sel.has_lesion_mask)
        masks = sel.lesion_masks[use] if use.size and sel.lesion_masks[use].any() else None
        use = use if masks is not None else np.arange(len(sel.labels))
        channel = int(rank_channels(net, sel.images[use], layer, masks=masks, to_input=to_input,
                                    batch_size=batch_size)[0][0])
    rows = []
    for i in tqdm(range(0, keep.size, int(batch_size)), desc="score", unit="batch", disable=not progress,
                  leave=False):
        idx = keep[i:i + int(batch_size)]
        x = to_input(s.images[idx])
        for m in methods:
            hm = heatmaps(net, x, m, layer=layer, class_index=None if m == "channel" else class_index,
                          channel=channel, batch_size=batch_size)
            for j, n in enumerate(idx):
                lung = s.lung_masks[n] if s.has_lung_mask[n] else None
                r = {"name": str(s.names[n]), "label": int(s.labels[n]), "method": m,
                     "class": int(hm.classes[j]), "predicted": int(np.argmax(hm.logits[j]))}
                zero = not np.asarray(hm.maps[j]).any()
                r.update(score_map(hm.maps[j], s.lesion_masks[n], lung, threshold, tolerance))
                r.update(lung_scores(hm.maps[j], lung))
                if zero:  # no map: every score undefined, counted instead
                    r.update({c: float("nan") for c in COLUMNS if c != "lesion_area"})
                r["zero_maps"] = int(zero)
                rows.append(r)
    summary = []
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        row = {"method": m, "n": len(mine), "layer": "input" if m == "saliency" else layer}
        row.update({c: float(np.nanmean([r[c] for r in mine])) if any(np.isfinite(r[c]) for r in mine)
                    else float("nan") for c in COLUMNS if c != "zero_maps"})
        row["zero_maps"] = int(sum(r["zero_maps"] for r in mine))
        summary.append(row)
    paths = []
    if out is not None:
        stem = os.fspath(out)[:-4] if os.fspath(out).endswith(".csv") else os.fspath(out)
        os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
        _write_csv(stem + ".csv", ["method", "n", "layer", *COLUMNS], summary)
        _write_csv(stem + "_images.csv", ["name", "label", "method", "class", "predicted", *COLUMNS], rows)
        paths = [stem + ".csv", stem + "_images.csv"]
    return {"summary": summary, "images": rows, "channel": channel, "layer": layer, "paths": paths}
