"""A prepared data set: preprocessed radiographs, labels, masks and a split, in one HDF5 file.

Shape legend: N images in the file, M images in one split, S the input size, K classes.

File layout (written by `prepare`, read by `load_dataset`):

    images            (N, 1, S, S) uint8   the grey plane once; load_dataset repeats it to the
                                           `channels` of the settings (3: (M, 3, S, S))
    labels            (N,) int64           class index
    names             (N,) utf-8 string    record name (file stem)
    split             (N,) int8            0 train, 1 val, 2 test
    lung_masks        (N, S, S) uint8 0/1  zeros where has_lung_mask is 0
    lesion_masks      (N, S, S) uint8 0/1  zeros where has_lesion_mask is 0
    has_lung_mask     (N,) uint8 0/1
    has_lesion_mask   (N,) uint8 0/1
    roi_boxes         (N, 4) int32         crop (y0, y1, x0, x1) in source pixels
    source_shapes     (N, 2) int32         source image (H, W)
    attrs: format, rawcnn_version, settings (JSON), class_names (JSON), source, layout, seed,
           split_fractions (JSON), skipped (JSON list of [path, reason])

The split is stratified: within each class the images are shuffled by a Generator seeded with
`seed` and cut at round(n_c * f_train) and round(n_c * (f_train + f_val)), so every class keeps
the 70/20/10 proportions (to within one image) and the same seed gives the same split.
The file is written to a temporary name in the same folder and renamed when complete.
"""
import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

import cv2
import h5py
import numpy as np
from tqdm import tqdm

from rawcnn.data.decode import load_image, load_mask
from rawcnn.data.preprocess import check_settings, preprocess_image
from rawcnn.data.readers import read_any
from rawcnn.data.records import DataError
from rawcnn.data.settings_check import check_stored_settings
from rawcnn.files.fileio import atomic_path, check_target
from rawcnn.files.validate import (
    InputError,
    attr_json,
    attr_number,
    attr_text,
    check_bytes,
    check_storage,
    dataset,
    read_dataset,
)

FORMAT = "rawcnn-prepared-1"
SPLITS = ("train", "val", "test")
PER_IMAGE = ("images", "labels", "names", "split", "lung_masks", "lesion_masks", "has_lung_mask",
             "has_lesion_mask", "roi_boxes", "source_shapes")


def rawcnn_version():
    """The installed rawcnn version, or 'unknown' when it is not installed."""
    try:
        return metadata.version("rawcnn")
    except metadata.PackageNotFoundError:
        return "unknown"


def stratified_split(labels, fractions, rng):
    """Assign each image to train/val/test, class by class.

    labels     (N,) int
    fractions  (f_train, f_val, f_test), non-negative, summing to 1
    rng        numpy Generator
    Returns (N,) int8 with 0 train, 1 val, 2 test.
    """
    split = np.zeros(len(labels), np.int8)  # (N,)
    cuts = np.cumsum(fractions)[:2]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))  # (n_c,)
        a, b = (int(round(v * len(idx))) for v in cuts)
        split[idx[a:b]] = 1
        split[idx[b:]] = 2
    return split


def grouped_split(groups, fractions, rng):
    """Assign whole groups (patients) to train/val/test so that no group is in two splits.

    groups (N,) str; the groups are shuffled by rng and cut where the cumulative image count
    passes f_train and f_train + f_val of N. Returns (N,) int8 with 0 train, 1 val, 2 test.
    """
    groups = np.asarray(groups, dtype=object)
    ids = sorted(set(groups))
    order = [ids[i] for i in rng.permutation(len(ids))]
    sizes = {g: int(np.sum(groups == g)) for g in ids}
    cuts, done, where = np.cumsum(fractions)[:2] * len(groups), 0, {}
    for g in order:
        where[g] = 0 if done < cuts[0] else 1 if done < cuts[1] else 2
        done += sizes[g]
    return np.array([where[g] for g in groups], np.int8)  # (N,)


@dataclass
class PrepareSummary:
    """What prepare wrote: path, n, class_names, counts (3, K) int64 [split, class], skipped,
    notes (what a person should know: class order chosen, sources enlarged, ...)."""
    path: Path
    n: int
    class_names: list
    counts: np.ndarray
    skipped: list
    notes: list = None


