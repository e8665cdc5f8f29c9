"""`rawcnn predict`: class probabilities of image files through a checkpoint's input contract."""
import math

import numpy as np

from rawcnn.data.contract import contract_of, masks_for
from rawcnn.engine.checkpoint import read_checkpoint
from rawcnn.files.validate import check_int, read_text
from rawcnn.training.ensemble import member_paths
from rawcnn.training.evaluate import predict


def predict_command(checkpoint, images, options, *, device="cpu", log=None):
    """predict_top; refuses (ValueError) to return non-finite probabilities. options: the command's options
    by name: top, class_names, masks, masks_dir, conv_algo."""
    rows = predict_top(checkpoint, images, {**options, "masks": list(options["masks"] or ()) or None},
                       device=device, log=log)
    if any(not math.isfinite(p) for _, best in rows for _, _, p in best):
        raise ValueError(f"{checkpoint}: the model gives non-finite probabilities; refusing to print them")
    return rows


def format_rows(rows):
    """What `rawcnn predict` prints: per image its path, then one line per class (index, probability, name)."""
    lines = []
    for path, best in rows:
        lines.append(str(path))
        lines += [f"  {i:5d}  {p:.4f}" + (f"  {name}" if name else "") for i, name, p in best]
    return "\n".join(lines)


def predict_top(checkpoint, images, options, *, device="cpu", log=None):
    """Rows (image, [(class index, name or None, probability), ...]) of the `top` classes per image.

    options: top; class_names: a file of names (else the checkpoint's, meta class_names); masks /
    masks_dir: lung masks per image (--mask) or a folder matched by name (--masks); conv_algo.
    """
    top, class_names = options["top"], options["class_names"]
    check_int(top, "--top", lo=1)
    names = None
    if class_names:
        text = read_text(class_names, f"--class-names {class_names}")
        names = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        names = contract_of(read_checkpoint(member_paths(checkpoint)[0])).class_names  # an ensemble's: its first's
    lung = masks_for(list(images), options["masks"], options["masks_dir"])
    probs = predict(checkpoint, list(images), device=device, lung_masks=lung, log=log, conv_algo=options["conv_algo"])
    if names is not None and len(names) != probs.shape[1] and not class_names:
        names = None  # the checkpoint's names belong to another head (e.g. before fine-tuning)
    if names is not None and len(names) != probs.shape[1]:
        raise ValueError(f"{class_names}: {len(names)} class names for a model with {probs.shape[1]} classes")
    rows = []
    for path, p in zip(images, probs, strict=True):
        order = np.argsort(-p, kind="stable")[:top]
        rows.append((path, [(int(i), names[i] if names else None, float(p[i])) for i in order]))
    return rows
