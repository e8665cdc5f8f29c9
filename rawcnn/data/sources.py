"""The files hospitals and public sets ship: DICOM, colour and 16-bit images, the NIH
ChestX-ray14 layout, and a flat folder with a label CSV.

Shape legend: H, W image height and width; R, Cl the DICOM's declared Rows and Columns.

DICOM (pydicom), to 8-bit grey, in the order the standard gives (PS3.3 C.11, PS3.4 N.2):
    1. stored values -> modality values: v = slope * stored + intercept  (Rescale Slope/Intercept)
    2. VOI: a VOI LUT Sequence when there is one (pydicom.pixels.apply_voi_lut), else the first
       window (Window Center c, Window Width w), linear as in C.11.2.1.2:
           y = ((v - (c - 0.5)) / (w - 1) + 0.5) clipped to [0, 1]
       else the full range of the modality values (min-max), as 12-16-bit data must be scaled
       to 8 bits somehow and its useful range differs by scanner;
    3. to 0-255; MONOCHROME1 (bright = low values) is inverted so that bone is bright.
    Declared sizes (Rows, Columns, Bits Allocated, Samples per Pixel, frames) are checked against
    a limit and against the pixel data's length before any array is allocated.

Readers (each returns rawcnn.data.readers.Records):
    read_nih(root, finding)     root/Data_Entry_2017.csv + images anywhere under root (the NIH
                                images_###/images/ folders or one images/ folder); label 1 = the
                                finding among 'Finding Labels', 0 = 'No Finding', other images
                                left out; Record.clinical['patient'] = 'Patient ID' (the split
                                keeps each patient in one split)
    read_label_csv(root, csv)   root/<file> listed in a CSV with columns file and label (an
                                integer or a class name), e.g. ../shared/data/nih-cxr14-samples
"""
import csv
from pathlib import Path

import cv2
import numpy as np

from .readers import NLM_CLASS_NAMES, DataError, Record, Records, header_problem

MAX_PIXELS = 1 << 28  # 268 M values: far above any radiograph, far below a memory-exhausting header


def is_dicom(path):
    """True when the file has the DICOM preamble's 'DICM' marker at byte 128."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def load_dicom(path):
    """Decode a DICOM radiograph to (H, W) uint8 (module docstring). Raises DataError naming the file."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: not a readable DICOM file ({e})") from None
    if "PixelData" not in ds:
        raise DataError(f"{path}: DICOM without pixel data")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    bits, spp = int(ds.get("BitsAllocated", 0)), int(ds.get("SamplesPerPixel", 1))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if rows < 1 or cols < 1 or bits not in (8, 16, 32) or spp != 1:
        raise DataError(f"{path}: DICOM declares {rows}x{cols}, {bits} bits allocated, {spp} sample(s) per pixel; "
                        f"rawcnn reads grey (1 sample) 8/16/32-bit images")
    if frames != 1:
        raise DataError(f"{path}: DICOM has {frames} frames; rawcnn reads single-frame radiographs")
    if rows * cols > MAX_PIXELS:
        raise DataError(f"{path}: DICOM declares {rows}x{cols} pixels, more than the limit of {MAX_PIXELS}")
    if not ds.file_meta.TransferSyntaxUID.is_compressed and len(ds.PixelData) < rows * cols * bits // 8:
        raise DataError(f"{path}: DICOM pixel data holds {len(ds.PixelData)} bytes, {rows}x{cols} at {bits} bits "
                        f"needs {rows * cols * bits // 8}")
    from pydicom.pixels import apply_modality_lut, apply_voi_lut
    try:
        stored = ds.pixel_array  # (H, W)
    except Exception as e:  # pydicom raises several types for missing decoders and bad data
        raise DataError(f"{path}: DICOM pixel data cannot be decoded ({type(e).__name__}: {e})") from None
    v = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)  # (H, W) modality values
    if "VOILUTSequence" in ds:
        v = np.asarray(apply_voi_lut(v, ds), dtype=np.float64)
        lo, hi = float(v.min()), float(v.max())
        y = (v - lo) / max(hi - lo, 1e-12)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        c = float(np.ravel(ds.WindowCenter)[0])
        w = max(float(np.ravel(ds.WindowWidth)[0]), 1.0)
        y = np.clip((v - (c - 0.5)) / max(w - 1.0, 1e-12) + 0.5, 0.0, 1.0)
    else:
        lo, hi = float(v.min()), float(v.max())
        y = (v - lo) / max(hi - lo, 1e-12)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        y = 1.0 - y
    return np.ascontiguousarray(np.clip(np.rint(y * 255.0), 0, 255).astype(np.uint8))  # (H, W)


