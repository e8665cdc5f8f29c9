"""Readers for chest-radiograph collections: the NLM Montgomery and Shenzhen sets, and plain
one-folder-per-class trees.

Shape legend: H, W image height and width in pixels.

Layouts (what the readers look for)

    Montgomery  root/CXR_png/MCUCXR_####_L.png           L = 0 normal, 1 abnormal (tuberculosis)
                root/ManualMask/leftMask/MCUCXR_####_L.png   patient's left lung (image right)
                root/ManualMask/rightMask/MCUCXR_####_L.png  patient's right lung (image left)
                root/ClinicalReadings/MCUCXR_####_L.txt      "Patient's Sex: F", "Patient's Age: 041Y",
                                                             then the finding ("normal" or a description)
                root/LesionMask/MCUCXR_####_L.png            rawcnn's extension (synthetic sets)
    Shenzhen    root/CXR_png/CHNCXR_####_L.png
                root/ClinicalReadings/CHNCXR_####_L.txt      "male 35yrs" then the finding
                root/mask/CHNCXR_####_L_mask.png             lung mask, when present (also masks/)
    per class   root/<class name>/<image>                    classes sorted by name, label = index

When root has no CXR_png folder, the NLM readers look for the images in root itself.

A reader returns `Records`, a list of `Record` that also carries the class names, the layout
name and the files it skipped. A bad file (an image whose header is not a readable image, a name
that does not parse to a label, a label that disagrees with the clinical reading) raises
`DataError` naming the file, or with skip_bad=True is left out and listed in `records.skipped`
as (path, reason). Readers check image headers only (cheap); `load_image` decodes, and
`rawcnn.data.dataset.prepare` treats a decode failure the same way.

Hostile folders: every file a reader takes must resolve (links followed) inside the root it was
given; a class folder, an image or a CSV row that leads outside raises OutsideFolderError, even with
skip_bad, before the file is opened. A name that is not a regular file (a FIFO, a device, a folder)
is a bad file, refused after a stat and never opened, so a reader cannot block on a pipe.
"""
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm")
NLM_CLASS_NAMES = ("normal", "abnormal")
NLM_NAME = re.compile(r"^(MCUCXR|CHNCXR)_(\d+)_(\d+)$", re.IGNORECASE)

# first bytes of the image formats OpenCV reads (PNG, JPEG, BMP, TIFF little/big endian)
MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*")


class DataError(ValueError):
    """A data file that cannot be used; the message names the file."""


class OutsideFolderError(DataError):
    """A name in the data (a link, a CSV row) that leads outside the folder being read; never skipped."""


