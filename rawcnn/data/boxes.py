"""Lesion boxes as localisation ground truth: Pascal VOC XML, COCO JSON or a CSV of file,x,y,w,h.

Shapes: N images of a prepared set, S its stored size; a box is (x, y, w, h) in the source image's
pixels (x, y the top-left corner, w, h its width and height, as COCO writes it; VOC's xmin, ymin,
xmax, ymax become x = xmin, y = ymin, w = xmax - xmin, h = ymax - ymin).

    read_boxes(path)                  BoxSet {image file name: [box, ...]}; the formats:
        a .xml file or a folder of them   Pascal VOC: <filename> and every <object><bndbox>
        a .json file                      COCO: images[{id, file_name}], annotations[{image_id, bbox}]
        a .csv file                       a header with file, x, y, w, h; one row per box
    boxes_to_masks(boxes, names, roi_boxes, S, source_shapes)
                                      (N, S, S) uint8 masks, (N,) bool: the boxes drawn in the stored
                                      images' coordinates

The frame a file declares: a VOC file's <size> (width, height) and a COCO image's width and height
say in which image size its boxes were drawn (BoxSet.frames). When that is not the size of the image
the set was prepared from (source_shapes), the boxes are scaled to it, x and w by the ratio of the
widths, y and h by that of the heights: TBX11K ships 512 x 512 PNGs with VOC boxes in the pixels of
the original radiographs (e.g. <size> 2840 x 2827). A CSV declares no frame: its boxes are in the
source image's pixels. A declared width or height of 0 (some annotation tools write it) declares
nothing.

Images are matched by file name without folders (COCO's 'extra/da+db/n11.png' is 'n11.png'), to the
prepared set's names without folders and with or without their extension. A prepared image is its
source cropped to roi_boxes (y0, y1, x0, x1) and resized to S x S, so source pixel (y, x) lands at
((y - y0) * S / (y1 - y0), (x - x0) * S / (x1 - x0)); a stored pixel belongs to a box when its area
overlaps the box's. Every file is untrusted: its size is bounded before it is read, an XML file
with a document type (where entity expansion lives) is refused, every number must be finite, and
the count of boxes is bounded.
"""
import copy
import csv
import io
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from rawcnn.files.validate import InputError, parse_json, read_text

MAX_BOX_FILE_BYTES = 64 << 20   # a COCO file of tens of thousands of images fits
MAX_BOXES = 1_000_000           # boxes in one file or folder
MAX_XML_FILES = 100_000         # files in a VOC folder


class BoxSet(dict):
    """{image file name (no folders): [(x, y, w, h), ...]}, and in `frames` {name: (width, height)} of the
    images whose file declares the size its boxes were drawn in."""

    def __init__(self, *args, frames=None, **kw):
        super().__init__(*args, **kw)
        self.frames = dict(frames or {})


