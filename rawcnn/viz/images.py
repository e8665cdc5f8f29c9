"""Image helpers for the visualisations: scaling to [0, 1], the 'jet' colour map, a heat map
overlaid on a radiograph with a threshold, labelled montages, and PNG writing.

Shape legend: H, W image height and width; C channels; F tiles (filters or channels).

Scaling (Sivaramakrishnan et al. scale every channel's activation to [0, 1]):
    s = (a - min a) / (max a - min a),   and s = 0 where max a == min a (a constant map has no
    contrast to show; dividing by zero would give NaN).

The 'jet' map (MATLAB's and matplotlib's, piecewise linear in v in [0, 1]):
    red   = clip(1.5 - |4v - 3|, 0, 1)
    green = clip(1.5 - |4v - 2|, 0, 1)
    blue  = clip(1.5 - |4v - 1|, 0, 1)
so v = 0 is dark blue (0, 0, 0.5), v = 0.5 is green (0.5, 1, 0.5), v = 1 dark red (0.5, 0, 0).

Overlay (the paper's heat map "with a threshold, black made transparent"): values under the
threshold become black in the heat map and black is fully transparent, so those radiograph
pixels are left exactly as they were; elsewhere
    out = (1 - alpha) * radiograph + alpha * jet(v).

Colour images are RGB float in [0, 1] inside this package; OpenCV wants BGR uint8, and the
conversion happens only in `to_bgr8` and the PNG writers.
"""
import os

import cv2
import numpy as np

from rawcnn.files.fileio import atomic_path


# -- scaling -------------------------------------------------------------------------------------
def scale01(a, axes=None):
    """Scale `a` to [0, 1] over `axes` (all axes when None); constant slices become 0.

    a: float or int array, any shape. Returns float32 of a.shape (NaN never appears: a must be finite).
    """
    a = np.asarray(a, dtype=np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"scale01: input of shape {a.shape} holds NaN or Inf")
    lo = a.min(axis=axes, keepdims=True)
    hi = a.max(axis=axes, keepdims=True)
    span = hi - lo
    safe = np.where(span > 0, span, 1.0)
    return np.where(span > 0, (a - lo) / safe, 0.0).astype(np.float32)


def scale_channels(a):
    """Scale each channel's map to [0, 1] on its own.

    a: (C, H, W) or (N, C, H, W). Returns float32 of the same shape.
    """
    if a.ndim not in (3, 4):
        raise ValueError(f"scale_channels expects (C, H, W) or (N, C, H, W), got shape {a.shape}")
    return scale01(a, axes=(-2, -1))


def resize(m, shape, interpolation=cv2.INTER_LINEAR):
    """Resize a 2-D map (h, w) or an image (h, w, 3) to `shape` = (H, W). Returns float32."""
    m = np.asarray(m, dtype=np.float32)
    if m.ndim not in (2, 3):
        raise ValueError(f"resize expects a (h, w) map or an (h, w, C) image, got shape {m.shape}")
    H, W = int(shape[0]), int(shape[1])
    if m.shape[:2] == (H, W):
        return m.copy()
    return cv2.resize(m, (W, H), interpolation=interpolation)


# -- colour --------------------------------------------------------------------------------------
def jet(v):
    """The 'jet' colour map. v: float array, any shape, clipped to [0, 1].

    Returns RGB float32 of shape v.shape + (3,).
    """
    v = np.clip(np.asarray(v, dtype=np.float32), 0.0, 1.0)
    rgb = np.stack([1.5 - np.abs(4 * v - 3), 1.5 - np.abs(4 * v - 2), 1.5 - np.abs(4 * v - 1)], axis=-1)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)  # v.shape + (3,)


def gray_to_rgb(img):
    """A radiograph for display -> RGB float32 (H, W, 3) in [0, 1].

    img: (H, W) gray or (H, W, 3) RGB, uint8 (divided by 255) or float in [0, 1] (kept as is).
    """
    img = np.asarray(img)
    img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)  # (H, W, 3)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a gray (H, W) or RGB (H, W, 3) image, got shape {img.shape}")
    if img.size and (img.min() < 0.0 or img.max() > 1.0):
        raise ValueError(f"float image values must lie in [0, 1], got [{img.min():g}, {img.max():g}]; "
                         f"give uint8 for 0..255")
    return img