def _create(f, n, S):
    """Create the per-image datasets for n images of side S (resized at the end)."""
    shapes = {"images": ((n, 1, S, S), np.uint8), "labels": ((n,), np.int64),
              "names": ((n,), h5py.string_dtype("utf-8")), "lung_masks": ((n, S, S), np.uint8),
              "lesion_masks": ((n, S, S), np.uint8), "has_lung_mask": ((n,), np.uint8),
              "has_lesion_mask": ((n,), np.uint8), "roi_boxes": ((n, 4), np.int32),
              "source_shapes": ((n, 2), np.int32)}
    for name, (shape, dtype) in shapes.items():
        image_like = len(shape) > 2
        f.create_dataset(name, shape=shape, dtype=dtype, maxshape=(None,) + shape[1:],
                         chunks=(1,) + shape[1:] if image_like else True,
                         compression="gzip" if image_like else None,
                         compression_opts=1 if image_like else None)


def _load_record(rec):
    """Decode a record's image and masks: (x (H, W) uint8, lung or None, lesion or None)."""
    x = load_image(rec.path)
    lung = load_mask(rec.lung_masks, x.shape) if rec.lung_masks else None
    lesion = load_mask([rec.lesion_mask], x.shape) if rec.lesion_mask else None
    return x, lung, lesion


def _write_images(f, records, s, skip_bad, progress):
    """Preprocess every record into f; returns (labels (n,) int64, skipped [(path, reason)])."""
    labels, skipped, j = [], [], 0
    f.attrs["enlarged"] = 0
    for rec in tqdm(records, desc="prepare", disable=not progress):
        try:
            x, lung, lesion = _load_record(rec)
        except DataError as e:
            if not skip_bad:
                raise
            skipped.append((str(rec.path), str(e)))
            continue
        try:
            y, lung_y, lesion_y, box = preprocess_image(x, lung, lesion, s, return_box=True)
        except (ValueError, cv2.error, MemoryError) as e:  # OpenCV refusing an image is a bad file too
            if not skip_bad:
                raise DataError(f"{rec.path}: preprocessing failed ({str(e).strip().splitlines()[-1][:160]})") \
                    from None
            skipped.append((str(rec.path), f"preprocessing failed: {str(e).strip().splitlines()[-1][:160]}"))
            continue
        if min(box[1] - box[0], box[3] - box[2]) < y.shape[-1]:  # the crop is smaller than S: upsampled
            f.attrs["enlarged"] += 1
        f["images"][j, 0] = y[0] if y.ndim == 3 else y
        for key, m in (("lung", lung_y), ("lesion", lesion_y)):
            f[f"has_{key}_mask"][j] = m is not None
            if m is not None:
                f[f"{key}_masks"][j] = m
        f["labels"][j], f["names"][j] = rec.label, rec.name
        f["roi_boxes"][j], f["source_shapes"][j] = box, x.shape
        labels.append(rec.label)
        j += 1
    return np.array(labels, np.int64), skipped


@dataclass(frozen=True)
class Labelling:
    """Which labels the records of a source get (rawcnn.data.readers.read_any).

    classes  the class order for folder-per-class and label-CSV sets (--classes), or None: the
             readers' own order (sorted names; 'normal', 'abnormal' for 0/1 labels)
    finding  the NIH finding read against 'No Finding' (--finding), or None: 'Effusion'
    """
    classes: list = None
    finding: str = None