def read_boxes(path):
    """A BoxSet {image file name (no folders): [(x, y, w, h), ...]} from a VOC file or folder, a COCO JSON or
    a CSV, with the frames the file declares."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() == ".xml")
        if not files:
            raise InputError(f"{p}: the folder holds no .xml file (Pascal VOC boxes)")
        if len(files) > MAX_XML_FILES:
            raise InputError(f"{p}: {len(files)} XML files, more than {MAX_XML_FILES}")
        out = BoxSet()
        for f in files:
            _merge(out, _read_voc(f), p)
        return out
    suffix = p.suffix.lower()
    readers = {".xml": _read_voc, ".json": _read_coco, ".csv": _read_csv}
    if suffix not in readers:
        raise InputError(f"{p}: boxes are read from .xml (Pascal VOC, or a folder of them), .json (COCO) or "
                         f".csv (file,x,y,w,h), not {suffix or 'a file without an extension'}")
    return readers[suffix](p)


def _merge(out, more, where):
    for name, boxes in more.items():
        if name in out and out.frames.get(name) != more.frames.get(name):
            raise InputError(f"{where}: the boxes of {name} are given in two image sizes "
                             f"({out.frames.get(name)} and {more.frames.get(name)}; width, height)")
        out.setdefault(name, []).extend(boxes)
        if name in more.frames:
            out.frames[name] = more.frames[name]
    if sum(len(b) for b in out.values()) > MAX_BOXES:
        raise InputError(f"{where}: more than {MAX_BOXES} boxes")


def _box(x, y, w, h, where):
    """(x, y, w, h) as floats: finite, w and h positive, the corner not negative beyond rounding."""
    try:
        v = tuple(float(t) for t in (x, y, w, h))
    except (TypeError, ValueError):
        raise InputError(f"{where}: a box needs four numbers x, y, w, h, got {(x, y, w, h)!r}") from None
    if not all(np.isfinite(v)):
        raise InputError(f"{where}: the box {v} holds a number that is not finite")
    if v[2] <= 0 or v[3] <= 0:
        raise InputError(f"{where}: the box {v} has no area (its width and height must be > 0)")
    return v


def _frame(width, height, where):
    """(width, height) declared for an image's boxes, or None when either is absent or 0; InputError for a
    value that is not a finite number >= 0."""
    if width is None or height is None:
        return None
    try:
        w, h = float(width), float(height)
    except (TypeError, ValueError):
        raise InputError(f"{where}: the image size {(width, height)!r} is not two numbers") from None
    if not (np.isfinite(w) and np.isfinite(h)) or w < 0 or h < 0:
        raise InputError(f"{where}: the image size {(w, h)} must be finite and >= 0")
    return (w, h) if w > 0 and h > 0 else None


def _base(name, where):
    name = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    if not name or name in (".", ".."):
        raise InputError(f"{where}: an empty image file name")
    return name


def _read_voc(path):
    """One Pascal VOC annotation: {filename: [boxes]} (an image without <object> gets an empty list)."""
    text = read_text(path, f"{path}", max_bytes=MAX_BOX_FILE_BYTES)
    if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        raise InputError(f"{path}: the XML declares a document type or entities; rawcnn reads Pascal VOC files "
                         f"without them (entity expansion is how XML files exhaust memory)")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise InputError(f"{path}: not well-formed XML ({e})") from None
    name = root.findtext("filename")
    if name is None:
        raise InputError(f"{path}: no <filename> (a Pascal VOC annotation names its image)")
    boxes = []
    for k, obj in enumerate(root.iter("object")):
        bb = obj.find("bndbox")
        if bb is None:
            raise InputError(f"{path}: <object> {k + 1} has no <bndbox>")
        where = f"{path}: <object> {k + 1}"
        vals = [bb.findtext(t) for t in ("xmin", "ymin", "xmax", "ymax")]
        if any(v is None for v in vals):
            raise InputError(f"{where}: <bndbox> needs xmin, ymin, xmax and ymax")
        try:
            x0, y0, x1, y1 = (float(v) for v in vals)
        except ValueError:
            raise InputError(f"{where}: <bndbox> holds a value that is not a number: {vals}") from None
        boxes.append(_box(x0, y0, x1 - x0, y1 - y0, where))
        if len(boxes) > MAX_BOXES:
            raise InputError(f"{path}: more than {MAX_BOXES} boxes")
    size = root.find("size")
    frame = None if size is None else _frame(size.findtext("width"), size.findtext("height"), f"{path}: <size>")
    name = _base(name, path)
    return BoxSet({name: boxes}, frames={name: frame} if frame else {})


def _read_coco(path):
    """COCO detection JSON: {file_name: [bbox, ...]} over its images (every image listed, boxes or not)."""
    d = parse_json(read_text(path, f"{path}", max_bytes=MAX_BOX_FILE_BYTES), f"{path}", kind=dict, allow_null=False)
    images, anns = d.get("images"), d.get("annotations")
    if not isinstance(images, list) or not isinstance(anns, list):
        raise InputError(f"{path}: a COCO file needs lists 'images' and 'annotations'")
    if len(anns) > MAX_BOXES:
        raise InputError(f"{path}: {len(anns)} annotations, more than {MAX_BOXES}")
    names, out = {}, BoxSet()
    for k, im in enumerate(images):
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            raise InputError(f"{path}: images[{k}] needs an 'id' and a 'file_name' (text)")
        names[im["id"]] = _base(im["file_name"], f"{path}: images[{k}]")
        out.setdefault(names[im["id"]], [])
        frame = _frame(im.get("width"), im.get("height"), f"{path}: images[{k}]")
        if frame:
            out.frames[names[im["id"]]] = frame
    for k, a in enumerate(anns):
        where = f"{path}: annotations[{k}]"
        if not isinstance(a, dict) or a.get("image_id") not in names:
            raise InputError(f"{where}: 'image_id' names no image of the file")
        bbox = a.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise InputError(f"{where}: 'bbox' must be a list [x, y, w, h]")
        out[names[a["image_id"]]].append(_box(*bbox, where))
    return out


def _read_csv(path):
    """A CSV with the columns file, x, y, w, h (any order, more allowed): {file: [boxes]}."""
    text = read_text(path, f"{path}", max_bytes=MAX_BOX_FILE_BYTES)
    rows = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(rows, [])]
    need = ("file", "x", "y", "w", "h")
    missing = [c for c in need if c not in header]
    if missing:
        raise InputError(f"{path}: the header must name the columns file, x, y, w, h; missing {missing}")
    col = {c: header.index(c) for c in need}
    out = BoxSet()
    for line, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise InputError(f"{path}: line {line} has {len(row)} fields, the header {len(header)}")
        where = f"{path}: line {line}"
        out.setdefault(_base(row[col["file"]].strip(), where), []).append(
            _box(*(row[col[c]] for c in ("x", "y", "w", "h")), where))
        if line > MAX_BOXES + 1:
            raise InputError(f"{path}: more than {MAX_BOXES} boxes")
    return out


def _match_keys(boxes, names):
    """{index in `names`: the key of `boxes` it matches} (match_names' rule)."""
    lookup = {}
    for name in boxes:
        lookup[name] = name
        lookup.setdefault(os.path.splitext(name)[0], name)
    out = {}
    for i, n in enumerate(names):
        base = _base(n, "names")
        key = lookup.get(base, lookup.get(os.path.splitext(base)[0]))
        if key is not None:
            out[i] = key
    return out


def match_names(boxes, names):
    """{index in `names`: its boxes} for the prepared set's `names` that a box file mentions; the match
    is on the file name without folders, with or without its extension."""
    return {i: boxes[key] for i, key in _match_keys(boxes, names).items()}


def boxes_to_masks(boxes, names, roi_boxes, size, source_shapes=None):
    """(masks (N, S, S) uint8 0/1, has (N,) bool, rescaled (N,) bool) of the boxes of each of the N `names`
    in stored pixels.

    roi_boxes (N, 4) (y0, y1, x0, x1): the prepared set's record of each crop in source pixels
    (rawcnn.data.dataset); size: S; source_shapes (N, 2) (H, W) or None: the source images' sizes, to
    which boxes declared in another frame (boxes.frames, module docstring) are scaled first (rescaled
    True). An image the file lists without boxes gets an all-zero mask with has True (it was annotated:
    no lesion); an image the file does not mention gets has False."""
    n, S = len(names), int(size)
    masks, has = np.zeros((n, S, S), dtype=np.uint8), np.zeros(n, dtype=bool)
    rescaled = np.zeros(n, dtype=bool)
    frames = getattr(boxes, "frames", {})
    for i, key in _match_keys(boxes, names).items():
        has[i] = True
        fx = fy = 1.0
        if source_shapes is not None and key in frames:
            (fw, fh), (h, w) = frames[key], (float(v) for v in source_shapes[i])
            fx, fy = w / fw, h / fh
            rescaled[i] = (fw, fh) != (w, h)
        y0, y1, x0, x1 = (float(v) for v in roi_boxes[i])
        sy, sx = S / max(y1 - y0, 1.0), S / max(x1 - x0, 1.0)  # stored pixels per source pixel
        for (bx, by, bw, bh) in boxes[key]:
            bx, bw, by, bh = bx * fx, bw * fx, by * fy, bh * fy  # into the source image's pixels
            r0, r1 = int(np.floor((by - y0) * sy)), int(np.ceil((by + bh - y0) * sy))
            c0, c1 = int(np.floor((bx - x0) * sx)), int(np.ceil((bx + bw - x0) * sx))
            r0, r1, c0, c1 = max(r0, 0), min(r1, S), max(c0, 0), min(c1, S)
            if r1 > r0 and c1 > c0:  # a box outside the crop leaves no mark
                masks[i, r0:r1, c0:c1] = 1
    return masks, has, rescaled


def apply_boxes(data, boxes):
    """A shallow copy of the PreparedData `data` whose lesion masks are the `boxes` (read_boxes's dict) for
    every image the box file names (an image it lists without boxes: annotated, no lesion); the other
    images keep their own lesion masks; out.boxes_rescaled counts the images whose boxes were declared in
    another image size and scaled to theirs. `data` itself is unchanged."""
    masks, has, rescaled = boxes_to_masks(boxes, list(data.names), data.roi_boxes, data.lesion_masks.shape[-1],
                                          data.source_shapes)
    if not has.any():
        raise InputError(f"the box file names none of the {len(data.names)} images of {data.path} (images are "
                         f"matched by file name, without folders, with or without the extension)")
    out = copy.copy(data)
    out.lesion_masks = np.where(has[:, None, None], masks, data.lesion_masks)  # (N, S, S)
    out.has_lesion_mask = np.where(has, 1, data.has_lesion_mask).astype(data.has_lesion_mask.dtype)  # (N,)
    out.boxes_rescaled = int(rescaled.sum())
    return out
