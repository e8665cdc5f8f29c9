"""The paper's preprocessing of a chest radiograph, step by step, each step optional.

Shape legend: H, W source image size; B the base size (1024 in the paper); S the model's input
size (227 for the custom model and AlexNet, 224 for VGG).

Steps (Sivaramakrishnan et al., "Visualizing abnormalities in chest radiographs through salient
network activations in Deep Learning", section on preprocessing), in this order:

1. lung ROI crop: the bounding box [y0, y1) x [x0, x1) of the lung mask, widened on each side by
   roi_margin times the box's height (rows) or width (columns), clipped to the image. Skipped
   when there is no mask or it is empty. Where the box comes from is the setting `roi`:
   'masks' the lung mask given, 'locator' rawcnn.data.locator.locate_lungs on the image
   (no masks needed; the masks given still travel along as masks), 'none' no crop. The aspect
   ratio is not kept (the paper resizes the crop to a square).
2. resize to B x B (base_size; None skips it): area averaging when shrinking, bilinear when
   enlarging.
3. CLAHE (contrast-limited adaptive histogram equalisation, Zuiderveld 1994; OpenCV's
   createCLAHE): the image is cut into tile_grid x tile_grid tiles; each tile's 256-bin histogram
   is clipped at clip_limit times its mean bin count, the clipped excess spread evenly over all
   bins, and the cumulative histogram becomes the tile's grey-level mapping
       T(v) = 255 * sum_{u <= v} hist_clipped(u) / (pixels in the tile);
   each pixel's output blends the mappings of the four nearest tile centres bilinearly. The
   clip bounds the slope of T, hence how much noise is amplified.
4. resize to S x S (input_size; None skips it), area averaging / bilinear as in step 2.
   mask_outside (off by default; not in the paper): every pixel outside the lung mask, resized
   with the image, is set to 0, so that film markers, borders, the abdomen and the shoulders
   cannot be learnt (Jaeger et al. 2014 compute their features inside the lung fields only).
   It needs the image's lung mask; an image without one is an error naming it.
5. grey -> channels: the single grey plane repeated (channels = 3) for ImageNet-shaped models.

Masks (lung, lesion) go through the same crop and resizes with nearest-neighbour sampling, so
they stay binary (0/1) and aligned with the image.
"""
import cv2
import numpy as np

from rawcnn.data.locator import box_mask, locate_lungs

SETTING_KEYS = ("roi_crop", "roi_margin", "base_size", "clahe", "clahe_clip_limit",
                "clahe_tile_grid", "input_size", "channels", "roi", "mask_outside")
ROI_SOURCES = ("masks", "locator", "none")


def default_settings(input_size=227):
    """The paper's preprocessing settings, for a model taking input_size x input_size images."""
    return {"roi_crop": True, "roi_margin": 0.05, "base_size": 1024, "clahe": True,
            "clahe_clip_limit": 2.0, "clahe_tile_grid": 8, "input_size": input_size, "channels": 3,
            "roi": "masks", "mask_outside": False}


def check_settings(settings):
    """Fill missing keys from default_settings and validate; ValueError names the bad key."""
    unknown = sorted(set(settings) - set(SETTING_KEYS))
    if unknown:
        raise ValueError(f"preprocess settings: unknown keys {unknown}; known keys {list(SETTING_KEYS)}")
    s = {**default_settings(), **settings}
    if "roi" not in settings or not s["roi_crop"]:  # before 'roi' existed roi_crop alone decided
        s["roi"] = "masks" if s["roi_crop"] else "none"
    if s["roi"] not in ROI_SOURCES:
        raise ValueError(f"preprocess settings: roi must be one of {ROI_SOURCES}, got {s['roi']!r}")
    s["roi_crop"] = s["roi"] != "none"
    for key in ("base_size", "input_size"):
        if s[key] is not None and (int(s[key]) != s[key] or s[key] < 8):
            raise ValueError(f"preprocess settings: {key} must be an integer >= 8 or None, got {s[key]!r}")
    if not 0.0 <= s["roi_margin"] <= 1.0:
        raise ValueError(f"preprocess settings: roi_margin must be in [0, 1], got {s['roi_margin']!r}")
    if s["clahe_clip_limit"] <= 0 or int(s["clahe_tile_grid"]) < 1:
        raise ValueError(f"preprocess settings: clahe_clip_limit must be > 0 and clahe_tile_grid >= 1, "
                         f"got {s['clahe_clip_limit']!r}, {s['clahe_tile_grid']!r}")
    if not isinstance(s["mask_outside"], (bool, np.bool_)):
        raise ValueError(f"preprocess settings: mask_outside must be true or false, got {s['mask_outside']!r}")
    if s["channels"] not in (1, 3):
        raise ValueError(f"preprocess settings: channels must be 1 or 3, got {s['channels']!r}")
    return s