def prepare(src_root, out_path, settings=None, seed=0, split=(0.7, 0.2, 0.1), skip_bad=False,
            progress=True, labelling=None):
    """Read src_root (any layout read_any knows), preprocess every image, write one HDF5 file.

    settings   preprocessing dict (rawcnn.data.preprocess.default_settings); input_size or
               base_size must be set so that every image has the same size S
    seed       int seed of the stratified split
    split      (f_train, f_val, f_test)
    skip_bad   leave out unreadable/mislabelled files (listed in the summary and the file's
               'skipped' attribute) instead of raising DataError
    labelling  Labelling(classes, finding): the class order for folder-per-class and label-CSV
               sets, the NIH finding; None for Labelling()
    Sets whose records carry a patient id (NIH) are split patient-wise (grouped_split).
    Returns a PrepareSummary.
    """
    s = check_settings(settings or {})
    S = _stored_size(s)
    fractions = _split_fractions(split)
    labelling = labelling or Labelling()
    records = read_any(src_root, skip_bad=skip_bad, classes=labelling.classes, finding=labelling.finding)
    notes = []
    if records.layout in ("folder_per_class", "label_csv") and not labelling.classes:
        notes.append(f"class order {records.class_names} (label = index); give --classes to choose another")
    skipped = [(str(p), reason) for p, reason in records.skipped]
    out = Path(out_path)
    check_target(out, "prepared data set")
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as f:
            _create(f, len(records), S)
            labels, bad = _write_images(f, records, s, skip_bad, progress)
            skipped += bad
            if len(labels) == 0:
                raise DataError(f"{src_root}: no usable images")
            _trim(f, len(labels))
            split_ids = _write_split(f, records, labels, fractions, seed, notes)
            s = _recorded_roi(f, s, len(labels), notes)
            if f.attrs["enlarged"]:
                notes.append(f"warning: {int(f.attrs['enlarged'])} of {len(labels)} images (or their lung ROI) are "
                             f"smaller than {S} px and were enlarged; prepare at a smaller --input-size "
                             f"or use larger sources")
            f.attrs.update({"format": FORMAT, "rawcnn_version": rawcnn_version(),
                            "settings": json.dumps(s), "class_names": json.dumps(records.class_names),
                            "source": str(Path(src_root).resolve()), "layout": records.layout,
                            "seed": int(seed), "split_fractions": json.dumps(fractions.tolist()),
                            "skipped": json.dumps(skipped)})
    counts = np.zeros((3, len(records.class_names)), np.int64)  # (3, K)
    np.add.at(counts, (split_ids, labels), 1)
    return PrepareSummary(out, len(labels), records.class_names, counts, skipped, notes)


def _stored_size(s):
    """S, the side of every stored image: the checked settings' input_size, else base_size (ValueError if neither)."""
    S = s["input_size"] or s["base_size"]
    if S is None:
        raise ValueError("prepare: settings need input_size or base_size, so that all images share one size")
    return int(S)


def _split_fractions(split):
    """split as (3,) float64 (f_train, f_val, f_test); ValueError unless three non-negative fractions summing to 1."""
    fractions = np.asarray(split, dtype=np.float64)
    if fractions.shape != (3,) or (fractions < 0).any() or abs(fractions.sum() - 1) > 1e-6:
        raise ValueError(f"prepare: split must be three non-negative fractions summing to 1, got {split}")
    return fractions


def _trim(f, n):
    """Cut every per-image dataset (created for all records) to the n images written; 'split' comes later."""
    for name in PER_IMAGE:
        if name != "split":
            f[name].resize(n, axis=0)


def _write_split(f, records, labels, fractions, seed, notes):
    """Assign the written images to train/val/test and store it as 'split'; returns it, (n,) int8.

    Patient-wise (grouped_split, and a note says so) when every written image's record names its
    patient, else stratified by class (stratified_split); both drawn from `seed`.
    """
    patient_of = {r.name: r.clinical.get("patient") for r in records}
    patients = [patient_of.get(n) for n in f["names"].asstr()[:len(labels)]]
    if patients and all(p is not None for p in patients) and len(patients) == len(labels):
        ids = grouped_split(patients, fractions, np.random.default_rng(seed))
        notes.append(f"split patient-wise: {len(set(patients))} patients, none in two splits")
    else:
        ids = stratified_split(labels, fractions, np.random.default_rng(seed))
    f.create_dataset("split", data=ids)
    return f["split"][:]


def _recorded_roi(f, s, n, notes):
    """The settings to record for the n written images, and notes on lung masks that were missing.

    roi 'masks' with no lung mask in the set cropped nothing: the set records roi 'none', so that
    predict does the same; with some masks missing, a warning counts the uncropped images.
    """
    has_lung = f["has_lung_mask"][:n].astype(bool)
    if s["roi"] == "masks" and not has_lung.any():  # record what was done, so predict does the same
        notes.append("no lung masks in the set: nothing was cropped, and the set records roi 'none' "
                     "(give --roi locator to crop the lung field without masks)")
        return {**s, "roi": "none", "roi_crop": False}
    if s["roi"] == "masks" and not has_lung.all():
        notes.append(f"warning: {int((~has_lung).sum())} of {n} images have no lung mask and "
                     f"were not cropped; predict crops such images with the locator")
    return s