def inside_root(root, path, what):
    """The real path of `path` (links resolved), which must lie inside the real path of `root`.

    Only links are read (os.path.realpath); no file is opened. `what` names the culprit in the
    message (e.g. "labels.csv: line 7: file '../x.png'"). Raises OutsideFolderError.
    """
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise OutsideFolderError(f"{what} resolves to {real}, outside the folder {root}; rawcnn reads only files "
                                 f"inside the folder it is given (refused before reading it, even with --skip-bad)")
    return real


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_problem(path):
    """Why `path` is not a regular file one may open (a string), or None. Nothing is opened."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "file not found" + (" (a link to a missing file)" if os.path.islink(path) else "")
    except (OSError, ValueError) as e:  # a name too long, a loop of links, a NUL character
        return f"cannot be read ({getattr(e, 'strerror', None) or e})"
    if stat.S_ISREG(mode):
        return None
    kind = next((k for test, k in _KINDS if test(mode)), "not a file")
    return f"not a regular file ({kind}); refusing to open it"


@dataclass
class Record:
    """One radiograph: where it is, its label, and what comes with it.

    path         the image file
    label        class index (NLM sets: 0 normal, 1 abnormal)
    name         unique name within the set (file stem; 'class/stem' for per-class trees)
    lung_masks   mask files whose union is the lung mask, or None
    lesion_mask  lesion mask file, or None
    clinical     {'sex': 'F'|'M'|None, 'age': int|None, 'finding': str}, {} when there is none
    """
    path: Path
    label: int
    name: str
    lung_masks: tuple | None = None
    lesion_mask: Path | None = None
    clinical: dict = field(default_factory=dict)


class Records(list):
    """A list of Record, plus class_names, layout, root and skipped [(path, reason), ...]."""

    def __init__(self, items=(), class_names=(), layout="", root=None, skipped=()):
        super().__init__(items)
        self.class_names = list(class_names)
        self.layout = layout
        self.root = root
        self.skipped = list(skipped)


def header_problem(path):
    """Why `path` is not a readable image file (a string), or None when its header looks fine."""
    path = Path(path)
    problem = file_problem(path)
    if problem:
        return problem
    from rawcnn.data.sources import is_dicom
    if is_dicom(path):
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(33)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if not any(head.startswith(m) for m in MAGIC):
        return "not an image (unknown file header)"
    if head.startswith(MAGIC[0]):
        # IHDR is the first chunk: length 13, type, width, height (big-endian uint32)
        if len(head) < 33 or head[12:16] != b"IHDR":
            return "truncated PNG header"
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        if width == 0 or height == 0:
            return f"PNG header gives an empty image ({width}x{height})"
    return None


def load_image(path):
    """Decode an image file as 8-bit grayscale.

    Colour is converted with OpenCV's BGR->gray weights; 16-bit images are min-max scaled to
    0..255 (their useful range varies by scanner). Returns y (H, W) uint8. Raises DataError.
    """
    path = Path(path)
    problem = header_problem(path)
    if problem:
        raise DataError(f"{path}: {problem}")
    from rawcnn.data.sources import is_dicom, load_dicom
    if is_dicom(path):
        return load_dicom(path)  # rescale, VOI window, MONOCHROME1 inverted (rawcnn.data.sources)
    from rawcnn.data.image_check import check_declared_size, decode_guarded
    check_declared_size(path)
    x = decode_guarded(path)
    if x.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if x.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        x = cv2.cvtColor(x, code)
    if x.dtype != np.uint8:
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            bad = int(x.size - np.isfinite(x).sum())
            raise DataError(f"{path}: the image holds {bad} NaN or Inf pixel values; refusing to use it")
        x = x.astype(np.float64)
        lo, hi = float(x.min()), float(x.max())
        if not hi > lo:
            raise DataError(f"{path}: the non-8-bit image is constant ({lo:g} everywhere) "
                            f"and would decode as a blank image; refusing to use it")
        x = (x - lo) * (255.0 / max(hi - lo, 1e-12))
        x = np.clip(np.rint(x), 0, 255).astype(np.uint8)  # (H, W)
    return np.ascontiguousarray(x)


def load_mask(paths, shape):
    """Union of the mask files `paths` (nonzero = inside), checked against image `shape` (H, W).

    Returns y (H, W) uint8 with values 0/1. Raises DataError naming the file at fault.
    """
    y = np.zeros(shape, dtype=np.uint8)  # (H, W)
    for path in paths:
        m = load_image(path)
        if m.shape != tuple(shape):
            raise DataError(f"{path}: mask shape {m.shape} differs from its image's {tuple(shape)}")
        y |= (m > 0).astype(np.uint8)
    return y


def parse_clinical(text):
    """Parse an NLM clinical reading into {'sex', 'age', 'finding'}.

    Knows the Montgomery lines "Patient's Sex: F" / "Patient's Age: 041Y" and the Shenzhen
    first line "male 35yrs"; every other non-empty line is the finding (joined by spaces).
    """
    sex, age, finding = None, None, []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        m_sex = re.match(r"patient'?s\s+sex\s*:\s*([mf])", line, re.IGNORECASE)
        m_age = re.match(r"patient'?s\s+age\s*:\s*(\d+)", line, re.IGNORECASE)
        m_chn = re.match(r"(male|female)\s*,?\s*(\d+)?", line, re.IGNORECASE)
        if m_sex:
            sex = m_sex.group(1).upper()
        elif m_age:
            age = int(m_age.group(1))
        elif m_chn and sex is None and not finding:
            sex = "M" if m_chn.group(1).lower() == "male" else "F"
            age = int(m_chn.group(2)) if m_chn.group(2) else None
        else:
            finding.append(line)
    return {"sex": sex, "age": age, "finding": " ".join(finding)}


def reading_label(finding):
    """Label a finding implies: 0 when it starts with the word 'normal', 1 otherwise, None if empty."""
    words = re.findall(r"[a-z]+", finding.lower())
    if not words:
        return None
    return 0 if words[0] == "normal" else 1


def _image_files(folder):
    """Entries directly in `folder` named like images, sorted by name; hidden entries, other suffixes and
    folders ignored. A FIFO, device or broken link so named is kept, for header_problem to refuse by name."""
    return sorted(p for p in folder.iterdir()
                  if not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())


def _montgomery_masks(root, stem):
    """(leftMask, rightMask) files that exist for `stem`, or None."""
    candidates = (root / "ManualMask" / "leftMask" / f"{stem}.png",
                  root / "ManualMask" / "rightMask" / f"{stem}.png")
    found = tuple(p for p in candidates if p.is_file())
    return found or None


def _shenzhen_masks(root, stem):
    """The first lung-mask file found for `stem` (mask/ or masks/, '_mask' suffix or not), or None."""
    for folder in ("mask", "masks"):
        for name in (f"{stem}_mask.png", f"{stem}.png"):
            p = root / folder / name
            if p.is_file():
                return (p,)
    return _montgomery_masks(root, stem)


def _nlm_record(path, root, prefix, find_masks):
    """Build the Record of one NLM image file; raises DataError naming the file."""
    m = NLM_NAME.match(path.stem)
    if not m or m.group(1).upper() != prefix or m.group(3) not in ("0", "1"):
        raise DataError(f"{path}: file name does not parse to a label "
                        f"(expected {prefix}_####_0 or {prefix}_####_1)")
    label = int(m.group(3))
    problem = header_problem(path)
    if problem:
        raise DataError(f"{path}: {problem}")
    clinical = {}
    text_path = root / "ClinicalReadings" / f"{path.stem}.txt"
    if text_path.is_file():
        clinical = parse_clinical(text_path.read_text(encoding="utf-8", errors="replace"))
        implied = reading_label(clinical["finding"])
        if implied is not None and implied != label:
            raise DataError(f"{path}: label {label} from the file name disagrees with "
                            f"{text_path.name}, which reads {clinical['finding']!r}")
    masks = find_masks(root, path.stem)
    lesion = root / "LesionMask" / f"{path.stem}.png"
    lesion = lesion if lesion.is_file() else None
    for mask in (masks or ()) + ((lesion,) if lesion else ()):
        problem = header_problem(mask)
        if problem:
            raise DataError(f"{mask}: {problem} (mask of {path.name})")
    return Record(path=path, label=label, name=path.stem, lung_masks=masks, lesion_mask=lesion,
                  clinical=clinical)


def _collect(build, files, skip_bad):
    """Apply build(path) to each file; DataError raises, or with skip_bad goes to the skip list."""
    records, skipped = [], []
    for path in files:
        try:
            records.append(build(path))
        except OutsideFolderError:
            raise
        except DataError as e:
            if not skip_bad:
                raise
            skipped.append((path, str(e)))
    return records, skipped


def _read_nlm(root, prefix, layout, find_masks, skip_bad):
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    image_dir = root / "CXR_png" if (root / "CXR_png").is_dir() else root
    files = _image_files(image_dir)
    if not files:
        raise DataError(f"{image_dir}: no image files")
    records, skipped = _collect(lambda p: _nlm_record(p, root, prefix, find_masks), files, skip_bad)
    return Records(records, NLM_CLASS_NAMES, layout, root, skipped)


def read_montgomery(root, skip_bad=False):
    """Read an NLM Montgomery-layout folder (see the module docstring). Returns Records."""
    return _read_nlm(root, "MCUCXR", "montgomery", _montgomery_masks, skip_bad)


def read_shenzhen(root, skip_bad=False):
    """Read an NLM Shenzhen-layout folder (see the module docstring). Returns Records."""
    return _read_nlm(root, "CHNCXR", "shenzhen", _shenzhen_masks, skip_bad)


def read_folder_per_class(root, skip_bad=False, classes=None):
    """Read root/<class>/<image>: classes are `classes` in that order (--classes), else the
    subfolder names sorted; label = index."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes:
        missing = [c for c in classes if c not in found]
        if missing:
            raise DataError(f"{root}: no class folder(s) {missing} for --classes; folders: {found}")
    classes = list(classes) if classes else found
    if not classes:
        raise DataError(f"{root}: no class subfolders")
    if len(classes) < 2:
        raise DataError(f"{root}: only one class ({classes[0]!r}); a classifier needs at least two: put one "
                        f"subfolder of images per class in {root}")
    for cls in classes:
        inside_root(root, root / cls, f"{root / cls}: the class folder")
    records, skipped = [], []
    for label, cls in enumerate(classes):
        files = _image_files(root / cls)
        if not files:
            sub = sorted(p.name for p in (root / cls).iterdir() if p.is_dir() and not p.name.startswith("."))
            raise DataError(f"{root / cls}: class folder has no image files" +
                            (f" directly in it (it holds the folder(s) {sub[:5]}; rawcnn reads "
                             f"<root>/<class>/<image>, one level deep)" if sub else ""))

        def build(path, label=label, cls=cls):
            inside_root(root, path, f"{path}")
            problem = header_problem(path)
            if problem:
                raise DataError(f"{path}: {problem}")
            return Record(path=path, label=label, name=f"{cls}/{path.stem}")

        found, bad = _collect(build, files, skip_bad)
        records += found
        skipped += bad
    return Records(records, classes, "folder_per_class", root, skipped)


