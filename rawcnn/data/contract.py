"""The input contract, in one home: from an image file on disk to the network's input.

Shape legend: H, W source image size; S the stored size (the prepared set's input_size);
IH, IW the network's input size; K classes.

A checkpoint carries two records that together say how a file becomes network input:
    meta.data_settings   the prepared set's steps (rawcnn.data.preprocess): the lung-ROI crop and
                         where its box comes from (settings['roi']: 'masks', 'locator', 'none'),
                         the 1024 resize, CLAHE, the resize to S, channel replication; None for
                         a model that never saw a prepared set (an imported ImageNet network)
    preprocessing        rawcnn.data.preprocessing.Preprocessing: the decode mode ('gray' for
                         radiograph models, 'color' for ImageNet models), resize to IH x IW,
                         channel order (BGR/RGB as the source framework used), scale, mean, std
and meta.class_names, the names of the K outputs.

The steps, in order (`file_to_stored` then `Contract.to_input`):
    1. decode      gray: rawcnn.data.load_image (DICOM and 16-bit images included) -> (H, W);
                   color: load_image_color -> (H, W, 3) RGB
    2. data steps  gray with data settings: preprocess_image (ROI crop, 1024, CLAHE, S) -> (C, S, S)
    3. the Preprocessing record: resize, channel order, (x * scale - mean) / std -> (1, 3, IH, IW)
`data prepare` runs steps 1-2 on every file, train and evaluate run step 3 on the stored images,
and predict, trace and viz on files run all three through `file_to_input`, so they feed the net
the same tensor (tests/test_input_paths.py checks it through the command line).

Where the ROI box comes from at predict time (`roi_source`):
    a lung mask given for the image  -> the mask (as training did with 'masks')
    no mask, contract roi 'masks' or 'locator' -> rawcnn.data.locator (a note says so)
    contract roi 'none'             -> no crop
"""
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from rawcnn.data.decode import load_image, load_image_color, load_mask
from rawcnn.data.locator import NAME, locate_lungs
from rawcnn.data.preprocess import check_settings, preprocess_image
from rawcnn.data.preprocessing import PRESETS, Preprocessing


@dataclass
class Contract:
    """What a checkpoint says about its input: settings (dict or None), preprocessing
    (Preprocessing or None), decode ('gray' or 'color'), class_names (list of K str or None)."""
    settings: dict
    preprocessing: Preprocessing
    decode: str
    class_names: list

    @property
    def roi(self):
        """'masks', 'locator' or 'none': where the lung-ROI box came from in training."""
        if self.settings is None:
            return "none"
        return check_settings(self.settings)["roi"]

    def describe(self):
        """One line: the steps a file goes through."""
        steps = [f"decode {self.decode}"]
        if self.settings is not None:
            s = self.settings
            steps.append(f"lung ROI from {self.roi}" if self.roi != "none" else "no ROI crop")
            if s.get("base_size"):
                steps.append(f"resize {s['base_size']}")
            if s.get("clahe"):
                steps.append("CLAHE")
            if s.get("input_size"):
                steps.append(f"resize {s['input_size']}")
            if s.get("mask_outside"):
                steps.append("zero outside the lung mask")
        if self.preprocessing is not None:
            steps.append(self.preprocessing.describe())
        return ", ".join(steps)


def contract_of(ck):
    """The Contract of a checkpoint dict (rawcnn.engine.checkpoint.read_checkpoint / load_checkpoint)."""
    meta = ck.get("meta") or {}
    settings = meta.get("data_settings")
    pre = ck.get("preprocessing")
    pp = None if pre is None else Preprocessing.from_json(pre)
    decode = pp.decode if pp is not None else None
    if decode is None:  # records older than the field: imported ImageNet presets are colour models
        decode = "color" if settings is None and pp is not None and pp.name in PRESETS else "gray"
    names = meta.get("class_names")
    return Contract(settings, pp, decode, list(names) if names else None)


def class_names_of(ck, k):
    """The K class names of a checkpoint, or 'class 0', 'class 1', ... when it records none."""
    names = contract_of(ck).class_names
    return names if names and len(names) == k else [f"class {i}" for i in range(k)]