class SplitArrays(NamedTuple):
    """The images of one split, in file order.

    images           (M, C, S, S) uint8, C = the settings' channels
    labels           (M,) int64
    names            (M,) object (str)
    lesion_masks     (M, S, S) uint8 0/1
    has_lesion_mask  (M,) bool
    lung_masks       (M, S, S) uint8 0/1
    has_lung_mask    (M,) bool
    index            (M,) int64 row of each image in the file
    """
    images: np.ndarray
    labels: np.ndarray
    names: np.ndarray
    lesion_masks: np.ndarray
    has_lesion_mask: np.ndarray
    lung_masks: np.ndarray
    has_lung_mask: np.ndarray
    index: np.ndarray


class PreparedData:
    """A prepared data set loaded into memory (see load_dataset and the module docstring).

    Arrays as stored (images (N, 1, S, S) uint8, split_ids (N,) int8, ...), plus settings (dict),
    class_names (list), source, layout, version, seed, skipped. `split(name)` gives one split as
    SplitArrays.

    The images stay uint8; how they become network input (mean subtraction, a pretrained net's
    normalisation) is the training side's input contract (rawcnn.training.train, rawcnn.data.preprocessing).
    """

    def __init__(self, path, arrays, attrs):
        self.path = Path(path)
        a = arrays
        self.images, self.labels, self.names = a["images"], a["labels"], a["names"]  # (N, 1, S, S), (N,), (N,)
        self.split_ids = a["split_ids"]  # (N,) int8: 0 train, 1 val, 2 test
        self.lung_masks, self.has_lung_mask = a["lung_masks"], a["has_lung_mask"]  # (N, S, S), (N,) bool
        self.lesion_masks, self.has_lesion_mask = a["lesion_masks"], a["has_lesion_mask"]  # (N, S, S), (N,)
        self.roi_boxes, self.source_shapes = a["roi_boxes"], a["source_shapes"]  # (N, 4), (N, 2) int32
        self.settings = attrs["settings"]
        self.class_names = attrs["class_names"]
        self.source, self.layout = attrs["source"], attrs["layout"]
        self.version, self.seed, self.skipped = str(attrs["rawcnn_version"]), int(attrs["seed"]), attrs["skipped"]

    def __len__(self):
        return len(self.labels)

    def split(self, name):
        """The images of split `name` ('train', 'val', 'test' or 'all') as SplitArrays."""
        if name == "all":
            index = np.arange(len(self))  # (M,)
        elif name in SPLITS:
            index = np.flatnonzero(self.split_ids == SPLITS.index(name))  # (M,)
        else:
            raise ValueError(f"{self.path}: no split {name!r}; choose from {list(SPLITS) + ['all']}")
        images = np.repeat(self.images[index], int(self.settings.get("channels", 3)), axis=1)  # (M, C, S, S)
        return SplitArrays(images, self.labels[index], self.names[index], self.lesion_masks[index],
                           self.has_lesion_mask[index], self.lung_masks[index], self.has_lung_mask[index],
                           index)

    def counts(self):
        """(3, K) int64 number of images per [split, class]."""
        counts = np.zeros((3, len(self.class_names)), np.int64)  # (3, K)
        np.add.at(counts, (self.split_ids, self.labels), 1)
        return counts


def _check(path, a):
    """Validate the loaded arrays' shapes, dtypes and values; DataError names the file."""
    N = len(a["labels"])
    if a["images"].ndim != 4 or a["images"].shape[1] != 1 or a["images"].shape[2] != a["images"].shape[3]:
        raise DataError(f"{path}: images must be (N, 1, S, S), got {a['images'].shape}")
    S = a["images"].shape[2]
    expected = {"images": (N, 1, S, S), "labels": (N,), "names": (N,), "split": (N,),
                "lung_masks": (N, S, S), "lesion_masks": (N, S, S), "has_lung_mask": (N,),
                "has_lesion_mask": (N,), "roi_boxes": (N, 4), "source_shapes": (N, 2)}
    for name, shape in expected.items():
        if a[name].shape != shape:
            raise DataError(f"{path}: dataset '{name}' has shape {a[name].shape}, expected {shape} "
                            f"(N = {N} labels, S = {S})")
    if a["images"].dtype != np.uint8:
        raise DataError(f"{path}: images must be uint8, got {a['images'].dtype}")
    if not np.isin(a["split"], (0, 1, 2)).all():
        raise DataError(f"{path}: split values must be 0, 1 or 2")


