"""What every data module shares: the error a bad data file raises, the checks that a name leads to a
regular file inside the folder being read (nothing is opened), and the Record / Records a reader returns.

    DataError            a data file that cannot be used; the message names the file
    OutsideFolderError   a name that leads outside the folder being read; never skipped (--skip-bad)
    inside_root          the real path of a name, which must lie inside the root
    file_problem         why a name is not a regular file one may open, or None
    Record, Records      one radiograph; a list of them with class names, layout, root and skipped files
    NLM_CLASS_NAMES      ('normal', 'abnormal'): the NLM sets' labels 0 and 1
"""
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

NLM_CLASS_NAMES = ("normal", "abnormal")


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