def file_to_stored(path, contract, lung_mask=None):
    """Steps 1-2 of the module docstring for one file.

    path: an image file; lung_mask: None, a mask file, or a tuple of mask files (their union,
    Montgomery's left + right lungs). Returns (x, note): x uint8 (C, S, S) for a grey model with
    data settings, (1, H, W) for one without, (3, H, W) RGB for a colour model; note a string
    saying where the ROI box came from ('' when nothing needs saying).
    """
    if contract.decode == "color":
        if lung_mask:
            raise ValueError(f"{path}: a lung mask was given, but this checkpoint ({contract.describe()}) "
                             f"crops no lung ROI")
        return np.ascontiguousarray(load_image_color(path).transpose(2, 0, 1)), ""  # (3, H, W)
    x = load_image(path)  # (H, W) uint8
    if contract.settings is None:
        return x[None], ""
    s = dict(contract.settings)
    roi = contract.roi
    lung, note = None, ""
    if s.get("mask_outside") and not lung_mask:
        raise ValueError(f"{path}: this checkpoint was trained on images zeroed outside the lung masks "
                         f"(mask_outside); give the image's lung mask (--mask FILE or --masks DIR)")
    if lung_mask:
        files = [lung_mask] if isinstance(lung_mask, (str, os.PathLike)) else list(lung_mask)
        lung = load_mask(files, x.shape)
        if roi != "none":
            s["roi"] = "masks"
            note = f"lung ROI from the mask{'s' if len(files) > 1 else ''} {', '.join(map(str, files))}"
    elif roi != "none":
        s["roi"] = "locator"
        found = locate_lungs(x)
        note = (f"no lung mask given (training used {roi}): lung ROI from the locator ({NAME})"
                if found is not None else
                f"no lung mask given and the locator ({NAME}) found no lung field: the whole image is used "
                f"(give --mask FILE or --masks DIR)")
    y = preprocess_image(x, lung, None, s)[0]
    return (y if y.ndim == 3 else y[None]), note


def file_to_input(path, contract, to_input, lung_mask=None):
    """Steps 1-3 for one file: the one path from an image file to the network's input.

    to_input: the checkpoint's step 3 (rawcnn.training.train.make_to_input). Returns (x, stored, note):
    x (1, C, IH, IW) the net's input, stored file_to_stored's uint8 (C, S, S) (for pictures) and
    its note. `predict`, `trace` and the viz commands on image files all come through here.
    """
    stored, note = file_to_stored(path, contract, lung_mask)
    return np.array(to_input(stored[None])), stored, note  # a copy: to_input may hand out a kept buffer


def find_masks(image_path, masks_dir):
    """The lung-mask file(s) in masks_dir for an image, matched by name, or None.

    Tries, for the image's stem: <stem>.png, <stem>_mask.png (Shenzhen as commonly
    redistributed), and the Montgomery pair leftMask/<stem>.png + rightMask/<stem>.png (also
    under ManualMask/). Returns a tuple of paths (their union is the mask) or None.
    """
    root, stem = Path(masks_dir), Path(image_path).stem
    for d in (root, root / "ManualMask"):
        pair = tuple(p for p in (d / "leftMask" / f"{stem}.png", d / "rightMask" / f"{stem}.png") if p.is_file())
        if pair:
            return pair
    for name in (f"{stem}.png", f"{stem}_mask.png"):
        if (root / name).is_file():
            return (root / name,)
    return None


def masks_for(image_paths, masks=None, masks_dir=None):
    """Per image: the lung-mask files to use, or None. masks: a list of files, one per image
    (--mask, repeatable), or None; masks_dir: a folder searched by name (--masks)."""
    if masks and masks_dir:
        raise ValueError("give --mask (one per image) or --masks DIR, not both")
    if masks:
        if len(masks) != len(image_paths):
            raise ValueError(f"--mask was given {len(masks)} time(s) for {len(image_paths)} image(s); give one per "
                             f"image, in the same order, or use --masks DIR")
        return list(masks)
    if masks_dir:
        if not Path(masks_dir).is_dir():
            raise ValueError(f"--masks {masks_dir}: not a folder")
        return [find_masks(p, masks_dir) for p in image_paths]
    return [None] * len(image_paths)