def detect_layout(root):
    """'montgomery', 'shenzhen' or 'folder_per_class' from the files in root; DataError if none fits."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    for name, layout in (("Data_Entry_2017.csv", "nih"), ("labels.csv", "label_csv")):
        if os.path.lexists(root / name):
            problem = file_problem(root / name)
            if problem:
                raise DataError(f"{root / name}: {problem}; the {layout} layout reads a CSV file of that name")
            return layout
    image_dir = root / "CXR_png" if (root / "CXR_png").is_dir() else root
    names = [p.name.upper() for p in _image_files(image_dir)]
    if any(n.startswith("MCUCXR_") for n in names):
        return "montgomery"
    if any(n.startswith("CHNCXR_") for n in names):
        return "shenzhen"
    subfolders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if any(_image_files(p) for p in subfolders):
        return "folder_per_class"
    if not any(not p.name.startswith(".") for p in root.iterdir()):
        raise DataError(f"{root}: the folder is empty; expected one subfolder of images per class, a labels.csv "
                        f"beside the images, or the Montgomery / Shenzhen layout")
    if subfolders:
        raise DataError(f"{root}: no image files directly in its subfolders {sorted(p.name for p in subfolders)[:8]}; "
                        f"a folder-per-class set holds <root>/<class>/<image>.png")
    raise DataError(f"{root}: cannot tell the layout; expected CXR_png/MCUCXR_*.png (Montgomery), "
                    f"CXR_png/CHNCXR_*.png (Shenzhen) or one subfolder of images per class")


READERS = {"montgomery": read_montgomery, "shenzhen": read_shenzhen,
           "folder_per_class": read_folder_per_class}


def read_any(root, skip_bad=False, classes=None, finding=None):
    """Detect the layout of root (see detect_layout) and read it with the matching reader.

    classes: the class order for folder-per-class and label-CSV sets (--classes); finding: the
    NIH finding read against 'No Finding' (--finding)."""
    from rawcnn.data.sources import read_label_csv, read_nih
    layout = detect_layout(root)
    if layout == "nih":
        return read_nih(root, finding or "Effusion", skip_bad=skip_bad)
    if layout == "label_csv":
        return read_label_csv(root, classes=classes, skip_bad=skip_bad)
    if layout == "folder_per_class":
        return read_folder_per_class(root, skip_bad=skip_bad, classes=classes)
    return READERS[layout](root, skip_bad=skip_bad)