def lung_roi_box(lung_mask, margin):
    """Bounding box of the nonzero pixels of lung_mask (H, W), widened by margin; None if empty.

    Returns (y0, y1, x0, x1), ints, half-open, inside the image.
    """
    rows, cols = np.flatnonzero(lung_mask.any(axis=1)), np.flatnonzero(lung_mask.any(axis=0))
    if rows.size == 0:
        return None
    H, W = lung_mask.shape
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    dy, dx = int(round(margin * (y1 - y0))), int(round(margin * (x1 - x0)))
    return max(0, y0 - dy), min(H, y1 + dy), max(0, x0 - dx), min(W, x1 + dx)


def _resize(x, size, mask=False):
    """Resize x (h, w) to (size, size): nearest for masks, area when a side shrinks, else bilinear."""
    if mask:
        mode = cv2.INTER_NEAREST_EXACT
    else:
        mode = cv2.INTER_AREA if size < max(x.shape) else cv2.INTER_LINEAR
    return cv2.resize(x, (size, size), interpolation=mode)  # (size, size)


def _resize_masks(masks, size):
    """Resize each mask of the list (None stays None) with nearest-neighbour sampling."""
    return [None if m is None else _resize(m, size, mask=True) for m in masks]


def preprocess_image(x, lung_mask=None, lesion_mask=None, settings=None, return_box=False):
    """Run the preprocessing steps (module docstring) on one grey radiograph.

    x            (H, W) uint8 grey image
    lung_mask    (H, W) any integer/bool dtype, nonzero = lung, or None (no ROI crop then; an
                 error with settings['mask_outside'])
    lesion_mask  (H, W) nonzero = lesion, or None
    settings     dict (see default_settings); None = default_settings()
    Returns (y, lung, lesion), plus box when return_box:
      y       (channels, S, S) uint8, or (S, S) when channels = 1
      lung    (S, S) uint8 0/1, or None when lung_mask is None
      lesion  (S, S) uint8 0/1, or None
      box     (y0, y1, x0, x1) the crop in source pixels (the whole image when not cropped)
    (S = input_size, or base_size when input_size is None, or the crop's shape when both are.)
    """
    s = check_settings(settings or {})
    if not (isinstance(x, np.ndarray) and x.ndim == 2 and x.dtype == np.uint8):
        raise ValueError(f"preprocess_image: x must be a 2-D uint8 array (H, W), got "
                         f"{getattr(x, 'shape', None)} {getattr(x, 'dtype', type(x).__name__)}")
    if s["mask_outside"] and lung_mask is None:
        raise ValueError("preprocess_image: mask_outside zeroes everything outside the lungs and needs the image's "
                         "lung mask; none was given")
    masks = []
    for name, m in (("lung_mask", lung_mask), ("lesion_mask", lesion_mask)):
        if m is not None and np.shape(m) != x.shape:
            raise ValueError(f"preprocess_image: {name} shape {np.shape(m)} differs from image shape {x.shape}")
        masks.append(None if m is None else (np.asarray(m) != 0).astype(np.uint8))  # (H, W)
    box = (0, x.shape[0], 0, x.shape[1])
    crop_mask = masks[0] if s["roi"] == "masks" else None
    if s["roi"] == "locator":
        found = locate_lungs(x)
        crop_mask = box_mask(found, x.shape) if found is not None else None
    if crop_mask is not None:
        box = lung_roi_box(crop_mask, s["roi_margin"]) or box
    y0, y1, x0, x1 = box
    y = np.ascontiguousarray(x[y0:y1, x0:x1])  # (h, w) crop
    masks = [None if m is None else np.ascontiguousarray(m[y0:y1, x0:x1]) for m in masks]
    if s["base_size"] is not None:
        y, masks = _resize(y, int(s["base_size"])), _resize_masks(masks, int(s["base_size"]))  # (B, B)
    if s["clahe"]:
        grid = int(s["clahe_tile_grid"])
        y = cv2.createCLAHE(clipLimit=float(s["clahe_clip_limit"]), tileGridSize=(grid, grid)).apply(y)
    if s["input_size"] is not None:
        y, masks = _resize(y, int(s["input_size"])), _resize_masks(masks, int(s["input_size"]))  # (S, S)
    if s["mask_outside"]:
        y = y * masks[0]  # (S, S) uint8: the mask is 0/1, resized with the image (nearest)
    if s["channels"] == 3:
        y = np.repeat(y[None], 3, axis=0)  # (3, S, S)
    out = (y, masks[0], masks[1])
    return out + (tuple(int(v) for v in box),) if return_box else out

