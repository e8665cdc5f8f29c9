"""Readers for chest-radiograph collections: the NLM Montgomery and Shenzhen sets, and plain
one-folder-per-class trees; detect_layout and read_any pick the reader for a folder (the NIH
and label-CSV sets are read by rawcnn.data.label_files).

Shape legend: H, W image height and width in pixels.

Layouts (what the readers look for)

    Montgomery  root/CXR_png/MCUCXR_####_L.png           L = 0 normal, 1 abnormal (tuberculosis)
                root/ManualMask/leftMask/MCUCXR_####_L.png   patient's left lung (image right)
                root/ManualMask/rightMask/MCUCXR_####_L.png  patient's right lung (image left)
                root/mask/MCUCXR_####_L[_mask].png           or one file with both lungs (also masks/),
                                                             as redistributed copies ship it
                root/ClinicalReadings/MCUCXR_####_L.txt      "Patient's Sex: F", "Patient's Age: 041Y",
                                                             then the finding ("normal" or a description)
                root/LesionMask/MCUCXR_####_L.png            rawcnn's extension (synthetic sets)
    Shenzhen    root/CXR_png/CHNCXR_####_L.png
                root/ClinicalReadings/CHNCXR_####_L.txt      "male 35yrs" then the finding
                root/mask/CHNCXR_####_L_mask.png             lung mask, when present (also masks/)
    per class   root/<class name>/<image>                    classes sorted by name, label = index
    NIH         root/Data_Entry_2017.csv                     read by rawcnn.data.label_files.read_nih
    label CSV   root/labels.csv (columns file, label)        read by rawcnn.data.label_files.read_label_csv

When root has no CXR_png folder, the NLM readers look for the images in root itself.

A reader returns `Records`, a list of `Record` that also carries the class names, the layout
name and the files it skipped. A bad file (an image whose header is not a readable image, a name
that does not parse to a label, a label that disagrees with the clinical reading) raises
`DataError` naming the file, or with skip_bad=True is left out and listed in `records.skipped`
as (path, reason). Readers check image headers only (cheap, rawcnn.data.decode.header_problem);
`load_image` (rawcnn.data.decode) decodes, and `rawcnn.data.dataset.prepare` treats a decode failure
the same way.

Hostile folders: every file a reader takes must resolve (links followed) inside the root it was
given; a class folder, an image or a CSV row that leads outside raises OutsideFolderError, even with
skip_bad, before the file is opened. A name that is not a regular file (a FIFO, a device, a folder)
is a bad file, refused after a stat and never opened, so a reader cannot block on a pipe.
"""
import os
import re
from pathlib import Path

from rawcnn.data.decode import header_problem
from rawcnn.data.label_files import read_label_csv, read_nih
from rawcnn.data.records import (
    NLM_CLASS_NAMES,
    DataError,
    OutsideFolderError,
    Record,
    Records,
    file_problem,
    inside_root,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm")
NLM_NAME = re.compile(r"^(MCUCXR|CHNCXR)_(\d+)_(\d+)$", re.IGNORECASE)


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


def _pair_masks(root, stem):
    """(leftMask, rightMask) files that exist for `stem` under root/ManualMask, or None."""
    candidates = (root / "ManualMask" / "leftMask" / f"{stem}.png",
                  root / "ManualMask" / "rightMask" / f"{stem}.png")
    found = tuple(p for p in candidates if p.is_file())
    return found or None


def _single_mask(root, stem):
    """The first one-file lung mask found for `stem` (mask/ or masks/, '_mask' suffix or not), or None."""
    for folder in ("mask", "masks"):
        for name in (f"{stem}_mask.png", f"{stem}.png"):
            p = root / folder / name
            if p.is_file():
                return (p,)
    return None


def _montgomery_masks(root, stem):
    """NLM's leftMask/rightMask pair; else one file holding both lungs, as redistributed copies of the set
    often ship it (mask/ or masks/); or None."""
    return _pair_masks(root, stem) or _single_mask(root, stem)


def _shenzhen_masks(root, stem):
    """One lung-mask file (mask/ or masks/, '_mask' suffix or not); else a Montgomery-style pair; or None."""
    return _single_mask(root, stem) or _pair_masks(root, stem)


def _nlm_record(path, root, prefix, find_masks):
    """Build the Record of one NLM image file; raises DataError naming the file, OutsideFolderError for
    the image, a mask or a clinical reading that resolves outside root."""
    inside_root(root, path, f"{path}")
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
        inside_root(root, text_path, f"{text_path} (clinical reading of {path.name})")
        clinical = parse_clinical(text_path.read_text(encoding="utf-8", errors="replace"))
        implied = reading_label(clinical["finding"])
        if implied is not None and implied != label:
            raise DataError(f"{path}: label {label} from the file name disagrees with "
                            f"{text_path.name}, which reads {clinical['finding']!r}")
    masks = find_masks(root, path.stem)
    lesion = root / "LesionMask" / f"{path.stem}.png"
    lesion = lesion if lesion.is_file() else None
    for mask in (masks or ()) + ((lesion,) if lesion else ()):
        inside_root(root, mask, f"{mask} (mask of {path.name})")
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
    layout = detect_layout(root)
    if layout == "nih":
        return read_nih(root, finding or "Effusion", skip_bad=skip_bad)
    if layout == "label_csv":
        return read_label_csv(root, classes=classes, skip_bad=skip_bad)
    if layout == "folder_per_class":
        return read_folder_per_class(root, skip_bad=skip_bad, classes=classes)
    return READERS[layout](root, skip_bad=skip_bad)