def match_classes(data, ck_names, classes=None, what="checkpoint"):
    """Make a prepared set's labels mean what the checkpoint's outputs mean, or refuse.

    data: PreparedData (labels and class_names are changed in place when remapped); ck_names:
    the checkpoint's K class names or None (nothing to check); classes: None, or the data set's
    class names listed in the order of the checkpoint's outputs (--classes a,b): output k is data
    class classes[k]. Returns a note (str) when labels were remapped, else ''. Raises ValueError
    naming both orders and the flag when they differ.
    """
    names = list(data.class_names)
    if classes:
        classes = list(classes)
        unknown = [c for c in classes if c not in names]
        if unknown or sorted(classes) != sorted(names):
            raise ValueError(f"{data.path}: --classes {','.join(classes)} must list each of the data set's classes "
                             f"{names} once")
        if ck_names is not None and len(ck_names) != len(classes):
            raise ValueError(f"--classes lists {len(classes)} classes, the {what} has {len(ck_names)} "
                             f"({', '.join(ck_names)})")
        if classes == names:
            return ""
        lut = np.array([classes.index(n) for n in names], np.int64)  # old label -> new label
        data.labels = lut[data.labels]
        data.class_names = list(ck_names) if ck_names is not None else classes
        return f"labels remapped by --classes: {', '.join(f'{n} -> output {lut[i]}' for i, n in enumerate(names))}"
    if ck_names is None or list(ck_names) == names:
        return ""
    same = sorted(ck_names) == sorted(names)
    raise ValueError(f"{data.path}: class {'order' if same else 'names'} {names} differ{'s' if same else ''} from "
                     f"those of the {what}, {list(ck_names)}; give --classes "
                     f"{','.join(ck_names) if same else 'A,B (the data set names, in the checkpoint output order)'} "
                     f"to map them")


def settings_note(ck_settings, data_settings):
    """A warning (str) when a prepared set was made with other data steps than the checkpoint was
    trained on (another ROI source, size, CLAHE...), else ''. Both are settings dicts or None."""
    if ck_settings is None or data_settings is None:
        return ""
    a, b = check_settings(dict(ck_settings)), check_settings(dict(data_settings))
    keys = ("roi", "roi_margin", "base_size", "clahe", "clahe_clip_limit", "clahe_tile_grid", "input_size",
            "mask_outside")
    diff = [f"{k} {b[k]!r} (trained with {a[k]!r})" for k in keys if a[k] != b[k]]
    return f"warning: the data set was prepared with {', '.join(diff)}" if diff else ""


def source_view(path, contract, lung_mask=None):
    """The decoded source image and the box of it the network saw, for pictures at the source's
    resolution. Returns (x (H, W) uint8 grey, box (y0, y1, x0, x1) in source pixels)."""
    x = load_image(path)  # (H, W)
    if contract.decode == "color" or contract.settings is None:
        return x, (0, x.shape[0], 0, x.shape[1])
    s = {**contract.settings, "base_size": None, "input_size": None, "clahe": False, "channels": 1,
         "mask_outside": False}
    lung = None
    if lung_mask:
        lung = load_mask([lung_mask] if isinstance(lung_mask, (str, os.PathLike)) else list(lung_mask), x.shape)
        s["roi"] = "masks" if contract.roi != "none" else "none"
    elif contract.roi != "none":
        s["roi"] = "locator"
    return x, preprocess_image(x, lung, None, s, return_box=True)[3]


def map_to_source(heat, box, shape):
    """A map over the network's input (h, w) placed into its box of the source: (H, W) float32."""
    y0, y1, x0, x1 = box
    out = np.zeros(shape, np.float32)  # (H, W): outside the box the network saw nothing
    out[y0:y1, x0:x1] = cv2.resize(np.asarray(heat, np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    return out
