"""`rawcnn predict`: class probabilities of image files through a checkpoint's input contract."""
import math

import numpy as np

from rawcnn.data.contract import contract_of, masks_for
from rawcnn.engine.checkpoint import read_checkpoint
from rawcnn.files.validate import check_int, read_text
from rawcnn.training.evaluate import predict


def predict_command(checkpoint, images, *, top=2, class_names=None, masks=None, masks_dir=None, device="cpu",
                    conv_algo="auto", log=None):
    """predict_top with --conv-algo applied; refuses (ValueError) to return non-finite probabilities."""
    rows = predict_top(checkpoint, images, top=top, class_names=class_names, device=device,
                       conv_algo=conv_algo,
                       masks=list(masks or ()) or None, masks_dir=masks_dir, log=log)
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


def predict_top(checkpoint, images, top=5, class_names=None, device="cpu", masks=None, masks_dir=None, log=None,
                conv_algo="auto"):
    """Rows (image, [(class index, name or None, probability), ...]) of the `top` classes per image.

    Names come from the class_names file when given, else from the checkpoint (meta class_names).
    masks / masks_dir: lung masks per image (--mask) or a folder matched by name (--masks).
    """
    check_int(top, "--top", lo=1)
    names = None
    if class_names:
        text = read_text(class_names, f"--class-names {class_names}")
        names = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        names = contract_of(read_checkpoint(checkpoint)).class_names
    lung = masks_for(list(images), masks, masks_dir)
    probs = predict(checkpoint, list(images), device=device, lung_masks=lung, log=log, conv_algo=conv_algo)
    if names is not None and len(names) != probs.shape[1] and not class_names:
        names = None  # the checkpoint's names belong to another head (e.g. before fine-tuning)
    if names is not None and len(names) != probs.shape[1]:
        raise ValueError(f"{class_names}: {len(names)} class names for a model with {probs.shape[1]} classes")
    rows = []
    for path, p in zip(images, probs):
        order = np.argsort(-p, kind="stable")[:top]
        rows.append((path, [(int(i), names[i] if names else None, float(p[i])) for i in order]))
    return rows