def load_image_color(path):
    """Decode an image file in colour: (H, W, 3) uint8 RGB.

    Grey files (and DICOM) are replicated to R = G = B; an alpha channel is dropped; 16-bit
    colour is scaled by 255 / 65535. Raises DataError naming the file.
    """
    from .readers import load_image
    path = Path(path)
    if is_dicom(path):
        return np.repeat(load_dicom(path)[..., None], 3, axis=-1)
    problem = header_problem(path)
    if problem:
        raise DataError(f"{path}: {problem}")
    x = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if x is None or x.size == 0:
        raise DataError(f"{path}: the image cannot be decoded")
    if x.ndim == 2 or x.shape[2] == 1:
        return np.repeat(load_image(path)[..., None], 3, axis=-1)  # (H, W, 3)
    if x.dtype == np.uint16:
        x = np.clip(np.rint(x.astype(np.float64) * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
    elif x.dtype != np.uint8:
        raise DataError(f"{path}: colour images must be 8- or 16-bit, got {x.dtype}")
    code = cv2.COLOR_BGRA2RGB if x.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return np.ascontiguousarray(cv2.cvtColor(x, code))  # (H, W, 3)


def _csv_rows(path, need):
    """Rows of a CSV file as dicts; DataError naming the file when a needed column is missing."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in need if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}: missing column(s) {missing}; found {reader.fieldnames}")
            return list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: not a readable CSV file ({e})") from None


def _index_images(root):
    """{file name: path} of every file under root (the NIH images_###/images/ folders included)."""
    return {p.name: p for p in Path(root).rglob("*") if p.is_file() and not p.name.startswith(".")}


def read_nih(root, finding="Effusion", csv_name="Data_Entry_2017.csv", skip_bad=False):
    """Read the NIH ChestX-ray14 layout (module docstring): `finding` vs 'No Finding'. Returns Records."""
    root = Path(root)
    table = root / csv_name
    if not table.is_file():
        raise DataError(f"{root}: no {csv_name}")
    rows = _csv_rows(table, ("Image Index", "Finding Labels", "Patient ID"))
    files = _index_images(root)
    records, skipped, known = [], [], set()
    for r in rows:
        for f in r["Finding Labels"].split("|"):
            known.add(f.strip())
        labels = {f.strip() for f in r["Finding Labels"].split("|")}
        label = 1 if finding in labels else 0 if labels == {"No Finding"} else None
        if label is None:
            continue
        path = files.get(r["Image Index"])
        problem = "listed in the CSV but not found under the folder" if path is None else header_problem(path)
        if problem:
            if not skip_bad:
                raise DataError(f"{path or root / r['Image Index']}: {problem}")
            skipped.append((path or root / r["Image Index"], problem))
            continue
        records.append(Record(path=path, label=label, name=Path(r["Image Index"]).stem,
                              clinical={"patient": r["Patient ID"], "finding": r["Finding Labels"]}))
    if finding not in known:
        raise DataError(f"{table}: no image has the finding {finding!r}; findings present: {sorted(known)}")
    return Records(records, ("No Finding", finding), "nih", root, skipped)


def read_label_csv(root, csv_name="labels.csv", classes=None, skip_bad=False):
    """Read root/<file> listed in root/<csv_name> (columns file, label). Returns Records.

    label: an integer class index, or a class name. Integer labels take `classes` as names, or
    ('normal', 'abnormal') for 0/1 (the NLM convention: 1 = abnormal). Name labels take `classes`
    for the order, or sorted names.
    """
    root = Path(root)
    table = root / csv_name
    rows = _csv_rows(table, ("file", "label"))
    if not rows:
        raise DataError(f"{table}: no rows")
    raw = [r["label"].strip() for r in rows]
    if all(v.lstrip("-").isdigit() for v in raw):
        idx = [int(v) for v in raw]
        names = list(classes) if classes else (list(NLM_CLASS_NAMES) if set(idx) <= {0, 1} else
                                               [str(i) for i in range(max(idx) + 1)])
        bad = [v for v in idx if not 0 <= v < len(names)]
        if bad:
            raise DataError(f"{table}: label {bad[0]} outside 0..{len(names) - 1} (classes {names})")
    else:
        names = list(classes) if classes else sorted(set(raw))
        unknown = sorted(set(raw) - set(names))
        if unknown:
            raise DataError(f"{table}: label(s) {unknown} not among the classes {names}")
        idx = [names.index(v) for v in raw]
    records, skipped = [], []
    for r, label in zip(rows, idx):
        path = root / r["file"]
        problem = None if is_dicom(path) else header_problem(path)
        if problem:
            if not skip_bad:
                raise DataError(f"{path}: {problem}")
            skipped.append((path, problem))
            continue
        records.append(Record(path=path, label=label, name=Path(r["file"]).stem,
                              clinical={k: v for k, v in r.items() if k not in ("file", "label")}))
    return Records(records, names, "label_csv", root, skipped)
