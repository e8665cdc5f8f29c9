"""An ensemble of checkpoints as one predictor: the mean of their class probabilities.

Shapes: N images, K classes, M members; each member's probabilities (N, K), the ensemble's

    p[n, k] = 1/M sum_m p_m[n, k]          (the members' softmax outputs averaged, not their logits)

`rawcnn cv --save-ensemble` writes <out>/ensemble.json naming the k fold models (fold_<f>/best.h5),
so that the models cross-validation judged become the final predictor; `rawcnn predict` and
`rawcnn evaluate` take such a file wherever they take a checkpoint. The file is JSON:

    {"format": "rawcnn-ensemble-1", "members": ["fold_1/best.h5", ...], "combine": "mean-probability"}

Members are paths relative to the file's folder and must stay inside it (no '..', no absolute path,
no link out); every member must be a checkpoint with the same class names and the same data settings
as the first (rawcnn.data.contract: lung crop, resizes, CLAHE); each applies its own normalisation
(the mean and std of its own fold's training split).
"""
import json
import os

from rawcnn.files.fileio import atomic_open
from rawcnn.files.validate import InputError, parse_json, read_text

FORMAT = "rawcnn-ensemble-1"
MAX_MEMBERS = 100


def is_ensemble(path):
    """Whether `path` names an ensemble file (.json) rather than a checkpoint."""
    return os.fspath(path).lower().endswith(".json")


def write_ensemble(path, members):
    """Write the ensemble file at `path` naming `members` (checkpoint paths, inside path's folder)."""
    folder = os.path.dirname(os.path.abspath(path))
    rel = [os.path.relpath(os.path.abspath(m), folder) for m in members]
    if not rel or any(r.startswith("..") for r in rel):
        raise ValueError(f"{path}: an ensemble needs at least one member, each inside {folder}")
    with atomic_open(path, "w") as fh:
        json.dump({"format": FORMAT, "members": rel, "combine": "mean-probability"}, fh, indent=1)
    return os.fspath(path)


def read_ensemble(path):
    """The members of the ensemble file at `path`, as absolute paths, each checked (InputError names the
    file and the member at fault)."""
    d = parse_json(read_text(path, f"{path}"), f"{path}", kind=dict, allow_null=False)
    if d.get("format") != FORMAT:
        raise InputError(f"{path}: not a rawcnn ensemble file (format {d.get('format')!r}, expected {FORMAT!r})")
    if d.get("combine", "mean-probability") != "mean-probability":
        raise InputError(f"{path}: combine {d.get('combine')!r} is not known (rawcnn averages probabilities)")
    members = d.get("members")
    if not isinstance(members, list) or not members or not all(isinstance(m, str) and m for m in members):
        raise InputError(f"{path}: 'members' must be a non-empty list of checkpoint paths")
    if len(members) > MAX_MEMBERS:
        raise InputError(f"{path}: {len(members)} members, more than {MAX_MEMBERS}")
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    out = []
    for m in members:
        full = os.path.realpath(os.path.join(folder, m))
        if os.path.isabs(m) or not full.startswith(folder + os.sep):
            raise InputError(f"{path}: member {m!r} lies outside the ensemble's folder {folder}; members are "
                             f"paths relative to it")
        if not os.path.isfile(full):
            raise InputError(f"{path}: member {m!r} is not a file ({full})")
        out.append(full)
    return out


def member_paths(path):
    """[path] for a checkpoint, the members for an ensemble file."""
    return read_ensemble(path) if is_ensemble(path) else [os.fspath(path)]