def input_to_rgb(x):
    """A network input (C, H, W), C in {1, 3}, however it was normalised -> RGB float32 (H, W, 3) in [0, 1].

    The whole image is scaled to [0, 1] together (one min and max for all channels).
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"expected a network input (C, H, W) with C 1 or 3, got shape {x.shape}")
    return gray_to_rgb(scale01(x).transpose(1, 2, 0))  # (H, W, 3)


def heat_rgba(heat, threshold=0.5):
    """Jet colours of a [0, 1] map with alpha 0 where heat < threshold (black made transparent).

    heat: (H, W) float in [0, 1]. Returns RGBA float32 (H, W, 4); alpha is 1 or 0.
    """
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"heat map must be 2-D (H, W), got shape {heat.shape}")
    rgb = jet(heat)                                          # (H, W, 3)
    keep = heat >= threshold                                 # (H, W)
    rgb[~keep] = 0.0                                         # under the threshold: black ...
    alpha = keep.astype(np.float32)[:, :, None]              # (H, W, 1) ... and black is transparent
    return np.concatenate([rgb, alpha], axis=2)              # (H, W, 4)


def overlay(image, heat, threshold=0.5, alpha=0.5):
    """The heat map in 'jet' over the radiograph; under the threshold the radiograph shows unchanged.

    image: (H, W) gray or (H, W, 3) RGB in [0, 1] (or 0..255); heat: (h, w) in [0, 1], resized
    to (H, W) when smaller; alpha: opacity of the colours in [0, 1].
    Returns RGB float32 (H, W, 3) in [0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay alpha must be in [0, 1], got {alpha}")
    base = gray_to_rgb(image)                                 # (H, W, 3)
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"heat map must be 2-D (h, w), got shape {heat.shape}")
    heat = resize(heat, base.shape[:2])                       # (H, W)
    rgba = heat_rgba(heat, threshold)                         # (H, W, 4)
    a = alpha * rgba[:, :, 3:]                                # (H, W, 1): 0 where transparent
    return ((1.0 - a) * base + a * rgba[:, :, :3]).astype(np.float32)


# -- uint8, montages, PNG ------------------------------------------------------------------------
def to_bgr8(img):
    """RGB float (H, W, 3) or gray float (H, W) in [0, 1] -> uint8 BGR (H, W, 3) or gray (H, W)."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = np.clip(np.rint(np.asarray(img, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 3:
        img = np.ascontiguousarray(img[:, :, ::-1])
    elif img.ndim != 2:
        raise ValueError(f"expected a gray (H, W) or RGB (H, W, 3) image, got shape {img.shape}")
    return img


def montage(tiles, labels=None, ncols=None, tile_size=None, pad=2, label_height=14):
    """Tiles in a grid with an optional text label under each.

    tiles: list of F arrays, each (h, w) gray or (h, w, 3) RGB in [0, 1] (sizes may differ; each is
    resized to tile_size = (th, tw), default the first tile's size); labels: F strings or None;
    ncols: default ceil(sqrt(F)). Returns RGB float32 (rows*(th+lh+pad)+pad, ncols*(tw+pad)+pad, 3)
    on a white background, labels in black (cv2.putText).
    """
    tiles = list(tiles)
    if not tiles:
        raise ValueError("montage needs at least one tile")
    if labels is not None and len(labels) != len(tiles):
        raise ValueError(f"montage: {len(tiles)} tiles but {len(labels)} labels")
    th, tw = tile_size if tile_size is not None else np.asarray(tiles[0]).shape[:2]
    ncols = int(ncols) if ncols else int(np.ceil(np.sqrt(len(tiles))))
    nrows = int(np.ceil(len(tiles) / ncols))
    lh = label_height if labels is not None else 0
    cell_h, cell_w = th + lh + pad, tw + pad
    grid = np.ones((nrows * cell_h + pad, ncols * cell_w + pad, 3), dtype=np.float32)  # (GH, GW, 3)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, ncols)
        y0, x0 = pad + r * cell_h, pad + c * cell_w
        shrink = np.shape(tile)[0] > th or np.shape(tile)[1] > tw      # area when shrinking, crisp when enlarging
        tile = np.clip(resize(tile, (th, tw), cv2.INTER_AREA if shrink else cv2.INTER_NEAREST), 0.0, 1.0)
        grid[y0:y0 + th, x0:x0 + tw] = tile[:, :, None] if tile.ndim == 2 else tile
        if labels is not None:
            strip = np.full((lh, tw + pad), 255, np.uint8)   # (lh, tw+pad) putText draws on uint8 only
            cv2.putText(strip, str(labels[i]), (0, lh - 3), cv2.FONT_HERSHEY_SIMPLEX,
                        max(0.3, min(0.45, tw / 120.0)), 0, 1, cv2.LINE_AA)
            grid[y0 + th:y0 + th + lh, x0:x0 + tw + pad] = strip[:, :, None] / np.float32(255.0)
    return grid


def png_bytes(img):
    """Encode an RGB float (H, W, 3) or gray (H, W) image in [0, 1] (or uint8) as PNG bytes."""
    ok, buf = cv2.imencode(".png", to_bgr8(img))
    if not ok:
        raise ValueError(f"could not encode an image of shape {np.shape(img)} as PNG")
    return buf.tobytes()


def write_png(path, img):
    """Write `img` (as png_bytes takes it) to `path`: cv2.imwrite to a temporary file, then os.replace.

    A crash while writing never leaves a half-written PNG under `path`. Returns the path.
    """
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"give a path ending in .png, got {path!r}")
    with atomic_path(path) as tmp:
        if not cv2.imwrite(tmp, to_bgr8(img)):
            raise OSError(f"cv2.imwrite could not write {tmp}")
    return path