def load_dataset(path):
    """Load a file written by prepare into memory, validated. Returns PreparedData.

    Raises DataError naming the file for a missing file, dataset or attribute, a dataset of the
    wrong kind or shape, a declared size beyond the memory budget, damaged chunks, data kept
    outside the file (external storage, a link, a virtual dataset: never opened), or settings
    that a user could not have typed (rawcnn.files.validate).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except Exception as e:
        raise DataError(f"{path}: not a readable HDF5 file ({str(e).splitlines()[0] if str(e) else e!r})") from None
    try:
        with f:
            a, attrs = _read_prepared(f, path)
    except InputError as e:
        raise DataError(str(e)) from None
    except DataError:
        raise
    except (KeyError, ValueError, TypeError, OSError, RuntimeError) as e:
        raise DataError(f"{path}: damaged data set ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    _check(path, a)
    labels = a["labels"]
    if labels.size and (labels.min() < 0 or labels.max() >= len(attrs["class_names"])):
        raise DataError(f"{path}: labels outside 0..{len(attrs['class_names']) - 1}")
    a["split_ids"] = a.pop("split")
    a["names"] = a["names"].astype(object)
    a["has_lung_mask"] = a["has_lung_mask"].astype(bool)
    a["has_lesion_mask"] = a["has_lesion_mask"].astype(bool)
    return PreparedData(path, a, attrs)


def _read_prepared(f, path):
    """(arrays, attrs) of an open prepared file; every shape, kind and size checked before reading."""
    check_storage(f, path)  # no link is followed below; each dataset's storage is checked before it is read
    need = ("format", "rawcnn_version", "settings", "class_names", "source", "layout", "seed", "skipped")
    missing = [n for n in PER_IMAGE if n not in f]
    if missing:
        raise DataError(f"{path}: missing dataset(s) {missing}")
    absent = [k for k in need if k not in f.attrs]
    if absent:
        raise DataError(f"{path}: missing attribute(s) {absent}")
    img = dataset(f, "images", path, ndim=4, kinds="uif")
    if img.shape[1] != 1 or img.shape[2] != img.shape[3]:
        raise DataError(f"{path}: images must be (N, 1, S, S), got {img.shape}")
    N, S = dataset(f, "labels", path, ndim=1, kinds="iu").shape[0], img.shape[2]
    img = dataset(f, "images", path, shape=(N, 1, S, S))
    expected = {"labels": ((N,), "iu"), "names": ((N,), "OSU"), "split": ((N,), "iu"),
                "lung_masks": ((N, S, S), "iub"), "lesion_masks": ((N, S, S), "iub"),
                "has_lung_mask": ((N,), "iub"), "has_lesion_mask": ((N,), "iub"), "roi_boxes": ((N, 4), "iu"),
                "source_shapes": ((N, 2), "iu")}
    dsets = {"images": img}
    for name, (shape, kinds) in expected.items():
        dsets[name] = dataset(f, name, path, shape=shape, kinds=kinds)
    check_bytes(sum(int(np.prod(d.shape, dtype=np.float64)) * d.dtype.itemsize for d in dsets.values()), path,
                f"the data set's arrays (N = {N} images of {S} x {S})")
    attrs = {}
    for k in ("rawcnn_version", "source", "layout"):
        attrs[k] = attr_text(f, k, path, required=True)
    attrs["seed"] = attr_number(f, "seed", path, integer=True)
    attrs["settings"] = check_stored_settings(attr_json(f, "settings", path, kind=dict, allow_null=False),
                                              f"{path}: attribute 'settings'")
    attrs["class_names"] = attr_json(f, "class_names", path, kind=list, allow_null=False)
    if not attrs["class_names"] or not all(isinstance(c, str) for c in attrs["class_names"]):
        raise InputError(f"{path}: attribute 'class_names' should be a non-empty list of strings")
    attrs["skipped"] = attr_json(f, "skipped", path, kind=list) or []
    a = {}
    for n, d in dsets.items():
        a[n] = read_dataset(d, path, n)
        if n == "names":
            a[n] = np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                             for v in np.ravel(a[n])], dtype=object)
    return a, attrs
